"""What a subscription costs to open and to hold: nothing parsed, planned or read again, nothing kept after."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache
from websockets.typing import Subprotocol

from server.graphql.live import rendering
from tests.support.flows import FOLLOW, start_generation
from tests.support.waiting import eventually

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


class Operations:
    """Many subscriptions on one graphql-transport-ws socket, each with its own id."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.first_frames: set[str] = set()
        self.completed: set[str] = set()
        self.errors: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, base_url: str) -> Operations:
        url = base_url.replace("http://", "ws://") + "/graphql"
        socket = await websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")])
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        return cls(socket)

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            if message["type"] == "next":
                assert "errors" not in message["payload"], message
                self.first_frames.add(message["id"])
            elif message["type"] == "complete":
                self.completed.add(message["id"])
            elif message["type"] == "error":
                self.errors.append(message)
            elif message["type"] == "ping":
                await self.socket.send('{"type":"pong"}')

    async def subscribe(self, ids: list[str], query: str, variables: dict[str, Any]) -> None:
        payload = {"query": query, "variables": variables}
        for op_id in ids:
            await self.socket.send(json.dumps({"id": op_id, "type": "subscribe", "payload": payload}))

    async def unsubscribe(self, ids: list[str]) -> None:
        for op_id in ids:
            await self.socket.send(json.dumps({"id": op_id, "type": "complete"}))

    async def close(self) -> None:
        self.reader.cancel()
        await self.socket.close()


async def test_subscribers_joining_a_group_parse_validate_plan_and_read_nothing_again(
    start_darkroom: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    planned: list[str] = []
    plan = rendering.selection_variables

    def counted_plan(*args: Any) -> list[str]:
        planned.append("plan")
        return plan(*args)

    monkeypatch.setattr(rendering, "selection_variables", counted_plan)
    async with start_darkroom(simulator_run_seconds=60) as darkroom:
        size = darkroom.settings.graphql.document_cache_size
        parses: Any = _get_parse_cache(size)
        validations: Any = _get_validate_cache(size)
        generation = await start_generation(darkroom)
        operations = await Operations.open(darkroom.base_url)
        await operations.subscribe(["first"], FOLLOW, {"id": generation["id"]})
        await eventually(lambda: "first" in operations.first_frames)
        before = parses.cache_info().misses, validations.cache_info().misses, len(planned)
        state_reads = darkroom.runtime.hub.states.reads

        joining = [str(n) for n in range(99)]  # with the first, as many as one socket may hold
        await operations.subscribe(joining, FOLLOW, {"id": generation["id"]})
        await eventually(lambda: operations.first_frames >= set(joining) or operations.errors)
        assert operations.errors == []
        after = parses.cache_info().misses, validations.cache_info().misses, len(planned)
        await operations.close()
    assert after == before, "parsed, validated and planned once, by the first subscriber"
    assert darkroom.runtime.hub.states.reads == state_reads == 1, "the state was read once, for all"


def _resident_bytes() -> int:
    # The server runs its collector rarely (GC_THRESHOLDS): what cycles it has not freed yet is no leak.
    gc.collect()
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


async def test_ten_rounds_of_a_thousand_subscriptions_leave_nothing_behind(start_darkroom: Any) -> None:
    async with start_darkroom(simulator_run_seconds=120) as darkroom:
        hub = darkroom.runtime.hub
        subscribers = hub.subscriber_count  # the server's own (the gallery's, say)
        generations = [(await start_generation(darkroom, f"round robin {n}"))["id"] for n in range(4)]
        sockets = [await Operations.open(darkroom.base_url) for _ in range(10)]
        resident: list[int] = []
        for round_ in range(10):
            ids = [f"{round_}-{n}" for n in range(100)]
            for index, operations in enumerate(sockets):
                await operations.subscribe(ids, FOLLOW, {"id": generations[index % len(generations)]})
            await eventually(lambda: all(o.first_frames >= set(ids) or o.errors for o in sockets), timeout=60)  # noqa: B023
            assert [o.errors for o in sockets if o.errors] == []
            assert hub.subscriber_count == subscribers + 1_000
            for operations in sockets:
                await operations.unsubscribe(ids)
            await eventually(lambda: hub.subscriber_count == subscribers and len(hub.states) == 0, timeout=30)
            resident.append(_resident_bytes())
        for operations in sockets:
            await operations.close()
    # A thousand held subscriptions take tens of MiB; what a round leaves behind must not add up.
    growth = resident[-1] - resident[1]
    assert growth < 16 * 2**20, [round(r / 2**20, 1) for r in resident]
