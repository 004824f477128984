-- One hot-row lock fewer per entity create: entity_identifiers.tenant_id no
-- longer references tenants. Each identifier row references its entity
-- (ON DELETE CASCADE), the entity references its tenant, and the
-- tenant-reference trigger of migration 00005 keeps an identifier's tenant
-- equal to its entity's, so the foreign key added nothing but a
-- SELECT … FOR KEY SHARE on the tenant's row — the same row for every
-- concurrent create of a tenant.

-- +goose Up
ALTER TABLE entity_identifiers DROP CONSTRAINT entity_identifiers_tenant_id_fkey;

-- +goose Down
ALTER TABLE entity_identifiers ADD CONSTRAINT entity_identifiers_tenant_id_fkey
  FOREIGN KEY (tenant_id) REFERENCES tenants ON DELETE CASCADE;
