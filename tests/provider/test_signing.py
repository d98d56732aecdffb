"""signing.py against Replicate's published test vector, its rejections, and the standardwebhooks package."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks

from server.provider.replicate.signing import WebhookVerificationError, sign_webhook, verify_webhook

# From Replicate's client tests (replicate-python, replicate-javascript).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
HEADERS = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": SIGNATURE}
OTHER_SECRET = "whsec_" + base64.b64encode(b"another secret key of 32 bytes!!").decode()


def test_sign_matches_the_published_vector() -> None:
    assert sign_webhook(SECRET, MSG_ID, BODY, timestamp=TIMESTAMP) == HEADERS
    assert sign_webhook(SECRET, MSG_ID, BODY.decode(), timestamp=TIMESTAMP) == HEADERS


def test_vector_by_hand() -> None:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{MSG_ID}.{TIMESTAMP}.".encode() + BODY, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(digest).decode() == SIGNATURE


def test_verify_accepts_the_vector() -> None:
    verify_webhook(SECRET, HEADERS, BODY, now=TIMESTAMP)
    verify_webhook(SECRET, {k.title(): v for k, v in HEADERS.items()}, BODY, now=TIMESTAMP + 299)


def test_verify_accepts_one_valid_among_several_signatures() -> None:
    signatures = f"v1,{base64.b64encode(b'x' * 32).decode()} v2,abc {SIGNATURE} v1,!!!"
    verify_webhook(SECRET, {**HEADERS, "webhook-signature": signatures}, BODY, now=TIMESTAMP)


def test_verify_accepts_a_rotated_secret_list() -> None:
    headers = sign_webhook(OTHER_SECRET, MSG_ID, BODY, timestamp=TIMESTAMP)
    both = f"{headers['webhook-signature']} {SIGNATURE}"
    verify_webhook(SECRET, {**HEADERS, "webhook-signature": both}, BODY, now=TIMESTAMP)
    verify_webhook(OTHER_SECRET, {**HEADERS, "webhook-signature": both}, BODY, now=TIMESTAMP)


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        (HEADERS, b'{"test": 2432232315}', TIMESTAMP),  # body changed
        ({**HEADERS, "webhook-id": "msg_other"}, BODY, TIMESTAMP),  # id changed
        ({**HEADERS, "webhook-timestamp": str(TIMESTAMP + 1)}, BODY, TIMESTAMP),  # timestamp changed
        (
            {**HEADERS, "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="},
            BODY,
            TIMESTAMP,
        ),
        (HEADERS, BODY, TIMESTAMP + 301),  # too old
        (HEADERS, BODY, TIMESTAMP - 301),  # from the future
        ({k: v for k, v in HEADERS.items() if k != "webhook-id"}, BODY, TIMESTAMP),
        ({k: v for k, v in HEADERS.items() if k != "webhook-timestamp"}, BODY, TIMESTAMP),
        ({k: v for k, v in HEADERS.items() if k != "webhook-signature"}, BODY, TIMESTAMP),
        ({}, BODY, TIMESTAMP),
        ({**HEADERS, "webhook-signature": ""}, BODY, TIMESTAMP),
        ({**HEADERS, "webhook-timestamp": "yesterday"}, BODY, TIMESTAMP),
        ({**HEADERS, "webhook-signature": SIGNATURE.replace("v1,", "v2,")}, BODY, TIMESTAMP),  # wrong version
        ({**HEADERS, "webhook-signature": SIGNATURE.replace("v1,", "")}, BODY, TIMESTAMP),  # no version
        ({**HEADERS, "webhook-signature": "v1,"}, BODY, TIMESTAMP),
        ({**HEADERS, "webhook-signature": "v1,not base64!!"}, BODY, TIMESTAMP),
        ({**HEADERS, "webhook-signature": "garbage , , v1"}, BODY, TIMESTAMP),
        (HEADERS, b"\xff\xfe not utf-8", TIMESTAMP),
    ],
)
def test_verify_rejects(headers: dict[str, str], body: bytes, now: int) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, body, now=now)


def test_verify_rejects_another_secret() -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(OTHER_SECRET, HEADERS, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not*base64"])
def test_unusable_secrets_are_verification_errors(secret: str) -> None:
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, HEADERS, BODY, now=TIMESTAMP)


def test_tolerance_is_configurable() -> None:
    verify_webhook(SECRET, HEADERS, BODY, now=TIMESTAMP + 1000, tolerance_seconds=1000)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, HEADERS, BODY, now=TIMESTAMP + 10, tolerance_seconds=5)


def test_agrees_with_standardwebhooks() -> None:
    body = b'{"id": "p1", "status": "succeeded", "output": ["https://replicate.delivery/x.png"]}'
    ours = sign_webhook(SECRET, "msg_darkroom", body)
    standardwebhooks.Webhook(SECRET).verify(body, ours)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body + b" ", ours)

    now = int(time.time())
    theirs = standardwebhooks.Webhook(SECRET).sign(
        msg_id="msg_theirs", timestamp=datetime.fromtimestamp(now, tz=UTC), data=body.decode()
    )
    headers = {"webhook-id": "msg_theirs", "webhook-timestamp": str(now), "webhook-signature": theirs}
    verify_webhook(SECRET, headers, body)
    assert sign_webhook(SECRET, "msg_theirs", body, timestamp=now)["webhook-signature"] == theirs
