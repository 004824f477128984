-- The audit log: append-only, range-partitioned by month, encrypted
-- event_data, and the per-tenant chain of signed seals.
--
-- Audit rows have no foreign keys: they outlive what they describe.
-- tenant_id NULL marks a system event (e.g. a 401 before any tenant is known).
-- txid orders concurrently committed events for the sealer: every event
-- whose txid is below the sealer's snapshot xmin belongs to an ended
-- transaction.

-- +goose Up
CREATE TABLE audit_events (
  audit_id       uuid NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  txid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
  tenant_id      uuid,
  event_type     text NOT NULL CHECK (event_type ~ '^[a-z_]+\.[a-z_]+$'),
  severity       text NOT NULL CHECK (severity IN ('debug', 'info', 'warning', 'error', 'critical')),
  user_id        uuid,
  actor_type     text NOT NULL CHECK (actor_type IN ('human', 'service', 'system')),
  correlation_id uuid NOT NULL,
  entity_id      uuid,
  resource_type  text CHECK (char_length(resource_type) <= 100),
  resource_id    text CHECK (char_length(resource_id) <= 255),
  event_data     bytea, -- encrypted JSON object, associated data: audit id + tenant
  ip_address     inet,
  user_agent     text CHECK (char_length(user_agent) <= 512),
  PRIMARY KEY (created_at, audit_id)
) PARTITION BY RANGE (created_at);
CREATE INDEX audit_events_id ON audit_events (audit_id);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, created_at DESC, audit_id DESC);
CREATE INDEX audit_events_correlation ON audit_events (tenant_id, correlation_id);
CREATE INDEX audit_events_entity ON audit_events (tenant_id, entity_id, created_at DESC) WHERE entity_id IS NOT NULL;
CREATE INDEX audit_events_txid ON audit_events (txid);

CREATE TABLE audit_seals (
  seal_id          uuid PRIMARY KEY,
  tenant_id        uuid, -- NULL: the chain of system events
  seq              bigint NOT NULL CHECK (seq >= 1),
  horizon_from     xid8 NOT NULL,
  horizon_to       xid8 NOT NULL,
  event_count      integer NOT NULL CHECK (event_count >= 0),
  cumulative_count bigint NOT NULL CHECK (cumulative_count >= 0),
  prev_hash        bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
  seal_hash        bytea NOT NULL CHECK (octet_length(seal_hash) = 32),
  signature        bytea NOT NULL,
  signing_key_id   text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  CHECK (horizon_from <= horizon_to),
  UNIQUE NULLS NOT DISTINCT (tenant_id, seq)
);

-- Append-only: no UPDATE, DELETE or TRUNCATE, whoever asks. Retention
-- detaches and drops whole partitions, which these triggers do not see.
-- +goose StatementBegin
CREATE FUNCTION elile_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION elile_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION elile_append_only();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit_seals
  FOR EACH ROW EXECUTE FUNCTION elile_append_only();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON audit_seals
  FOR EACH STATEMENT EXECUTE FUNCTION elile_append_only();

-- Creates the monthly partitions from the month of from_time through
-- months_ahead months later; returns how many it created. Runs with the
-- owner's rights so the runtime roles need no DDL privilege.
-- +goose StatementBegin
CREATE FUNCTION audit_ensure_partitions(from_time timestamptz, months_ahead integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  m       date := date_trunc('month', from_time AT TIME ZONE 'UTC')::date;
  name    text;
  created integer := 0;
BEGIN
  FOR i IN 0..months_ahead LOOP
    name := format('audit_events_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
    IF to_regclass(name) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
        name, (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
      EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %I
                      FOR EACH STATEMENT EXECUTE FUNCTION elile_append_only()', name);
      created := created + 1;
    END IF;
    m := (m + interval '1 month')::date;
  END LOOP;
  RETURN created;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION audit_ensure_partitions(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_ensure_partitions(timestamptz, integer) TO elile_platform;
SELECT audit_ensure_partitions(now() - interval '1 month', 4);

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON audit_events FOR SELECT TO elile_app USING (tenant_id = elile_tenant());
CREATE POLICY tenant_insert ON audit_events FOR INSERT TO elile_app WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY platform_read ON audit_events FOR SELECT TO elile_platform USING (true);
CREATE POLICY platform_insert ON audit_events FOR INSERT TO elile_platform WITH CHECK (true);
CREATE POLICY writer_insert ON audit_events FOR INSERT TO elile_audit_writer WITH CHECK (true);

ALTER TABLE audit_seals ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_seals FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON audit_seals FOR SELECT TO elile_app USING (tenant_id = elile_tenant());
CREATE POLICY platform_read ON audit_seals FOR SELECT TO elile_platform USING (true);
CREATE POLICY platform_insert ON audit_seals FOR INSERT TO elile_platform WITH CHECK (true);

GRANT SELECT, INSERT ON audit_events TO elile_app, elile_platform;
GRANT INSERT ON audit_events TO elile_audit_writer;
GRANT SELECT ON audit_seals TO elile_app;
GRANT SELECT, INSERT ON audit_seals TO elile_platform;

-- +goose Down
DROP TABLE audit_seals;
DROP TABLE audit_events;
DROP FUNCTION audit_ensure_partitions(timestamptz, integer);
DROP FUNCTION elile_append_only();
