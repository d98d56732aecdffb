"""The per-request (or per-socket) GraphQL context: the runtime, the viewer and fresh loaders.

An HTTP request is authenticated here, from its Authorization header; a refused one carries
`auth_error` and is answered 401 by the controller before anything runs. A WebSocket starts as
nobody and becomes its key's viewer in `connection_init` (see the controller's `on_ws_connect`).
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import Headers, State
from litestar.types import Scope
from strawberry.litestar import BaseContext
from strawberry.types import Info as StrawberryInfo

from server.graphql.loaders import Loaders
from server.runtime import Runtime
from server.services.access.api_keys import AuthError, bearer_token
from server.services.access.socket_caps import SocketSlot
from server.services.access.viewer import Viewer


class Context(BaseContext, kw_only=True):
    runtime: Runtime
    viewer: Viewer
    loaders: Loaders
    auth_error: str | None = None
    connection_params: dict[str, Any] | None = None
    socket_handle: int | None = None
    socket_slot: SocketSlot | None = None  # the socket's place under the socket caps

    def reset_loaders(self) -> None:
        """Forget cached rows: a socket's context outlives many events, each must see fresh state."""
        self.loaders = Loaders(self.runtime.sessions)


Info = StrawberryInfo[Context, None]


async def context_getter(state: State, scope: Scope) -> Context:
    runtime: Runtime = state.runtime
    context = Context(runtime=runtime, viewer=Viewer.nobody(), loaders=Loaders(runtime.sessions))
    if scope["type"] != "http":
        return context
    try:
        token = bearer_token(Headers.from_scope(scope).get("authorization"))
        context.viewer = await runtime.api_keys.viewer_for(token)
    except AuthError as exc:
        context.auth_error = str(exc)
    return context
