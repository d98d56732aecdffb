"""Serve an ASGI app over real HTTP with uvicorn, on a free loopback port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import uvicorn


def _ephemeral_ports() -> range:
    """The ports the kernel hands to outgoing connections; 32768-60999 unless configured otherwise."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


# A port the kernel picks (bind to 0) is an ephemeral one: between our check and the server's bind, any
# outgoing connection of the busy test run may take it. Ports below the ephemeral range are only ever
# taken by a listener, so a random free one there stays free until the server binds it.
_EPHEMERAL = _ephemeral_ports()
_CANDIDATES = range(max(_EPHEMERAL.start - 12_000, 1024), _EPHEMERAL.start)
# Its own source: the shared `random` is seeded by property tests, which would make every pick the same.
_PICK = random.SystemRandom()


def free_port() -> int:
    """A port nothing listens on, outside the range outgoing connections draw from."""
    for _ in range(200):
        port = _PICK.choice(_CANDIDATES)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@contextlib.asynccontextmanager
async def live_server(
    app: Any,
    port: int | None = None,
    *,
    lifespan: Literal["auto", "on", "off"] = "on",
    ws: Literal["websockets", "websockets-sansio"] = "websockets-sansio",
    per_message_deflate: bool = False,
) -> AsyncIterator[str]:
    """Run `app` until the block exits; yields its base URL, e.g. http://127.0.0.1:54321.

    `ws` is uvicorn's WebSocket implementation: websockets-sansio, as `darkroom serve` runs it, by default.
    `per_message_deflate`: whether WebSockets offer compression (`darkroom serve` follows WS_COMPRESSION).
    """
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan=lifespan,
        log_level="warning",
        ws=ws,
        ws_per_message_deflate=per_message_deflate,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
            raise RuntimeError("the server stopped before it started")
        if not server.started:
            raise RuntimeError("the server did not start in 5 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    """The whole body of an ASGI HTTP request, for the tests' own small ASGI apps."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
