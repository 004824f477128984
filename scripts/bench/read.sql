-- The statements GET /v1/entities/{id} runs: the tenant-scoped read, and
-- its data.accessed event (elile group-commits those; here each is its own
-- insert, so this ceiling is, if anything, low).
\set n random(1, 10000)
BEGIN;
SET LOCAL ROLE elile_app;
SELECT set_config('app.tenant_id', '00000000-0000-4000-8000-00000000bbbb', true);
SELECT entity_id, tenant_id, entity_type, coalesce(external_id, ''), metadata, identifiers, created_at, updated_at
  FROM entities WHERE entity_id = md5(:n::text)::uuid AND (tenant_id = '00000000-0000-4000-8000-00000000bbbb' OR tenant_id IS NULL);
COMMIT;
INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, user_id, actor_type, correlation_id,
    entity_id, resource_type, resource_id, event_data, ip_address, user_agent)
  VALUES (gen_random_uuid(), now(), '00000000-0000-4000-8000-00000000bbbb', 'data.accessed', 'info', gen_random_uuid(), 'service',
    gen_random_uuid(), md5(:n::text)::uuid, 'entity', 'x', decode(repeat('cd', 60), 'hex'), '127.0.0.1', 'bench');
