// graphql-http's GraphQL-over-HTTP server audits against a running server.
//
//   node audit.mjs http://127.0.0.1:8000/graphql [Authorization header value]
//
// Prints one JSON array on stdout, an entry per audit: {id, name, status, reason}, where status is
// "ok", "notice" (a MAY not met), "warn" (a SHOULD not met) or "error" (a MUST not met). Exits 0 once
// the audits ran, whatever they found; judging them is the caller's job.
import { serverAudits } from "graphql-http";

const [url, authorization] = process.argv.slice(2);
if (!url) {
  console.error("usage: node audit.mjs <graphql url> [authorization]");
  process.exit(2);
}

// A closed server needs a key on every request; the audits themselves know nothing of keys.
const fetchFn = authorization
  ? (input, init = {}) => fetch(input, { ...init, headers: { ...init.headers, authorization } })
  : fetch;

const results = [];
for (const audit of serverAudits({ url, fetchFn })) {
  const result = await audit.fn();
  results.push({
    id: result.id,
    name: result.name,
    status: result.status,
    reason: result.status === "ok" ? null : result.reason,
  });
}
console.log(JSON.stringify(results, null, 2));
