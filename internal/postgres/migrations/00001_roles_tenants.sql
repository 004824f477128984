-- Roles, the tenant setting, tenants and API keys.
--
-- elile runs its queries as elile_app (SET ROLE after connecting): neither
-- superuser nor owner of any table, so row-level security always applies.
-- elile_platform is the explicit platform-admin path (SET LOCAL ROLE inside
-- one transaction); elile_audit_writer may only INSERT audit events, for the
-- group-commit writer that inserts many tenants' events in one statement.
-- Roles are cluster-wide and shared by every database of the cluster, so Down
-- revokes this database's grants but leaves the roles in place.

-- +goose Up
-- +goose StatementBegin
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elile_app') THEN
    CREATE ROLE elile_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elile_platform') THEN
    CREATE ROLE elile_platform NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elile_audit_writer') THEN
    CREATE ROLE elile_audit_writer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
  END IF;
  -- The connecting user must be able to SET ROLE to each of them.
  IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE format('GRANT elile_app, elile_platform, elile_audit_writer TO %I', current_user);
  END IF;
END
$$;
-- +goose StatementEnd

GRANT USAGE ON SCHEMA public TO elile_app, elile_platform, elile_audit_writer;
GRANT SELECT ON goose_db_version TO elile_app, elile_platform;

-- The tenant of the current transaction, set with
-- set_config('app.tenant_id', id, true). NULL when unset: tenant tables then
-- show no rows (fail closed).
CREATE FUNCTION elile_tenant() RETURNS uuid
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
  tenant_id  uuid PRIMARY KEY,
  name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]{3,63}$'),
  locale     text NOT NULL DEFAULT 'US' CHECK (char_length(locale) BETWEEN 2 AND 35),
  active     boolean NOT NULL DEFAULT true,
  config     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  key_id       uuid PRIMARY KEY,
  tenant_id    uuid REFERENCES tenants ON DELETE CASCADE, -- NULL: a platform-admin key
  name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
  prefix       text NOT NULL CHECK (char_length(prefix) BETWEEN 4 AND 32),
  secret_hash  bytea NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
  scopes       text[] NOT NULL CHECK (cardinality(scopes) >= 1),
  created_by   uuid,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  last_used_at timestamptz,
  revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at DESC);

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants TO elile_app
  USING (tenant_id = elile_tenant());
CREATE POLICY platform_access ON tenants TO elile_platform USING (true) WITH CHECK (true);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys TO elile_app
  USING (tenant_id = elile_tenant()) WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY platform_access ON api_keys TO elile_platform USING (true) WITH CHECK (true);

GRANT SELECT ON tenants TO elile_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO elile_platform;
GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO elile_app, elile_platform;

-- +goose Down
DROP TABLE api_keys;
DROP TABLE tenants;
DROP FUNCTION elile_tenant();
REVOKE ALL ON goose_db_version FROM elile_app, elile_platform;
REVOKE ALL ON SCHEMA public FROM elile_app, elile_platform, elile_audit_writer;
