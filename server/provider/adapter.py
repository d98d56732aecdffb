"""`Adapter`: what composing a process needs of a provider's package, beside the port its provider speaks.

Each package under server/provider/ that holds a provider declares one as ``ADAPTER`` in its `adapter`
module; `server.provider.adapters` finds them, so the settings, the runtime, the app, the worker and the
CLI compose whichever providers there are without naming any.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from server.provider.port import Provider
from server.provider.types import RequestHook
from server.settings_group import SettingsGroup

if TYPE_CHECKING:
    from server.settings import Settings
    from server.simulator.service import SimulatorCore
    from server.simulator.serving import TokenRequired


class Adapter(Protocol):
    """One provider's package, as the composition uses it."""

    # The provider's name (its port's `name`), and where it comes among the others when PROVIDERS does not
    # say: the first configured is the default.
    name: str
    order: int
    # Its settings group: a field of Settings by the provider's name.
    settings_group: type[SettingsGroup]
    # Where this process mounts its simulator, when it does.
    simulator_path: str

    def has_token(self, settings: Settings) -> bool:
        """Whether its own account is configured (else its simulator plays it)."""
        ...

    def embedded(self, settings: Settings) -> bool:
        """Whether this process mounts its simulator: no token and no other simulator to call."""
        ...

    def embedded_simulator(self, settings: Settings, token_required: TokenRequired | None) -> SimulatorCore:
        """A new simulator of it to mount at `simulator_path` (its token and keys this process's own)."""
        ...

    def build(
        self, settings: Settings, *, simulator: SimulatorCore | None = None, on_request: RequestHook | None = None
    ) -> Provider:
        """The provider `settings` describe; calling `simulator` (mounted here) when one is given."""
        ...

    def api_url(self, settings: Settings) -> str:
        """Where its API is called, for the logs."""
        ...

    def file_hosts(self, settings: Settings) -> list[str]:
        """The origin patterns its output files may be downloaded from (its simulator's included)."""
        ...

    def worker_problem(self, settings: Settings) -> str | None:
        """Why a worker (which mounts no simulator) cannot reach it as `settings` say; None when it can."""
        ...

    def serve_simulator(
        self, settings: Settings, host: str, port: int, public_url: str | None, *, allow_private_inputs: bool
    ) -> None:
        """Run its simulator on its own until interrupted (``darkroom simulator --provider NAME``)."""
        ...
