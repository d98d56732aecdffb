// What both Node examples share: settings from the command line and environment, a GraphQL request
// over HTTP with fetch, and a graphql-ws client over the `ws` WebSocket.
import { parseArgs } from "node:util";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

export function options(extra = {}) {
  const { values } = parseArgs({
    options: {
      url: { type: "string", default: process.env.DARKROOM_URL || "http://127.0.0.1:8000" },
      "api-key": { type: "string", default: process.env.DARKROOM_API_KEY || "" },
      ...extra,
    },
  });
  return values;
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
