#!/usr/bin/env bash
# Send Darkroom a webhook signed by hand, the way Replicate signs them (Standard Webhooks).
#
#   ./send-webhook.sh [--latest | FILE] [--bad-signature]
#
#   FILE             the prediction JSON to deliver (- for stdin)
#   --latest         deliver the embedded simulator's newest prediction as it stands now
#   (neither)        deliver a made-up prediction Darkroom has never heard of
#   --bad-signature  sign with the wrong key, to see the webhook refused (401)
#
# The server is $DARKROOM_URL (default http://127.0.0.1:8000). The signing secret is
# $REPLICATE_WEBHOOK_SECRET (whsec_...); when unset it is asked of Replicate with $REPLICATE_API_TOKEN,
# or, with no token, of the simulator embedded in the server at /simulator/v1/webhooks/default/secret
# (with $SIMULATOR_API_TOKEN once the server has API keys: before, it takes any token).
#
# The signature is `v1,` + base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")), the
# key being the base64 after `whsec_`. Darkroom answers 200 {"result": "applied" | "duplicate" |
# "stale" | "unknown"} -- a prediction it does not know is acknowledged with nothing written, so that
# Replicate stops retrying it -- and 401 for a bad signature. Exits 0 on a 2xx answer, 1 otherwise.
set -euo pipefail

URL="${DARKROOM_URL:-http://127.0.0.1:8000}"
URL="${URL%/}"
source_file=""
latest=false
bad_signature=false
for arg in "$@"; do
  case "$arg" in
    --latest) latest=true ;;
    --bad-signature) bad_signature=true ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) source_file="$arg" ;;
  esac
done

body=$(mktemp)
trap 'rm -f "$body"' EXIT

if [ -n "${REPLICATE_API_TOKEN:-}" ]; then
  provider="${REPLICATE_API_BASE_URL:-https://api.replicate.com}"
  token="$REPLICATE_API_TOKEN"
else
  provider="$URL/simulator"
  token="${SIMULATOR_API_TOKEN:-simulator}" # any token, while the server has no API keys
fi

# The body, byte for byte as it will be signed and sent.
if $latest; then
  curl -sS --fail-with-body -H "Authorization: Bearer $token" "$provider/v1/predictions" |
    jq -c '.results[0] // error("the provider has no predictions yet")' >"$body"
elif [ -n "$source_file" ]; then
  cat -- "$source_file" >"$body"
else
  now=$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)
  jq -cn --arg id "handmade$(date +%s)$RANDOM" --arg now "$now" '{
    id: $id, model: "darkroom-sim/pixel-forge", version: null, input: {prompt: "sent by hand"},
    status: "succeeded", output: [], error: null, logs: "", created_at: $now, completed_at: $now
  }' >"$body"
fi

secret="${REPLICATE_WEBHOOK_SECRET:-}"
if [ -z "$secret" ]; then
  secret=$(curl -sS --fail-with-body -H "Authorization: Bearer $token" "$provider/v1/webhooks/default/secret" | jq -r .key)
fi
if $bad_signature; then
  secret="whsec_$(printf 'not the right key' | openssl base64 -A)"
fi

msg_id="msg_$(date +%s)_$RANDOM"
timestamp=$(date +%s)
key_hex=$(printf '%s' "${secret#whsec_}" | openssl base64 -d -A | od -An -v -tx1 | tr -d ' \n')
signature=$(
  { printf '%s.%s.' "$msg_id" "$timestamp"; cat "$body"; } |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary | openssl base64 -A
)

echo "POST $URL/webhooks/replicate  prediction $(jq -r '"\(.id) \(.status)"' "$body")" >&2
answer=$(mktemp)
trap 'rm -f "$body" "$answer"' EXIT
status=$(
  curl -sS -o "$answer" -w '%{http_code}' -X POST "$URL/webhooks/replicate" \
    -H 'Content-Type: application/json' \
    -H "webhook-id: $msg_id" \
    -H "webhook-timestamp: $timestamp" \
    -H "webhook-signature: v1,$signature" \
    --data-binary @"$body"
)
echo "HTTP $status $(cat "$answer")"
[ "${status:0:1}" = 2 ]
