// A typed fetch client for the elile API: the types are generated from
// docs/openapi.json (make clients → src/schema.d.ts), the requests made by
// openapi-fetch. Every path, parameter, body and response — problems
// included — is checked by the TypeScript compiler.
import createClient from "openapi-fetch";
import type { paths } from "./schema.js";

export type { paths, components } from "./schema.js";

/** A client for the server at baseUrl, authenticated with an API key or JWT; tenantId is needed only for platform-admin credentials. */
export function elileClient(baseUrl: string, token: string, tenantId?: string) {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  if (tenantId) headers["X-Tenant-ID"] = tenantId;
  return createClient<paths>({ baseUrl, headers });
}
