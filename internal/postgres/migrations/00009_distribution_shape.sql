-- A schema shaped for distribution by tenant (the Citus multi-tenant
-- model, docs/scaling.md). On one server it changes no behaviour; it is
-- what lets `elile migrate up` distribute the tenant tables on a Citus
-- coordinator (migrate.go), and it lets the database itself refuse a
-- reference to another tenant's row.
--
-- 1. The platform is a tenant row: tenant_id = the nil UUID, slug
--    '_platform' (no tenant can be given a slug with '_'). Platform-shared
--    entities (with their identifiers and the cache rows on them) and the
--    system audit chain live under it, where they had a NULL tenant_id,
--    which a distribution column cannot hold. The tenant API never shows
--    it. Platform API keys keep their NULL tenant: api_keys is a reference
--    table (replicated to every node, looked up by hash before any tenant
--    is known), not a tenant table.
-- 2. Tenant tables: tenant_id NOT NULL, first in every primary key, in
--    every unique constraint and in every foreign key between them
--    (composite: a row can only reference a row of its own tenant).
-- 3. A tenant's profile or relation may name a platform-shared entity,
--    which lives on the platform's shard: no foreign key can cross shards.
--    The row says so (entity_shared, from_shared, to_shared); a stored
--    generated column repeats the id only when it is the tenant's own
--    (own_entity_id, …) and the composite foreign key is on that column,
--    so a NULL skips it (MATCH SIMPLE) exactly for shared references. The
--    tenant_refs trigger checks that a reference flagged shared names a
--    platform-shared entity, and deleting a shared entity deletes the
--    references to it (the store, in the same unit of work).
-- 4. A cache row's tenant is its entity's owner (the composite foreign key
--    says so); its customer, when set, is that owner or any tenant on a
--    shared entity: a CHECK, no trigger.

-- +goose Up
ALTER TABLE tenants DROP CONSTRAINT tenants_slug_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_slug_check
  CHECK (slug ~ '^[a-z0-9-]{3,63}$' OR (tenant_id = '00000000-0000-0000-0000-000000000000' AND slug = '_platform'));
INSERT INTO tenants (tenant_id, name, slug) VALUES ('00000000-0000-0000-0000-000000000000', 'Platform', '_platform')
  ON CONFLICT (tenant_id) DO NOTHING;

-- Foreign keys that the new keys replace go first.
ALTER TABLE entity_identifiers DROP CONSTRAINT entity_identifiers_entity_id_fkey;
ALTER TABLE entity_profiles DROP CONSTRAINT entity_profiles_entity_id_fkey;
ALTER TABLE entity_relations DROP CONSTRAINT entity_relations_from_entity_id_fkey,
  DROP CONSTRAINT entity_relations_to_entity_id_fkey,
  DROP CONSTRAINT entity_relations_discovered_in_profile_id_fkey;
ALTER TABLE cached_data_sources DROP CONSTRAINT cached_data_sources_entity_id_fkey;

-- NULL tenants become the platform's. The audit tables are append-only:
-- their triggers are set aside for this one rewrite (the hashes of sealed
-- events already read a NULL tenant as the nil UUID, so seals still verify).
UPDATE entities SET tenant_id = '00000000-0000-0000-0000-000000000000' WHERE tenant_id IS NULL;
UPDATE entity_identifiers SET tenant_id = '00000000-0000-0000-0000-000000000000' WHERE tenant_id IS NULL;
UPDATE cached_data_sources SET tenant_id = '00000000-0000-0000-0000-000000000000' WHERE tenant_id IS NULL;
UPDATE entity_relations SET tenant_id = '00000000-0000-0000-0000-000000000000' WHERE tenant_id IS NULL;
ALTER TABLE audit_events DISABLE TRIGGER append_only;
ALTER TABLE audit_seals DISABLE TRIGGER append_only;
UPDATE audit_events SET tenant_id = '00000000-0000-0000-0000-000000000000' WHERE tenant_id IS NULL;
UPDATE audit_seals SET tenant_id = '00000000-0000-0000-0000-000000000000' WHERE tenant_id IS NULL;
ALTER TABLE audit_events ENABLE TRIGGER append_only;
ALTER TABLE audit_seals ENABLE TRIGGER append_only;

ALTER TABLE entities ALTER COLUMN tenant_id SET NOT NULL,
  DROP CONSTRAINT entities_pkey, ADD PRIMARY KEY (tenant_id, entity_id);

ALTER TABLE entity_identifiers ALTER COLUMN tenant_id SET NOT NULL,
  DROP CONSTRAINT entity_identifiers_pkey, ADD PRIMARY KEY (tenant_id, identifier_id),
  ADD CONSTRAINT entity_identifiers_entity_fkey
    FOREIGN KEY (tenant_id, entity_id) REFERENCES entities (tenant_id, entity_id) ON DELETE CASCADE;
