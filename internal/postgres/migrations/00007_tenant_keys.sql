-- Envelope encryption: every tenant (and the platform, tenant_id = the nil
-- UUID) has its own key-encryption key (KEK) in the key provider — an HSM
-- key object, a KMS key — and data-encryption keys (DEKs) stored here only
-- wrapped by it. Destroying a tenant's KEK makes every ciphertext of that
-- tenant unreadable, in this database and in every copy of it.
--
-- tenant_keks: one row per KEK version of a tenant. The version is elile's
-- own number (a KMS has no versions to re-wrap to); the highest version not
-- destroyed is the one new DEKs are wrapped under. byok: the tenant supplied
-- the key and controls it.
--
-- tenant_keys: the wrapped DEKs. purpose 'data' keys seal values (the
-- tenant's newest is active; older ones open what they sealed until a
-- rotation re-encrypts it); the single 'blind' key makes blind indexes and
-- never changes with a rotation. Ids start at 2^24 and are written into
-- every ciphertext header; environment keyring versions stay below 2^24.
--
-- Neither table references tenants: erasure deletes the tenant's rows but
-- keeps these as the record that its keys were destroyed, and the wrapped
-- DEKs are useless without the KEK.

-- +goose Up
-- A legal hold blocks a tenant's erasure; erasure_started_at marks an
-- erasure under way (keys destroyed or about to be, rows being deleted).
ALTER TABLE tenants ADD COLUMN legal_hold boolean NOT NULL DEFAULT false,
                    ADD COLUMN erasure_started_at timestamptz;

-- Customer metadata may hold personal data: sealed under the tenant's data
-- key like identifiers. metadata (jsonb) stays for values written before;
-- elile keys rotate moves them here.
ALTER TABLE entities ADD COLUMN sealed_metadata bytea;
GRANT UPDATE (metadata, sealed_metadata) ON entities TO elile_platform;

CREATE TABLE tenant_keks (
  tenant_id    uuid NOT NULL,
  version      integer NOT NULL CHECK (version >= 1),
  provider     text NOT NULL CHECK (provider IN ('local', 'pkcs11', 'awskms')),
  key_id       text NOT NULL CHECK (char_length(key_id) BETWEEN 1 AND 2048),
  label        text NOT NULL CHECK (char_length(label) BETWEEN 1 AND 200),
  byok         boolean NOT NULL DEFAULT false,
  created_at   timestamptz NOT NULL DEFAULT now(),
  destroyed_at timestamptz,
  PRIMARY KEY (tenant_id, version)
);

CREATE SEQUENCE tenant_keys_id_seq AS integer START WITH 16777216 MINVALUE 16777216;

CREATE TABLE tenant_keys (
  key_id      integer PRIMARY KEY DEFAULT nextval('tenant_keys_id_seq') CHECK (key_id >= 16777216),
  tenant_id   uuid NOT NULL,
  purpose     text NOT NULL CHECK (purpose IN ('data', 'blind')),
  kek_version integer NOT NULL,
  wrapped     bytea NOT NULL CHECK (octet_length(wrapped) BETWEEN 32 AND 4096),
  created_at  timestamptz NOT NULL DEFAULT now(),
  retired_at  timestamptz, -- a blind key replaced by a re-index
  FOREIGN KEY (tenant_id, kek_version) REFERENCES tenant_keks ON UPDATE RESTRICT ON DELETE RESTRICT
);
ALTER SEQUENCE tenant_keys_id_seq OWNED BY tenant_keys.key_id;
CREATE INDEX tenant_keys_tenant ON tenant_keys (tenant_id, purpose, key_id DESC);
-- A tenant has one blind-index key, so lookups never depend on which data
-- key is active — two during an explicit re-index (elile keys reindex),
-- when every unique identifier is indexed under both. Which key made a
-- blind index: entity_identifiers.blind_key (NULL: the tenant's first).
ALTER TABLE entity_identifiers ADD COLUMN blind_key integer;
ALTER TABLE entity_identifiers DROP CONSTRAINT entity_identifiers_entity_id_kind_key;
CREATE UNIQUE INDEX entity_identifiers_entity_kind_key ON entity_identifiers (entity_id, kind, coalesce(blind_key, 0));

-- The header bytes (key id) of a ciphertext sealed under the tenant's
-- active data key: rotation selects the values whose header differs.
CREATE FUNCTION elile_active_key(t uuid) RETURNS bytea
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT int4send(max(key_id)) FROM tenant_keys WHERE tenant_id = t AND purpose = 'data' $$;

-- Wrapped keys are not secret without their KEK: the server reads any
-- tenant's (the audit writer seals many tenants' events in one batch).
-- Only the platform path (tenant creation, provisioning, rotation, erasure)
-- writes them.
ALTER TABLE tenant_keks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keks FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY read_wrapped ON tenant_keks FOR SELECT TO elile_app, elile_audit_writer USING (true);
CREATE POLICY read_wrapped ON tenant_keys FOR SELECT TO elile_app, elile_audit_writer USING (true);
CREATE POLICY platform_access ON tenant_keks TO elile_platform USING (true) WITH CHECK (true);
CREATE POLICY platform_access ON tenant_keys TO elile_platform USING (true) WITH CHECK (true);
GRANT SELECT ON tenant_keks, tenant_keys TO elile_app, elile_audit_writer;
GRANT SELECT, INSERT, UPDATE ON tenant_keks TO elile_platform;
GRANT SELECT, INSERT, UPDATE (kek_version, wrapped, retired_at) ON tenant_keys TO elile_platform;
GRANT USAGE ON SEQUENCE tenant_keys_id_seq TO elile_platform;
GRANT EXECUTE ON FUNCTION elile_active_key(uuid) TO elile_platform;

-- +goose Down
ALTER TABLE entities DROP COLUMN sealed_metadata;
DROP INDEX entity_identifiers_entity_kind_key;
DELETE FROM entity_identifiers a USING entity_identifiers b
  WHERE a.entity_id = b.entity_id AND a.kind = b.kind AND coalesce(a.blind_key, 0) < coalesce(b.blind_key, 0);
ALTER TABLE entity_identifiers ADD CONSTRAINT entity_identifiers_entity_id_kind_key UNIQUE (entity_id, kind);
ALTER TABLE entity_identifiers DROP COLUMN blind_key;
ALTER TABLE tenants DROP COLUMN legal_hold, DROP COLUMN erasure_started_at;
DROP FUNCTION elile_active_key(uuid);
DROP TABLE tenant_keys;
DROP TABLE tenant_keks;
