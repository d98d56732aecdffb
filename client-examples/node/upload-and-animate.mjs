// Upload your own image (or short video), then animate the image and download the video.
//
//   node upload-and-animate.mjs photo.png --prompt "slow zoom" --out downloads
//   node upload-and-animate.mjs clip.mp4 --upload-only
//
// The file goes up as a GraphQL multipart request (the GraphQL multipart request spec: an `operations`
// part, a `map` part, then the file) with fetch and FormData; it is then READY media of yours. An image is
// animated with `animateImage` (--model picks the image-to-video model, else the server does; --prompt
// goes into its input), followed over graphql-ws, and the video downloaded and checked against its sha256.
//
// Exit status: 0 when the upload (and the video) succeeded, 1 when the video generation ended otherwise,
// 2 when the server refused the file or the request.
import { mkdir, readFile } from "node:fs/promises";
import { basename, extname } from "node:path";
import { GENERATION_FIELDS, authHeaders, describeError, RETRY_OPTIONS, download, follow, options, request } from "./common.mjs";

const MEDIA_FIELDS = "id kind status url contentType byteSize width height durationSeconds sha256";
const UPLOAD = `
mutation Upload($file: Upload!) {
  uploadMedia(input: {file: $file}) {
    media { ${MEDIA_FIELDS} }
    userErrors { field message code }
  }
}`;
const ANIMATE = `
mutation Animate($mediaId: ID!, $model: String, $input: JSON) {
  animateImage(input: {mediaId: $mediaId, model: $model, input: $input}) {
    generation { ${GENERATION_FIELDS} model }
    userErrors { field message code }
  }
}`;
const TYPES = {
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".webp": "image/webp",
  ".gif": "image/gif",
  ".mp4": "video/mp4",
  ".webm": "video/webm",
};

async function upload(args, path) {
  const form = new FormData();
  form.append("operations", JSON.stringify({ query: UPLOAD, variables: { file: null } }));
  form.append("map", JSON.stringify({ 0: ["variables.file"] }));
  const type = TYPES[extname(path).toLowerCase()] || "application/octet-stream";
  form.append("0", new Blob([await readFile(path)], { type }), basename(path));
  // fetch sets the multipart Content-Type. A multipart request must also carry a header no plain HTML form
  // can send (Darkroom's CSRF prevention).
  const response = await fetch(`${args.url.replace(/\/$/, "")}/graphql`, {
    method: "POST",
    headers: { ...authHeaders(args["api-key"]), "Apollo-Require-Preflight": "true" },
    body: form,
  });
  const body = await response.json();
  if (body.errors) throw new Error(`GraphQL error: ${body.errors.map((error) => error.message).join("; ")}`);
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return body.data.uploadMedia;
}

function refused(payload) {
  for (const error of payload.userErrors) {
    console.error(`refused: ${error.code} ${(error.field || []).join(".")}: ${error.message}`);
  }
  return payload.userErrors.length > 0;
}

async function main() {
  const args = options(
    {
      model: { type: "string" },
      prompt: { type: "string" },
      "upload-only": { type: "boolean", default: false },
      out: { type: "string", default: "darkroom-media" },
      ...RETRY_OPTIONS,
    },
    { positionals: true },
  );
  const [path] = args.positionals;
  if (!path) throw new Error("usage: node upload-and-animate.mjs FILE [--model M] [--prompt P] [--out DIR]");

  const uploaded = await upload(args, path);
  if (refused(uploaded)) return 2;
  const { media } = uploaded;
  const size = `${media.width}x${media.height}`;
  console.log(`uploaded media ${media.id} (${media.kind} ${media.contentType} ${size} ${media.byteSize} bytes)`);
  console.log(`url ${media.url}`);
  if (args["upload-only"] || media.kind !== "IMAGE") return 0;

  const variables = { mediaId: media.id, model: args.model ?? null, input: args.prompt ? { prompt: args.prompt } : null };
  const { animateImage } = await request(args.url, args["api-key"], ANIMATE, variables);
  if (refused(animateImage)) return 2;
  const { generation } = animateImage;
  console.log(`started generation ${generation.id} on ${generation.model}`);

  const final = await follow(args, generation.id);
  if (final?.status !== "SUCCEEDED") {
    console.error(`generation ended ${final?.status}: ${final?.error}`);
    return 1;
  }
  await mkdir(args.out, { recursive: true });
  for (const video of final.media) {
    if (video.status !== "READY") {
      console.error(`media ${video.id} ${video.status}: ${video.downloadError}`);
      return 1;
    }
    const saved = await download(video, args.out, args["api-key"]);
    console.log(`downloaded ${saved} (${video.contentType} ${video.byteSize} bytes, sha256 ok)`);
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(describeError(error));
    process.exit(error?.exitCode ?? 2);
  },
);
