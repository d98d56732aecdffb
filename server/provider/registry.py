"""`Providers`: the providers this process is configured with, by name, and which one new work goes to.

Every call about an existing job goes to the provider its generation records (`get`), so changing
the default never strands a running job; a generation recorded with a provider that is no longer
configured is answered PROVIDER_NOT_CONFIGURED rather than sent elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

from server.provider.errors import ProviderError
from server.provider.port import Provider


class ProviderNotConfiguredError(ProviderError):
    """A generation, a model or a webhook names a provider this process is not configured with."""

    code = "PROVIDER_NOT_CONFIGURED"


class Providers:
    """Several providers by name; `default` is the one a model without a provider prefix is looked for first."""

    def __init__(self, providers: list[Provider], default: str | None = None) -> None:
        if not providers:
            raise ValueError("at least one provider is needed")
        self._by_name = {provider.name: provider for provider in providers}
        if len(self._by_name) != len(providers):
            raise ValueError("two providers share a name")
        self.default = self._by_name[default] if default else providers[0]

    def get(self, name: str) -> Provider:
        """The provider called `name`; ProviderNotConfiguredError when there is none."""
        provider = self._by_name.get(name)
        if provider is None:
            raise ProviderNotConfiguredError(
                "Provider not configured", f"no provider {name[:40]!r} is configured here", status=None
            )
        return provider

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Provider]:
        """The default first, then the others in the order they were configured."""
        yield self.default
        yield from (provider for provider in self._by_name.values() if provider is not self.default)

    @property
    def names(self) -> list[str]:
        return [provider.name for provider in self]

    async def aclose(self) -> None:
        for provider in self._by_name.values():
            await provider.aclose()
