"""Costs an attacker could run up are counted: queries are rate limited per key, the limits hold across
processes (Redis or PostgreSQL), unknown model refs do not each cost a provider call, and open sockets are
capped per key and before connection_init."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import RedisError

from server.graphql.ids import encode_id
from server.services.access.buckets import OUTAGE_RETRY_SECONDS, RedisBuckets, SharedBuckets
from tests.auth.support import bearer, closed_with, init, new_key, operation_messages, raw_socket
from tests.catalogue.flows import MODEL, PIXEL_FORGE
from tests.support.darkroom import Darkroom
from tests.support.graphql import data
from tests.support.processes import darkroom_process, throwaway_redis
from tests.support.services import SESSION_CHANNEL, empty_postgres_database
from tests.support.waiting import eventually

QUERY = "{ generations(first: 1) { edges { cursor } } }"
SUBSCRIPTION = "subscription($id: ID!) { generation(id: $id) { id } }"
MULTIPART = 'multipart/mixed;subscriptionSpec="1.0", application/json'


def _limited(answer: dict[str, Any]) -> bool:
    errors = answer.get("errors") or []
    return answer.get("data") is None and [error["extensions"]["code"] for error in errors] == ["RATE_LIMITED"]


async def test_queries_over_the_limit_are_answered_rate_limited(start_darkroom: Callable[..., Any]) -> None:
    """On SQLite the buckets are this process's, on PostgreSQL the database's (the `database` fixture runs both)."""
    async with start_darkroom(rate_limit_queries_per_minute=6, rate_limit_queries_burst=3) as darkroom:
        alice = await new_key(darkroom, "alice")
        bob = await new_key(darkroom, "bob")
        answers = [await alice.query(QUERY) for _ in range(3)]
        assert ["errors" in answer for answer in answers] == [False] * 3
        # Over HTTP, in either media type, a 429 whose Retry-After says what the error does (rounded up).
        for accept in ("application/json", "application/graphql-response+json"):
            response = await darkroom.http.post(
                "/graphql", json={"query": QUERY}, headers={**bearer(alice.token), "Accept": accept}
            )
            assert response.status_code == 429, response.text
            assert response.headers["content-type"].startswith(accept)
            limited = response.json()
            assert _limited(limited), limited
            # 6 a minute: one more every 10 s.
            wait = limited["errors"][0]["extensions"]["retryAfterSeconds"]
            assert 0 < wait <= 10 and response.headers["retry-after"] == str(math.ceil(wait))
        # Over a WebSocket the same bucket answers.
        async with raw_socket(darkroom.base_url) as socket:
            assert (await init(socket, bearer(alice.token)))["type"] == "connection_ack"
            messages = await operation_messages(socket, QUERY)
            assert "RATE_LIMITED" in json.dumps(messages)
        # Another key has its own bucket, and mutations theirs.
        assert "errors" not in await bob.query(QUERY)
        missing = {"id": encode_id("Generation", "00000000-0000-4000-8000-000000000000")}
        cancel = "mutation($id: ID!) { cancelGeneration(input: {id: $id}) { userErrors { code } } }"
        assert data(await alice.query(cancel, missing))["cancelGeneration"]["userErrors"][0]["code"] == "NOT_FOUND"


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("shared_in", ["postgres", "redis"])
async def test_a_key_gets_its_limit_once_across_processes(
    shared_in: str, postgres_database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two processes, one key limited to 4 queries: 4 in all are answered, not 4 by each."""
    await empty_postgres_database(postgres_database)
    env = {
        "DATABASE_URL": postgres_database,
        "BROADCAST_URL": request.getfixturevalue("redis_url") if shared_in == "redis" else "memory://",
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(tmp_path / "var"),
        "REPLICATE_API_TOKEN": "",
        "PUBLIC_URL": "",
        "POLLER_ENABLED": "false",
        "DOWNLOADER_ENABLED": "false",
        "RATE_LIMIT_QUERIES_PER_MINUTE": "0.01",  # no refill while the test runs
        "RATE_LIMIT_QUERIES_BURST": "4",
        "LOG_LEVEL": "WARNING",
    }
    created = await asyncio.to_thread(_cli, env, "api-key", "create", "--name", "everywhere")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    async with (
        darkroom_process(env, tmp_path / "a.log") as process_a,
        darkroom_process(env, tmp_path / "b.log") as process_b,
        httpx.AsyncClient(timeout=30) as http,
    ):
        answers = []
        for base in [process_a, process_b] * 5:
            response = await http.post(f"{base}/graphql", json={"query": QUERY}, headers=bearer(token))
            answers.append(response.json())
            assert response.status_code == (429 if _limited(answers[-1]) else 200)
    assert sum(not _limited(answer) for answer in answers) == 4
    assert all(_limited(answer) for answer in answers[4:])
    # 0.01 a minute: the next token is well over a minute away, as the shared store's clock says.
    assert answers[-1]["errors"][0]["extensions"]["retryAfterSeconds"] > 60


