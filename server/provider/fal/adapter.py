"""fal's package as the composition uses it (`server.provider.adapter.Adapter`): its settings, how its
provider is built (fal with FAL_KEY, else the simulator playing it), and its simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.origins import origin_of, written_origin
from server.provider.fal.provider import FalProvider
from server.provider.fal.settings import FalHosts, FalSettings
from server.provider.types import RequestHook

if TYPE_CHECKING:
    from server.provider.fal.simulator import FalSimulator, FalSimulatorConfig
    from server.settings import Settings
    from server.simulator.service import SimulatorCore
    from server.simulator.serving import TokenRequired

# Where `darkroom serve` mounts the simulator when it plays fal.
SIMULATOR_PATH = "/fal-simulator"


class FalAdapter:
    name = "fal"
    order = 1
    settings_group = FalSettings
    simulator_path = SIMULATOR_PATH

    def has_token(self, settings: Settings) -> bool:
        return not settings.group(FalSettings).simulated

    def embedded(self, settings: Settings) -> bool:
        group = settings.group(FalSettings)
        return group.simulated and not group.base_url

    def hosts(self, settings: Settings) -> FalHosts:
        """fal's hosts, or the embedded simulator's (reached over loopback) when embedded."""
        if self.embedded(settings):
            return FalHosts.under(f"http://127.0.0.1:{settings.server.port}{SIMULATOR_PATH}")
        return settings.group(FalSettings).hosts()

    def api_url(self, settings: Settings) -> str:
        return self.hosts(settings).queue

    def embedded_config(self, settings: Settings) -> FalSimulatorConfig:
        """The simulator Darkroom mounts at /fal-simulator when it has no FAL_KEY: it fetches this server's
        media over loopback, and its token is SIMULATOR_API_TOKEN or a random one."""
        from server.provider.fal.simulator import FalSimulatorConfig
        from server.simulator.config import new_api_token

        config = FalSimulatorConfig.from_settings(settings, self.api_url(settings), allow_private_inputs=True)
        config.api_token = settings.simulator.api_token or new_api_token()
        return config

    def embedded_simulator(self, settings: Settings, token_required: TokenRequired | None) -> FalSimulator:
        from server.provider.fal.simulator import FalSimulator

        return FalSimulator(self.embedded_config(settings), token_required=token_required)

    def build(
        self, settings: Settings, *, simulator: SimulatorCore | None = None, on_request: RequestHook | None = None
    ) -> FalProvider:
        """fal with FAL_KEY; without one, the simulator playing it: `simulator`, mounted here (called with
        its token), or the one at FAL_BASE_URL (called with SIMULATOR_API_TOKEN, or any key when that is
        unset)."""
        group = settings.group(FalSettings)
        key = settings.simulator.api_token if group.simulated else None
        if simulator is not None and group.simulated:
            key = simulator.config.api_token or key
        return group.provider(hosts=self.hosts(settings), key=key, on_request=on_request)

    def file_hosts(self, settings: Settings) -> list[str]:
        """FAL_FILE_HOSTS' origin patterns, and the simulator's exact origin when it plays fal."""
        hosts = [host.strip().lower() for host in settings.group(FalSettings).file_hosts.split(",")]
        files = self.hosts(settings).cdn
        played = not self.has_token(settings) and origin_of(files) is not None
        return [host for host in hosts if host] + ([written_origin(files)] if played else [])

    def worker_problem(self, settings: Settings) -> str | None:
        if not self.embedded(settings):
            return None
        return (
            "no FAL_KEY: set FAL_BASE_URL to the fal simulator the API processes use (the URL of `darkroom "
            "simulator --provider fal`, or http://API_HOST:PORT/fal-simulator of the one `darkroom serve`), or set "
            "FAL_KEY, or leave fal out of PROVIDERS"
        )

    def serve_simulator(
        self, settings: Settings, host: str, port: int, public_url: str | None, *, allow_private_inputs: bool
    ) -> None:
        from server.provider.fal.simulator import FalSimulator, FalSimulatorConfig
        from server.simulator.service import serve_standalone, standalone_url

        url = standalone_url(host, port, public_url)
        config = FalSimulatorConfig.from_settings(settings, url, allow_private_inputs=allow_private_inputs)
        serve_standalone(FalSimulator(config), host, port, self.name)


ADAPTER = FalAdapter()
