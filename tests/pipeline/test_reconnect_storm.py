"""A reconnect storm: every feed subscriber of two processes drops at once and resumes from its cursor."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.typing import Subprotocol

from tests.support.flows import IMAGE_MODEL, START
from tests.support.graphql import gql
from tests.support.live_server import free_port
from tests.support.processes import darkroom_process
from tests.support.waiting import eventually

FEED = "subscription Feed($after: String) { generationEvents(after: $after) { cursor } }"
STATUS = "query Status($id: ID!) { generation(id: $id) { status media { status } } }"
CLIENTS_PER_PROCESS = 40


class FeedClient:
    """One feed subscriber on its own socket, remembering every cursor it was sent."""

    def __init__(self, base_url: str) -> None:
        self.url = base_url.replace("http://", "ws://") + "/graphql"
        self.cursors: list[str] = []
        self.socket: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self, after: str | None) -> None:
        self.socket = await websockets.connect(
            self.url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=30
        )
        await self.socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await self.socket.recv())["type"] == "connection_ack"
        payload = {"query": FEED, "variables": {"after": after}}
        await self.socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            if message["type"] == "ping":
                await self.socket.send('{"type":"pong"}')
            elif message["type"] == "next":
                self.cursors.append(message["payload"]["data"]["generationEvents"]["cursor"])
            else:
                raise AssertionError(message)

    def drop(self) -> None:
        """No close frame: the way every socket goes when a load balancer restarts."""
        assert self.reader is not None
        self.reader.cancel()
        self.socket.transport.abort()


async def replay_reads(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    found = re.search(r'^darkroom_subscribe_reads_total\{read="replay"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_reconnect_storm_loses_nothing_and_costs_reads_per_cursor_not_per_client(
    shared_env: dict[str, str], tmp_path: Path
) -> None:
    port_a, port_b = free_port(), free_port()
    env = {
        **shared_env,
        "REPLICATE_FILE_HOSTS": f"http://127.0.0.1:{port_a},http://127.0.0.1:{port_b}",
        "SIMULATOR_RUN_SECONDS": "2.0",
    }
    # A keeps no events in memory, so its resumes read the log (shared); B replays its own from memory.
    async with (
        darkroom_process({**env, "EVENT_REPLAY_BUFFER_EVENTS": "0"}, tmp_path / "a.log", port_a) as base_a,
        darkroom_process(env, tmp_path / "b.log", port_b) as base_b,
        httpx.AsyncClient(base_url=base_a, timeout=30) as client_a,
        httpx.AsyncClient(base_url=base_b, timeout=30) as client_b,
    ):
        control = FeedClient(base_a)  # stays connected throughout: what everyone should end up with
        clients = [FeedClient(base) for base in [base_a, base_b] for _ in range(CLIENTS_PER_PROCESS)]
        await asyncio.gather(control.connect(None), *(client.connect(None) for client in clients))

        async def start(prompt: str) -> str:
            started = await gql(client_a, START, {"model": IMAGE_MODEL, "input": {"prompt": prompt}})
            return str(started["data"]["startGeneration"]["generation"]["id"])

        generations = [await start("before the storm"), await start("through the storm")]
        await eventually(lambda: all(len(client.cursors) >= 2 for client in clients), timeout=30)
        for client in clients:
            client.drop()
        generations.append(await start("while everyone is away"))
        await eventually(lambda: len(control.cursors) >= 4, timeout=30)
        before = await replay_reads(client_a), await replay_reads(client_b)
        resumed_from = [client.cursors[-1] for client in clients]
        await asyncio.gather(*(client.connect(cursor) for client, cursor in zip(clients, resumed_from, strict=True)))

        async def all_settled() -> bool:
            for generation_id in generations:
                state = (await gql(client_a, STATUS, {"id": generation_id}))["data"]["generation"]
                if state["status"] != "SUCCEEDED" or any(m["status"] != "READY" for m in state["media"]):
                    return False
            return True

        await eventually(all_settled, timeout=60)
        await eventually(lambda: all(c.cursors[-1:] == control.cursors[-1:] for c in clients), timeout=30)
        after = await replay_reads(client_a), await replay_reads(client_b)

    for client in clients:
        first = control.cursors.index(client.cursors[0])
        assert client.cursors == control.cursors[first:], "every event exactly once, in order"
    # 40 clients resumed on each process, from at most a few distinct cursors.
    distinct = len(set(resumed_from[:CLIENTS_PER_PROCESS]))
    assert after[0] - before[0] <= distinct + 2, (before, after)
    assert after[1] - before[1] == 0, "B replayed from memory"
