// Follow the live `generationEvents` feed, and resume it from a cursor after a dropped connection.
//
//   node event-feed.mjs                            # live events from now on
//   node event-feed.mjs --after <cursor>           # what happened after that event first, then live
//   node event-feed.mjs --cursor-file feed.cursor  # remembers where it stopped, picks up there next time
//
// graphql-ws can reconnect by itself, but it would resubscribe with the variables it started with.
// To resume where the feed stopped, this script reconnects itself and passes the last cursor it saw
// as `after`: the server replays what was missed, once, then goes live again. The same happens when
// the server reports that this subscriber fell behind (SUBSCRIBER_OVERFLOW). Between attempts it waits a
// random time of up to --retry-base seconds, doubling that bound after each failed attempt up to
// --retry-cap, and back to --retry-base once a connection has delivered an event; it gives up after
// --retry-for seconds without one (exit status 1). A socket closed as refused (4403: the API key is
// missing or was revoked; other 44xx protocol errors) is not retried (exit status 2).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import {
  RETRY_OPTIONS,
  Reconnect,
  closeCode,
  describeError,
  isFatalClose,
  options,
  refusedMessage,
  subscriptionClient,
} from "./common.mjs";

const FEED = `
subscription Feed($after: String, $filter: GenerationEventFilter) {
  generationEvents(after: $after, filter: $filter) {
    cursor sequence type
    generation { id status progress error media { id status url } }
  }
}`;

const args = options({
  after: { type: "string" },
  "cursor-file": { type: "string" },
  generation: { type: "string", multiple: true },
  count: { type: "string", default: "0" },
  "idle-timeout": { type: "string", default: "0" },
  ...RETRY_OPTIONS, // --retry-base, --retry-cap, --retry-for
  json: { type: "boolean", default: false },
});
const count = Number(args.count);
const idleMs = Number(args["idle-timeout"]) * 1000;

let cursor = args.after ?? null;
if (!cursor && args["cursor-file"] && existsSync(args["cursor-file"])) {
  cursor = readFileSync(args["cursor-file"], "utf8").trim() || null;
}
let received = 0;

const status = (message) => console.error(`-- ${message}`);

function record(event) {
  cursor = event.cursor;
  received += 1;
  if (args["cursor-file"]) writeFileSync(args["cursor-file"], `${cursor}\n`);
  if (args.json) {
    console.log(JSON.stringify(event));
    return;
  }
  const { generation } = event;
  const progress = generation.progress === null ? "" : ` ${Math.round(generation.progress * 100)}%`;
  const media = generation.media.map((item) => item.status).join(" ");
  console.log(
    `${event.type.padEnd(18)} #${String(event.sequence).padEnd(3)} ${generation.id} ${generation.status}${progress}` +
      (media ? `  media: ${media}` : "") +
      `  cursor=${event.cursor}`,
  );
}

class Idle extends Error {}

// One connection: subscribe after the last cursor and print until done, idle or disconnected.
async function runOnce() {
  const variables = { after: cursor };
  if (args.generation?.length) variables.filter = { generationIds: args.generation };
  const client = subscriptionClient(args.url, args["api-key"], {
    retryAttempts: 0,
    on: { connected: () => status(cursor ? `subscribed after ${cursor}` : "subscribed, live from now") },
  });
  const events = client.iterate({ query: FEED, variables });
  try {
    while (!(count && received >= count)) {
      let timer;
      const idle = idleMs
        ? new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Idle()), idleMs);
          })
        : new Promise(() => {});
      let next;
      try {
        next = await Promise.race([events.next(), idle]);
      } finally {
        clearTimeout(timer);
      }
      if (next.done) throw new Error("the server completed the subscription");
      if (next.value.errors) throw next.value.errors;
      record(next.value.data.generationEvents);
    }
  } finally {
    events.return?.().catch(() => {});
    await client.dispose();
  }
}

async function main() {
  const retry = Reconnect.fromOptions(args);
  for (;;) {
    const before = received;
    try {
      await runOnce();
      return 0;
    } catch (error) {
      if (error instanceof Idle) {
        status(`no event for ${args["idle-timeout"]} s, stopping`);
        return 0;
      }
      if (Array.isArray(error)) {
        if (error[0]?.extensions?.code !== "SUBSCRIBER_OVERFLOW") {
          console.error(`GraphQL error: ${describeError(error)}`);
          return 2;
        }
        status("fell behind the live feed; resubscribing from the last cursor");
      } else if (isFatalClose(closeCode(error))) {
        console.error(refusedMessage(error));
        return 2;
      } else {
        status(`connection lost (${describeError(error)}); resuming after ${cursor}`);
      }
    }
    if (received > before) retry.delivered();
    const delay = retry.nextDelay();
    if (delay === null) {
      console.error(`could not reconnect within ${args["retry-for"]} s`);
      return 1;
    }
    status(`reconnecting in ${delay.toFixed(2)} s (attempt ${retry.attempt})`);
    await sleep(delay * 1000);
  }
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(describeError(error));
    process.exit(2);
  },
);
