"""Standard Webhooks signing, the scheme Replicate signs its webhooks with.

Signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``, HMAC-SHA256 keyed with the base64
secret after its ``whsec_`` prefix. The `standardwebhooks` package computes the signature; this module
adds what a public endpoint needs around it: a configurable clock tolerance, several signatures per
header (secret rotation), constant-time comparison, and one exception type for every malformed input,
so that a forged request can never surface as a server error.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import standardwebhooks


class WebhookVerificationError(Exception):
    """The webhook's signature headers are missing, malformed, out of tolerance or do not match."""


def _signature(secret: str, msg_id: str, timestamp: int, data: str) -> str:
    try:
        webhook = standardwebhooks.Webhook(secret)
    except Exception as exc:  # empty or non-base64 secret
        raise WebhookVerificationError(f"unusable webhook secret: {type(exc).__name__}") from None
    return webhook.sign(msg_id=msg_id, timestamp=datetime.fromtimestamp(timestamp, tz=UTC), data=data)


def sign_webhook(secret: str, msg_id: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """The three headers a signed delivery of `body` carries."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    data = body.decode() if isinstance(body, bytes) else body
    signature = _signature(secret, msg_id, timestamp, data)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless `body` carries a valid, timely signature by `secret`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a unix time") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    try:
        data = body.decode()
    except UnicodeDecodeError:
        raise WebhookVerificationError("body is not UTF-8") from None
    expected = base64.b64decode(_signature(secret, msg_id, sent_at, data).split(",", 1)[1])
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return
    raise WebhookVerificationError("no matching signature")
