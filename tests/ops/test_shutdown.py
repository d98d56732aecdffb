"""Graceful shutdown: WebSocket clients get a close frame, and an in-flight download gives its claim back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from prometheus_client import REGISTRY
from sqlalchemy import select

from server.db.models import Media
from server.domain import MediaStatus
from server.storage.local import LocalStorage
from tests.ops.support import stored_keys
from tests.support.darkroom import Darkroom
from tests.support.file_hosts import allowing, file_host
from tests.support.flows import FOLLOW, start_generation
from tests.support.pending_media import pending_media
from tests.support.waiting import eventually


async def test_websocket_clients_receive_a_close_frame(start_darkroom: Callable[..., Any]) -> None:
    server = start_darkroom(poller_enabled=False, simulator_run_seconds=60)
    darkroom: Darkroom = await server.__aenter__()
    stopped = False
    try:
        generation = await start_generation(darkroom)
        baseline = REGISTRY.get_sample_value("darkroom_open_subscriptions")
        url = darkroom.base_url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
            await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] == "connection_ack"
            await socket.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": FOLLOW, "variables": {"id": generation["id"]}},
                    }
                )
            )
            first = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert first["type"] == "next"

            stopping = asyncio.create_task(server.__aexit__(None, None, None))
            stopped = True
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(socket.recv(), 15)
            await asyncio.wait_for(stopping, 20)
        assert closed.value.rcvd is not None, "the server closed the connection without a close frame"
        assert closed.value.rcvd.code in (1001, 1012)  # going away / service restart
        assert REGISTRY.get_sample_value("darkroom_open_subscriptions") == baseline
    finally:
        if not stopped:
            await server.__aexit__(None, None, None)


async def test_an_in_flight_download_releases_its_claim(start_darkroom: Callable[..., Any]) -> None:
    # It announces a large file, sends its first bytes and stalls: the download is in flight at shutdown.
    stalling = file_host(
        b"\x89PNG\r\n\x1a\n" + b"\0" * 1000, content_type="image/png", name="slow.png", declared=1_000_000
    )
    async with stalling as host:
        url, requested = host.url, host.requested
        server = start_darkroom(poller_enabled=False, download_timeout_seconds=120, replicate_file_hosts=allowing(url))
        darkroom: Darkroom = await server.__aenter__()
        try:
            media_id = await pending_media(darkroom, url)
            await asyncio.wait_for(requested.wait(), 20)

            async def claimed() -> bool:
                async with darkroom.runtime.sessions() as session:
                    row = await session.get(Media, media_id)
                    return row is not None and row.status == MediaStatus.DOWNLOADING

            await eventually(claimed)
        finally:
            await server.__aexit__(None, None, None)

        async with darkroom.runtime.sessions() as session:
            row = (await session.scalars(select(Media).where(Media.id == media_id))).one()
        await darkroom.runtime.engine.dispose()
        assert row.status == MediaStatus.PENDING
        assert (row.claim_token, row.claimed_until) == (None, None)
        assert row.download_attempts == 0  # the interrupted attempt is not held against it
        assert await stored_keys(darkroom) == set()
        assert isinstance(darkroom.runtime.storage, LocalStorage)
        assert list((darkroom.runtime.storage.root / ".tmp").iterdir()) == []
