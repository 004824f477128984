// Runs verifyWebhook on the cases the Go test wrote (cases.json) and
// prints one line per case: its name and the result.
import { readFileSync } from "node:fs";
import { verifyWebhook } from "../verify";

interface Case {
  name: string;
  secret: string;
  headers: Record<string, string>;
  body: string; // base64 of the raw body
  now: number;
}

const cases: Case[] = JSON.parse(readFileSync(process.argv[2], "utf8"));
for (const c of cases) {
  const ok = verifyWebhook(c.secret, c.headers, Buffer.from(c.body, "base64"), 300, c.now);
  console.log(`${c.name} ${ok}`);
}
