"""What the access-control tests share: clients that carry a key, and raw WebSocket handshakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.darkroom import Darkroom


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class KeyClient:
    """A GraphQL client that sends one API key on every request."""

    def __init__(self, darkroom: Darkroom, token: str) -> None:
        self.darkroom = darkroom
        self.token = token
        self.base_url = darkroom.base_url

    async def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.darkroom.query(query, variables, headers=bearer(self.token))


async def new_key(darkroom: Darkroom, name: str) -> KeyClient:
    created = await darkroom.runtime.api_keys.create(name)
    return KeyClient(darkroom, created.token)


async def post(darkroom: Darkroom, query: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await darkroom.http.post("/graphql", json={"query": query}, headers=headers or {})


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/graphql"


@asynccontextmanager
async def raw_socket(
    base_url: str,
    protocol: str = "graphql-transport-ws",
    headers: dict[str, str] | None = None,
    origin: str | None = None,
) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(
        ws_url(base_url),
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=10,
    ) as socket:
        yield socket


async def init(socket: ClientConnection, payload: dict[str, Any] | None) -> dict[str, Any]:
    """Send connection_init and return the server's answer (connection_ack, connection_error...)."""
    await socket.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
    return dict(json.loads(await asyncio.wait_for(socket.recv(), timeout=10)))


async def closed_with(socket: ClientConnection, *, timeout: float = 20.0) -> int | None:
    """Read (answering pings) until the server closes the socket; its close code."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await socket.recv())
                if message.get("type") == "ping":
                    await socket.send(json.dumps({"type": "pong"}))
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def operation_messages(
    socket: ClientConnection, query: str, variables: dict[str, Any] | None = None, *, op_id: str = "1"
) -> list[dict[str, Any]]:
    """Run one graphql-transport-ws operation to its end: every message sent for it, `complete` included."""
    await socket.send(
        json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
    )
    messages: list[dict[str, Any]] = []
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), timeout=20))
        if message.get("type") == "ping":
            await socket.send(json.dumps({"type": "pong"}))
            continue
        if message.get("id") != op_id:
            continue
        messages.append(message)
        if message["type"] in ("complete", "error"):
            return messages
