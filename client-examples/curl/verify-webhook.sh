#!/usr/bin/env bash
# Verify a saved Darkroom webhook delivery by hand with openssl: the Standard Webhooks signature that
# send-webhook.sh makes, checked instead of made.
#
#   ./verify-webhook.sh [--any-age] HEADERS BODY
#   ./verify-webhook.sh [--any-age] --id ID --timestamp TS --signature SIG BODY
#
#   HEADERS       a file of the delivery's HTTP headers, `name: value` a line (names in any case, CRLF
#                 line ends allowed); webhook-id, webhook-timestamp and webhook-signature are read from it
#   BODY          the request body, byte for byte as received (- for stdin)
#   --id, --timestamp, --signature   the three headers' values given directly instead of HEADERS
#   --any-age     skip the freshness check, to verify an old saved delivery
#
# The secret is $DARKROOM_WEBHOOK_SECRET (whsec_...). A delivery is valid when one of the `v1,`
# signatures in webhook-signature (several may be space-separated) equals
# base64(HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")), the key being the base64 after
# `whsec_`, and its timestamp is within five minutes of now (as a receiver checks it, against replays).
# Exits 0 when valid (and prints the event), 1 when not, 2 on a usage error.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

msg_id="" timestamp="" signatures="" any_age=false
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --id) msg_id="${2:?--id needs a value}"; shift ;;
    --timestamp) timestamp="${2:?--timestamp needs a value}"; shift ;;
    --signature) signatures="${2:?--signature needs a value}"; shift ;;
    --any-age) any_age=true ;;
    -h | --help) usage; exit 0 ;;
    *) files+=("$1") ;;
  esac
  shift
done

fail() { echo "invalid: $*" >&2; exit 1; }
usage_error() { echo "$*" >&2; exit 2; }

secret="${DARKROOM_WEBHOOK_SECRET:-}"
[ -n "$secret" ] || usage_error "the signing secret is needed in DARKROOM_WEBHOOK_SECRET (whsec_...)"

# The header's value from a saved header block: the first line whose name matches, case-insensitively.
header() {
  awk -v name="$1" 'index($0, ":") && tolower(substr($0, 1, index($0, ":") - 1)) == name {
    value = substr($0, index($0, ":") + 1); sub(/^[ \t]+/, "", value); sub(/[ \t\r]+$/, "", value)
    print value; exit
  }' "$2"
}

case "${#files[@]}" in
  2)
    [ -r "${files[0]}" ] || usage_error "cannot read the headers file ${files[0]}"
    msg_id=$(header webhook-id "${files[0]}")
    timestamp=$(header webhook-timestamp "${files[0]}")
    signatures=$(header webhook-signature "${files[0]}")
    body_file="${files[1]}"
    ;;
  1) body_file="${files[0]}" ;;
  *) usage >&2; exit 2 ;;
esac

body=$(mktemp)
trap 'rm -f "$body"' EXIT
# A copy of the body, byte for byte: a shell variable would drop trailing newlines and NUL bytes.
cat -- "$body_file" >"$body" 2>/dev/null || usage_error "cannot read the body $body_file"

[ -n "$msg_id" ] && [ -n "$timestamp" ] && [ -n "$signatures" ] ||
  fail "missing webhook-id, webhook-timestamp or webhook-signature"
[[ "$timestamp" =~ ^[0-9]+$ ]] || fail "webhook-timestamp is not unix seconds: $timestamp"
if ! $any_age; then
  age=$(($(date +%s) - 10#$timestamp))
  [ "${age#-}" -le 300 ] || fail "timestamp $age s off, more than 5 minutes (--any-age to skip this check)"
fi

key_hex=$(printf '%s' "${secret#whsec_}" | openssl base64 -d -A | od -An -v -tx1 | tr -d ' \n')
[ -n "$key_hex" ] || usage_error "not a webhook secret (whsec_<base64>)"
expected=$(
  { printf '%s.%s.' "$msg_id" "$timestamp"; cat "$body"; } |
    openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary | openssl base64 -A
)

# A plain string comparison: fine for checking a saved delivery by hand; a server answering requests
# compares in constant time (see the Python and Node receivers).
read -ra candidates <<<"$signatures" # split on spaces, with no glob expansion
for signature in "${candidates[@]}"; do
  if [ "$signature" = "v1,$expected" ]; then
    echo "valid: webhook-id $msg_id, signed at $timestamp"
    jq -r '"\(.type) #\(.sequence) \(.generation.id) \(.generation.status) \(.generation.phase // "-")"' \
      "$body" 2>/dev/null || true
    exit 0
  fi
done
fail "no signature in webhook-signature matches (webhook-id $msg_id)"
