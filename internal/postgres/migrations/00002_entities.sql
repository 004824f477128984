-- Entities (people, organisations, addresses), their blind-indexed
-- identifiers, relations, versioned profiles and cached provider results.
--
-- tenant_id NULL on entities (and on what hangs off them) means
-- platform-shared: every tenant reads it, only the platform path writes it.
-- Personal data lives only in the bytea columns, encrypted by the
-- application (AES-256-GCM bound to table, column, row and tenant).

-- +goose Up
CREATE TABLE entities (
  entity_id   uuid PRIMARY KEY,
  tenant_id   uuid REFERENCES tenants ON DELETE CASCADE,
  entity_type text NOT NULL CHECK (entity_type IN ('individual', 'organization', 'address')),
  external_id text CHECK (char_length(external_id) BETWEEN 1 AND 255),
  metadata    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
  identifiers bytea, -- encrypted JSON object: kind -> normalised value
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX entities_external_id ON entities (tenant_id, external_id) NULLS NOT DISTINCT
  WHERE external_id IS NOT NULL;
CREATE INDEX entities_tenant_list ON entities (tenant_id, entity_id DESC);
CREATE INDEX entities_tenant_type_list ON entities (tenant_id, entity_type, entity_id DESC);

-- One row per unique identifier kind (ssn, ein, passport, national_id,
-- email): HMAC-SHA256 under the tenant's blind-index key, never the value.
CREATE TABLE entity_identifiers (
  identifier_id uuid PRIMARY KEY,
  entity_id     uuid NOT NULL REFERENCES entities ON DELETE CASCADE,
  tenant_id     uuid REFERENCES tenants ON DELETE CASCADE,
  kind          text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,62}$'),
  blind_index   bytea NOT NULL CHECK (octet_length(blind_index) = 32),
  created_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (entity_id, kind)
);
CREATE UNIQUE INDEX entity_identifiers_lookup ON entity_identifiers (tenant_id, kind, blind_index) NULLS NOT DISTINCT;

CREATE TABLE entity_profiles (
  profile_id        uuid PRIMARY KEY,
  entity_id         uuid NOT NULL REFERENCES entities ON DELETE CASCADE,
  tenant_id         uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  version           integer NOT NULL CHECK (version >= 1),
  previous_version  integer CHECK (previous_version = version - 1),
  trigger_type      text NOT NULL CHECK (trigger_type IN ('screening', 'monitoring', 'manual')),
  trigger_id        uuid,
  findings          bytea NOT NULL, -- encrypted JSON array
  connections       bytea NOT NULL, -- encrypted JSON array
  delta             bytea,          -- encrypted JSON object (holds findings)
  risk_score        jsonb NOT NULL CHECK (jsonb_typeof(risk_score) = 'object'),
  connection_count  integer NOT NULL CHECK (connection_count >= 0),
  data_sources_used jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(data_sources_used) = 'array'),
  stale_data_used   jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(stale_data_used) = 'array'),
  evolution_signals jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(evolution_signals) = 'array'),
  created_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (entity_id, tenant_id, version)
);

CREATE TABLE entity_relations (
  relation_id              uuid PRIMARY KEY,
  tenant_id                uuid REFERENCES tenants ON DELETE CASCADE,
  from_entity_id           uuid NOT NULL REFERENCES entities ON DELETE CASCADE,
  to_entity_id             uuid NOT NULL REFERENCES entities ON DELETE CASCADE,
  relation_type            text NOT NULL CHECK (relation_type ~ '^[a-z][a-z0-9_]{0,62}$'),
  confidence_score         double precision NOT NULL CHECK (confidence_score BETWEEN 0 AND 1),
  discovered_in_profile_id uuid REFERENCES entity_profiles ON DELETE SET NULL,
  created_at               timestamptz NOT NULL DEFAULT now(),
  CHECK (from_entity_id <> to_entity_id),
  UNIQUE NULLS NOT DISTINCT (tenant_id, from_entity_id, to_entity_id, relation_type)
);
CREATE INDEX entity_relations_from ON entity_relations (from_entity_id);
CREATE INDEX entity_relations_to ON entity_relations (to_entity_id);

-- tenant_id is the owner of the entity (NULL: shared entity); customer_id is
-- the tenant that provided a customer_provided row (NULL: paid_external,
-- shared with every tenant that can see the entity).
CREATE TABLE cached_data_sources (
  cache_id        uuid PRIMARY KEY,
  entity_id       uuid NOT NULL REFERENCES entities ON DELETE CASCADE,
  tenant_id       uuid REFERENCES tenants ON DELETE CASCADE,
  customer_id     uuid REFERENCES tenants ON DELETE CASCADE,
  provider_id     text NOT NULL CHECK (provider_id ~ '^[a-z0-9_.-]{1,100}$'),
  check_type      text NOT NULL CHECK (check_type ~ '^[a-z0-9_.-]{1,100}$'),
  data_origin     text NOT NULL CHECK (data_origin IN ('paid_external', 'customer_provided')),
  raw_response    bytea NOT NULL,
  normalized_data bytea NOT NULL,
  cost_incurred   numeric(14, 2) NOT NULL DEFAULT 0 CHECK (cost_incurred >= 0),
  cost_currency   text NOT NULL DEFAULT 'USD' CHECK (cost_currency ~ '^[A-Z]{3}$'),
  acquired_at     timestamptz NOT NULL,
  fresh_until     timestamptz NOT NULL,
  stale_until     timestamptz, -- NULL: never expires
  created_at      timestamptz NOT NULL DEFAULT now(),
  CHECK ((data_origin = 'customer_provided') = (customer_id IS NOT NULL)),
  CHECK (fresh_until >= acquired_at),
  CHECK (stale_until IS NULL OR stale_until >= fresh_until)
);
CREATE INDEX cached_data_sources_lookup ON cached_data_sources (entity_id, check_type, acquired_at DESC);

