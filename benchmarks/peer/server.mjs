// The push benchmark's peer: a Node GraphQL server, Fastify with Mercurius and its in-memory pubsub.
//
// Unlike the floor (benchmarks/floor, a bare `ws` broadcaster that never parses a query), this is a
// GraphQL server as a Node team would write it: the schema below, the query parsed and validated, and
// each subscriber's frame produced by executing its selection on the published state. It serves the
// same subscription as Darkroom to the benchmark's subscriber processes over graphql-transport-ws:
//
//     subscription Follow($id: ID!) { generation(id: $id) { id status progress sequence } }
//
// the current state first, then every change. There is no database: POST /publish {"id": ..., "progress":
// ...} is where the harness would send Darkroom a signed webhook; the generation's sequence goes up by
// one and its new state is published on the pubsub topic of that generation.
//
//     node benchmarks/peer/server.mjs --port 8300
//
// GET /readyz answers 200 once listening; GET /stats answers the open subscriptions.

import Fastify from "fastify";
import mercurius from "mercurius";

function option(name, fallback) {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && index + 1 < process.argv.length ? process.argv[index + 1] : fallback;
}

const port = Number(option("port", process.env.PORT ?? "8300"));
const host = option("host", "127.0.0.1");

const schema = `
  type Generation {
    id: ID!
    status: String!
    progress: Float!
    sequence: Int!
  }

  type Query {
    generation(id: ID!): Generation
  }

  type Subscription {
    generation(id: ID!): Generation!
  }
`;

/** generation id -> {sequence, progress} */
const generations = new Map();
let openSubscriptions = 0;

function generation(id) {
  let state = generations.get(id);
  if (state === undefined) {
    state = { sequence: 1, progress: 0 };
    generations.set(id, state);
  }
  return state;
}

function snapshot(id, state) {
  const status = state.sequence > 1 ? "PROCESSING" : "STARTING";
  return { id, status, progress: state.progress, sequence: state.sequence };
}

function topic(id) {
  return `generation:${id}`;
}

/** The current state, then whatever the pubsub queue yields; the queue is subscribed before the state
 * is read, so no change falls between the two. */
async function* currentThenChanges(id, queue) {
  openSubscriptions += 1;
  try {
    yield { generation: snapshot(id, generation(id)) };
    yield* queue;
  } finally {
    openSubscriptions -= 1;
  }
}

const resolvers = {
  Query: {
    generation: (_, { id }) => (generations.has(id) ? snapshot(id, generations.get(id)) : null),
  },
  Subscription: {
    generation: {
      subscribe: async (_, { id }, { pubsub }) => currentThenChanges(id, await pubsub.subscribe(topic(id))),
    },
  },
};

const app = Fastify({ logger: false, keepAliveTimeout: 120_000 });
// subscription: true is Mercurius's in-memory pubsub (mqemitter); its WebSocket server is `ws`, without
// permessage-deflate, as Darkroom's default (WS_COMPRESSION=false) and the floor.
await app.register(mercurius, { schema, resolvers, subscription: true, graphiql: false });

app.get("/readyz", async () => ({ status: "ok" }));
app.get("/stats", async () => ({ open_subscriptions: openSubscriptions, generations: generations.size }));

app.post("/publish", async (request, reply) => {
  const body = request.body;
  if (typeof body?.id !== "string") {
    reply.code(400);
    return { error: "id missing" };
  }
  const state = generation(body.id);
  state.sequence += 1;
  state.progress = typeof body.progress === "number" ? body.progress : Math.min(1, state.progress + 0.01);
  await app.graphql.pubsub.publish({ topic: topic(body.id), payload: { generation: snapshot(body.id, state) } });
  return { result: "applied", sequence: state.sequence };
});

await app.listen({ port, host });
process.stdout.write(`peer listening on http://${host}:${port}\n`);

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    for (const socket of app.websocketServer?.clients ?? []) socket.terminate();
    app.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
