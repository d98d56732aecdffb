"""A bare HTTP file host for download tests: it can announce more bytes than it sends, then stall or cut,
or trickle the file out slowly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

# How many pieces a trickled body is sent in.
TRICKLE_PIECES = 50


@dataclass
class FileHost:
    url: str
    requested: asyncio.Event = field(default_factory=asyncio.Event)
    # With a `declared` length past the body: set it to drop the connection mid-file (unset: it stalls).
    cut: asyncio.Event = field(default_factory=asyncio.Event)
    requests: int = 0  # the GETs answered so far


def allowing(*urls: str) -> str:
    """REPLICATE_FILE_HOSTS for files at `urls`: their origins (scheme, host and port), as the downloader
    compares them."""
    return ",".join(sorted({f"{url.split('/')[0]}//{url.split('/')[2]}" for url in urls}))


@contextlib.asynccontextmanager
async def file_host(
    body: bytes, *, content_type: str, name: str, declared: int | None = None, trickle_seconds: float = 0.0
) -> AsyncIterator[FileHost]:
    """Serve `body` at /`name` to every GET. With `declared` larger than the body, the response announces
    that many bytes, sends the body, then holds the connection open until `cut` is set. With
    `trickle_seconds`, the body goes out in small pieces spread over that long."""
    handlers: set[asyncio.Task[Any]] = set()
    host: FileHost | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        assert host is not None
        try:
            await reader.readuntil(b"\r\n\r\n")
            host.requested.set()
            host.requests += 1
            length = declared or len(body)
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode()
            )
            pieces = TRICKLE_PIECES if trickle_seconds else 1
            step = max(1, -(-len(body) // pieces))
            for start in range(0, len(body), step):
                writer.write(body[start : start + step])
                await writer.drain()
                if trickle_seconds and start + step < len(body):
                    await asyncio.sleep(trickle_seconds / pieces)  # pacing the bytes, not waiting on anything
            if declared:
                await host.cut.wait()
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host = FileHost(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/{name}")
    try:
        yield host
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
