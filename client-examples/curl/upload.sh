#!/usr/bin/env bash
# Your own image (or short video) into Darkroom with curl, then the image animated into a video.
#
#   ./upload.sh FILE [SERVER_URL]      (default: $DARKROOM_URL, else http://127.0.0.1:8000)
#
# The file goes up as a GraphQL multipart request (the GraphQL multipart request spec): an `operations`
# part holding the mutation with `null` where the file goes, a `map` part naming that place, then the file
# itself, all in one curl POST. A multipart request must also carry a header no plain HTML form can
# send (Darkroom's CSRF prevention): Apollo-Require-Preflight. An image is then animated with animateImage
# ($VIDEO_MODEL, else the server's pick; $PROMPT, when set, goes into its input), checked on over HTTP
# until it has settled, and the video downloaded to $OUT_DIR (default ./darkroom-media) with its sha256
# checked. UPLOAD_ONLY=1 stops after the upload. DARKROOM_API_KEY, when set, is sent as
# `Authorization: Bearer <key>`. Exit status: 0 done, 1 the video failed, 2 the server refused.
set -euo pipefail

FILE="${1:?usage: upload.sh FILE [SERVER_URL]}"
URL="${2:-${DARKROOM_URL:-http://127.0.0.1:8000}}"
URL="${URL%/}"
OUT_DIR="${OUT_DIR:-darkroom-media}"
AUTH=()
if [ -n "${DARKROOM_API_KEY:-}" ]; then
  AUTH=(-H "Authorization: Bearer ${DARKROOM_API_KEY}")
fi

# gql QUERY [VARIABLES_JSON]: POST a GraphQL request, print the response; fail on GraphQL errors.
gql() {
  local response
  response=$(
    jq -n --arg query "$1" --argjson variables "${2:-null}" '{query: $query, variables: $variables}' |
      curl -sS "${AUTH[@]}" -H 'Content-Type: application/json' --data-binary @- "$URL/graphql"
  )
  if jq -e '.errors' <<<"$response" >/dev/null; then
    echo "GraphQL error: $(jq -c '.errors' <<<"$response")" >&2
    return 2
  fi
  printf '%s\n' "$response"
}

UPLOAD='mutation Upload($file: Upload!) {
  uploadMedia(input: {file: $file}) {
    media { id kind status url contentType byteSize width height durationSeconds sha256 }
    userErrors { field message code }
  }
}'

echo "== uploadMedia"
uploaded=$(
  curl -sS "${AUTH[@]}" -H 'Apollo-Require-Preflight: true' "$URL/graphql" \
    --form-string "operations=$(jq -cn --arg query "$UPLOAD" '{query: $query, variables: {file: null}}')" \
    --form-string 'map={"0": ["variables.file"]}' \
    -F "0=@$FILE"
)
if jq -e '.errors' <<<"$uploaded" >/dev/null; then
  echo "GraphQL error: $(jq -c '.errors' <<<"$uploaded")" >&2
  exit 2
fi
if [ "$(jq '.data.uploadMedia.userErrors | length' <<<"$uploaded")" != 0 ]; then
  echo "refused: $(jq -c '.data.uploadMedia.userErrors' <<<"$uploaded")" >&2
  exit 2
fi
media=$(jq -c '.data.uploadMedia.media' <<<"$uploaded")
jq -r '"uploaded media \(.id) (\(.kind) \(.contentType) \(.width)x\(.height) \(.byteSize) bytes)\nurl \(.url)"' <<<"$media"
if [ -n "${UPLOAD_ONLY:-}" ] || [ "$(jq -r '.kind' <<<"$media")" != IMAGE ]; then
  exit 0
fi

echo "== animateImage"
ANIMATE='mutation Animate($mediaId: ID!, $model: String, $input: JSON) {
  animateImage(input: {mediaId: $mediaId, model: $model, input: $input}) {
    generation { id model status }
    userErrors { field message code }
  }
}'
variables=$(
  jq -n --arg id "$(jq -r '.id' <<<"$media")" --arg model "${VIDEO_MODEL:-}" --arg prompt "${PROMPT:-}" \
    '{mediaId: $id, model: (if $model == "" then null else $model end),
      input: (if $prompt == "" then null else {prompt: $prompt} end)}'
)
started=$(gql "$ANIMATE" "$variables")
if [ "$(jq '.data.animateImage.userErrors | length' <<<"$started")" != 0 ]; then
  echo "refused: $(jq -c '.data.animateImage.userErrors' <<<"$started")" >&2
  exit 2
fi
id=$(jq -r '.data.animateImage.generation.id' <<<"$started")
echo "started generation $id on $(jq -r '.data.animateImage.generation.model' <<<"$started")"

GET='query Get($id: ID!) {
  generation(id: $id) { status progress error media { status url contentType byteSize sha256 } }
}'
deadline=$((SECONDS + ${TIMEOUT_SECONDS:-120}))
while :; do
  generation=$(gql "$GET" "$(jq -n --arg id "$id" '{id: $id}')" | jq -c '.data.generation')
  jq -r '[.status, (.media | select(length > 0) | "media: \(map(.status) | join(", "))")] | join(" ")' <<<"$generation"
  if jq -e '(.status | IN("SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT")) and all(.media[]; .status | IN("READY", "FAILED"))' \
    <<<"$generation" >/dev/null; then
    break
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "generation $id has not settled in time" >&2
    exit 1
  fi
  sleep 0.5
done
if [ "$(jq -r '.status' <<<"$generation")" != SUCCEEDED ]; then
  echo "generation ended $(jq -r '"\(.status): \(.error)"' <<<"$generation")" >&2
  exit 1
fi

echo "== download"
mkdir -p "$OUT_DIR"
while IFS=$'\t' read -r status url content_type sha256; do
  if [ "$status" != READY ]; then
    echo "the video is $status" >&2
    exit 1
  fi
  file="$OUT_DIR/${sha256:0:16}.${content_type##*/}"
  curl -sS --fail "${AUTH[@]}" -o "$file" "$url"
  actual=$(openssl dgst -sha256 -r "$file" | cut -d' ' -f1)
  if [ "$actual" != "$sha256" ]; then
    echo "$file: sha256 $actual does not match $sha256" >&2
    exit 1
  fi
  echo "downloaded $file ($content_type, sha256 ok)"
done < <(jq -r '.media[] | [.status, .url, .contentType, .sha256] | @tsv' <<<"$generation")
