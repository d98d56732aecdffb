"""Every logged event reaches every subscriber, once and in order: several processes, concurrent webhooks,
and the broker or the database restarted under live subscribers.

Each test runs real `darkroom serve` processes. The embedded simulator accepts the generations and
stays silent; every change is a signed webhook the test sends, as Replicate would. What a feed
subscriber received is compared with the log itself (`SELECT id FROM events`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from server.provider.replicate.signing import sign_webhook
from tests.support.flows import IMAGE_MODEL, START
from tests.support.graphql import data, gql, ws_connect
from tests.support.processes import darkroom_process, throwaway_postgres, throwaway_redis
from tests.support.services import SESSION_CHANNEL, empty_postgres_database
from tests.support.waiting import eventually

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"darkroom-delivery-tests-secret!!").decode()
FEED = "subscription Feed($after: String) { generationEvents(after: $after) { cursor sequence generation { id } } }"
CURSOR = "query { feedCursor }"


def server_env(database_url: str, broadcast_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "BROADCAST_URL": broadcast_url,
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(data_dir),
        "REPLICATE_API_TOKEN": "",
        "PUBLIC_URL": "",
        "REPLICATE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # The simulator never answers on its own: every change is a webhook this test sends.
        "SIMULATOR_WEBHOOK_DROP_RATE": "1.0",
        "SIMULATOR_RUN_SECONDS": "86400",
        "POLLER_ENABLED": "false",
        "DOWNLOADER_ENABLED": "false",
        "RATE_LIMIT_MUTATIONS_PER_MINUTE": "0",
        "EVENT_TAIL_INTERVAL_SECONDS": "0.5",
        "BROADCAST_CHECK_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
    }


def asyncpg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def logged_ids(database_url: str, after: int) -> list[int]:
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        return [row["id"] for row in await connection.fetch("SELECT id FROM events WHERE id > $1 ORDER BY id", after)]
    finally:
        await connection.close()


async def prediction_ids(database_url: str) -> list[str]:
    connection = await asyncpg.connect(asyncpg_url(database_url))
    try:
        return [row["provider_id"] for row in await connection.fetch("SELECT provider_id FROM generations")]
    finally:
        await connection.close()


def event_id(cursor: str) -> int:
    from server.graphql.pagination import decode_event_cursor

    return decode_event_cursor(cursor)


class Feed:
    """A `generationEvents` subscriber on one process, from that process' feedCursor, collecting event ids."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.start = 0

    @contextlib.asynccontextmanager
    async def following(self, base_url: str) -> AsyncIterator[Feed]:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            cursor = data(await gql(client, CURSOR))["feedCursor"]
        self.start = event_id(cursor)
        async with ws_connect(base_url) as ws:
            ready = asyncio.Event()

            async def collect() -> None:
                subscription = ws.subscribe(FEED, {"after": cursor}, timeout=600)
                ready.set()
                async for payload in subscription:
                    self.ids.append(event_id(data(payload)["generationEvents"]["cursor"]))

            task = asyncio.create_task(collect())
            await ready.wait()
            await asyncio.sleep(0.2)  # let the subscribe frame reach the server before any change is made
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def start_generations(base_url: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for index in range(count):
            started = data(await gql(client, START, {"model": IMAGE_MODEL, "input": {"prompt": f"delivery {index}"}}))
            assert started["startGeneration"]["userErrors"] == [], started


class Webhooks:
    """Signed progress webhooks, one more log line each, for the given predictions."""

    def __init__(self, predictions: list[str]) -> None:
        self._predictions = predictions
        self._steps = dict.fromkeys(predictions, 0)
        self._order = itertools.cycle(predictions)

    def next(self) -> tuple[bytes, dict[str, str]]:
        prediction = next(self._order)
        self._steps[prediction] += 1
        logs = "".join(f"{min(step, 99):3d}%| | {step}/1000\n" for step in range(1, self._steps[prediction] + 1))
        body = json.dumps(
            {
                "id": prediction,
                "status": "processing",
                "model": IMAGE_MODEL,
                "input": {},
                "logs": logs,
                "output": None,
                "error": None,
                "created_at": "2026-01-01T00:00:00.000000Z",
                "started_at": "2026-01-01T00:00:00.100000Z",
                "completed_at": None,
            }
        ).encode()
        headers = sign_webhook(WEBHOOK_SECRET, f"msg_{uuid.uuid4().hex}", body)
        return body, {"content-type": "application/json", **headers}

    async def send(self, targets: list[str], count: int, concurrency: int) -> None:
        """`count` webhooks, `concurrency` at a time, alternated between `targets`; each must be accepted."""
        clients = [httpx.AsyncClient(base_url=target, timeout=60) for target in targets]
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> None:
            body, headers = self.next()
            async with gate:
                response = await clients[index % len(clients)].post(
                    "/webhooks/replicate", content=body, headers=headers
                )
            assert response.status_code == 200, response.text

        try:
            await asyncio.gather(*(one(index) for index in range(count)))
        finally:
            for client in clients:
                await client.aclose()


async def delivered_all(feeds: list[Feed], database_url: str, timeout: float = 60) -> None:
    """Each feed got exactly the logged events after its start, once each and in log order."""

    async def caught_up() -> bool:
        logged = await logged_ids(database_url, min(feed.start for feed in feeds))
        return all(len(feed.ids) >= len([i for i in logged if i > feed.start]) for feed in feeds)

    with contextlib.suppress(AssertionError):
        await eventually(caught_up, timeout=timeout, interval=0.2)
    await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive now
    for feed in feeds:
        assert feed.ids == await logged_ids(database_url, feed.start)


async def readiness(base_url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.get("/readyz")
        return response.status_code, response.json()


@pytest.fixture
def shared_database(postgres_database: str) -> str:
    asyncio.run(empty_postgres_database(postgres_database))
    return postgres_database


@pytest.mark.parametrize("broadcast", ["memory", "postgres", "redis"])
async def test_every_logged_event_reaches_a_feed_subscriber_on_every_process_once_and_in_order(
    broadcast: str, shared_database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    broadcast_url = {"memory": "memory://", "postgres": shared_database}.get(broadcast) or str(
        request.getfixturevalue("redis_url")
    )
    processes = 1 if broadcast == "memory" else 2
    async with contextlib.AsyncExitStack() as stack:
        bases = [
            await stack.enter_async_context(
                darkroom_process(server_env(shared_database, broadcast_url, tmp_path / f"p{n}"), tmp_path / f"p{n}.log")
            )
            for n in range(processes)
        ]
        await start_generations(bases[0], 20)
        predictions = await prediction_ids(shared_database)
        feeds = [Feed() for _ in bases]
        for feed, base in zip(feeds, bases, strict=True):
            await stack.enter_async_context(feed.following(base))
        await Webhooks(predictions).send(bases, count=400, concurrency=32)
        await delivered_all(feeds, shared_database)
        assert len(feeds[0].ids) >= 100  # the log grew by many events (a webhook overtaken by a later one is stale)


@pytest.mark.parametrize("broker", ["postgres", "redis"])
async def test_a_broker_restart_under_live_subscribers_loses_nothing_and_readyz_reports_it(
    broker: str, shared_database: str, tmp_path: Path
) -> None:
    with throwaway_postgres() if broker == "postgres" else throwaway_redis() as server:
        async with contextlib.AsyncExitStack() as stack:
            writer, reader = [
                await stack.enter_async_context(
                    darkroom_process(server_env(shared_database, server.url, tmp_path / name), tmp_path / f"{name}.log")
                )
                for name in ("writer", "reader")
            ]
            await start_generations(writer, 4)
            webhooks = Webhooks(await prediction_ids(shared_database))
            feed = await stack.enter_async_context(Feed().following(reader))
            await webhooks.send([writer], count=10, concurrency=4)

            server.stop()
            await eventually(lambda: _not_ready(reader, "broadcast"), timeout=20)
            # Accepted while the broker is down: the log has them, the reader's own reads deliver them.
            await webhooks.send([writer], count=10, concurrency=4)
            await delivered_all([feed], shared_database)

            server.start()
            await eventually(lambda: _ready(reader), timeout=30)
            await eventually(lambda: _ready(writer), timeout=30)
            await webhooks.send([writer], count=10, concurrency=4)
            await delivered_all([feed], shared_database)


async def test_a_database_restart_under_live_subscribers_loses_nothing_and_readyz_reports_it(tmp_path: Path) -> None:
    with throwaway_postgres() as database:
        url = database.url
        async with contextlib.AsyncExitStack() as stack:
            writer, reader = [
                await stack.enter_async_context(
                    darkroom_process(server_env(url, url, tmp_path / name), tmp_path / f"{name}.log")
                )
                for name in ("writer", "reader")
            ]
            await start_generations(writer, 4)
            webhooks = Webhooks(await prediction_ids(url))
            feed = await stack.enter_async_context(Feed().following(reader))
            await webhooks.send([writer], count=10, concurrency=4)
            await delivered_all([feed], url)

            database.stop()
            await eventually(lambda: _not_ready(reader, "event_log"), timeout=20)
            _, body = await readiness(reader)
            assert body["checks"]["database"] is False

            database.start()
            await eventually(lambda: _ready(reader), timeout=60)
            await eventually(lambda: _ready(writer), timeout=60)
            before_restart = feed.ids[-1]
            await webhooks.send([writer], count=10, concurrency=4)
            await delivered_all([feed], url)
            # Webhooks in flight together may overtake each other (the later state wins, the earlier is
            # stale and logs nothing), so count what the log holds rather than what was sent.
            assert await logged_ids(url, before_restart), "nothing was logged after the restart"


async def _ready(base_url: str) -> bool:
    status, _ = await readiness(base_url)
    return status == 200


async def _not_ready(base_url: str, check: str) -> bool:
    status, body = await readiness(base_url)
    return status == 503 and body["checks"][check] is False
