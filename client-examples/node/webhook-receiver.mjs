// Receive Darkroom's outgoing webhooks: verify each delivery's signature, drop repeats, print the event.
//
//   node webhook-receiver.mjs --port 9000 --secret whsec_...   # or the secret in DARKROOM_WEBHOOK_SECRET
//
// Darkroom signs every delivery the Standard Webhooks way (https://www.standardwebhooks.com): the headers
// `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
// "<id>.<timestamp>.<body>">`, keyed with the base64 after `whsec_`. The header may carry several
// signatures, space-separated (while a secret is being rotated); one match is enough. Node's own http and
// crypto do it all, no package needed. A bad or missing signature, or a timestamp more than five minutes
// off (a replayed old delivery), is answered 401.
//
// Darkroom retries a failed delivery with the same `webhook-id`, so each id is handled once and its
// repeats are acknowledged. The answer (204) goes out at once; real work on an event belongs after it,
// so that a slow handler does not make Darkroom time out and send the event again.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

const TOLERANCE_SECONDS = 5 * 60;
const MAX_BODY = 1 << 20; // an event is a few kB; refuse anything far larger
const REMEMBERED_IDS = 10_000; // enough for a demo; a real receiver keeps ids in its database while retries run

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "9000" }, // 0 picks a free port (printed)
    secret: { type: "string", default: process.env.DARKROOM_WEBHOOK_SECRET || "" },
  },
});
if (!args.secret) {
  console.error("the signing secret is needed: --secret or DARKROOM_WEBHOOK_SECRET");
  process.exit(2);
}
const key = Buffer.from(args.secret.replace(/^whsec_/, ""), "base64");
if (key.length === 0) {
  console.error("not a webhook secret (whsec_<base64>)");
  process.exit(2);
}

class Refused extends Error {}

// Throws Refused unless one of the `v1,` signatures matches the body, signed within the tolerance.
function verify(headers, body) {
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  const signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) {
    throw new Refused("missing webhook-id, webhook-timestamp or webhook-signature");
  }
  if (!/^\d+$/.test(timestamp)) {
    throw new Refused("webhook-timestamp is not unix seconds");
  }
  const age = Math.floor(Date.now() / 1000) - Number(timestamp);
  if (Math.abs(age) > TOLERANCE_SECONDS) {
    throw new Refused(`timestamp ${age > 0 ? "too old" : "too new"} (${age} s)`);
  }
  // The body as raw bytes: the signature covers them exactly as sent, not a re-serialized JSON.
  const expected = Buffer.from(
    createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest("base64"),
  );
  for (const signature of signatures.split(" ")) {
    const comma = signature.indexOf(",");
    if (comma < 0 || signature.slice(0, comma) !== "v1") {
      continue; // another scheme (or a future version): not ours to check
    }
    // Compare the base64 text itself: decoding first would accept stray characters Buffer skips.
    const given = Buffer.from(signature.slice(comma + 1));
    if (given.length === expected.length && timingSafeEqual(given, expected)) {
      return;
    }
  }
  throw new Refused("no matching signature");
}

// The webhook-ids handled so far, the oldest forgotten first (a Set iterates in insertion order).
const seen = new Set();
function firstTime(id) {
  if (seen.has(id)) {
    return false;
  }
  seen.add(id);
  if (seen.size > REMEMBERED_IDS) {
    seen.delete(seen.values().next().value);
  }
  return true;
}

function describe(event) {
  const generation = event.generation ?? {};
  return `${event.type} #${event.sequence} ${generation.id} ${generation.status} ${generation.phase || "-"}`;
}

function answer(response, status) {
  response.writeHead(status, { "Content-Length": "0" });
  response.end();
}

const server = createServer((request, response) => {
  if (request.method !== "POST") {
    return answer(response, 405);
  }
  const chunks = [];
  let size = 0;
  request.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      answer(response, 413);
      request.destroy();
      return;
    }
    chunks.push(chunk);
  });
  request.on("end", () => {
    if (size > MAX_BODY) {
      return; // already answered 413
    }
    const body = Buffer.concat(chunks);
    const id = request.headers["webhook-id"];
    try {
      verify(request.headers, body);
    } catch (error) {
      if (!(error instanceof Refused)) throw error;
      console.error(`refused ${id || "(no webhook-id)"}: ${error.message}`);
      return answer(response, 401);
    }
    let event;
    try {
      event = JSON.parse(body.toString("utf8"));
    } catch {
      event = null;
    }
    if (event === null || typeof event !== "object" || Array.isArray(event)) {
      console.error(`refused ${id}: the body is not a JSON object`);
      return answer(response, 400);
    }
    // Only a verified delivery counts as seen: a forged one must not shadow the real event's id.
    if (!firstTime(id)) {
      console.error(`repeat ${id}: already handled`);
      return answer(response, 204); // acknowledged, so that Darkroom stops retrying it
    }
    console.log(describe(event));
    answer(response, 204);
  });
});

server.listen(Number(args.port), args.host, () => {
  const { address, port } = server.address();
  console.error(`listening on http://${address}:${port}`);
});
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
