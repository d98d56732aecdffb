// Start a generation, watch it live over graphql-ws, then download its media.
//
//   node follow-generation.mjs --prompt "a lighthouse at dusk" --num-outputs 2 --out downloads
//
// The start is sent with an idempotency key (--idempotency-key, else a new random one, printed): a run
// repeated with the same key and the same request follows the generation the first one started instead
// of starting another, so a start whose answer was lost can be sent again safely.
//
// When the WebSocket drops (the server restarts, the network blips) it subscribes to the generation again
// after a jittered backoff (--retry-base, --retry-cap, --retry-for; see common.mjs): the subscription's
// first answer is the generation's current state, so nothing is lost. A socket the server closed as
// refused (4403, a revoked key) is not retried.
//
// Exit status: 0 when the generation SUCCEEDED and every file was downloaded and matched its sha256,
// 1 when it ended otherwise or the connection could not be restored within --retry-for, 2 when the
// server refused the request.
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { GENERATION_FIELDS, describeError, RETRY_OPTIONS, download, follow, options, request } from "./common.mjs";

const START = `
mutation Start($model: String!, $input: JSON!, $idempotencyKey: String) {
  startGeneration(input: {model: $model, input: $input, idempotencyKey: $idempotencyKey}) {
    generation { ${GENERATION_FIELDS} }
    userErrors { field message code }
  }
}`;

async function main() {
  const args = options({
    model: { type: "string", default: "darkroom-sim/pixel-forge" },
    prompt: { type: "string", default: "a lighthouse at dusk" },
    "num-outputs": { type: "string" },
    out: { type: "string", default: "darkroom-media" },
    "idempotency-key": { type: "string" },
    ...RETRY_OPTIONS, // --retry-base, --retry-cap, --retry-for: reconnecting after a dropped connection
  });
  const input = { prompt: args.prompt };
  if (args["num-outputs"]) input.num_outputs = Number(args["num-outputs"]);

  const idempotencyKey = args["idempotency-key"] || randomUUID();
  const variables = { model: args.model, input, idempotencyKey };
  const { startGeneration } = await request(args.url, args["api-key"], START, variables);
  if (startGeneration.userErrors.length) {
    for (const error of startGeneration.userErrors) {
      console.error(`refused: ${error.code} ${(error.field || []).join(".")}: ${error.message}`);
    }
    return 2;
  }
  const { id } = startGeneration.generation;
  console.log(`started generation ${id} on ${args.model} (idempotency key ${idempotencyKey})`);

  const final = await follow(args, id);
  if (final?.status !== "SUCCEEDED") {
    console.error(`generation ended ${final?.status}: ${final?.error}`);
    return 1;
  }
  await mkdir(args.out, { recursive: true });
  let failed = 0;
  for (const media of final.media) {
    if (media.status !== "READY") {
      console.error(`media ${media.id} ${media.status}: ${media.downloadError}`);
      failed += 1;
      continue;
    }
    const path = await download(media, args.out, args["api-key"]);
    const size = media.width ? `${media.width}x${media.height}` : "";
    console.log(`downloaded ${path} (${media.contentType} ${size} ${media.byteSize} bytes, sha256 ok)`);
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(describeError(error));
    process.exit(error?.exitCode ?? 2);
  },
);
