-- The statements POST /v1/entities runs (ssn + email + name): one
-- transaction as elile_app with the tenant set, the entity, two
-- blind-index rows and the entity.created audit event.
\set n random(1, 1000000000000000)
BEGIN;
SET LOCAL ROLE elile_app;
SELECT set_config('app.tenant_id', '00000000-0000-4000-8000-00000000bbbb', true);
INSERT INTO entities (entity_id, tenant_id, entity_type, external_id, metadata, identifiers)
  VALUES (md5('c' || :n)::uuid, '00000000-0000-4000-8000-00000000bbbb', 'individual', NULL, '{}', decode(repeat('ab', 130), 'hex'))
  RETURNING created_at, updated_at;
INSERT INTO entity_identifiers (identifier_id, entity_id, tenant_id, kind, blind_index)
  SELECT gen_random_uuid(), md5('c' || :n)::uuid, '00000000-0000-4000-8000-00000000bbbb', k, sha256((k || :n)::bytea)
  FROM unnest(ARRAY['email', 'ssn']) k;
INSERT INTO audit_events (audit_id, created_at, tenant_id, event_type, severity, user_id, actor_type, correlation_id,
    entity_id, resource_type, resource_id, event_data, ip_address, user_agent)
  VALUES (gen_random_uuid(), now(), '00000000-0000-4000-8000-00000000bbbb', 'entity.created', 'info', gen_random_uuid(), 'service',
    gen_random_uuid(), md5('c' || :n)::uuid, 'entity', 'x', decode(repeat('cd', 90), 'hex'), '127.0.0.1', 'bench');
COMMIT;
