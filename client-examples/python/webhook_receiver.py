"""Receive Darkroom's outgoing webhooks: verify each delivery's signature, drop repeats, print the event.

    python webhook_receiver.py --port 9000 --secret whsec_...   # or the secret in DARKROOM_WEBHOOK_SECRET

Darkroom POSTs every event of a key's event log to the endpoint registered for it, signed the Standard
Webhooks way (https://www.standardwebhooks.com): the headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the base64 after
`whsec_`. The `standardwebhooks` package checks that signature and refuses a timestamp more than five
minutes off (a replayed old delivery); such a request is answered 401.

Darkroom retries a delivery that failed (an error status, a timeout) with the same `webhook-id`, so a
delivery can arrive more than once: this receiver handles each id once and acknowledges the repeats.
It answers 204 at once; real work on an event belongs after the answer (a queue), so that a slow
handler does not make Darkroom time out and send the event again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

MAX_BODY = 1 << 20  # an event is a few kB; refuse anything far larger before reading it
REMEMBERED_IDS = 10_000  # enough for a demo; a real receiver keeps ids in its database for as long as retries run


class SeenIds:
    """The webhook-ids handled so far (the newest REMEMBERED_IDS), checked and recorded in one step."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()  # the server answers each request on its own thread

    def first_time(self, webhook_id: str) -> bool:
        with self._lock:
            if webhook_id in self._ids:
                return False
            self._ids[webhook_id] = None
            if len(self._ids) > REMEMBERED_IDS:
                self._ids.popitem(last=False)
            return True


def describe(event: dict[str, Any]) -> str:
    generation = event.get("generation") or {}
    return (
        f"{event.get('type')} #{event.get('sequence')} {generation.get('id')}"
        f" {generation.get('status')} {generation.get('phase') or '-'}"
    )


class Receiver(BaseHTTPRequestHandler):
    webhook: Webhook
    seen: SeenIds

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self.answer(411)
        if not 0 <= length <= MAX_BODY:
            return self.answer(413)
        body = self.rfile.read(length)  # the raw bytes: the signature covers them exactly as sent
        webhook_id = self.headers.get("webhook-id", "")
        try:
            self.webhook.verify(body, dict(self.headers.items()), json_parse=False)
        except WebhookVerificationError as error:
            print(f"refused {webhook_id or '(no webhook-id)'}: {error}", file=sys.stderr, flush=True)
            return self.answer(401)
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            print(f"refused {webhook_id}: the body is not a JSON object", file=sys.stderr, flush=True)
            return self.answer(400)
        # Only a verified delivery counts as seen: a forged one must not shadow the real event's id.
        if not self.seen.first_time(webhook_id):
            print(f"repeat {webhook_id}: already handled", file=sys.stderr, flush=True)
            return self.answer(204)  # acknowledged, so that Darkroom stops retrying it
        print(describe(event), flush=True)
        self.answer(204)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per event on stdout, refusals on stderr; no access log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0 picks a free port (printed)")
    parser.add_argument("--secret", default=os.environ.get("DARKROOM_WEBHOOK_SECRET", ""), help="whsec_...")
    args = parser.parse_args()
    if not args.secret:
        parser.error("the signing secret is needed: --secret or DARKROOM_WEBHOOK_SECRET")
    try:
        webhook = Webhook(args.secret)
    except Exception as error:
        parser.error(f"not a webhook secret (whsec_<base64>): {error}")

    handler = type("Handler", (Receiver,), {"webhook": webhook, "seen": SeenIds()})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    host, port = server.server_address[:2]
    print(f"listening on http://{host!s}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
