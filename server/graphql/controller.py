"""The /graphql route: Strawberry's Litestar controller, with API keys and keep-alive on both WebSocket protocols.

Authentication: an HTTP request without a valid `Authorization: Bearer <token>` (when one is needed)
is answered 401 with a GraphQL-shaped body, `errors[0].extensions.code == "UNAUTHENTICATED"`, before
anything is parsed or run; GraphiQL's page itself still loads, so its headers tab can carry the key. A
WebSocket gives the token in its `connection_init` payload (`Authorization`, `authorization` or `token`;
the handshake's own Authorization header is the fallback) and is refused with the protocol's answer:
close code 4403 on graphql-transport-ws, `connection_error` and a close on graphql-ws. Accepted sockets
are registered with the API key service, which closes them (4403) when their key is revoked.

Strawberry pings idle `graphql-ws` sockets ("ka") when keep-alive is on, but sends nothing on
`graphql-transport-ws`; mobile networks and proxies then drop idle subscriptions. The handler below
adds the protocol's own server `ping` at the same interval (clients answer with `pong`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import timedelta
from functools import partial
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import WebSocketDisconnect
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.litestar import make_graphql_controller
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler, Operation
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.unset import UNSET, UnsetType
from uvicorn.protocols.utils import ClientDisconnected

from server.graphql.context import Context, context_getter
from server.graphql.shared_render import LIVE_SINK, LiveSink, encode_frame
from server.services.api_keys import AuthError, bearer_token
from server.settings import Settings

logger = logging.getLogger(__name__)

# Close code for a socket whose key was revoked (graphql-transport-ws's Forbidden, used on both protocols).
CLOSE_FORBIDDEN = 4403


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


class PingingTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        # Live events of this operation are sent straight to the socket (see shared_render.py).
        LIVE_SINK.set(LiveSink.for_operation("next", operation.id, partial(_send_frame, self.websocket)))
        await super().run_operation(operation)

    async def handle(self) -> None:
        pinger = asyncio.create_task(self._ping_while_open(), name="graphql-transport-ws-ping")
        try:
            await super().handle()
        finally:
            _forget_socket(self.context)
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


class ForgettingGraphQLWSHandler(BaseGraphQLWSHandler[Any, Any]):
    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        LIVE_SINK.set(LiveSink.for_operation("data", operation_id, partial(_send_frame, self.websocket)))
        await super().handle_async_results(operation_id, query, operation_name, variables)

    async def handle(self) -> None:
        try:
            await super().handle()
        finally:
            _forget_socket(self.context)


def socket_token(context: Context) -> str | None:
    """The token a socket presents: in its connection_init payload, else on its handshake."""
    params = context.connection_params or {}
    headers = params.get("headers")
    sources = [params, headers] if isinstance(headers, dict) else [params]
    for source in sources:
        for name in ("Authorization", "authorization", "token"):
            if source.get(name) is not None:
                return bearer_token(source[name], scheme_required=False)
    if context.websocket is not None:
        return bearer_token(context.websocket.headers.get("authorization"))
    return None


def unauthenticated(message: str) -> Response[dict[str, Any]]:
    return Response(
        {"data": None, "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
        status_code=401,
        media_type=MediaType.JSON,
        headers={"WWW-Authenticate": 'Bearer realm="darkroom"'},
    )


def build_graphql_controller(schema: BaseSchema, settings: Settings) -> type:
    controller = make_graphql_controller(
        schema,
        path="/graphql",
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        keep_alive=True,
        keep_alive_interval=settings.graphql_keep_alive_seconds,
        context_getter=context_getter,
        connection_init_wait_timeout=timedelta(seconds=30),
        allowed_origins=settings.allowed_cors_origins(),
    )

    class DarkroomGraphQLController(controller):  # type: ignore[valid-type,misc]
        graphql_transport_ws_handler_class = PingingTransportWSHandler
        graphql_ws_handler_class = ForgettingGraphQLWSHandler

        def encode_json(self, data: object) -> str | bytes:
            # A subscription event shared by many subscribers is encoded once, not once per socket.
            frame = encode_frame(data)
            return frame if frame is not None else super().encode_json(data)

        def decode_json(self, data: str | bytes) -> object:
            # A body that is not UTF-8 is malformed JSON (400), not a server error.
            try:
                return json.loads(data)
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError("the body is not UTF-8", "", 0) from exc

        async def execute_request(self, request: Request[Any, Any, Any], context: Any, root_value: Any) -> Any:
            if (
                isinstance(context, Context)
                and context.auth_error is not None
                and not self.should_render_graphql_ide(self.request_adapter_class(request))
            ):
                return unauthenticated(context.auth_error)
            return await super().execute_request(request, context, root_value)

        async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
            runtime = context.runtime
            try:
                context.viewer = await runtime.api_keys.viewer_for(socket_token(context))
            except AuthError as exc:
                logger.info("WebSocket refused", extra={"reason": str(exc)})
                raise ConnectionRejectionError({"message": str(exc), "code": "UNAUTHENTICATED"}) from None
            websocket = context.websocket
            if websocket is not None:

                async def close(reason: str) -> None:
                    await websocket.close(code=CLOSE_FORBIDDEN, reason=reason)

                context.socket_handle = runtime.api_keys.register_socket(context.viewer, close)
            return UNSET

    return DarkroomGraphQLController