-- Row-level security. Shared rows (tenant_id NULL) are readable by every
-- tenant; a tenant writes, changes and deletes only its own rows.
ALTER TABLE entities ENABLE ROW LEVEL SECURITY;
ALTER TABLE entities FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON entities FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id IS NULL);
CREATE POLICY tenant_insert ON entities FOR INSERT TO elile_app WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY tenant_update ON entities FOR UPDATE TO elile_app
  USING (tenant_id = elile_tenant()) WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY tenant_delete ON entities FOR DELETE TO elile_app USING (tenant_id = elile_tenant());
CREATE POLICY platform_access ON entities TO elile_platform USING (true) WITH CHECK (true);

ALTER TABLE entity_identifiers ENABLE ROW LEVEL SECURITY;
ALTER TABLE entity_identifiers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON entity_identifiers FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id IS NULL);
CREATE POLICY tenant_insert ON entity_identifiers FOR INSERT TO elile_app WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY tenant_update ON entity_identifiers FOR UPDATE TO elile_app
  USING (tenant_id = elile_tenant()) WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY tenant_delete ON entity_identifiers FOR DELETE TO elile_app USING (tenant_id = elile_tenant());
CREATE POLICY platform_access ON entity_identifiers TO elile_platform USING (true) WITH CHECK (true);

ALTER TABLE entity_relations ENABLE ROW LEVEL SECURITY;
ALTER TABLE entity_relations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON entity_relations FOR SELECT TO elile_app
  USING (tenant_id = elile_tenant() OR tenant_id IS NULL);
CREATE POLICY tenant_insert ON entity_relations FOR INSERT TO elile_app WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY tenant_update ON entity_relations FOR UPDATE TO elile_app
  USING (tenant_id = elile_tenant()) WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY tenant_delete ON entity_relations FOR DELETE TO elile_app USING (tenant_id = elile_tenant());
CREATE POLICY platform_access ON entity_relations TO elile_platform USING (true) WITH CHECK (true);

ALTER TABLE entity_profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE entity_profiles FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON entity_profiles TO elile_app
  USING (tenant_id = elile_tenant()) WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY platform_access ON entity_profiles TO elile_platform USING (true) WITH CHECK (true);

ALTER TABLE cached_data_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE cached_data_sources FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON cached_data_sources FOR SELECT TO elile_app
  USING ((tenant_id = elile_tenant() OR tenant_id IS NULL)
         AND (customer_id IS NULL OR customer_id = elile_tenant()));
CREATE POLICY tenant_insert ON cached_data_sources FOR INSERT TO elile_app
  WITH CHECK ((tenant_id = elile_tenant() AND (customer_id IS NULL OR customer_id = elile_tenant()))
              OR (tenant_id IS NULL AND customer_id = elile_tenant()));
CREATE POLICY tenant_update ON cached_data_sources FOR UPDATE TO elile_app
  USING ((tenant_id = elile_tenant() AND customer_id IS NULL) OR customer_id = elile_tenant())
  WITH CHECK ((tenant_id = elile_tenant() AND customer_id IS NULL) OR customer_id = elile_tenant());
CREATE POLICY tenant_delete ON cached_data_sources FOR DELETE TO elile_app
  USING ((tenant_id = elile_tenant() AND customer_id IS NULL) OR customer_id = elile_tenant());
CREATE POLICY platform_access ON cached_data_sources TO elile_platform USING (true) WITH CHECK (true);

GRANT SELECT, INSERT, UPDATE, DELETE ON entities, entity_identifiers, entity_relations
  TO elile_app, elile_platform;
-- Profiles and cache rows are immutable: only their ciphertexts may be
-- rewritten (key rotation), never their contents.
GRANT SELECT, INSERT, DELETE ON entity_profiles, cached_data_sources TO elile_app, elile_platform;
GRANT UPDATE (findings, connections, delta) ON entity_profiles TO elile_app, elile_platform;
GRANT UPDATE (raw_response, normalized_data) ON cached_data_sources TO elile_app, elile_platform;

-- +goose Down
DROP TABLE cached_data_sources;
DROP TABLE entity_relations;
DROP TABLE entity_profiles;
DROP TABLE entity_identifiers;
DROP TABLE entities;
