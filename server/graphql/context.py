"""The per-request (or per-socket) GraphQL context: the runtime, the viewer and fresh loaders."""

from __future__ import annotations

from typing import Any

from litestar.datastructures import State
from litestar.types import Scope
from strawberry.litestar import BaseContext
from strawberry.types import Info as StrawberryInfo

from server.graphql.loaders import Loaders
from server.runtime import Runtime
from server.services.viewer import Viewer


class Context(BaseContext, kw_only=True):
    runtime: Runtime
    viewer: Viewer
    loaders: Loaders

    def reset_loaders(self) -> None:
        """Forget cached rows: a socket's context outlives many events, each must see fresh state."""
        self.loaders = Loaders(self.runtime.sessions)


Info = StrawberryInfo[Context, None]


async def context_getter(state: State, scope: Scope) -> Context:
    runtime: Runtime = state.runtime
    viewer: Any = scope.get("state", {}).get("viewer") or Viewer.anonymous()
    return Context(runtime=runtime, viewer=viewer, loaders=Loaders(runtime.sessions))