DROP INDEX entity_identifiers_entity_kind_key;
CREATE UNIQUE INDEX entity_identifiers_entity_kind_key ON entity_identifiers (tenant_id, entity_id, kind, coalesce(blind_key, 0));

ALTER TABLE entity_profiles
  ADD COLUMN entity_shared boolean NOT NULL DEFAULT false,
  ADD COLUMN own_entity_id uuid GENERATED ALWAYS AS (CASE WHEN entity_shared THEN NULL ELSE entity_id END) STORED,
  DROP CONSTRAINT entity_profiles_pkey, ADD PRIMARY KEY (tenant_id, profile_id);
UPDATE entity_profiles p SET entity_shared = true FROM entities e
  WHERE e.entity_id = p.entity_id AND e.tenant_id = '00000000-0000-0000-0000-000000000000'
    AND p.tenant_id <> '00000000-0000-0000-0000-000000000000';
ALTER TABLE entity_profiles ADD CONSTRAINT entity_profiles_entity_fkey
  FOREIGN KEY (tenant_id, own_entity_id) REFERENCES entities (tenant_id, entity_id) ON DELETE CASCADE;

ALTER TABLE entity_relations ALTER COLUMN tenant_id SET NOT NULL,
  ADD COLUMN from_shared boolean NOT NULL DEFAULT false,
  ADD COLUMN to_shared boolean NOT NULL DEFAULT false,
  ADD COLUMN own_from_entity_id uuid GENERATED ALWAYS AS (CASE WHEN from_shared THEN NULL ELSE from_entity_id END) STORED,
  ADD COLUMN own_to_entity_id uuid GENERATED ALWAYS AS (CASE WHEN to_shared THEN NULL ELSE to_entity_id END) STORED,
  DROP CONSTRAINT entity_relations_pkey, ADD PRIMARY KEY (tenant_id, relation_id);
UPDATE entity_relations r SET from_shared = true FROM entities e
  WHERE e.entity_id = r.from_entity_id AND e.tenant_id = '00000000-0000-0000-0000-000000000000'
    AND r.tenant_id <> '00000000-0000-0000-0000-000000000000';
UPDATE entity_relations r SET to_shared = true FROM entities e
  WHERE e.entity_id = r.to_entity_id AND e.tenant_id = '00000000-0000-0000-0000-000000000000'
    AND r.tenant_id <> '00000000-0000-0000-0000-000000000000';
ALTER TABLE entity_relations
  ADD CONSTRAINT entity_relations_from_fkey
    FOREIGN KEY (tenant_id, own_from_entity_id) REFERENCES entities (tenant_id, entity_id) ON DELETE CASCADE,
  ADD CONSTRAINT entity_relations_to_fkey
    FOREIGN KEY (tenant_id, own_to_entity_id) REFERENCES entities (tenant_id, entity_id) ON DELETE CASCADE,
  -- Citus refuses SET NULL on a key that holds the distribution column:
  -- the store clears the link before it erases the profile's entity.
  ADD CONSTRAINT entity_relations_profile_fkey
    FOREIGN KEY (tenant_id, discovered_in_profile_id) REFERENCES entity_profiles (tenant_id, profile_id);
DROP INDEX entity_relations_from;
DROP INDEX entity_relations_to;
CREATE INDEX entity_relations_from ON entity_relations (tenant_id, from_entity_id);
CREATE INDEX entity_relations_to ON entity_relations (tenant_id, to_entity_id);

ALTER TABLE cached_data_sources ALTER COLUMN tenant_id SET NOT NULL,
  DROP CONSTRAINT cached_data_sources_pkey, ADD PRIMARY KEY (tenant_id, cache_id),
  ADD CONSTRAINT cached_data_sources_entity_fkey
    FOREIGN KEY (tenant_id, entity_id) REFERENCES entities (tenant_id, entity_id) ON DELETE CASCADE,
  ADD CONSTRAINT cached_data_sources_customer_check
    CHECK (customer_id IS NULL OR customer_id = tenant_id OR tenant_id = '00000000-0000-0000-0000-000000000000');
DROP INDEX cached_data_sources_lookup;
CREATE INDEX cached_data_sources_lookup ON cached_data_sources (tenant_id, entity_id, check_type, acquired_at DESC);

ALTER TABLE audit_events ALTER COLUMN tenant_id SET NOT NULL,
  DROP CONSTRAINT audit_events_pkey, ADD PRIMARY KEY (tenant_id, created_at, audit_id);
ALTER TABLE audit_seals ALTER COLUMN tenant_id SET NOT NULL,
  DROP CONSTRAINT audit_seals_tenant_id_seq_key, ADD CONSTRAINT audit_seals_tenant_id_seq_key UNIQUE (tenant_id, seq),
  DROP CONSTRAINT audit_seals_pkey, ADD PRIMARY KEY (tenant_id, seal_id);

