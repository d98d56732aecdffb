"""A Darkroom server running inside the test, as the tests hold it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from server.provider.replicate import ReplicateProvider
from server.settings import Settings
from tests.support.graphql import gql

if TYPE_CHECKING:
    from server.runtime import Runtime


@dataclass
class Darkroom:
    """A running server: its URL, an HTTP client on it, and its runtime for looking inside."""

    base_url: str
    settings: Settings
    http: httpx.AsyncClient
    runtime: Runtime

    @property
    def simulator(self) -> Any:
        return self.runtime.simulators.get("replicate")

    @property
    def replicate(self) -> ReplicateProvider:
        """The runtime's Replicate provider (or the simulator playing it)."""
        provider = self.runtime.providers.get("replicate")
        assert isinstance(provider, ReplicateProvider), provider
        return provider

    async def query(self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        return await gql(self.http, query, variables, **kwargs)
