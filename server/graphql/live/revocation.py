"""A subscription streamed over HTTP (multipart/mixed) ends when its API key is revoked, as a WebSocket does.

The stream is registered with the API key service like an accepted socket, so the same re-read of the
keys (at once in this process, within AUTH_REFRESH_SECONDS from another) ends it. Its last part is a
transport-level error, as the multipart subscription protocol has it (`{"payload": null, "errors": [...]}`,
code FORBIDDEN, the reason the WebSocket's 4403 close carries), then the closing boundary; the operation
behind it is canceled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Any

from strawberry.http.streaming import MultipartSubscriptionTransport

from server.services.access.api_keys import ApiKeyService
from server.services.access.viewer import Viewer

logger = logging.getLogger(__name__)

FORBIDDEN = "FORBIDDEN"


def revoked_part(reason: str) -> str:
    """The stream's last part and closing boundary: the key behind it no longer holds."""
    transport = MultipartSubscriptionTransport()
    error = {"payload": None, "errors": [{"message": reason, "extensions": {"code": FORBIDDEN}}]}
    return transport.encode_multipart_data(error, json.dumps) + transport.encode_complete()


async def ends_on_revocation(
    parts: AsyncIterable[str | bytes], api_keys: ApiKeyService, viewer: Viewer
) -> AsyncGenerator[str | bytes, None]:
    """`parts` (a multipart stream's text) until they end, or until `viewer`'s key is revoked."""
    revoked: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def close(reason: str) -> None:
        if not revoked.done():
            revoked.set_result(reason)

    handle = api_keys.register_socket(viewer, close)
    iterator: AsyncIterator[str | bytes] = aiter(parts)
    following: asyncio.Future[str | bytes] | None = None
    try:
        while True:
            following = asyncio.ensure_future(anext(iterator))
            waiting: set[asyncio.Future[Any]] = {following, revoked}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                reason = revoked.result()
                await _cancel(following)
                logger.info("multipart subscription ended: %s", reason)
                yield revoked_part(reason)
                return
            try:
                part = following.result()
            except StopAsyncIteration:
                return
            yield part
    finally:
        api_keys.forget_socket(handle)
        revoked.cancel()
        if following is not None:
            await _cancel(following)  # the client went away while a part was awaited
        close_stream: Any = getattr(iterator, "aclose", None)
        if close_stream is not None:
            await close_stream()


async def _cancel(pending: asyncio.Future[str | bytes]) -> None:
    """Cancel the wait for the next part, and let it finish: the stream behind it is then closed."""
    if pending.done():
        return
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await pending