-- The shared-reference checks (own references are the foreign keys').
DROP TRIGGER tenant_refs ON entity_identifiers;
DROP TRIGGER tenant_refs ON cached_data_sources;
DROP TRIGGER tenant_refs ON entity_profiles;
DROP TRIGGER tenant_refs ON entity_relations;
DROP FUNCTION elile_check_tenant_refs();
DROP FUNCTION elile_entity_owner(uuid, text);
-- +goose StatementBegin
CREATE FUNCTION elile_check_shared_ref(ref uuid, what text) RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
  PERFORM FROM entities WHERE tenant_id = '00000000-0000-0000-0000-000000000000' AND entity_id = ref;
  IF NOT FOUND THEN
    PERFORM elile_refuse_foreign_tenant(what);
  END IF;
END
$$;

-- The table is named by the trigger's argument: on Citus the trigger
-- fires on a shard, whose TG_TABLE_NAME is entity_profiles_102040.
CREATE FUNCTION elile_check_tenant_refs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  CASE TG_ARGV[0]
  WHEN 'entity_profiles' THEN
    IF NEW.entity_shared THEN
      PERFORM elile_check_shared_ref(NEW.entity_id, TG_ARGV[0]);
    END IF;
  WHEN 'entity_relations' THEN
    IF NEW.from_shared THEN
      PERFORM elile_check_shared_ref(NEW.from_entity_id, TG_ARGV[0]);
    END IF;
    IF NEW.to_shared THEN
      PERFORM elile_check_shared_ref(NEW.to_entity_id, TG_ARGV[0]);
    END IF;
  END CASE;
  RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF entity_id, tenant_id, entity_shared ON entity_profiles
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs('entity_profiles');
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF from_entity_id, to_entity_id, tenant_id, from_shared, to_shared ON entity_relations
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs('entity_relations');

-- Row-level security: "shared" is the platform tenant now.
DROP POLICY tenant_read ON entities;
CREATE POLICY tenant_read ON entities FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id = '00000000-0000-0000-0000-000000000000');
DROP POLICY tenant_read ON entity_identifiers;
CREATE POLICY tenant_read ON entity_identifiers FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id = '00000000-0000-0000-0000-000000000000');
DROP POLICY tenant_read ON entity_relations;
CREATE POLICY tenant_read ON entity_relations FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id = '00000000-0000-0000-0000-000000000000');
DROP POLICY tenant_read ON cached_data_sources;
CREATE POLICY tenant_read ON cached_data_sources FOR SELECT TO elile_app
  USING ((tenant_id = elile_tenant() OR tenant_id = '00000000-0000-0000-0000-000000000000')
         AND (customer_id IS NULL OR customer_id = elile_tenant()));
DROP POLICY tenant_insert ON cached_data_sources;
CREATE POLICY tenant_insert ON cached_data_sources FOR INSERT TO elile_app
  WITH CHECK ((tenant_id = elile_tenant() AND (customer_id IS NULL OR customer_id = elile_tenant()))
              OR (tenant_id = '00000000-0000-0000-0000-000000000000' AND customer_id = elile_tenant()));

-- +goose Down
DROP TRIGGER tenant_refs ON entity_profiles;
DROP TRIGGER tenant_refs ON entity_relations;
DROP FUNCTION elile_check_tenant_refs();
DROP FUNCTION elile_check_shared_ref(uuid, text);

ALTER TABLE entity_identifiers DROP CONSTRAINT entity_identifiers_entity_fkey;
ALTER TABLE entity_profiles DROP CONSTRAINT entity_profiles_entity_fkey;
ALTER TABLE entity_relations DROP CONSTRAINT entity_relations_from_fkey,
  DROP CONSTRAINT entity_relations_to_fkey, DROP CONSTRAINT entity_relations_profile_fkey;
ALTER TABLE cached_data_sources DROP CONSTRAINT cached_data_sources_entity_fkey,
  DROP CONSTRAINT cached_data_sources_customer_check;

ALTER TABLE entities DROP CONSTRAINT entities_pkey, ADD PRIMARY KEY (entity_id), ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE entity_identifiers DROP CONSTRAINT entity_identifiers_pkey, ADD PRIMARY KEY (identifier_id),
  ALTER COLUMN tenant_id DROP NOT NULL;
DROP INDEX entity_identifiers_entity_kind_key;
CREATE UNIQUE INDEX entity_identifiers_entity_kind_key ON entity_identifiers (entity_id, kind, coalesce(blind_key, 0));
ALTER TABLE entity_profiles DROP CONSTRAINT entity_profiles_pkey, ADD PRIMARY KEY (profile_id),
  DROP COLUMN own_entity_id, DROP COLUMN entity_shared;
