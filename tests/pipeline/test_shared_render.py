"""Render once, send to many: subscribers alike share one execution per event; others get their own.

Subscribers are alike when they send the same document, the same values for the variables its
selection reads, and see as the same viewer. Each change here is a signed webhook the test sends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client import REGISTRY

from server.db.models import Generation
from server.graphql.ids import decode_id
from server.graphql.live.rendering import RenderedData, encode_frame
from server.provider.replicate.signing import sign_webhook
from tests.auth.support import new_key
from tests.support.darkroom import Darkroom
from tests.support.flows import FOLLOW, IMAGE_MODEL, START, start_generation
from tests.support.graphql import ws_connect
from tests.support.waiting import eventually

SILENT = {"simulator_webhook_drop_rate": 1.0, "simulator_run_seconds": 86400, "poller_enabled": False}
BRIEF = "subscription Brief($id: ID!) { generation(id: $id) { id status progress } }"


def renders(result: str) -> float:
    return REGISTRY.get_sample_value("darkroom_subscription_renders_total", {"result": result}) or 0.0


def small_receive_buffer(base_url: str) -> socket.socket:
    """A socket connected to the server whose receive buffer stays at 16 KiB (no autotuning)."""
    address = urlsplit(base_url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
    sock.connect((address.hostname, address.port))
    sock.setblocking(False)
    return sock


def live_frames(writer: str) -> float:
    return REGISTRY.get_sample_value("darkroom_live_frames_total", {"writer": writer}) or 0.0


class Follower:
    """One WebSocket following one subscription, keeping every raw `next` frame it receives."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.extensions = ""  # what the server agreed to in the handshake (Sec-WebSocket-Extensions)

    @contextlib.asynccontextmanager
    async def following(
        self, darkroom: Darkroom, query: str, variables: dict[str, Any], token: str | None = None
    ) -> AsyncIterator[Follower]:
        payload = {"Authorization": f"Bearer {token}"} if token else None
        async with ws_connect(darkroom.base_url, payload=payload) as ws:
            assert ws.socket.response is not None
            self.extensions = ws.socket.response.headers.get("Sec-WebSocket-Extensions", "")
            op_id = f"op-{uuid.uuid4().hex[:6]}"
            await ws.socket.send(
                json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables}})
            )

            async def collect() -> None:
                async for raw in ws.socket:
                    message = json.loads(raw)
                    if message.get("type") == "next":
                        assert message["id"] == op_id
                        self.frames.append(message)

            task = asyncio.create_task(collect())
            try:
                await eventually(lambda: len(self.frames) >= 1, timeout=10)
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def progress_webhook(darkroom: Darkroom, prediction_id: str, steps: int, padding: str = "") -> None:
    """A signed progress webhook at `steps` tenths, its logs after the log line `padding` (when given)."""
    progress = "".join(f"{step * 10:3d}%| | {step}/10\n" for step in range(1, steps + 1))
    logs = f"{padding}\n{progress}" if padding else progress
    body = json.dumps(
        {"id": prediction_id, "status": "processing", "logs": logs, "output": None, "error": None, "input": {}}
    ).encode()
    headers = sign_webhook(await darkroom.replicate.webhook_secret(), f"msg_{uuid.uuid4().hex}", body)
    response = await darkroom.http.post("/webhooks/replicate", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["result"] not in ("duplicate", "stale"), response.text


async def prediction_of(darkroom: Darkroom, generation_id: str) -> str:
    async with darkroom.runtime.sessions() as session:
        row = await session.get(Generation, decode_id(generation_id, "Generation"))
        assert row is not None and row.provider_id
        return row.provider_id


async def changes(darkroom: Darkroom, followers: list[Follower], prediction: str, count: int) -> None:
    for step in range(1, count + 1):
        await progress_webhook(darkroom, prediction, step)
        await eventually(partial(received, followers, 1 + step), timeout=10)


def received(followers: list[Follower], count: int) -> bool:
    return all(len(follower.frames) >= count for follower in followers)


@pytest.mark.parametrize(
    ("ws", "compression", "writer"),
    [
        ("websockets-sansio", False, "fan_out"),
        ("websockets-sansio", True, "fan_out"),
        pytest.param(
            "websockets",
            False,
            "operation",
            marks=pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated"),
        ),
    ],
    ids=["written-by-the-fan-out", "written-by-the-fan-out-compressed", "sent-by-each-operation"],
)
async def test_alike_subscribers_share_one_execution_and_one_payload_per_event(
    start_darkroom: Callable[..., Any], ws: str, compression: bool, writer: str
) -> None:
    # Under uvicorn's websockets-sansio protocol (what `darkroom serve` runs) one task per group writes every
    # member's frame, compressed for each socket when WS_COMPRESSION lets the client ask for it; under another
    # implementation each operation sends its own. All share the execution.
    async with start_darkroom(ws=ws, ws_compression=compression, **SILENT) as darkroom:
        generation = await start_generation(darkroom, "shared")
        prediction = await prediction_of(darkroom, generation["id"])
        async with contextlib.AsyncExitStack() as stack:
            alike = [
                await stack.enter_async_context(Follower().following(darkroom, FOLLOW, {"id": generation["id"]}))
                for _ in range(10)
            ]
            other = await stack.enter_async_context(Follower().following(darkroom, BRIEF, {"id": generation["id"]}))
            executed, shared, written = renders("executed"), renders("shared"), live_frames(writer)
            await changes(darkroom, [*alike, other], prediction, 3)
            # One execution per change for the ten alike, one per change for the other document.
            assert renders("executed") - executed == 6
            assert renders("shared") - shared == 27
            assert live_frames(writer) - written == 33
        assert {("permessage-deflate" in follower.extensions) for follower in [*alike, other]} == {compression}
        for follower in alike[1:]:
            assert [f["payload"] for f in follower.frames] == [f["payload"] for f in alike[0].frames]
        assert [f["payload"]["data"]["generation"]["progress"] for f in alike[0].frames][1:] == [0.1, 0.2, 0.3]
        assert set(other.frames[-1]["payload"]["data"]["generation"]) == {"id", "status", "progress"}


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_keys_subscribers_share_its_renders_and_another_key_sees_nothing(
    start_darkroom: Callable[..., Any],
) -> None:
    async with start_darkroom(**SILENT) as darkroom:
        first, second = await new_key(darkroom, "first"), await new_key(darkroom, "second")
        started = await first.query(START, {"model": IMAGE_MODEL, "input": {"prompt": "scoped"}})
        generation_id = started["data"]["startGeneration"]["generation"]["id"]
        prediction = await prediction_of(darkroom, generation_id)
        async with contextlib.AsyncExitStack() as stack:
            owners = [
                await stack.enter_async_context(
                    Follower().following(darkroom, FOLLOW, {"id": generation_id}, token=first.token)
                )
                for _ in range(3)
            ]
            executed = renders("executed")
            await changes(darkroom, owners, prediction, 2)
            assert renders("executed") - executed == 2
        # The other key may not follow it at all: it gets the answer a made-up id gets.
        async with ws_connect(darkroom.base_url, payload={"Authorization": f"Bearer {second.token}"}) as ws:
            answers = [payload async for payload in ws.subscribe(FOLLOW, {"id": generation_id}, timeout=10)]
        assert [error["extensions"]["code"] for error in answers[0]["errors"]] == ["NOT_FOUND"]


async def test_a_variable_the_selection_reads_keeps_subscribers_apart(start_darkroom: Callable[..., Any]) -> None:
    query = (
        "subscription($id: ID!, $withMedia: Boolean!) "
        "{ generation(id: $id) { id progress media @include(if: $withMedia) { id } } }"
    )
    async with start_darkroom(**SILENT) as darkroom:
        generation = await start_generation(darkroom, "variables")
        prediction = await prediction_of(darkroom, generation["id"])
        async with contextlib.AsyncExitStack() as stack:
            followers = [
                await stack.enter_async_context(
                    Follower().following(darkroom, query, {"id": generation["id"], "withMedia": with_media})
                )
                for with_media in (True, False, True)
            ]
            executed = renders("executed")
            await changes(darkroom, followers, prediction, 2)
            assert renders("executed") - executed == 4
        assert "media" in followers[0].frames[-1]["payload"]["data"]["generation"]
        assert "media" not in followers[1].frames[-1]["payload"]["data"]["generation"]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_socket_that_stops_reading_is_told_it_fell_behind_and_its_group_gets_everything(
    start_darkroom: Callable[..., Any],
) -> None:
    # Frames of about 1 MB (the logs) fill the client's and the kernel's buffers after a few (the stalled
    # client's receive buffer is held small); past them, what waits unsent on its socket soon exceeds
    # SUBSCRIBER_BUFFER_BYTES.
    query = "subscription($id: ID!) { generation(id: $id) { id progress logs } }"
    padding = base64.b64encode(random.Random(7).randbytes(750_000)).decode()  # 1 MB that does not compress
    steps = 10
    limits = {"subscriber_buffer_bytes": 65_536, "webhook_max_body_bytes": 2_000_000}
    async with start_darkroom(**limits, **SILENT) as darkroom:
        generation = await start_generation(darkroom, "stalled")
        prediction = await prediction_of(darkroom, generation["id"])
        variables = {"id": generation["id"]}
        async with (
            Follower().following(darkroom, query, variables) as reading,
            ws_connect(darkroom.base_url, max_queue=1, sock=small_receive_buffer(darkroom.base_url)) as stalled,
        ):
            await stalled.socket.send(
                json.dumps({"id": "slow", "type": "subscribe", "payload": {"query": query, "variables": variables}})
            )
            current = json.loads(await asyncio.wait_for(stalled.socket.recv(), timeout=10))
            assert current["type"] == "next"
            # From here the stalled client reads nothing: its library stops reading the socket.
            for step in range(1, steps + 1):
                await progress_webhook(darkroom, prediction, step, padding)
            await eventually(partial(received, [reading], 1 + steps), timeout=30)
            frames = []
            while True:
                message = json.loads(await asyncio.wait_for(stalled.socket.recv(), timeout=10))
                frames.append(message)
                if message["type"] == "complete":
                    break

    def progress(frames: list[dict[str, Any]]) -> list[float]:
        return [frame["payload"]["data"]["generation"]["progress"] for frame in frames]

    assert progress(reading.frames[1:]) == [step / 10 for step in range(1, steps + 1)]
    *delivered, told, complete = frames
    assert told["id"] == "slow" and told["payload"]["data"] is None
    assert [error["extensions"]["code"] for error in told["payload"]["errors"]] == ["SUBSCRIBER_OVERFLOW"]
    assert complete == {"id": "slow", "type": "complete"}
    # What it got before falling behind came in order, with no gap.
    assert 0 < len(delivered) < steps and progress(delivered) == [step / 10 for step in range(1, len(delivered) + 1)]


def test_a_shared_result_is_framed_around_its_one_encoding_for_every_protocol() -> None:
    data = RenderedData({"generation": {"id": "g", "progress": 0.5}})
    frames = [
        encode_frame({"id": "7", "type": "next", "payload": {"data": data}}),  # graphql-transport-ws
        encode_frame({"type": "data", "id": "7", "payload": {"data": data}}),  # graphql-ws
        encode_frame({"payload": {"data": data}}),  # a multipart part
    ]
    assert [json.loads(frame or "") for frame in frames] == [
        {"id": "7", "type": "next", "payload": {"data": data}},
        {"type": "data", "id": "7", "payload": {"data": data}},
        {"payload": {"data": data}},
    ]
    assert encode_frame({"id": "7", "type": "next", "payload": {"data": {"plain": 1}}}) is None
