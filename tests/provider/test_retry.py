"""The retry rules, end to end over HTTP, counted at the server side.

The fault proxy counts the requests that reached it; the simulator behind it counts the predictions it
created. A create is retried only on 429: after a 5xx, a broken connection or a timeout the prediction may
already exist (the proxy forwards the create first, then fails), and exactly one must.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import httpx
import pytest

from server.provider.errors import (
    ProviderError,
    ProviderNotFoundError,
    ProviderRateLimitedError,
    ProviderServerError,
    ProviderUnavailableError,
    ProviderValidationError,
    never_reached,
)
from server.provider.replicate.client import RETRY_RULES, ReplicateClient
from server.provider.retry import RetryPolicy
from tests.provider.conftest import IMAGES, SMALL, MakeClient, Stack
from tests.provider.fault_proxy import DROP, HANG, after_upstream, problem, throttled
from tests.support.live_server import free_port

CREATE_PATH = f"/v1/models/{IMAGES}/predictions"
SECRET_PATH = "/v1/webhooks/default/secret"


# --- idempotent calls ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_get_is_retried_then_succeeds(stack: Stack, client: ReplicateClient, status: int) -> None:
    stack.proxy.script("GET", SECRET_PATH, problem(status, "Oops", "try later"), problem(status, "Oops", "again"))
    assert await client.get_webhook_secret() == stack.config.webhook_secret
    assert stack.proxy.count("GET", SECRET_PATH) == 3


async def test_get_is_retried_after_a_dropped_connection(stack: Stack, client: ReplicateClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, DROP)
    assert await client.get_webhook_secret() == stack.config.webhook_secret
    assert stack.proxy.count("GET", SECRET_PATH) == 2


async def test_get_is_retried_after_a_timeout(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, HANG)
    client = make_client(timeout_seconds=2.0)
    assert await client.get_webhook_secret() == stack.config.webhook_secret
    assert stack.proxy.count("GET", SECRET_PATH) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
async def test_get_is_not_retried_on_other_statuses(stack: Stack, client: ReplicateClient, status: int) -> None:
    stack.proxy.script("GET", SECRET_PATH, problem(status, "No", "no"))
    with pytest.raises(ProviderError) as caught:
        await client.get_webhook_secret()
    assert caught.value.status == status
    assert stack.proxy.count("GET", SECRET_PATH) == 1


async def test_cancel_is_retried_like_a_get(stack: Stack, client: ReplicateClient) -> None:
    stack.config.run_seconds = 30.0
    created = await client.create_prediction(model=IMAGES, input=SMALL)
    path = f"/v1/predictions/{created.id}/cancel"
    stack.proxy.script("POST", path, after_upstream(problem(503, "Unavailable", "x")), DROP)
    assert (await client.cancel_prediction(created.id)).status == "canceled"
    assert stack.proxy.count("POST", path) == 3


async def test_gives_up_after_max_retries(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, problem(503, "Unavailable", "still down"), forever=True)
    with pytest.raises(ProviderServerError) as caught:
        await make_client(max_retries=3).get_webhook_secret()
    assert caught.value.detail == "still down"
    assert stack.proxy.count("GET", SECRET_PATH) == 4


async def test_zero_retries_means_one_attempt(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, problem(503, "Unavailable", "x"), forever=True)
    with pytest.raises(ProviderServerError):
        await make_client(max_retries=0).get_webhook_secret()
    assert stack.proxy.count("GET", SECRET_PATH) == 1


# --- creates ---------------------------------------------------------------------------------------


async def test_a_create_refused_with_429_is_raised_at_once_for_the_queue(stack: Stack, client: ReplicateClient) -> None:
    """Darkroom's queue holds a throttled create for its Retry-After, so the client does not wait it out."""
    stack.proxy.script("POST", CREATE_PATH, throttled())
    with pytest.raises(ProviderRateLimitedError) as caught:
        await client.create_prediction(model=IMAGES, input=SMALL)
    assert never_reached(caught.value)
    assert stack.proxy.count("POST", CREATE_PATH) == 1
    assert stack.predictions_created == 0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_create_is_never_retried_on_5xx(stack: Stack, client: ReplicateClient, status: int) -> None:
    stack.proxy.script("POST", CREATE_PATH, after_upstream(problem(status, "Oops", "x")))
    with pytest.raises(ProviderServerError):
        await client.create_prediction(model=IMAGES, input=SMALL)
    assert stack.proxy.count("POST", CREATE_PATH) == 1
    assert stack.predictions_created == 1