ALTER TABLE entity_relations DROP CONSTRAINT entity_relations_pkey, ADD PRIMARY KEY (relation_id),
  DROP COLUMN own_from_entity_id, DROP COLUMN own_to_entity_id, DROP COLUMN from_shared, DROP COLUMN to_shared,
  ALTER COLUMN tenant_id DROP NOT NULL;
DROP INDEX entity_relations_from;
DROP INDEX entity_relations_to;
CREATE INDEX entity_relations_from ON entity_relations (from_entity_id);
CREATE INDEX entity_relations_to ON entity_relations (to_entity_id);
ALTER TABLE cached_data_sources DROP CONSTRAINT cached_data_sources_pkey, ADD PRIMARY KEY (cache_id),
  ALTER COLUMN tenant_id DROP NOT NULL;
DROP INDEX cached_data_sources_lookup;
CREATE INDEX cached_data_sources_lookup ON cached_data_sources (entity_id, check_type, acquired_at DESC);
ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey, ADD PRIMARY KEY (created_at, audit_id),
  ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE audit_seals DROP CONSTRAINT audit_seals_pkey, ADD PRIMARY KEY (seal_id),
  DROP CONSTRAINT audit_seals_tenant_id_seq_key, ADD CONSTRAINT audit_seals_tenant_id_seq_key UNIQUE NULLS NOT DISTINCT (tenant_id, seq),
  ALTER COLUMN tenant_id DROP NOT NULL;

UPDATE entities SET tenant_id = NULL WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
UPDATE entity_identifiers SET tenant_id = NULL WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
UPDATE cached_data_sources SET tenant_id = NULL WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
UPDATE entity_relations SET tenant_id = NULL WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
ALTER TABLE audit_events DISABLE TRIGGER append_only;
ALTER TABLE audit_seals DISABLE TRIGGER append_only;
UPDATE audit_events SET tenant_id = NULL WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
UPDATE audit_seals SET tenant_id = NULL WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
ALTER TABLE audit_events ENABLE TRIGGER append_only;
ALTER TABLE audit_seals ENABLE TRIGGER append_only;
DELETE FROM tenants WHERE tenant_id = '00000000-0000-0000-0000-000000000000';
ALTER TABLE tenants DROP CONSTRAINT tenants_slug_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_slug_check CHECK (slug ~ '^[a-z0-9-]{3,63}$');

ALTER TABLE entity_identifiers ADD FOREIGN KEY (entity_id) REFERENCES entities ON DELETE CASCADE;
ALTER TABLE entity_profiles ADD FOREIGN KEY (entity_id) REFERENCES entities ON DELETE CASCADE;
ALTER TABLE entity_relations ADD FOREIGN KEY (from_entity_id) REFERENCES entities ON DELETE CASCADE,
  ADD FOREIGN KEY (to_entity_id) REFERENCES entities ON DELETE CASCADE,
  ADD FOREIGN KEY (discovered_in_profile_id) REFERENCES entity_profiles ON DELETE SET NULL;
ALTER TABLE cached_data_sources ADD FOREIGN KEY (entity_id) REFERENCES entities ON DELETE CASCADE;

DROP POLICY tenant_read ON entities;
CREATE POLICY tenant_read ON entities FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id IS NULL);
DROP POLICY tenant_read ON entity_identifiers;
CREATE POLICY tenant_read ON entity_identifiers FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id IS NULL);
DROP POLICY tenant_read ON entity_relations;
CREATE POLICY tenant_read ON entity_relations FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id IS NULL);
DROP POLICY tenant_read ON cached_data_sources;
CREATE POLICY tenant_read ON cached_data_sources FOR SELECT TO elile_app
  USING ((tenant_id = elile_tenant() OR tenant_id IS NULL)
         AND (customer_id IS NULL OR customer_id = elile_tenant()));
DROP POLICY tenant_insert ON cached_data_sources;
CREATE POLICY tenant_insert ON cached_data_sources FOR INSERT TO elile_app
  WITH CHECK ((tenant_id = elile_tenant() AND (customer_id IS NULL OR customer_id = elile_tenant()))
              OR (tenant_id IS NULL AND customer_id = elile_tenant()));

-- The reference checks of migration 00005.
-- +goose StatementBegin
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
-- +goose StatementEnd
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF entity_id, tenant_id ON entity_identifiers
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs();
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF entity_id, tenant_id ON entity_profiles
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs();
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF from_entity_id, to_entity_id, tenant_id, discovered_in_profile_id ON entity_relations
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs();
CREATE TRIGGER tenant_refs BEFORE INSERT OR UPDATE OF entity_id, tenant_id, customer_id ON cached_data_sources
  FOR EACH ROW EXECUTE FUNCTION elile_check_tenant_refs();
