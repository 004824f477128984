// Smoke test of the TypeScript client against a live server (ELILE_URL,
// ELILE_KEY: a tenant-admin key whose burst is small). Run by the Go test
// httpapi TestGeneratedTSClient_Smoke; prints "ok" or exits 1.
import { elileClient } from "./client.js";

function fail(msg: string): never {
  console.error(msg);
  process.exit(1);
}

const url = process.env.ELILE_URL ?? fail("ELILE_URL not set");
const key = process.env.ELILE_KEY ?? fail("ELILE_KEY not set");
const client = elileClient(url, key);

const created = await client.POST("/v1/entities", {
  body: { entity_type: "individual", canonical_identifiers: { ssn: "123-45-6789", full_name: "Type Script" } },
});
if (!created.data) fail(`create: ${created.response.status} ${JSON.stringify(created.error)}`);
const id: string = created.data.entity_id;

const got = await client.GET("/v1/entities/{entity_id}", { params: { path: { entity_id: id } } });
if (got.data?.canonical_identifiers["ssn"] !== "***-**-6789") fail(`masked read: ${JSON.stringify(got.data)}`);

const events = await client.GET("/v1/audit-events", { params: { query: {} } });
if (!events.data || events.data.data.length === 0) fail(`audit events: ${events.response.status}`);

// A 422, typed: its items located at fields.
const bad = await client.POST("/v1/entities", {
  // @ts-expect-error: the compiler refuses an entity type the document does not list
  body: { entity_type: "spaceship", canonical_identifiers: {} },
});
if (bad.response.status !== 422 || !bad.error?.errors?.length) fail(`422: ${bad.response.status} ${JSON.stringify(bad.error)}`);
for (const item of bad.error.errors ?? []) {
  if (!item.location || item.location === "body") fail(`422 item not at a field: ${JSON.stringify(item)}`);
}

// A 429, typed, with Retry-After, once the burst is spent.
let limited = false;
for (let i = 0; i < 10 && !limited; i++) {
  const r = await client.GET("/v1/entities/{entity_id}", { params: { path: { entity_id: id } } });
  if (r.response.status === 429) {
    limited = r.error?.code === "RATE_LIMITED" && r.response.headers.get("Retry-After") !== null;
    if (!limited) fail(`429 without its problem or Retry-After: ${JSON.stringify(r.error)}`);
  }
}
if (!limited) fail("no 429 after the burst");
console.log("ok");
