"""fal's signed webhooks: the simulator's deliveries are accepted by FalProvider.parse_webhook, and
anything unsigned, forged, altered or stale is rejected; the JWKS is cached and a rotation followed."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.domain import GenerationStatus
from server.provider.errors import ProviderError
from server.provider.fal import FalProvider
from server.provider.fal.signing import new_private_key_text, private_key_from_text, sign_webhook
from server.provider.port import WebhookRejected
from tests.fal.support import RunningFal, fal_client, serve_fal
from tests.simulator.support import Receiver
from tests.support.live_server import free_port

FLUX = "fal-ai/flux/schnell"
EMPTY_OK = {"request_id": "r", "status": "OK", "payload": {}}


async def _delivered(fal: RunningFal, receiver: Receiver, input: dict[str, object]) -> tuple[dict[str, str], bytes]:
    created = await fal.provider.create(model_ref=FLUX, version_id=None, input=input, webhook_url=receiver.url)
    await receiver.wait_for(lambda ds: any(json.loads(d.body)["request_id"] == created.prediction_id for d in ds))
    delivery = next(d for d in receiver.deliveries if json.loads(d.body)["request_id"] == created.prediction_id)
    return delivery.headers, delivery.body


def _signed(
    body: Mapping[str, object], key: Ed25519PrivateKey, *, timestamp: int | None = None
) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    return sign_webhook(key, str(body["request_id"]), "user-1", raw, timestamp), raw


async def test_a_signed_delivery_is_accepted(fal: RunningFal, receiver: Receiver) -> None:
    headers, body = await _delivered(fal, receiver, {"prompt": "hooked", "num_images": 2})
    assert headers["user-agent"].startswith("fal-webhook")
    update = await fal.provider.parse_webhook(headers, body)
    assert update.status is GenerationStatus.SUCCEEDED and update.provider_status == "OK"
    assert len(update.output_urls) == 2
    record = fal.simulator.stats.webhooks_for(update.prediction_id)[0]
    assert record["delivered"] and record["status"] == "OK" and record["event"] == "completed"


async def test_a_failed_request_is_delivered_as_an_error(fal: RunningFal, receiver: Receiver) -> None:
    headers, body = await _delivered(fal, receiver, {"num_images": 2})
    assert json.loads(body)["error"] == "Invalid status code: 422"
    update = await fal.provider.parse_webhook(headers, body)
    assert update.status is GenerationStatus.FAILED
    assert update.error is not None and "422" in update.error and "prompt" in update.error


async def test_a_refused_delivery_is_retried(fal: RunningFal, receiver: Receiver) -> None:
    answers = iter([500, 503, 200])
    receiver.respond = lambda body: next(answers)
    await _delivered(fal, receiver, {"prompt": "again"})
    await receiver.wait_for(lambda ds: len(ds) >= 3)
    assert [d.answered for d in receiver.deliveries] == [500, 503, 200]
    assert len({d.headers["x-fal-webhook-signature"] for d in receiver.deliveries}) >= 1
    assert (await fal.provider.parse_webhook(receiver.deliveries[-1].headers, receiver.deliveries[-1].body)).status


async def test_forgeries_are_rejected(fal: RunningFal, receiver: Receiver) -> None:
    headers, body = await _delivered(fal, receiver, {"prompt": "genuine"})
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered["x-fal-webhook-signature"]
    stranger = Ed25519PrivateKey.generate()
    now = int(time.time())
    cases: list[tuple[dict[str, str], bytes]] = [
        ({**lowered, "x-fal-webhook-signature": ("0" if signature[0] != "0" else "1") + signature[1:]}, body),
        ({**lowered, "x-fal-webhook-signature": "zz" * 64}, body),
        ({**lowered, "x-fal-webhook-signature": signature[:-2]}, body),
        (lowered, body.replace(b'"OK"', b'"ERROR"')),
        ({**lowered, "x-fal-webhook-user-id": "someone-else"}, body),
        ({**lowered, "x-fal-webhook-timestamp": "not-a-time"}, body),
        _signed(json.loads(body), stranger),
        _signed(json.loads(body), private_key_from_text(fal.config.webhook_signing_key), timestamp=now - 310),
        _signed(json.loads(body), private_key_from_text(fal.config.webhook_signing_key), timestamp=now + 310),
    ]
    for name in (
        "x-fal-webhook-request-id",
        "x-fal-webhook-user-id",
        "x-fal-webhook-timestamp",
        "x-fal-webhook-signature",
    ):
        cases.append(({k: v for k, v in lowered.items() if k != name}, body))
    for forged_headers, forged_body in cases:
        with pytest.raises(WebhookRejected) as rejected:
            await fal.provider.parse_webhook(forged_headers, forged_body)
        assert rejected.value.signature is True
    # Inside the window either way is fine.
    key = private_key_from_text(fal.config.webhook_signing_key)
    for skew in (-290, 290):
        ok_headers, ok_body = _signed(json.loads(body), key, timestamp=now + skew)
        assert (await fal.provider.parse_webhook(ok_headers, ok_body)).status is GenerationStatus.SUCCEEDED


async def test_a_verified_body_that_is_no_update_is_a_bad_request(fal: RunningFal) -> None:
    key = private_key_from_text(fal.config.webhook_signing_key)
    for body in ({"request_id": "r1", "status": "MAYBE"}, {"request_id": "r1"}):
        headers, raw = _signed(body, key)
        with pytest.raises(WebhookRejected) as rejected:
            await fal.provider.parse_webhook(headers, raw)
        assert rejected.value.signature is False
    headers = sign_webhook(key, "r1", "u", b"[1, 2")
    with pytest.raises(WebhookRejected) as rejected:
        await fal.provider.parse_webhook(headers, b"[1, 2")
    assert rejected.value.signature is False
    # The body names the request the signature names.
    headers = sign_webhook(key, "r1", "u", json.dumps({"request_id": "r2", "status": "OK", "payload": {}}).encode())
    with pytest.raises(WebhookRejected):
        await fal.provider.parse_webhook(
            headers, json.dumps({"request_id": "r2", "status": "OK", "payload": {}}).encode()
        )


async def test_an_unreachable_jwks_is_a_provider_error() -> None:
    provider = FalProvider(
        fal_client("http://127.0.0.1:1", max_retries=1),
        jwks_url=f"http://127.0.0.1:{free_port()}/.well-known/jwks.json",
    )
    headers, body = _signed(EMPTY_OK, Ed25519PrivateKey.generate())
    try:
        with pytest.raises(ProviderError) as failed:
            await provider.parse_webhook(headers, body)
        assert failed.value.code == "PROVIDER_UNAVAILABLE"
    finally:
        await provider.aclose()


async def test_key_rotation_is_followed(receiver: Receiver) -> None:
    async with serve_fal(jwks_min_refresh_seconds=0.0) as fal:
        first_headers, first_body = await _delivered(fal, receiver, {"prompt": "before"})
        assert (await fal.provider.parse_webhook(first_headers, first_body)).status is GenerationStatus.SUCCEEDED

        fal.config.webhook_signing_key = new_private_key_text()
        headers, body = await _delivered(fal, receiver, {"prompt": "after"})
        assert (await fal.provider.parse_webhook(headers, body)).status is GenerationStatus.SUCCEEDED
        # The old key is gone from the JWKS: what it signs no longer passes.
        with pytest.raises(WebhookRejected):
            await fal.provider.parse_webhook(first_headers, first_body)


async def test_the_jwks_is_not_refetched_for_every_forgery(fal: RunningFal) -> None:
    key = private_key_from_text(fal.config.webhook_signing_key)
    headers, body = _signed({"request_id": "r", "status": "OK", "payload": {}}, key)
    assert (await fal.provider.parse_webhook(headers, body)).status is GenerationStatus.SUCCEEDED
    fal.simulator.stats.reset()
    for _ in range(5):
        forged_headers, forged_body = _signed(
            {"request_id": "r", "status": "OK", "payload": {}}, Ed25519PrivateKey.generate()
        )
        with pytest.raises(WebhookRejected):
            await fal.provider.parse_webhook(forged_headers, forged_body)
    # Fetched once at the start, not again within the minute (stats count files only; the JWKS fetches
    # are counted by the client hook instead).
    calls: list[str] = []
    fal.provider.client._on_request = lambda method, template, status, seconds: calls.append(template)
    for _ in range(3):
        forged_headers, forged_body = _signed(
            {"request_id": "r", "status": "OK", "payload": {}}, Ed25519PrivateKey.generate()
        )
        with pytest.raises(WebhookRejected):
            await fal.provider.parse_webhook(forged_headers, forged_body)
    assert calls == []
