"""Minimal GraphQL clients for the tests: HTTP POST, and graphql-transport-ws over a real WebSocket."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """POST a query; returns the whole response body (data and errors)."""
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, **kwargs)
    assert response.status_code == 200, response.text
    return dict(response.json())


def data(response: dict[str, Any]) -> dict[str, Any]:
    """The `data` of a GraphQL response that must have no errors."""
    assert not response.get("errors"), response.get("errors")
    result: dict[str, Any] = response["data"]
    return result


class WSClient:
    """One graphql-transport-ws connection; `subscribe` yields each `next` payload until `complete`."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self._ids = itertools.count(1)

    async def subscribe(
        self, query: str, variables: dict[str, Any] | None = None, *, timeout: float = 30.0
    ) -> AsyncGenerator[dict[str, Any], None]:
        op_id = str(next(self._ids))
        await self.socket.send(
            json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
        )
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), timeout=timeout))
            if message.get("type") in ("ping", "pong"):
                if message["type"] == "ping":
                    await self.socket.send(json.dumps({"type": "pong"}))
                continue
            if message.get("id") != op_id:
                continue
            if message["type"] == "next":
                yield message["payload"]
            elif message["type"] == "error":
                raise AssertionError(f"subscription error: {message['payload']}")
            elif message["type"] == "complete":
                return


@asynccontextmanager
async def ws_connect(
    base_url: str, *, payload: dict[str, Any] | None = None, protocol: str = "graphql-transport-ws", **options: Any
) -> AsyncIterator[WSClient]:
    """A socket past connection_ack; `options` go to websockets.connect (max_queue, say)."""
    url = base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(
        url,
        subprotocols=[protocol],  # type: ignore[list-item]
        open_timeout=10,
        **options,
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
        ack = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
        assert ack["type"] == "connection_ack", ack
        yield WSClient(socket)


async def multipart_messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Each part of a multipart/mixed subscription stream, in order, until the closing boundary (heartbeats,
    empty parts, are skipped)."""
    found = re.search(r'boundary="?([^";,]+)', response.headers["content-type"])
    assert found, response.headers
    boundary = found.group(1)
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while True:
            start = buffer.find(f"--{boundary}")
            if start < 0:
                break
            if buffer.startswith(f"--{boundary}--", start):
                return
            end = buffer.find(f"--{boundary}", start + 2)
            if end < 0:
                break
            part, buffer = buffer[start + len(boundary) + 2 : end], buffer[end:]
            body = part.split("\r\n\r\n", 1)[1].strip() if "\r\n\r\n" in part else ""
            if body and (message := json.loads(body)):
                yield message


async def multipart_payloads(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Each part's `payload` of a multipart/mixed subscription stream (see multipart_messages)."""
    async for message in multipart_messages(response):
        if message.get("payload") is not None:
            yield message["payload"]
