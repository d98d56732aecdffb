"""The /graphql route: Strawberry's Litestar controller, assembled from Darkroom's parts.

- GraphQL over HTTP, uploads and their limits: over_http.py;
- GraphiQL's page: graphiql.py;
- WebSockets (both protocols), authentication on connect and live delivery: live/.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Request, Response
from strawberry.litestar import make_graphql_controller
from strawberry.schema import BaseSchema
from strawberry.subscriptions import (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types.unset import UNSET, UnsetType

from server.graphql.context import Context, context_getter
from server.graphql.graphiql import graphiql_page
from server.graphql.live.connect import accept_socket
from server.graphql.live.protocols import ForgettingGraphQLWSHandler, PingingTransportWSHandler
from server.graphql.live.rendering import encode_frame
from server.graphql.over_http import GraphQLOverHTTP, bounded_request_adapter
from server.settings import Settings


def build_graphql_controller(schema: BaseSchema, settings: Settings) -> type:
    controller = make_graphql_controller(
        schema,
        path="/graphql",
        graphql_ide="graphiql" if settings.graphql.graphiql_enabled else None,
        keep_alive=True,
        keep_alive_interval=settings.graphql.keep_alive_seconds,
        context_getter=context_getter,
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL),
        connection_init_wait_timeout=timedelta(seconds=settings.graphql.connection_init_timeout_seconds),
        allowed_origins=settings.allowed_cors_origins(),
        multipart_uploads_enabled=True,
    )

    class DarkroomGraphQLController(GraphQLOverHTTP, controller):  # type: ignore[valid-type,misc]
        graphql_transport_ws_handler_class = PingingTransportWSHandler
        graphql_ws_handler_class = ForgettingGraphQLWSHandler
        max_body_bytes = settings.graphql.max_body_bytes
        max_tokens = settings.graphql.max_tokens
        request_adapter_class = bounded_request_adapter(settings.graphql.max_body_bytes)
        # A multipart upload carries a file of up to UPLOAD_MAX_BYTES beside its operation; any other body is
        # held to GRAPHQL_MAX_BODY_BYTES by the request adapter.
        request_max_body_size = settings.graphql.max_body_bytes + settings.uploads.max_bytes

        def encode_json(self, data: object) -> str | bytes:
            # A subscription event shared by many subscribers is encoded once, not once per socket.
            frame = encode_frame(data)
            return frame if frame is not None else super().encode_json(data)

        async def render_graphql_ide(self, request: Request[Any, Any, Any]) -> Response[str]:
            return graphiql_page()

        async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:  # type: ignore[override]
            await accept_socket(context)
            return UNSET

    return DarkroomGraphQLController
