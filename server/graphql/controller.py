"""The /graphql route: Strawberry's Litestar controller, with keep-alive on both WebSocket protocols.

Strawberry pings idle `graphql-ws` sockets ("ka") when keep-alive is on, but sends nothing on
`graphql-transport-ws`; mobile networks and proxies then drop idle subscriptions. The handler below
adds the protocol's own server `ping` at the same interval (clients answer with `pong`).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.litestar import make_graphql_controller
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler

from server.graphql.context import context_getter
from server.settings import Settings


class PingingTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    async def handle(self) -> None:
        pinger = asyncio.create_task(self._ping_while_open(), name="graphql-transport-ws-ping")
        try:
            await super().handle()
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

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


def build_graphql_controller(schema: BaseSchema, settings: Settings) -> type:
    controller = make_graphql_controller(
        schema,
        path="/graphql",
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        keep_alive=True,
        keep_alive_interval=settings.graphql_keep_alive_seconds,
        context_getter=context_getter,
        connection_init_wait_timeout=timedelta(seconds=30),
    )

    class DarkroomGraphQLController(controller):  # type: ignore[valid-type,misc]
        graphql_transport_ws_handler_class = PingingTransportWSHandler

    return DarkroomGraphQLController
