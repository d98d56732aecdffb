"""Where the socket caps (server.services.access.socket_caps) meet the /graphql route.

Refusals, on both WebSocket protocols:
- more than MAX_PENDING_SOCKETS sockets waiting for connection_init: the new socket is closed at once with
  1013 (Try Again Later);
- a key past MAX_SOCKETS_PER_KEY open streams: its new socket is closed at its connection_init with 1008
  (Policy Violation), and a multipart/mixed subscription is answered 429.
graphql-ws has no connection_init timeout of its own: a socket still pending after
GRAPHQL_CONNECTION_INIT_TIMEOUT_SECONDS is closed with 4408, as graphql-transport-ws does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

from cross_web import HTTPException
from strawberry.types import SubscriptionExecutionResult

from server.services.access.socket_caps import SocketSlot

logger = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INIT_TIMEOUT = 4408
TOO_MANY_PENDING = "too many sockets are waiting for connection_init (MAX_PENDING_SOCKETS)"
TOO_MANY_FOR_KEY = "too many open subscription streams for this API key (MAX_SOCKETS_PER_KEY)"


class SocketRefused(Exception):
    """A socket to close with `code` and `reason` rather than acknowledge."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@contextlib.asynccontextmanager
async def admitted_socket(context: Any, websocket: Any, *, init_timeout: bool = False) -> AsyncIterator[bool]:
    """Hold a place for the socket while the block runs; False (the socket already closed) when none is left.

    With `init_timeout`, a socket still pending after GRAPHQL_CONNECTION_INIT_TIMEOUT_SECONDS is closed."""
    runtime = context.runtime
    slot = runtime.socket_caps.admit()
    if slot is None:
        logger.info("WebSocket refused: %s", TOO_MANY_PENDING)
        await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason=TOO_MANY_PENDING)
        yield False
        return
    context.socket_slot = slot
    timer = None
    if init_timeout:
        timer = asyncio.create_task(_close_if_pending(slot, websocket, runtime.settings), name="ws-init-timeout")
    try:
        yield True
    finally:
        slot.release()
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer


async def _close_if_pending(slot: SocketSlot, websocket: Any, settings: Any) -> None:
    await asyncio.sleep(settings.graphql.connection_init_timeout_seconds)
    if slot.pending:
        with contextlib.suppress(Exception):
            await websocket.close(code=CLOSE_INIT_TIMEOUT, reason="Connection initialisation timeout")


def initialised(context: Any) -> None:
    """The socket sent connection_init: it leaves the pending ones."""
    slot: SocketSlot | None = getattr(context, "socket_slot", None)
    if slot is not None:
        slot.initialised()


def claim_for_key(context: Any) -> None:
    """Count the socket against its (now known) key; SocketRefused when the key has no place left."""
    slot: SocketSlot | None = getattr(context, "socket_slot", None)
    if slot is not None and not slot.claim(context.viewer):
        logger.info("WebSocket refused: %s", TOO_MANY_FOR_KEY)
        raise SocketRefused(CLOSE_POLICY_VIOLATION, TOO_MANY_FOR_KEY)


def counted_stream(context: Any, stream: SubscriptionExecutionResult) -> SubscriptionExecutionResult:
    """A multipart/mixed subscription's stream, counted against its key while it runs; 429 when it has no place."""
    slot = context.runtime.socket_caps.stream(context.viewer)
    if slot is None:
        raise HTTPException(429, TOO_MANY_FOR_KEY)
    return CountedStream(stream, slot)


class CountedStream:
    """`stream`, giving its place back when it ends, is closed, or is dropped unread (a client gone before the
    response started: a generator never started would run no `finally`)."""

    def __init__(self, stream: SubscriptionExecutionResult, slot: SocketSlot) -> None:
        self._stream = stream
        self._slot = slot
        weakref.finalize(self, slot.release)

    def __aiter__(self) -> CountedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except BaseException:
            self._slot.release()
            raise

    async def aclose(self) -> None:
        self._slot.release()
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()
