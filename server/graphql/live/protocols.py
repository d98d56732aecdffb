"""The two WebSocket protocols' handlers: Strawberry's, with admission, keep-alive and the live sink.

Strawberry pings idle `graphql-ws` sockets ("ka") when keep-alive is on, but sends nothing on
`graphql-transport-ws`; mobile networks and proxies then drop idle subscriptions. The transport-ws
handler adds the protocol's own server `ping` at the same interval (clients answer with `pong`).
Each operation's task gets a LiveSink (sink.py), so that its live events can skip Strawberry's
per-subscriber pipeline (delivery.py). On shutdown uvicorn closes every socket with 1012 (service
restart), which clients take as "reconnect and resume from your cursor".
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from typing import Any

from litestar.exceptions import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from uvicorn.protocols.utils import ClientDisconnected

from server.graphql.context import Context
from server.graphql.live.admission import SocketRefused, admitted_socket, initialised
from server.graphql.live.sink import LIVE_SINK, LiveSink
from server.graphql.live.socket_writer import SocketWriter

# Close code for a second connection_init (graphql-transport-ws's own, used on graphql-ws too).
CLOSE_TOO_MANY_INITS = 4429


def _forget_socket(context: Any) -> None:
    if isinstance(context, Context) and context.socket_handle is not None:
        context.runtime.api_keys.forget_socket(context.socket_handle)
        context.socket_handle = None


async def _send_frame(websocket: Any, text: str) -> None:
    """One text frame straight to the socket; a socket that went away ends the operation's task quietly."""
    try:
        await websocket.ws.send_data(data=text)
    except (WebSocketDisconnect, ClientDisconnected, WebSocketDisconnected, OSError):
        raise asyncio.CancelledError from None


def _live_sink(message_type: str, operation_id: str, websocket: Any) -> LiveSink:
    """Where the operation's live events go: written directly when the server allows it, else sent frame by frame."""
    writer = SocketWriter.of(websocket.ws.scope)
    return LiveSink.for_operation(message_type, operation_id, partial(_send_frame, websocket), writer)


class PingingTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        # Live events of this operation are sent straight to the socket (see delivery.py).
        LIVE_SINK.set(_live_sink("next", operation.id, self.websocket))
        await super().run_operation(operation)

    async def handle(self) -> None:
        async with admitted_socket(self.context, self.websocket) as admitted:
            if not admitted:
                return
            pinger = asyncio.create_task(self._ping_while_open(), name="graphql-transport-ws-ping")
            try:
                await super().handle()
            finally:
                _forget_socket(self.context)
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger

    async def handle_connection_init(self, message: Any) -> None:
        initialised(self.context)
        try:
            await super().handle_connection_init(message)
        except SocketRefused as exc:
            await self.websocket.close(code=exc.code, reason=exc.reason)

    async def _ping_while_open(self) -> None:
        interval = float(getattr(self.view, "keep_alive_interval", None) or 15)
        while True:
            await asyncio.sleep(interval)
            if not self.connection_acknowledged:
                continue
            try:
                await self.send_message({"type": "ping"})
            except (WebSocketDisconnected, RuntimeError, OSError):
                return


class ForgettingGraphQLWSHandler(BaseGraphQLWSHandler[Any, Any]):
    init_received = False

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        LIVE_SINK.set(_live_sink("data", operation_id, self.websocket))
        await super().handle_async_results(operation_id, query, operation_name, variables)

    async def handle(self) -> None:
        async with admitted_socket(self.context, self.websocket, init_timeout=True) as admitted:
            if not admitted:
                return
            try:
                await super().handle()
            finally:
                _forget_socket(self.context)

    async def handle_connection_init(self, message: Any) -> None:
        # graphql-ws would take connection_init again and again, each a key lookup, a registered socket
        # and a keep-alive task more: a second one closes the socket, as graphql-transport-ws does.
        if self.init_received:
            await self.websocket.close(code=CLOSE_TOO_MANY_INITS, reason="Too many initialisation requests")
            return
        self.init_received = True
        initialised(self.context)
        try:
            await super().handle_connection_init(message)
        except SocketRefused as exc:
            await self.send_message({"type": "connection_error", "payload": {"message": exc.reason}})
            await self.websocket.close(code=exc.code, reason=exc.reason)
