// The push benchmark's floor: a bare WebSocket broadcaster, no GraphQL and no database.
//
// It speaks just enough graphql-transport-ws for the benchmark's subscriber processes (the same code
// that follows Darkroom): connection_init -> connection_ack, ping -> pong, subscribe -> the current
// state as a first `next`, complete. The query is not parsed: a subscription follows the generation
// named by its `id` variable. POST /publish {"id": ..., "progress": ...} is where the harness would
// send Darkroom a signed webhook: the generation's sequence goes up by one, its state is serialized
// once, and every subscriber of it gets a `next` frame of the same shape and about the same size as
// Darkroom's. Whatever latency this shows is the client harness, the sockets and the machine.
//
//     node benchmarks/floor/server.mjs --port 8200
//
// GET /readyz answers 200 once listening; GET /stats answers the open subscriptions.

import http from "node:http";
import { WebSocketServer } from "ws";

const PROTOCOL = "graphql-transport-ws";

function option(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

const port = Number(option("port", process.env.PORT ?? "8200"));
const host = option("host", "127.0.0.1");

/** generation id -> {sequence, progress, subscribers: Map<socket, Set<operation id>>} */
const generations = new Map();
let openSubscriptions = 0;

function generation(id) {
  let state = generations.get(id);
  if (state === undefined) {
    state = { sequence: 1, progress: 0, subscribers: new Map() };
    generations.set(id, state);
  }
  return state;
}

function payloadOf(id, state) {
  const status = state.sequence > 1 ? "PROCESSING" : "STARTING";
  return JSON.stringify({ data: { generation: { id, status, progress: state.progress, sequence: state.sequence } } });
}

function frame(operationId, payload) {
  return `{"id":${JSON.stringify(operationId)},"type":"next","payload":${payload}}`;
}

function publish(id, progress) {
  const state = generation(id);
  state.sequence += 1;
  state.progress = typeof progress === "number" ? progress : Math.min(1, state.progress + 0.01);
  const payload = payloadOf(id, state); // serialized once, for every subscriber
  const frames = new Map(); // operation id -> the encoded frame, shared by the sockets using that id
  let sent = 0;
  for (const [socket, operations] of state.subscribers) {
    for (const operationId of operations) {
      let data = frames.get(operationId);
      if (data === undefined) {
        data = Buffer.from(frame(operationId, payload), "utf8");
        frames.set(operationId, data);
      }
      socket.send(data, { binary: false });
      sent += 1;
    }
  }
  return { result: "applied", sequence: state.sequence, subscribers: sent };
}

function answer(response, status, body) {
  const data = JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  response.end(data);
}

const server = http.createServer((request, response) => {
  if (request.method === "GET" && request.url === "/readyz") {
    answer(response, 200, { status: "ok" });
    return;
  }
  if (request.method === "GET" && request.url === "/stats") {
    answer(response, 200, { open_subscriptions: openSubscriptions, generations: generations.size });
    return;
  }
  if (request.method === "POST" && request.url === "/publish") {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        answer(response, 400, { error: "body is not JSON" });
        return;
      }
      if (typeof body?.id !== "string") {
        answer(response, 400, { error: "id missing" });
        return;
      }
      answer(response, 200, publish(body.id, body.progress));
    });
    return;
  }
  answer(response, 404, { error: "not found" });
});

const sockets = new WebSocketServer({
  server,
  path: "/graphql",
  perMessageDeflate: false, // as Darkroom's default (WS_COMPRESSION=false)
  handleProtocols: (protocols) => (protocols.has(PROTOCOL) ? PROTOCOL : false),
});

sockets.on("connection", (socket) => {
  let acknowledged = false;
  const mine = new Map(); // operation id -> generation id

  function unsubscribe(operationId) {
    const id = mine.get(operationId);
    if (id === undefined) return;
    mine.delete(operationId);
    const state = generations.get(id);
    const operations = state?.subscribers.get(socket);
    if (operations?.delete(operationId)) {
      openSubscriptions -= 1;
      if (operations.size === 0) state.subscribers.delete(socket);
    }
  }

  socket.on("message", (raw) => {
    let message;
    try {
      message = JSON.parse(raw.toString("utf8"));
    } catch {
      socket.close(4400, "Invalid message");
      return;
    }
    switch (message?.type) {
      case "connection_init":
        if (acknowledged) {
          socket.close(4429, "Too many initialisation requests");
          return;
        }
        acknowledged = true;
        socket.send('{"type":"connection_ack"}');
        return;
      case "ping":
        socket.send('{"type":"pong"}');
        return;
      case "pong":
        return;
      case "subscribe": {
        if (!acknowledged) {
          socket.close(4401, "Unauthorized");
          return;
        }
        const operationId = String(message.id);
        const id = message.payload?.variables?.id;
        if (typeof id !== "string") {
          const error = [{ message: "variable id missing" }];
          socket.send(JSON.stringify({ id: operationId, type: "error", payload: error }));
          return;
        }
        if (mine.has(operationId)) {
          socket.close(4409, `Subscriber for ${operationId} already exists`);
          return;
        }
        const state = generation(id);
        mine.set(operationId, id);
        let operations = state.subscribers.get(socket);
        if (operations === undefined) {
          operations = new Set();
          state.subscribers.set(socket, operations);
        }
        operations.add(operationId);
        openSubscriptions += 1;
        socket.send(frame(operationId, payloadOf(id, state))); // the current state comes first
        return;
      }
      case "complete":
        unsubscribe(String(message.id));
        return;
      default:
        socket.close(4400, "Invalid message");
    }
  });

  socket.on("close", () => {
    for (const operationId of [...mine.keys()]) unsubscribe(operationId);
  });
  socket.on("error", () => {});
});

server.keepAliveTimeout = 120_000;
server.listen(port, host, () => {
  process.stdout.write(`floor listening on http://${host}:${port}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    for (const socket of sockets.clients) socket.terminate();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
