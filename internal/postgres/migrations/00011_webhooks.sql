-- Events out (docs/webhooks.md): a tenant's webhook endpoints, the outbox
-- of events they subscribe to, and one delivery row per endpoint and event.
--
-- The outbox is written in the unit of work of the change it reports, with
-- the change's audit event (postgres/webhooks.go): an event exists exactly
-- when its change committed. It is written only when an enabled endpoint
-- of the tenant subscribes to its type, and its deliveries with it, by
-- INSERT … SELECT from the endpoints: no read before the write, no extra
-- round trip. The three tables are tenant tables (distributed by tenant on
-- Citus, co-located with the rest); the job queue that works the
-- deliveries (River, migration 00012) stays on the coordinator.
--
-- Payloads carry ids and types, never personal data; the signing secrets
-- are encrypted by the application like every other secret (fieldcrypt,
-- bound to table, column, row and tenant).

-- +goose Up
CREATE TABLE webhook_endpoints (
  tenant_id       uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  endpoint_id     uuid NOT NULL,
  url             text NOT NULL CHECK (char_length(url) BETWEEN 8 AND 2048),
  description     text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
  event_types     text[] NOT NULL DEFAULT '{}' CHECK (cardinality(event_types) <= 32),
  status          text NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
  disabled_reason text CHECK (char_length(disabled_reason) <= 300),
  secret          bytea NOT NULL,  -- encrypted signing secret
  previous_secret bytea,           -- encrypted, still signing until previous_until
  previous_until  timestamptz,
  -- Delivery state, kept by the delivery worker: consecutive failures,
  -- since when, when the next attempt may go, and the lease of the one
  -- worker draining the endpoint.
  failures        integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
  failing_since   timestamptz,
  retry_at        timestamptz NOT NULL DEFAULT '-infinity',
  lease_until     timestamptz NOT NULL DEFAULT '-infinity',
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, endpoint_id)
);

CREATE TABLE webhook_events (
  tenant_id  uuid NOT NULL REFERENCES tenants ON DELETE CASCADE,
  event_id   uuid NOT NULL, -- the audit event's id: webhook-id on the wire
  event_type text NOT NULL CHECK (event_type ~ '^[a-z_]+\.[a-z_]+$'),
  payload    text NOT NULL CHECK (octet_length(payload) <= 4096), -- the exact bytes signed and sent
  created_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, event_id)
);

CREATE TABLE webhook_deliveries (
  tenant_id        uuid NOT NULL,
  endpoint_id      uuid NOT NULL,
  event_id         uuid NOT NULL,
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  last_attempt_at  timestamptz,
  response_status  integer CHECK (response_status BETWEEN 100 AND 999),
  latency_ms       integer CHECK (latency_ms >= 0),
  error            text CHECK (char_length(error) <= 300),
  response_excerpt text CHECK (char_length(response_excerpt) <= 256),
  delivered_at     timestamptz,
  created_at       timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, endpoint_id, event_id),
  FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, endpoint_id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, event_id) REFERENCES webhook_events (tenant_id, event_id) ON DELETE CASCADE
);
-- What the worker drains, oldest event first; and the per-endpoint log.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (tenant_id, endpoint_id, event_id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (tenant_id, event_id);

ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_endpoints TO elile_app
  USING (tenant_id = elile_tenant()) WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY platform_access ON webhook_endpoints TO elile_platform USING (true) WITH CHECK (true);

ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_events TO elile_app
  USING (tenant_id = elile_tenant()) WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY platform_access ON webhook_events TO elile_platform USING (true) WITH CHECK (true);

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries TO elile_app
  USING (tenant_id = elile_tenant()) WITH CHECK (tenant_id = elile_tenant());
CREATE POLICY platform_access ON webhook_deliveries TO elile_platform USING (true) WITH CHECK (true);

-- A tenant manages its endpoints; it writes events and deliveries only
-- with the changes they report, and sets a delivery back to pending
-- (redelivery). The worker (platform) keeps the delivery state.
-- UPDATE on the whole table: a change's unit of work on Citus reads the
-- subscribed endpoints FOR KEY SHARE (postgres/webhooks.go), which needs
-- it, and a column-level grant does not reach Citus's shards. Row-level
-- security keeps it to the tenant's own endpoints.
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints TO elile_app;
GRANT SELECT, INSERT ON webhook_events, webhook_deliveries TO elile_app;
GRANT UPDATE (state, delivered_at) ON webhook_deliveries TO elile_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints, webhook_events, webhook_deliveries TO elile_platform;

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhook_endpoints;
