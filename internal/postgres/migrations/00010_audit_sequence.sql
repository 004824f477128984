-- Sealing without one node's transaction horizon (docs/audit-sealing.md).
--
-- Until now the sealer sealed the events whose txid lay below the xmin of
-- its snapshot: every transaction below it had ended. That horizon is one
-- server's; on Citus an event's txid is the worker's, the coordinator's
-- horizon says nothing about it, a two-phase commit can be finished on the
-- coordinator before its rows are visible on the worker, and a shard moved
-- to another worker brings txids from another counter.
--
-- Now each chain (a tenant's events, or the platform's system events) has
-- its own position: audit_heads.last_seq, one row per chain, distributed
-- and co-located with the events. Every inserted event takes the next
-- number of its chain in the inserting transaction (trigger audit_seq),
-- which holds the chain's head row locked until it commits or rolls back:
-- a chain's numbers are given in commit order, a rolled-back transaction
-- gives its numbers back, and a committed event with number n means every
-- number below n is committed. The sealer seals, per chain, the events
-- after its last seal up to the head it reads, stopping at the first gap.
--
-- Seals keep horizon_from/horizon_to, the bounds their hash covers: txids
-- for the seals made before this migration, chain positions (first,
-- last + 1) after it. seq_from/seq_to are the positions every seal covers
-- (seq_from <= seq < seq_to), computed here for the earlier ones; NULL for
-- an earlier seal whose events retention has dropped.

-- +goose Up
CREATE TABLE audit_heads (
  tenant_id uuid PRIMARY KEY,
  last_seq  bigint NOT NULL CHECK (last_seq >= 0)
);
-- No runtime role writes it (the trigger runs as its owner); the sealer
-- reads it.
ALTER TABLE audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_read ON audit_heads FOR SELECT TO elile_platform USING (true);
-- +goose StatementBegin
DO $$
BEGIN
  EXECUTE format('CREATE POLICY owner_write ON audit_heads TO %I USING (true) WITH CHECK (true)', current_user);
END
$$;
-- +goose StatementEnd
GRANT SELECT ON audit_heads TO elile_platform;

ALTER TABLE audit_events ADD COLUMN seq bigint;
ALTER TABLE audit_seals ADD COLUMN seq_from bigint, ADD COLUMN seq_to bigint,
  ADD CONSTRAINT audit_seals_seq_range CHECK (seq_from <= seq_to);

-- Existing events take their positions in the order they were sealed in
-- (txid, audit_id); the heads continue from there.
ALTER TABLE audit_events DISABLE TRIGGER append_only;
UPDATE audit_events e SET seq = n.seq
  FROM (SELECT created_at, audit_id, tenant_id, row_number() OVER (PARTITION BY tenant_id ORDER BY txid, audit_id) AS seq
        FROM audit_events) n
  WHERE e.tenant_id = n.tenant_id AND e.created_at = n.created_at AND e.audit_id = n.audit_id;
ALTER TABLE audit_events ENABLE TRIGGER append_only;
INSERT INTO audit_heads (tenant_id, last_seq) SELECT tenant_id, max(seq) FROM audit_events GROUP BY tenant_id;
ALTER TABLE audit_events ALTER COLUMN seq SET NOT NULL;
CREATE INDEX audit_events_tenant_seq ON audit_events (tenant_id, seq);

ALTER TABLE audit_seals DISABLE TRIGGER append_only;
UPDATE audit_seals s SET seq_from = r.lo, seq_to = r.hi + 1
  FROM (SELECT s2.seal_id, min(e.seq) AS lo, max(e.seq) AS hi FROM audit_seals s2
        JOIN audit_events e ON e.tenant_id = s2.tenant_id AND e.txid >= s2.horizon_from AND e.txid < s2.horizon_to
        GROUP BY s2.seal_id) r
  WHERE s.seal_id = r.seal_id;
ALTER TABLE audit_seals ENABLE TRIGGER append_only;

-- The next position of the event's chain. SECURITY DEFINER: the runtime
-- roles cannot write the heads themselves (a head moved by hand would be a
-- gap the sealer stops at). On Citus this fires on a shard of audit_events
-- on a worker: it writes the head's shard, co-located on the same node,
-- by name (a trigger may only touch the shards beside its own).
-- +goose StatementBegin
CREATE FUNCTION audit_event_seq() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
BEGIN
  IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
    INSERT INTO audit_heads AS h (tenant_id, last_seq) VALUES (NEW.tenant_id, 1)
      ON CONFLICT (tenant_id) DO UPDATE SET last_seq = h.last_seq + 1
      RETURNING h.last_seq INTO NEW.seq;
  ELSE
    EXECUTE format('INSERT INTO %s AS h (tenant_id, last_seq) VALUES ($1, 1)
                    ON CONFLICT (tenant_id) DO UPDATE SET last_seq = h.last_seq + 1 RETURNING h.last_seq',
                   shard_name('audit_heads'::regclass, get_shard_id_for_distribution_column('audit_heads', NEW.tenant_id)))
      INTO NEW.seq USING NEW.tenant_id;
  END IF;
  RETURN NEW;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION audit_event_seq() FROM PUBLIC;
CREATE TRIGGER seq BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_event_seq();

-- +goose Down
DROP TRIGGER seq ON audit_events;
DROP FUNCTION audit_event_seq();
DROP INDEX audit_events_tenant_seq;
ALTER TABLE audit_seals DROP CONSTRAINT audit_seals_seq_range, DROP COLUMN seq_from, DROP COLUMN seq_to;
ALTER TABLE audit_events DROP COLUMN seq;
DROP TABLE audit_heads;
