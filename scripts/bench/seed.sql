-- A tenant and 10,000 entities with predictable ids (md5(n)::uuid), for the
-- pgbench scripts that replay what one create and one read execute.
INSERT INTO tenants (tenant_id, name, slug) VALUES ('00000000-0000-4000-8000-00000000bbbb', 'bench', 'pgbench-ceiling')
  ON CONFLICT DO NOTHING;
INSERT INTO entities (entity_id, tenant_id, entity_type, identifiers)
SELECT md5(n::text)::uuid, '00000000-0000-4000-8000-00000000bbbb', 'individual', decode(repeat('ab', 130), 'hex')
FROM generate_series(1, 10000) n ON CONFLICT DO NOTHING;
