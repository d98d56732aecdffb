"""The fal client's retry rules, over real HTTP: a gateway that answers as the test scripts it counts what
the client sent. A submit has no idempotency key, so it is never resent once it may have arrived."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.provider.errors import ProviderServerError, ProviderUnavailableError
from server.provider.fal.client import FalClient
from tests.provider.fault_proxy import DROP, Answer, FaultProxy
from tests.support.live_server import free_port, live_server

ENDPOINT = "fal-ai/flux/dev"


def _client(url: str, **options: object) -> FalClient:
    return FalClient(
        "k",
        queue_base_url=url,
        rest_base_url=url,
        cdn_base_url=url,
        openapi_base_url=url,
        api_base_url=url,
        retry_base_seconds=0.0,
        retry_max_seconds=0.0,
        max_retries=3,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def gateway() -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy()
    try:
        async with live_server(proxy) as url:
            proxy.url = url
            yield proxy
    finally:
        await proxy.aclose()


async def test_a_submit_is_never_resent_but_a_status_is(gateway: FaultProxy) -> None:
    gateway.script("POST", f"/{ENDPOINT}", Answer(503, {"detail": "gateway"}), forever=True)
    gateway.script("GET", "/fal-ai/flux/requests/r1/status", Answer(503, {"detail": "gateway"}), forever=True)
    client = _client(gateway.url)
    try:
        with pytest.raises(ProviderServerError):
            await client.submit(ENDPOINT, {"prompt": "x"}, webhook_url=None)
        assert gateway.count("POST", f"/{ENDPOINT}") == 1
        with pytest.raises(ProviderServerError):
            await client.status(ENDPOINT, "r1")
        assert gateway.count("GET", "/fal-ai/flux/requests/r1/status") == 4
    finally:
        await client.aclose()


async def test_a_submit_that_may_have_arrived_is_not_resent(gateway: FaultProxy) -> None:
    gateway.script("POST", f"/{ENDPOINT}", DROP, forever=True)
    client = _client(gateway.url)
    try:
        with pytest.raises(ProviderUnavailableError):
            await client.submit(ENDPOINT, {"prompt": "x"}, webhook_url=None)
        assert gateway.count("POST", f"/{ENDPOINT}") == 1
    finally:
        await client.aclose()


async def test_a_submit_that_never_left_is_retried() -> None:
    attempts: list[int | None] = []
    client = _client(
        f"http://127.0.0.1:{free_port()}", on_request=lambda method, path, status, seconds: attempts.append(status)
    )
    try:
        with pytest.raises(ProviderUnavailableError):
            await client.submit(ENDPOINT, {"prompt": "x"}, webhook_url=None)
        assert attempts == [None] * 4  # refused at connect each time: it never reached fal
    finally:
        await client.aclose()


async def test_a_stored_result_error_is_an_answer_not_a_failure(gateway: FaultProxy) -> None:
    stored = Answer(504, {"detail": "timeout"}, {"x-fal-request-id": "r"})
    gateway.script("GET", "/fal-ai/flux/requests/r", stored, forever=True)
    client = _client(gateway.url)
    try:
        answer = await client.result(ENDPOINT, "r")
        assert answer.status == 504
        assert gateway.count("GET", "/fal-ai/flux/requests/r") == 1
    finally:
        await client.aclose()
