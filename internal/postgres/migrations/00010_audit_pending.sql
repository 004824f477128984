-- Sealing without one node's transaction horizon (docs/audit-sealing.md).
--
-- Until now the sealer sealed the events whose txid lay below the xmin of
-- its snapshot: every transaction below it had ended. That horizon is one
-- server's. On Citus an event's txid is its worker's, the coordinator's
-- horizon says nothing about it, a two-phase commit can be finished on the
-- coordinator before its rows are visible on the worker, and a shard moved
-- to another worker brings txids from another counter.
--
-- Now every event inserted also leaves a row in audit_pending, in the same
-- transaction (trigger audit_pending): it becomes visible exactly when the
-- event does, on the event's own node (the table is co-located with the
-- events on Citus, and moves with them), and goes away with it on a
-- rollback. A sealing round takes a chain's pending rows, deletes them and
-- appends the seal that lists their events, in one transaction: an event
-- is pending or sealed, never neither, and an event not yet visible is
-- simply sealed by a later round. Nothing orders the writers: no lock is
-- shared between two transactions that write events.
--
-- Seals made from now on list their events (event_ids, in the order of
-- event_hashes); horizon_from/horizon_to hold the chain's cumulative event
-- count before and after the seal. Seals made before keep their txid
-- horizons, and their events are still found by txid range.

-- +goose Up
CREATE TABLE audit_pending (
  tenant_id  uuid NOT NULL,
  created_at timestamptz NOT NULL,
  audit_id   uuid NOT NULL,
  PRIMARY KEY (tenant_id, created_at, audit_id)
);
-- No runtime role writes it (the trigger runs as its owner); the sealer
-- reads and deletes it.
ALTER TABLE audit_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_pending FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_seal ON audit_pending FOR SELECT TO elile_platform USING (true);
CREATE POLICY platform_sealed ON audit_pending FOR DELETE TO elile_platform USING (true);
-- +goose StatementBegin
DO $$
BEGIN
  EXECUTE format('CREATE POLICY owner_write ON audit_pending TO %I USING (true) WITH CHECK (true)', current_user);
END
$$;
-- +goose StatementEnd
GRANT SELECT, DELETE ON audit_pending TO elile_platform;

ALTER TABLE audit_seals ADD COLUMN event_ids uuid[]
  CHECK (event_ids IS NULL OR cardinality(event_ids) = event_count);

-- What the last round before this migration left unsealed: every event at
-- or above the newest horizon.
INSERT INTO audit_pending (tenant_id, created_at, audit_id)
  SELECT tenant_id, created_at, audit_id FROM audit_events
  WHERE txid >= coalesce((SELECT max(horizon_to) FROM audit_seals), '0'::xid8);

-- SECURITY DEFINER: the runtime roles cannot write audit_pending
-- themselves. On Citus this fires on a shard of audit_events, on a
-- worker: it writes the pending table's co-located shard, on the same
-- node, by name (a trigger may only touch the shards beside its own).
-- +goose StatementBegin
CREATE FUNCTION audit_event_pending() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
BEGIN
  IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
    INSERT INTO audit_pending (tenant_id, created_at, audit_id) VALUES (NEW.tenant_id, NEW.created_at, NEW.audit_id);
  ELSE
    EXECUTE format('INSERT INTO %s (tenant_id, created_at, audit_id) VALUES ($1, $2, $3)',
                   shard_name('audit_pending'::regclass, get_shard_id_for_distribution_column('audit_pending', NEW.tenant_id)))
      USING NEW.tenant_id, NEW.created_at, NEW.audit_id;
  END IF;
  RETURN NULL;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION audit_event_pending() FROM PUBLIC;
CREATE TRIGGER pending AFTER INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_event_pending();

-- +goose Down
DROP TRIGGER pending ON audit_events;
DROP FUNCTION audit_event_pending();
ALTER TABLE audit_seals DROP COLUMN event_ids;
DROP TABLE audit_pending;
