// Start a generation, watch it live over graphql-ws, then download its media.
//
//   node follow-generation.mjs --prompt "a lighthouse at dusk" --num-outputs 2 --out downloads
//
// Exit status: 0 when the generation SUCCEEDED and every file was downloaded and matched its sha256,
// 1 when it ended otherwise, 2 when the server refused the request.
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { authHeaders, describeError, options, request, subscriptionClient } from "./common.mjs";

const GENERATION_FIELDS = `
  id status progress error
  media { id kind status url contentType byteSize width height durationSeconds sha256 downloadError }
`;

const START = `
mutation Start($model: String!, $input: JSON!) {
  startGeneration(input: {model: $model, input: $input}) {
    generation { ${GENERATION_FIELDS} }
    userErrors { field message code }
  }
}`;

const FOLLOW = `subscription Follow($id: ID!) { generation(id: $id) { ${GENERATION_FIELDS} } }`;

function describe(generation) {
  let line = generation.status.padEnd(10);
  if (generation.progress !== null) line += ` ${Math.round(generation.progress * 100)}%`.padStart(5);
  if (generation.error) line += ` error: ${generation.error}`;
  if (generation.media.length) line += `  media: ${generation.media.map((media) => media.status).join(", ")}`;
  return line.trimEnd();
}

// Every state until the server completes the subscription (the generation and its media settled).
async function follow(args, id) {
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
async function download(media, outDir, apiKey) {
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

async function main() {
  const args = options({
    model: { type: "string", default: "darkroom-sim/pixel-forge" },
    prompt: { type: "string", default: "a lighthouse at dusk" },
    "num-outputs": { type: "string" },
    out: { type: "string", default: "darkroom-media" },
  });
  const input = { prompt: args.prompt };
  if (args["num-outputs"]) input.num_outputs = Number(args["num-outputs"]);

  const { startGeneration } = await request(args.url, args["api-key"], START, { model: args.model, input });
  if (startGeneration.userErrors.length) {
    for (const error of startGeneration.userErrors) {
      console.error(`refused: ${error.code} ${(error.field || []).join(".")}: ${error.message}`);
    }
    return 2;
  }
  const { id } = startGeneration.generation;
  console.log(`started generation ${id} on ${args.model}`);

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
    process.exit(2);
  },
);