def _model_lookups(scrape: str) -> float:
    """Provider lookups of a model that answered 404, as /metrics counts them."""
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "darkroom_provider_errors_total"
                and labels.get("path") == "/v1/models/{owner}/{name}"
                and labels.get("reason") == "404"
            ):
                return sample.value
    return 0.0


async def test_an_unknown_model_ref_costs_one_provider_call(darkroom: Darkroom) -> None:
    before = _model_lookups((await darkroom.http.get("/metrics")).text)
    ref = {"ref": "darkroom-sim/no-such-model-anywhere"}
    # 16 at once share one lookup; 16 after it are answered from the negative cache.
    at_once = await asyncio.gather(*(darkroom.query(MODEL, ref) for _ in range(16)))
    one_by_one = [await darkroom.query(MODEL, ref) for _ in range(16)]
    assert all(data(answer)["model"] is None for answer in [*at_once, *one_by_one])
    after = _model_lookups((await darkroom.http.get("/metrics")).text)
    assert after - before <= 1
    # A model that exists is still found.
    assert data(await darkroom.query(MODEL, {"ref": PIXEL_FORGE}))["model"] is not None


async def test_without_a_negative_cache_every_lookup_asks(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(catalogue_negative_ttl_seconds=0) as darkroom:
        before = _model_lookups((await darkroom.http.get("/metrics")).text)
        for _ in range(3):
            assert data(await darkroom.query(MODEL, {"ref": "darkroom-sim/not-remembered"}))["model"] is None
        assert _model_lookups((await darkroom.http.get("/metrics")).text) - before == 3


async def test_sockets_over_the_caps_are_refused_and_the_others_keep_working(
    start_darkroom: Callable[..., Any],
) -> None:
    async with start_darkroom(max_pending_sockets=2, max_sockets_per_key=2) as darkroom:
        alice = await new_key(darkroom, "alice")
        bob = await new_key(darkroom, "bob")
        async with raw_socket(darkroom.base_url) as first, raw_socket(darkroom.base_url) as second:
            # Two sockets wait for connection_init: a third is told to try again later.
            async with raw_socket(darkroom.base_url) as third:
                assert await closed_with(third) == 1013
            assert (await init(first, bearer(alice.token)))["type"] == "connection_ack"
            assert (await init(second, bearer(alice.token)))["type"] == "connection_ack"
            # Alice holds her two: a third socket of hers is closed at its connection_init...
            async with raw_socket(darkroom.base_url) as third:
                await third.send(json.dumps({"type": "connection_init", "payload": bearer(alice.token)}))
                assert await closed_with(third) == 1008
            # ...her multipart stream is refused...
            stream = await darkroom.http.post(
                "/graphql",
                json={"query": SUBSCRIPTION, "variables": {"id": encode_id("Generation", "0" * 32)}},
                headers={**bearer(alice.token), "Accept": MULTIPART},
            )
            assert stream.status_code == 429
            assert stream.json()["errors"][0]["extensions"]["code"] == "TOO_MANY_REQUESTS"
            # ...while her sockets work, and Bob has places of his own.
            for socket in (first, second):
                assert [message["type"] for message in await operation_messages(socket, QUERY)] == ["next", "complete"]
            async with raw_socket(darkroom.base_url) as bobs:
                assert (await init(bobs, bearer(bob.token)))["type"] == "connection_ack"
            # Bob's multipart stream counts while it runs and gives its place back when it ends.
            ended = await darkroom.http.post(
                "/graphql",
                json={"query": SUBSCRIPTION, "variables": {"id": encode_id("Generation", "0" * 32)}},
                headers={**bearer(bob.token), "Accept": MULTIPART},
            )
            assert ended.status_code == 200
        # Her sockets closed, their places are free again.
        await eventually(lambda: not darkroom.runtime.socket_caps.per_key)

        async def acknowledged() -> bool:
            async with raw_socket(darkroom.base_url) as again:
                return (await init(again, bearer(alice.token)))["type"] == "connection_ack"

        assert await acknowledged()


async def test_a_legacy_socket_that_never_initialises_is_closed(start_darkroom: Callable[..., Any]) -> None:
    """graphql-ws has no connection_init timeout of its own; a pending place must not be held forever."""
    async with (
        start_darkroom(graphql_connection_init_timeout_seconds=0.5) as darkroom,
        raw_socket(darkroom.base_url, protocol="graphql-ws") as socket,
    ):
        assert await closed_with(socket) == 4408
        await eventually(lambda: darkroom.runtime.socket_caps.pending == 0)


@pytest.mark.parametrize("protocol", ["graphql-ws", "graphql-transport-ws"])
async def test_a_second_connection_init_closes_the_socket(darkroom: Darkroom, protocol: str) -> None:
    """Each connection_init registers a socket with its key: one socket may not register itself again and again."""
    alice = await new_key(darkroom, "alice")
    async with raw_socket(darkroom.base_url, protocol=protocol) as socket:
        assert (await init(socket, bearer(alice.token)))["type"] == "connection_ack"
        await socket.send(json.dumps({"type": "connection_init", "payload": bearer(alice.token)}))
        assert await closed_with(socket) == 4429
    await eventually(lambda: not darkroom.runtime.socket_caps.per_key)


async def test_a_websocket_message_larger_than_a_request_body_closes_the_socket(tmp_path: Path) -> None:
    """`darkroom serve` holds a WebSocket message to GRAPHQL_MAX_BODY_BYTES (close 1009), not to uvicorn's 16 MiB."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'darkroom.db'}",
        "BROADCAST_URL": "memory://",
        "DATA_DIR": str(tmp_path / "var"),
        "REPLICATE_API_TOKEN": "",
        "PUBLIC_URL": "",
        "GRAPHQL_MAX_BODY_BYTES": "20000",
        "LOG_LEVEL": "WARNING",
    }
    async with darkroom_process(env, tmp_path / "serve.log") as base:
        async with raw_socket(base) as small:
            assert (await init(small, {"padding": "x" * 10_000}))["type"] == "connection_ack"
        async with raw_socket(base) as large:
            await large.send(json.dumps({"type": "connection_init", "payload": {"padding": "x" * 30_000}}))
            assert await closed_with(large) == 1009


async def test_while_the_shared_limit_store_is_down_each_process_limits_on_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A Redis of the test's own stops: takes go to this process's buckets (still limited), the store is
    not asked again for OUTAGE_RETRY_SECONDS, and the outage is logged once when it starts and once when it ends."""
    now = [1000.0]
    with throwaway_redis() as server:
        store = RedisBuckets(server.url, prefix="test:rate:")
        buckets = SharedBuckets(store, "redis", (RedisError, OSError), clock=lambda: now[0])
        try:
            assert await buckets.take("alice", rate=0.001, capacity=2) == 0.0
            server.stop()
            with caplog.at_level(logging.INFO, logger="server.services.access.buckets"):
                answers = [await buckets.take("alice", rate=0.001, capacity=2) for _ in range(3)]
                assert answers[:2] == [0.0, 0.0] and answers[2] > 0, answers
                server.start()
                # Within the retry interval the store is not asked, even though it is back.
                assert await buckets.take("bob", rate=0.001, capacity=2) == 0.0
                assert await store.take("bob", rate=0.001, capacity=2) == 0.0, "bob's first take was local"
                now[0] += OUTAGE_RETRY_SECONDS
                assert await buckets.take("bob", rate=0.001, capacity=2) == 0.0
                assert await store.take("bob", rate=0.001, capacity=2) > 0, "the store counted both"
            messages = [record.getMessage() for record in caplog.records if record.name.endswith("buckets")]
            assert [message.split(":")[0] for message in messages] == [
                "rate limit store unreachable",
                "rate limit store reachable again",
            ]
        finally:
            await buckets.aclose()
