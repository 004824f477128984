-- Hardening (issue 11): rules the database enforces on its own, whoever
-- connects with the application's credentials.
--
-- 1. No row of a tenant references another tenant's row. Foreign keys
--    ignore row-level security, so a tenant's profile, relation, cache row
--    or identifier row could point at another tenant's entity. These
--    triggers run as the caller (SECURITY INVOKER): under elile_app the
--    other tenant's entity is invisible and the reference is refused; under
--    any role the owners are compared. Platform-shared entities (tenant_id
--    NULL) stay referable by every tenant. An entity's tenant never changes.
-- 2. The values that order and date audit events are not the caller's:
--    txid is always the inserting transaction's id, and created_at must be
--    the time of writing (within 15 minutes before, 1 minute after), for
--    every role but the schema owner and superusers (backfills; both could
--    drop the trigger anyway). An event can no longer be planted inside a
--    range that is already sealed.
-- 3. Verification's per-seal read of one chain has an index.
-- 4. The retention floor: audit partitions younger than the floor (7 years
--    unless the owner changes it here) cannot be dropped by any runtime
--    role. Retention records carry the application's signature; the drop
--    function no longer writes them (the database cannot sign).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION elile_refuse_foreign_tenant(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% references a row of another tenant', what USING ERRCODE = 'foreign_key_violation';
END
$$;

-- The owner of entity ref as this caller sees it; raises when the caller
-- cannot see it (the foreign key proves it exists: it is another tenant's).
CREATE FUNCTION elile_entity_owner(ref uuid, what text) RETURNS uuid LANGUAGE plpgsql STABLE AS $$
DECLARE
  owner uuid;
BEGIN
  SELECT tenant_id INTO owner FROM entities WHERE entity_id = ref;
  IF NOT FOUND THEN
    PERFORM elile_refuse_foreign_tenant(what);
  END IF;
  RETURN owner;
END
$$;

CREATE FUNCTION elile_check_tenant_refs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  owner uuid;
BEGIN
  CASE TG_TABLE_NAME
  WHEN 'entity_identifiers' THEN
    IF elile_entity_owner(NEW.entity_id, TG_TABLE_NAME) IS DISTINCT FROM NEW.tenant_id THEN
      PERFORM elile_refuse_foreign_tenant(TG_TABLE_NAME);
    END IF;
  WHEN 'entity_profiles' THEN
    owner := elile_entity_owner(NEW.entity_id, TG_TABLE_NAME);
    IF owner IS NOT NULL AND owner IS DISTINCT FROM NEW.tenant_id THEN
      PERFORM elile_refuse_foreign_tenant(TG_TABLE_NAME);
    END IF;
  WHEN 'entity_relations' THEN
    FOREACH owner IN ARRAY ARRAY[elile_entity_owner(NEW.from_entity_id, TG_TABLE_NAME), elile_entity_owner(NEW.to_entity_id, TG_TABLE_NAME)] LOOP
      IF owner IS NOT NULL AND owner IS DISTINCT FROM NEW.tenant_id THEN
        PERFORM elile_refuse_foreign_tenant(TG_TABLE_NAME);
      END IF;
    END LOOP;
    IF NEW.discovered_in_profile_id IS NOT NULL THEN
      SELECT tenant_id INTO owner FROM entity_profiles WHERE profile_id = NEW.discovered_in_profile_id;
      IF NOT FOUND OR owner IS DISTINCT FROM NEW.tenant_id THEN
        PERFORM elile_refuse_foreign_tenant(TG_TABLE_NAME);
      END IF;
    END IF;
  WHEN 'cached_data_sources' THEN
    owner := elile_entity_owner(NEW.entity_id, TG_TABLE_NAME);
    IF owner IS DISTINCT FROM NEW.tenant_id
       OR (owner IS NOT NULL AND NEW.customer_id IS NOT NULL AND NEW.customer_id <> owner) THEN
      PERFORM elile_refuse_foreign_tenant(TG_TABLE_NAME);
    END IF;
  END CASE;
  RETURN NEW;
END
$$;

CREATE FUNCTION elile_entity_tenant_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
    RAISE EXCEPTION 'an entity''s tenant never changes' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF entity_id, tenant_id ON entity_identifiers
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs();
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF entity_id, tenant_id ON entity_profiles
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs();
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF from_entity_id, to_entity_id, tenant_id, discovered_in_profile_id ON entity_relations
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs();
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF entity_id, tenant_id, customer_id ON cached_data_sources
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs();
CREATE TRIGGER tenant_fixed BEFORE UPDATE OF tenant_id ON entities
  FOR EACH ROW EXECUTE FUNCTION elile_entity_tenant_fixed();

-- The exemption costs no query per row: is_superuser follows SET ROLE, and
-- the owner's name is written into the function when it is created.
-- +goose StatementBegin
DO $do$
BEGIN
  EXECUTE format($f$
    CREATE FUNCTION audit_event_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF current_setting('is_superuser') = 'on' OR current_user = %L THEN
        RETURN NEW; -- the owner's backfills
      END IF;
      NEW.txid := pg_current_xact_id();
      IF NEW.created_at < clock_timestamp() - interval '15 minutes' OR NEW.created_at > clock_timestamp() + interval '1 minute' THEN
        RAISE EXCEPTION 'audit event created_at %% is not the time of writing', NEW.created_at USING ERRCODE = 'check_violation';
      END IF;
      RETURN NEW;
    END
    $$ $f$, (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit_events'::regclass));
END
$do$;
-- +goose StatementEnd
CREATE TRIGGER stamp BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_event_stamp();

-- Verification reads one chain's events by txid range, seal by seal.
CREATE INDEX audit_events_tenant_txid ON audit_events (tenant_id, txid);

CREATE TABLE audit_retention_floor (
  one     boolean PRIMARY KEY DEFAULT true CHECK (one),
  min_age interval NOT NULL CHECK (min_age >= interval '30 days')
);
INSERT INTO audit_retention_floor (min_age) VALUES (interval '7 years');
GRANT SELECT ON audit_retention_floor TO elile_app, elile_platform;

ALTER TABLE audit_retention ADD COLUMN record_id uuid,
  ADD COLUMN signature bytea, ADD COLUMN signing_key_id text;
GRANT INSERT ON audit_retention TO elile_platform;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_drop_partitions_before(cutoff timestamptz)
RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  part    record;
  dropped text[] := '{}';
  floor   interval := (SELECT min_age FROM audit_retention_floor);
BEGIN
  IF floor IS NULL OR cutoff > now() - floor THEN
    RAISE EXCEPTION 'retention cutoff % is inside the retention floor of %', cutoff, floor
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  FOR part IN
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit_events'::regclass ORDER BY c.relname
  LOOP
    -- FOR VALUES FROM ('...') TO ('...'): drop when the upper bound <= cutoff.
    IF substring(part.bound FROM 'TO \(''([^'']+)''\)')::timestamptz <= cutoff THEN
      EXECUTE format('ALTER TABLE audit_events DETACH PARTITION %I', part.relname);
      EXECUTE format('DROP TABLE %I', part.relname);
      dropped := dropped || part.relname::text;
    END IF;
  END LOOP;
  RETURN dropped;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_drop_partitions_before(cutoff timestamptz)
RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  part    record;
  dropped text[] := '{}';
BEGIN
  FOR part IN
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit_events'::regclass ORDER BY c.relname
  LOOP
    IF substring(part.bound FROM 'TO \(''([^'']+)''\)')::timestamptz <= cutoff THEN
      EXECUTE format('ALTER TABLE audit_events DETACH PARTITION %I', part.relname);
      EXECUTE format('DROP TABLE %I', part.relname);
      dropped := dropped || part.relname::text;
    END IF;
  END LOOP;
  IF cardinality(dropped) > 0 THEN
    INSERT INTO audit_retention (cutoff, dropped) VALUES (cutoff, dropped);
  END IF;
  RETURN dropped;
END
$$;
-- +goose StatementEnd
REVOKE INSERT ON audit_retention FROM elile_platform;
ALTER TABLE audit_retention DROP COLUMN record_id, DROP COLUMN signature, DROP COLUMN signing_key_id;
DROP TABLE audit_retention_floor;
DROP INDEX audit_events_tenant_txid;
DROP TRIGGER stamp ON audit_events;
DROP FUNCTION audit_event_stamp();
DROP TRIGGER tenant_fixed ON entities;
DROP TRIGGER tenant_refs ON cached_data_sources;
DROP TRIGGER tenant_refs ON entity_relations;
DROP TRIGGER tenant_refs ON entity_profiles;
DROP TRIGGER tenant_refs ON entity_identifiers;
DROP FUNCTION elile_entity_tenant_fixed();
DROP FUNCTION elile_check_tenant_refs();
DROP FUNCTION elile_entity_owner(uuid, text);
DROP FUNCTION elile_refuse_foreign_tenant(text);
