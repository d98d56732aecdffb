"""The fal adapter's pieces on their own: endpoint ids, output URLs, log lines, refusals, the JWKS reader
and its settings."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.domain import GenerationStatus
from server.provider.errors import ProviderNotFoundError, ProviderServerError
from server.provider.fal.adapter import ADAPTER as FAL
from server.provider.fal.client import EndpointId
from server.provider.fal.provider import join_logs, output_urls, webhook_update
from server.provider.fal.refusals import refusals_for, validation_error
from server.provider.fal.settings import FalSettings
from server.provider.fal.signing import (
    JwksError,
    WebhookVerificationError,
    keys_from_jwks,
    public_jwk,
    sign_webhook,
    verify_webhook,
)
from server.settings import Settings


def test_endpoint_ids() -> None:
    dev = EndpointId.parse("fal-ai/flux/dev")
    assert (dev.app_path, dev.full_path) == ("fal-ai/flux", "fal-ai/flux/dev")
    workflow = EndpointId.parse("workflows/someone/my-flow/step")
    assert (workflow.app_path, workflow.full_path) == ("workflows/someone/my-flow", "workflows/someone/my-flow/step")
    for bad in ("flux", "fal-ai//dev", "fal-ai/../x", "comfy/one", ""):
        with pytest.raises(ProviderNotFoundError):
            EndpointId.parse(bad)


def test_output_urls_in_order_bounded() -> None:
    payload = {
        "images": [{"url": "https://cdn/a.png"}, {"url": "https://cdn/b.png"}, {"url": "data:image/png;base64,xx"}],
        "video": {"url": "https://cdn/v.mp4", "file_size": 3},
        "nested": {"deeper": [{"file": {"url": "https://cdn/c.bin"}}]},
        "again": {"url": "https://cdn/a.png"},
        "seed": 3,
    }
    assert output_urls(payload) == ("https://cdn/a.png", "https://cdn/b.png", "https://cdn/v.mp4", "https://cdn/c.bin")
    deep: dict[str, object] = {"url": "https://cdn/deep"}
    for _ in range(50):
        deep = {"x": deep}
    assert output_urls(deep) == ()
    assert output_urls([{"url": 5}, "https://not-an-object"]) == ()


def test_logs_join_messages() -> None:
    items = [{"message": "Using seed: 1"}, {"message": " 50%|█████     | 1/2"}, {"nope": 1}, "junk"]
    assert join_logs(items) == "Using seed: 1\n 50%|█████     | 1/2"
    assert join_logs(None) is None


def test_refusals_from_pydantic_errors() -> None:
    error = validation_error(
        [
            {"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"},
            {"loc": ["body", "num_images"], "msg": "Input should be a valid integer", "type": "int_parsing"},
            {"loc": ["body", "image_size", "width"], "msg": "too big", "type": "less_than_equal"},
            {"loc": ["body"], "msg": "odd", "type": "something_new"},
            "junk",
        ]
    )
    refusals = refusals_for(error)
    assert [(r.field, r.code) for r in refusals] == [
        (["input", "prompt"], "REQUIRED"),
        (["input", "num_images"], "INVALID_TYPE"),
        (["input", "image_size", "width"], "OUT_OF_RANGE"),
        (None, "PROVIDER_VALIDATION"),
    ]
    assert refusals_for(ProviderServerError("Bad gateway", "x", status=502))[0].code == "PROVIDER_SERVER_ERROR"


def test_the_jwks_reader() -> None:
    key = Ed25519PrivateKey.generate()
    document = {"keys": [{"kty": "RSA", "n": "x"}, public_jwk(key), {"kty": "OKP", "crv": "Ed25519", "x": "!!"}]}
    keys = keys_from_jwks(json.dumps(document).encode())
    assert len(keys) == 1
    for bad in (b"nope", b"[]", b'{"keys": []}', json.dumps({"keys": [{"kty": "RSA"}]}).encode()):
        with pytest.raises(JwksError):
            keys_from_jwks(bad)


def test_signatures_both_ways() -> None:
    key = Ed25519PrivateKey.generate()
    other = Ed25519PrivateKey.generate()
    headers = sign_webhook(key, "req", "user", b"{}", timestamp=1_000)
    assert verify_webhook([other.public_key(), key.public_key()], headers, b"{}", now=1_000) == "req"
    for now in (1_000 - 301, 1_000 + 301):
        with pytest.raises(WebhookVerificationError):
            verify_webhook([key.public_key()], headers, b"{}", now=now)
    with pytest.raises(WebhookVerificationError):
        verify_webhook([key.public_key()], {**headers, "X-Fal-Webhook-Request-Id": "a\nb"}, b"{}", now=1_000)


def test_a_webhook_with_an_unsendable_payload_is_not_terminal() -> None:
    body = json.dumps({"request_id": "r", "status": "OK", "payload": None, "payload_error": "too big"}).encode()
    assert webhook_update("r", body).status is None
    cancelled = json.dumps({"request_id": "r", "status": "ERROR", "error": "Invalid status code: 499"}).encode()
    assert webhook_update("r", cancelled).status is GenerationStatus.CANCELED


async def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "the-key")
    monkeypatch.setenv("FAL_QUEUE_BASE_URL", "http://queue.test")
    monkeypatch.setenv("FAL_WEBHOOK_TOLERANCE_SECONDS", "120")
    settings = Settings(providers="fal")
    group = settings.group(FalSettings)
    assert group.key is not None and group.key.get_secret_value() == "the-key"
    assert group.jwks_url == "https://rest.fal.ai/.well-known/jwks.json"
    assert not settings.embeds("fal")
    provider = group.provider()
    assert provider.client.queue_base_url == "http://queue.test" and provider.name == "fal"
    await provider.aclose()
    monkeypatch.setenv("FAL_MAX_RETRIES", "-1")
    with pytest.raises(ValueError):
        Settings()


def test_one_base_url_serves_every_fal_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_BASE_URL", "http://sim.test:9000/")
    hosts = FAL.hosts(Settings(providers="fal"))
    assert {hosts.queue, hosts.rest, hosts.cdn, hosts.openapi, hosts.api} == {"http://sim.test:9000"}
    assert hosts.jwks == "http://sim.test:9000/.well-known/jwks.json"
