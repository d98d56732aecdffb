"""fal's webhook signature, both sides: `sign_webhook` (the simulator's) and `verify_webhook` (the adapter's).

fal signs each delivery with ED25519. Four headers travel with it: ``X-Fal-Webhook-Request-Id``,
``-User-Id``, ``-Timestamp`` (unix seconds) and ``-Signature`` (the hex of the 64-byte signature). The
signed message is::

    request_id "\n" user_id "\n" timestamp "\n" hex(sha256(raw body))

The public keys are published as a JWKS (``{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": <base64url
of the 32 raw bytes>}, ...]}``); a verifier tries every key, so a delivery signed with either side of a
rotation passes. Like `server.provider.replicate.signing`, every malformed input surfaces as one
exception type, the timestamp must fall within a tolerance in both directions, and nothing a forger
controls can raise anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REQUEST_ID_HEADER = "x-fal-webhook-request-id"
USER_ID_HEADER = "x-fal-webhook-user-id"
TIMESTAMP_HEADER = "x-fal-webhook-timestamp"
SIGNATURE_HEADER = "x-fal-webhook-signature"

ED25519_SIGNATURE_BYTES = 64
ED25519_KEY_BYTES = 32
# What a header may hold: ids and a number, never a document.
_MAX_HEADER_CHARS = 256
# A JWKS is a handful of keys; more than this is not one worth trying every key of.
MAX_JWKS_KEYS = 20


class WebhookVerificationError(Exception):
    """The webhook's signature headers are missing, malformed, out of tolerance or do not match."""


class JwksError(ValueError):
    """A JWKS document that holds no usable Ed25519 key."""


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The bytes fal signs for one delivery of `body`."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{request_id}\n{user_id}\n{timestamp}\n{digest}".encode()


# --- keys -----------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_private_key_text() -> str:
    """A random signing key: its 32-byte seed in base64url (how the simulator's config holds it)."""
    return _b64url(Ed25519PrivateKey.generate().private_bytes_raw())


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    """The key whose 32-byte seed `text` holds in base64url; ValueError when it holds none."""
    try:
        seed = _b64url_decode(text.strip())
    except (binascii.Error, ValueError):
        raise ValueError("the signing key is not base64url") from None
    if len(seed) != ED25519_KEY_BYTES:
        raise ValueError(f"the signing key must be {ED25519_KEY_BYTES} bytes, not {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_jwk(key: Ed25519PrivateKey | Ed25519PublicKey, *, kid: str | None = None) -> dict[str, str]:
    """The JWK of `key`'s public half, as fal publishes its keys."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(public.public_bytes(Encoding.Raw, PublicFormat.Raw))}
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def keys_from_jwks(document: Any) -> list[Ed25519PublicKey]:
    """Every Ed25519 public key of a JWKS document; JwksError when it is not one or has none.

    Keys of other types, and entries that are not keys, are skipped: a set may carry keys for other uses.
    """
    if isinstance(document, bytes | str):
        try:
            document = json.loads(document)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise JwksError("the JWKS is not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError("the JWKS has no list of keys")
    keys: list[Ed25519PublicKey] = []
    for entry in entries[:MAX_JWKS_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = entry.get("x")
        if not isinstance(x, str) or len(x) > 64:
            continue
        try:
            raw = _b64url_decode(x)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == ED25519_KEY_BYTES:
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
    if not keys:
        raise JwksError("the JWKS holds no Ed25519 key")
    return keys


# --- signing and verifying ------------------------------------------------------------------------


def sign_webhook(
    key: Ed25519PrivateKey, request_id: str, user_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The four headers a signed delivery of `body` carries."""
    sent_at = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(signed_message(request_id, user_id, sent_at, body))
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": sent_at,
        "X-Fal-Webhook-Signature": signature.hex(),
    }


def _header(lowered: Mapping[str, str], name: str) -> str:
    value = lowered.get(name)
    if not value:
        raise WebhookVerificationError(f"missing {name}")
    if len(value) > _MAX_HEADER_CHARS or "\n" in value:
        raise WebhookVerificationError(f"{name} is malformed")
    return value


def verify_webhook(
    keys: Sequence[Ed25519PublicKey],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> str:
    """Raise WebhookVerificationError unless `body` carries a timely signature by one of `keys`.

    Returns the verified request id. The headers are checked before any key is tried; the signature is
    checked by each key's own (constant-time) verification.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    request_id = _header(lowered, REQUEST_ID_HEADER)
    user_id = _header(lowered, USER_ID_HEADER)
    timestamp = _header(lowered, TIMESTAMP_HEADER)
    signature_hex = _header(lowered, SIGNATURE_HEADER)
    if not timestamp.isascii() or not timestamp.isdigit():
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is not a unix time")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_seconds:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is outside the tolerance")
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        raise WebhookVerificationError(f"{SIGNATURE_HEADER} is not hex") from None
    if len(signature) != ED25519_SIGNATURE_BYTES:
        raise WebhookVerificationError(f"{SIGNATURE_HEADER} is not an Ed25519 signature")
    message = signed_message(request_id, user_id, timestamp, body)
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return request_id
    raise WebhookVerificationError("no key verifies the signature")
