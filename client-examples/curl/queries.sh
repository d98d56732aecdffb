#!/usr/bin/env bash
# Darkroom over plain HTTP: queries and mutations with curl, answers read with jq.
#
#   ./queries.sh [SERVER_URL]      (default: $DARKROOM_URL, else http://127.0.0.1:8000)
#
# Lists image models, shows a model's inputs, shows a refused mutation's userErrors, starts a
# generation (with an idempotency key, and sends that start again: still one generation), checks on it
# over HTTP until it has settled (a script without a WebSocket has to ask; the Python and Node examples
# are told over a subscription instead), downloads its files and checks
# their sha256, then starts and cancels a second one. DARKROOM_API_KEY, when set, is sent as
# `Authorization: Bearer <key>`. Files go to $OUT_DIR (default ./darkroom-media).
set -euo pipefail

URL="${1:-${DARKROOM_URL:-http://127.0.0.1:8000}}"
URL="${URL%/}"
OUT_DIR="${OUT_DIR:-darkroom-media}"
MODEL="${MODEL:-darkroom-sim/pixel-forge}"
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
  if ! jq -e '.data or .errors' <<<"$response" >/dev/null 2>&1; then
    echo "not a GraphQL answer: $response" >&2
    return 1
  fi
  if jq -e '.errors' <<<"$response" >/dev/null; then
    echo "GraphQL error: $(jq -c '.errors' <<<"$response")" >&2
    return 1
  fi
  printf '%s\n' "$response"
}

echo "== image models"
gql 'query { models(kind: IMAGE, first: 5) { edges { node { ref description } } } }' |
  jq -r '.data.models.edges[].node | "\(.ref)\t\(.description)"'

echo "== inputs of $MODEL"
gql 'query($ref: String!) { model(ref: $ref) { inputs { name type required default minimum maximum } } }' \
  "$(jq -n --arg ref "$MODEL" '{ref: $ref}')" |
  jq -r '.data.model.inputs[] | "\(.name)\t\(.type)\(if .required then " (required)" else "" end)\tdefault=\(.default)"'

# The same query works as a GET, handy for caches and quick checks.
echo "== the first READY media, by GET"
curl -sS --fail-with-body "${AUTH[@]}" -G "$URL/graphql" \
  --data-urlencode 'query={ media(first: 1, filter: {status: [READY]}) { edges { node { id url } } } }' |
  jq -c '.data.media.edges'

START='mutation Start($model: String!, $input: JSON!, $idempotencyKey: String) {
  startGeneration(input: {model: $model, input: $input, idempotencyKey: $idempotencyKey}) {
    generation { id status }
    userErrors { field message code }
  }
}'

echo "== a refused mutation: userErrors, nothing changed"
gql "$START" "$(jq -n --arg model "$MODEL" '{model: $model, input: {prompt: "too many", num_outputs: 99}}')" |
  jq -c '.data.startGeneration.userErrors[]'

# With an idempotency key, sending the same start again (after a timeout, say) returns the same generation
# instead of starting a second one.
echo "== startGeneration"
key=$(openssl rand -hex 16)
start_vars=$(jq -n --arg model "$MODEL" --arg key "$key" \
  '{model: $model, input: {prompt: "a lighthouse at dusk", num_outputs: 2}, idempotencyKey: $key}')
started=$(gql "$START" "$start_vars")
if [ "$(jq '.data.startGeneration.userErrors | length' <<<"$started")" != 0 ]; then
  echo "refused: $(jq -c '.data.startGeneration.userErrors' <<<"$started")" >&2
  exit 2
fi
id=$(jq -r '.data.startGeneration.generation.id' <<<"$started")
echo "started generation $id"
again=$(gql "$START" "$start_vars" | jq -r '.data.startGeneration.generation.id')
echo "sent again with idempotency key $key: $([ "$again" = "$id" ] && echo "the same generation" || echo "ANOTHER generation $again")"

GET='query Get($id: ID!) {
  generation(id: $id) {
    status progress error queuePosition queueReason
    media { id status url contentType byteSize sha256 downloadError }
  }
}'
variables=$(jq -n --arg id "$id" '{id: $id}')
deadline=$((SECONDS + ${TIMEOUT_SECONDS:-120}))
while :; do
  generation=$(gql "$GET" "$variables" | jq -c '.data.generation')
  jq -r '[.status, (select(.status == "QUEUED") | "#\(.queuePosition) in line: \(.queueReason)"),
    (.progress // empty | "\(. * 100 | floor)%"), (.media | select(length > 0) | "media: \(map(.status) | join(", "))")]
    | join(" ")' <<<"$generation"
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
    echo "a media file is $status" >&2
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

echo "== start another, then cancelGeneration"
second=$(gql "$START" "$(jq -n --arg model "$MODEL" '{model: $model, input: {prompt: "never mind"}}')" |
  jq -r '.data.startGeneration.generation.id')
gql 'mutation($id: ID!) { cancelGeneration(input: {id: $id}) { generation { id status providerStatus } userErrors { code message } } }' \
  "$(jq -n --arg id "$second" '{id: $id}')" | jq -c '.data.cancelGeneration'
