"""Outgoing webhooks across processes: two Darkroom processes deliver without sending anything twice at once,
and a restart in the middle of a retry loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.flows import wait_settled
from tests.support.graphql import data, gql
from tests.support.live_server import free_port
from tests.support.processes import darkroom_process
from tests.support.services import SESSION_CHANNEL, empty_postgres_database
from tests.support.waiting import eventually
from tests.webhooks_out.support import ENDPOINTS, FAST, generations, received_all, receiver, register


class Client:
    """GraphQL over HTTP to one process, with the `query` the shared helpers call."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return await gql(self.http, query, variables)


@pytest.fixture
def shared_env(postgres_database: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    asyncio.run(empty_postgres_database(postgres_database))
    yield {
        "DATABASE_URL": postgres_database,
        "BROADCAST_URL": postgres_database,
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(tmp_path / "var"),
        "REPLICATE_API_TOKEN": "",
        "PUBLIC_URL": "",
        "POLLER_ENABLED": "false",
        "SIMULATOR_RUN_SECONDS": "0.6",
        "LOG_LEVEL": "WARNING",
        "WEBHOOKS_ALLOW_PRIVATE_URLS": "true",
        "WEBHOOK_INTERVAL_SECONDS": "0.2",
        "WEBHOOK_RETRY_SCHEDULE_SECONDS": "0.3",
    }


async def test_two_processes_deliver_every_event_in_order_never_twice_at_once(
    shared_env: dict[str, str], tmp_path: Path
) -> None:
    port_a, port_b = free_port(), free_port()
    env = {**shared_env, "REPLICATE_FILE_HOSTS": f"http://127.0.0.1:{port_a},http://127.0.0.1:{port_b}"}
    async with (
        receiver() as hooks,
        darkroom_process(env, tmp_path / "a.log", port_a) as process_a,
        darkroom_process(env, tmp_path / "b.log", port_b) as process_b,
        httpx.AsyncClient(base_url=process_a, timeout=30) as http_a,
        httpx.AsyncClient(base_url=process_b, timeout=30) as http_b,
    ):
        a, b = Client(http_a), Client(http_b)
        for name in ("one", "two", "three"):
            await register(a, hooks, name)
            # A slow receiver: two deliverers sending to one endpoint at once would overlap here.
            hooks.paths[name].delay = 0.03
        ids = [*await generations(a, 3, "on A"), *await generations(b, 3, "on B")]
        for name in ("one", "two", "three"):
            await received_all(hooks.paths[name], a, ids)
            assert hooks.paths[name].most_in_flight == 1, name
            assert hooks.paths[name].bad_signatures == 0
            # Each event once: a second process never sent what the first had delivered.
            assert len(hooks.paths[name].message_ids) == len(set(hooks.paths[name].message_ids)), name


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_restart_in_the_middle_of_a_retry_loses_nothing(start_darkroom: Callable[..., Any]) -> None:
    settings = {**FAST, "webhook_retry_schedule_seconds": "0.5"}
    async with receiver() as hooks:
        async with start_darkroom(**settings) as darkroom:
            await register(darkroom, hooks, "restarted")
            hooks.paths["restarted"].fail = True
            ids = await generations(darkroom, 2)
            for generation_id in ids:
                await wait_settled(darkroom, generation_id)
            await eventually(lambda: hooks.paths["restarted"].requests >= 2)
            endpoint = data(await darkroom.query(ENDPOINTS))["webhookEndpoints"][0]
            assert endpoint["failedAttempts"] >= 1 and endpoint["nextAttemptAt"] is not None
        # Stopped while in backoff; the receiver recovers while Darkroom is down.
        assert hooks.paths["restarted"].unique() == []
        hooks.paths["restarted"].fail = False
        async with start_darkroom(**settings) as darkroom:
            await received_all(hooks.paths["restarted"], darkroom, ids)
            assert hooks.paths["restarted"].bad_signatures == 0
