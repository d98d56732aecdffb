// What the Node examples share: settings from the command line and environment, a GraphQL request
// over HTTP with fetch, a graphql-ws client over the `ws` WebSocket, and following a generation until it
// settles, then downloading its files.
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
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

// Every state until the server completes the subscription (the generation and its media settled).
export async function follow(args, id) {
  const client = subscriptionClient(args.url, args["api-key"]);
  let last = null;
  try {
    for await (const result of client.iterate({ query: FOLLOW, variables: { id } })) {
      if (result.errors) throw result.errors;
      last = result.data.generation;
      console.log(describe(last));
    }
  } finally {
    await client.dispose();
  }
  return last;
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
