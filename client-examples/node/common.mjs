// What the Node examples share: settings from the command line and environment, a GraphQL request
// over HTTP with fetch, a graphql-ws client over the `ws` WebSocket, reconnecting with backoff after a
// dropped connection, and following a generation until it settles, then downloading its files.
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

// The options (--url, --api-key and `extra`); with `positionals`, the other arguments as `positionals`.
export function options(extra = {}, { positionals = false } = {}) {
  const parsed = parseArgs({
    options: {
      url: { type: "string", default: process.env.DARKROOM_URL || "http://127.0.0.1:8000" },
      "api-key": { type: "string", default: process.env.DARKROOM_API_KEY || "" },
      ...extra,
    },
    allowPositionals: positionals,
  });
  return positionals ? { ...parsed.values, positionals: parsed.positionals } : parsed.values;
}

export function authHeaders(apiKey) {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

// POST one query or mutation to /graphql; returns `data`, throws on GraphQL errors.
export async function request(baseUrl, apiKey, query, variables = {}) {
  const response = await fetch(`${baseUrl.replace(/\/$/, "")}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders(apiKey) },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) {
    throw new Error(`GraphQL error: ${body.errors.map((error) => error.message).join("; ")}`);
  }
  if (!response.ok) {
    throw new Error(`HTTP ${response.status}`);
  }
  return body.data;
}

// A graphql-ws client (graphql-transport-ws protocol). The API key goes in the upgrade request's
// headers and in the connection_init payload (`connectionParams`).
export function subscriptionClient(baseUrl, apiKey, clientOptions = {}) {
  const headers = authHeaders(apiKey);
  class AuthWebSocket extends WebSocket {
    constructor(address, protocols) {
      super(address, protocols, { headers });
    }
  }
  return createClient({
    url: `${baseUrl.replace(/\/$/, "")}/graphql`.replace(/^http/, "ws"), // http -> ws, https -> wss
    webSocketImpl: AuthWebSocket,
    connectionParams: headers,
    ...clientOptions,
  });
}

// graphql-ws reports failures as Error objects, arrays of GraphQL errors, or close events.
export function describeError(error) {
  if (Array.isArray(error)) {
    return error.map((item) => `${item.message}${item.extensions?.code ? ` (${item.extensions.code})` : ""}`).join("; ");
  }
  if (error && typeof error.code === "number" && "reason" in error) {
    return `socket closed: ${error.code} ${error.reason}`.trim();
  }
  const cause = error?.cause ? ` (${error.cause.message ?? error.cause})` : "";
  return `${error?.message ?? String(error)}${cause}`;
}

// Reconnecting. A socket that ends with a restart (close code 1012, what Darkroom sends every socket when
// it shuts down), a going-away (1001), an abnormal close (1006: the process died, the network dropped) or
// a refused connect (the server is not back yet) is tried again after a jittered exponential backoff.
// One closed with a graphql-transport-ws refusal (4400 bad request, 4401 unauthorized, 4403 forbidden: a
// missing or revoked API key, ...) is not: the same request would be refused again.
export const RETRY_OPTIONS = {
  "retry-base": { type: "string", default: "0.5" }, // seconds: the first wait is up to this long
  "retry-cap": { type: "string", default: "30" }, // seconds: no wait is longer
  "retry-for": { type: "string", default: "60" }, // seconds without a delivery before giving up
};

// 4400-4499 are graphql-transport-ws's refusals; these two are not about the request, so a retry may succeed:
// 4408 connection initialisation timeout (a slow network), 4499 terminated by the client itself.
const RETRYABLE_PROTOCOL_CLOSES = new Set([4408, 4499]);

// The close code of a graphql-ws failure that is a close event, else null (an Error: the connect failed).
export function closeCode(error) {
  return error && typeof error.code === "number" && "reason" in error ? error.code : null;
}

export function isFatalClose(code) {
  return code !== null && code >= 4400 && code <= 4499 && !RETRYABLE_PROTOCOL_CLOSES.has(code);
}

export function refusedMessage(error) {
  const hint = [4401, 4403].includes(closeCode(error)) ? "; check the API key" : "";
  return `the server refused the connection (${describeError(error)})${hint}`;
}

// Seconds to wait before retry number `attempt` (0 for the first): full jitter, a uniform pick in
// [0, min(cap, base * 2 ** attempt)]. `random` returns a number in [0, 1), like Math.random.
// Why the randomness: after a deploy the server drops every client at the same moment, and clients that
// all waited the same time would all come back at the same moment too; a random wait spreads them out.
export function backoffDelay(attempt, base, cap, random = Math.random) {
  return random() * Math.min(cap, base * 2 ** Math.min(attempt, 64));
}

// The retry state of one script: attempts since a connection last delivered something, and since when
// nothing has been delivered.
export class Reconnect {
  constructor({ base = 0.5, cap = 30, giveUpAfter = 60, random = Math.random, now = () => performance.now() / 1000 } = {}) {
    Object.assign(this, { base, cap, giveUpAfter, random, now });
    this.attempt = 0;
    this.failingSince = null;
  }

  static fromOptions(args) {
    const number = (name) => Number(args[name] ?? RETRY_OPTIONS[name].default);
    return new Reconnect({ base: number("retry-base"), cap: number("retry-cap"), giveUpAfter: number("retry-for") });
  }

  // A connection delivered something: it worked, so the next failure starts over from a short wait.
  delivered() {
    this.attempt = 0;
    this.failingSince = null;
  }

  // Seconds to wait before connecting again, or null when it is time to give up.
  nextDelay() {
    const now = this.now();
    this.failingSince ??= now;
    if (now - this.failingSince > this.giveUpAfter) return null;
    const delay = backoffDelay(this.attempt, this.base, this.cap, this.random);
    this.attempt += 1;
    return delay;
  }
}

// An error for main() to report and exit with `exitCode`.
export class Exit extends Error {
  constructor(message, exitCode) {
    super(message);
    this.exitCode = exitCode;
  }
}

export const GENERATION_FIELDS = `
  id status phase progress step totalSteps etaSeconds error queuePosition queueReason
  media { id kind status url contentType byteSize width height durationSeconds sha256 downloadError }
`;

const FOLLOW = `subscription Follow($id: ID!) { generation(id: $id) { ${GENERATION_FIELDS} } }`;

export function describe(generation) {
  // The status, then what the job is doing in words (waiting, booting, running, saving...).
  let line = `${generation.status.padEnd(10)} ${generation.phase.toLowerCase().padEnd(8)}`;
  // QUEUED: waiting for a slot at Darkroom (the key's or the server's limit of running generations).
  if (generation.status === "QUEUED") line += ` #${generation.queuePosition} in line: ${generation.queueReason}`;
  if (generation.progress !== null) line += ` ${Math.round(generation.progress * 100)}%`.padStart(5);
  if (generation.step !== null) line += ` step ${generation.step}/${generation.totalSteps}`;
  // Null when the server has no basis for an estimate.
  if (generation.etaSeconds !== null) line += ` ~${Math.round(generation.etaSeconds)} s left`;
  if (generation.error) line += ` error: ${generation.error}`;
  if (generation.media.length) line += `  media: ${generation.media.map((media) => media.status).join(", ")}`;
  return line.trimEnd();
}

// Every state until the server completes the subscription (the generation and its media settled). After
// a dropped connection it subscribes again: the subscription's first answer is the generation's current
// state, so nothing is lost (a state may show twice). graphql-ws's own retries are off, so that the waits
// and the giving up are the same as the event feed's.
export async function follow(args, id) {
  const retry = Reconnect.fromOptions(args);
  let last = null;
  for (;;) {
    const client = subscriptionClient(args.url, args["api-key"], { retryAttempts: 0 });
    let delay;
    try {
      for await (const result of client.iterate({ query: FOLLOW, variables: { id } })) {
        if (result.errors) throw result.errors; // a GraphQL error (an unknown ID, say): not retried
        last = result.data.generation;
        retry.delivered();
        console.log(describe(last));
      }
      return last;
    } catch (error) {
      if (Array.isArray(error)) throw error;
      if (isFatalClose(closeCode(error))) throw new Exit(refusedMessage(error), 2);
      delay = retry.nextDelay();
      if (delay === null) throw new Exit(`could not reconnect within ${retry.giveUpAfter} s (${describeError(error)})`, 1);
      console.error(`-- connection lost (${describeError(error)}); subscribing again in ${delay.toFixed(2)} s`);
    } finally {
      await client.dispose();
    }
    await sleep(delay * 1000);
  }
}

// Fetch one READY file into `outDir` and check it against the sha256 the server recorded.
export async function download(media, outDir, apiKey) {
  const response = await fetch(media.url, { headers: authHeaders(apiKey) });
  if (!response.ok) throw new Error(`GET ${media.url}: HTTP ${response.status}`);
  const bytes = Buffer.from(await response.arrayBuffer());
  const sha256 = createHash("sha256").update(bytes).digest("hex");
  if (media.sha256 && sha256 !== media.sha256) {
    throw new Error(`${media.url}: sha256 ${sha256} does not match ${media.sha256}`);
  }
  const extension = (media.contentType || "application/octet-stream").split("/").pop();
  const path = join(outDir, `${(media.sha256 || media.id).slice(0, 16)}.${extension}`);
  await writeFile(path, bytes);
  return path;
}
