// The signature check of a webhook receiver, as docs/webhooks.md shows it
// (Node.js 18 or later). Its test checks it against the signatures elile
// sends.
import { createHmac, timingSafeEqual } from "node:crypto";

// verifyWebhook reports whether a delivery comes from elile: one of the
// webhook-signature's v1 signatures is the HMAC-SHA256, under the
// endpoint's secret, of "webhook-id.webhook-timestamp.body", and the
// timestamp is within toleranceSeconds of now. body must be the raw
// request body (a Buffer, or the exact string), before any JSON parsing.
export function verifyWebhook(
  secret: string,
  headers: Record<string, string | string[] | undefined>,
  body: Buffer | string,
  toleranceSeconds = 300,
  nowSeconds = Math.floor(Date.now() / 1000),
): boolean {
  const one = (name: string): string | undefined => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const id = one("webhook-id");
  const ts = one("webhook-timestamp");
  const sigs = one("webhook-signature");
  if (!id || !ts || !sigs || !/^\d+$/.test(ts)) return false;
  if (Math.abs(nowSeconds - Number(ts)) > toleranceSeconds) return false;
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const want = createHmac("sha256", key).update(`${id}.${ts}.`).update(body).digest();
  for (const s of sigs.split(" ")) {
    const comma = s.indexOf(",");
    if (comma < 0 || s.slice(0, comma) !== "v1") continue;
    const got = Buffer.from(s.slice(comma + 1), "base64");
    if (got.length === want.length && timingSafeEqual(got, want)) return true;
  }
  return false;
}