async def test_create_is_never_retried_after_a_dropped_connection(stack: Stack, client: ReplicateClient) -> None:
    stack.proxy.script("POST", CREATE_PATH, after_upstream(DROP))
    with pytest.raises(ProviderUnavailableError) as caught:
        await client.create_prediction(model=IMAGES, input=SMALL)
    assert caught.value.sent and not never_reached(caught.value)
    assert stack.proxy.count("POST", CREATE_PATH) == 1
    assert stack.predictions_created == 1


async def test_create_is_never_retried_after_a_timeout(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("POST", CREATE_PATH, after_upstream(HANG))
    with pytest.raises(ProviderUnavailableError) as caught:
        await make_client(timeout_seconds=1.0).create_prediction(model=IMAGES, input=SMALL)
    assert "ReadTimeout" in caught.value.detail
    deadline = time.monotonic() + 20
    while stack.predictions_created == 0:  # the upstream may still be creating it when the client gives up
        assert time.monotonic() < deadline, "the create never reached the simulator"
        await asyncio.sleep(0.05)
    assert stack.proxy.count("POST", CREATE_PATH) == 1
    assert stack.predictions_created == 1


async def test_create_is_not_retried_on_422(stack: Stack, client: ReplicateClient) -> None:
    with pytest.raises(ProviderValidationError):
        await client.create_prediction(model=IMAGES, input={})
    assert stack.proxy.count("POST", CREATE_PATH) == 1


async def test_create_is_retried_when_the_connection_never_opened(make_client: MakeClient) -> None:
    """Nothing listens: the request never left, so even a create is retried (counted by the hook)."""
    attempts: list[tuple[str, str, int | None]] = []
    client = make_client(
        base_url=f"http://127.0.0.1:{free_port()}",
        max_retries=2,
        on_request=lambda method, path, status, seconds: attempts.append((method, path, status)),
    )
    with pytest.raises(ProviderUnavailableError) as caught:
        await client.create_prediction(model=IMAGES, input=SMALL)
    assert attempts == [("POST", "/v1/models/{owner}/{name}/predictions", None)] * 3
    assert not caught.value.sent and never_reached(caught.value)


async def test_upload_is_retried_on_429_only(stack: Stack, client: ReplicateClient) -> None:
    stack.proxy.script("POST", "/v1/files", throttled())
    assert (await client.upload_file(b"abc", "a.png", "image/png"))["size"] == 3
    assert stack.proxy.count("POST", "/v1/files") == 2
    assert len(stack.simulator.files.uploads) == 1
    stack.proxy.script("POST", "/v1/files", after_upstream(problem(503, "Unavailable", "x")))
    with pytest.raises(ProviderServerError):
        await client.upload_file(b"abc", "a.png", "image/png")
    assert stack.proxy.count("POST", "/v1/files") == 3
    assert len(stack.simulator.files.uploads) == 2


# --- waiting ---------------------------------------------------------------------------------------


async def test_retry_after_is_honoured(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, throttled(headers={"Retry-After": "0.3"}))
    started = time.monotonic()
    await make_client(retry_max_seconds=5.0).get_webhook_secret()
    assert time.monotonic() - started >= 0.3
    assert stack.proxy.count("GET", SECRET_PATH) == 2


async def test_ratelimit_reset_is_the_wait_a_throttled_create_carries(stack: Stack, make_client: MakeClient) -> None:
    """The queue waits it out before sending the create again."""
    stack.proxy.script("POST", CREATE_PATH, throttled(headers={"ratelimit-reset": "0.3"}))
    with pytest.raises(ProviderRateLimitedError) as caught:
        await make_client(retry_max_seconds=5.0).create_prediction(model=IMAGES, input=SMALL)
    assert caught.value.retry_after_seconds == pytest.approx(0.3)
    assert stack.predictions_created == 0


async def test_a_hint_longer_than_the_cap_is_raised_at_once(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, throttled(30))
    started = time.monotonic()
    with pytest.raises(ProviderRateLimitedError) as caught:
        await make_client(retry_max_seconds=1.0).get_webhook_secret()
    assert time.monotonic() - started < 25  # it did not wait out the 30 s
    assert caught.value.retry_after_seconds == 30.0
    assert stack.proxy.count("GET", SECRET_PATH) == 1


# --- reporting -------------------------------------------------------------------------------------


async def test_each_retry_is_logged(stack: Stack, client: ReplicateClient, caplog: pytest.LogCaptureFixture) -> None:
    stack.proxy.script("GET", SECRET_PATH, problem(503, "Unavailable", "x"))
    with caplog.at_level(logging.WARNING, logger="server.provider.replicate.client"):
        await client.get_webhook_secret()
    (record,) = [r for r in caplog.records if r.name == "server.provider.replicate.client"]
    assert record.levelno == logging.WARNING
    fields = {key: getattr(record, key, None) for key in ("method", "path", "status", "retry")}
    assert fields == {"method": "GET", "path": SECRET_PATH, "status": 503, "retry": 1}
    assert 0 <= getattr(record, "delay", -1) <= 0.05
    assert f"GET {SECRET_PATH}" in record.getMessage() and "503" in record.getMessage()


async def test_on_request_reports_every_attempt(stack: Stack, make_client: MakeClient) -> None:
    seen: list[tuple[str, str, int | None, float]] = []
    client = make_client(on_request=lambda *args: seen.append(args))
    stack.proxy.script("GET", SECRET_PATH, problem(502, "Bad gateway", "x"))
    await client.get_webhook_secret()
    with pytest.raises(ProviderNotFoundError):
        await client.get_model("darkroom-sim", "missing")
    assert [(m, p, s) for m, p, s, _ in seen] == [
        ("GET", SECRET_PATH, 502),
        ("GET", SECRET_PATH, 200),
        ("GET", "/v1/models/{owner}/{name}", 404),
    ]
    assert all(seconds >= 0 for *_, seconds in seen)


async def test_a_failing_hook_does_not_break_the_call(stack: Stack, make_client: MakeClient) -> None:
    def broken(method: str, path: str, status: int | None, seconds: float) -> None:
        raise RuntimeError("metrics are down")

    assert await make_client(on_request=broken).get_webhook_secret() == stack.config.webhook_secret


# --- the policy itself ----------------------------------------------------------------------------


def test_is_retryable_rules() -> None:
    for status in (429, 500, 502, 503, 504):
        assert RETRY_RULES.allow(idempotent=True, status=status)
    for status in (400, 401, 404, 409, 422, 501):
        assert not RETRY_RULES.allow(idempotent=True, status=status)
    assert RETRY_RULES.allow(idempotent=False, status=429)
    for status in (500, 502, 503, 504):
        assert not RETRY_RULES.allow(idempotent=False, status=status)
    request = httpx.Request("GET", "http://x")
    sent_maybe = [
        httpx.ReadTimeout("", request=request),
        httpx.ReadError("", request=request),
        httpx.RemoteProtocolError("", request=request),
        httpx.WriteTimeout("", request=request),
    ]
    never_sent = [
        httpx.ConnectError("", request=request),
        httpx.ConnectTimeout("", request=request),
        httpx.PoolTimeout("", request=request),
    ]
    for error in sent_maybe:
        assert RETRY_RULES.allow(idempotent=True, error=error)
        assert not RETRY_RULES.allow(idempotent=False, error=error)
    for error in never_sent:
        assert RETRY_RULES.allow(idempotent=False, error=error)
    assert not RETRY_RULES.allow(idempotent=True, error=httpx.UnsupportedProtocol("", request=request))


def test_backoff_is_full_jitter_capped() -> None:
    policy = RetryPolicy(max_retries=100, base_seconds=0.5, max_seconds=4.0, rng=random.Random(7))
    for retry, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (99, 4.0)]:
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(d is not None and 0.0 <= d <= ceiling for d in delays)
        assert max(d for d in delays if d is not None) > ceiling * 0.8  # jitter spans the range


def test_delay_limits() -> None:
    policy = RetryPolicy(max_retries=2, base_seconds=0.5, max_seconds=10.0)
    assert policy.delay(2) is None
    assert policy.delay(0, hint=3.0) == 3.0
    assert policy.delay(0, hint=0.0) == 0.0
    assert policy.delay(0, hint=11.0) is None
    assert policy.delay(2, hint=1.0) is None
