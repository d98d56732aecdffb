"""Replicate's package as the composition uses it (`server.provider.adapter.Adapter`): its settings, how its
provider is built (Replicate with REPLICATE_API_TOKEN, else the simulator playing it), and its simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.origins import origin_of, written_origin
from server.provider.replicate.client import SIMULATOR_TOKEN, ReplicateClient
from server.provider.replicate.provider import ReplicateProvider
from server.provider.replicate.settings import DEFAULT_REPLICATE_BASE_URL, ReplicateSettings
from server.provider.types import RequestHook

if TYPE_CHECKING:
    from server.provider.replicate.simulator import Simulator
    from server.settings import Settings
    from server.simulator.config import SimulatorConfig
    from server.simulator.service import SimulatorCore
    from server.simulator.serving import TokenRequired

# Where `darkroom serve` mounts the simulator when it plays Replicate.
SIMULATOR_PATH = "/simulator"


class ReplicateAdapter:
    name = "replicate"
    order = 0
    settings_group = ReplicateSettings
    simulator_path = SIMULATOR_PATH

    def has_token(self, settings: Settings) -> bool:
        return bool(settings.group(ReplicateSettings).api_token)

    def embedded(self, settings: Settings) -> bool:
        group = settings.group(ReplicateSettings)
        return not group.api_token and group.api_base_url.rstrip("/") == DEFAULT_REPLICATE_BASE_URL

    def api_url(self, settings: Settings) -> str:
        """Replicate's base URL, or the embedded simulator's (reached over loopback) when embedded."""
        if self.embedded(settings):
            return f"http://127.0.0.1:{settings.server.port}{SIMULATOR_PATH}"
        return settings.group(ReplicateSettings).api_base_url.rstrip("/")

    def embedded_config(self, settings: Settings) -> SimulatorConfig:
        """The simulator Darkroom mounts at /simulator when it has no REPLICATE_API_TOKEN.

        It runs inside this process, so it fetches this server's media over loopback. Its token is
        SIMULATOR_API_TOKEN or a random one; its secret SIMULATOR_WEBHOOK_SECRET, else
        REPLICATE_WEBHOOK_SECRET (the one Darkroom then verifies with), else a random one."""
        from server.simulator.config import SimulatorConfig, new_api_token

        config = SimulatorConfig.from_settings(settings, self.api_url(settings), allow_private_inputs=True)
        config.api_token = settings.simulator.api_token or new_api_token()
        secret = settings.group(ReplicateSettings).webhook_secret
        if not settings.simulator.webhook_secret and secret:
            config.webhook_secret = secret
        return config

    def embedded_simulator(self, settings: Settings, token_required: TokenRequired | None) -> Simulator:
        from server.provider.replicate.simulator import Simulator

        return Simulator(self.embedded_config(settings), token_required=token_required)

    def build(
        self, settings: Settings, *, simulator: SimulatorCore | None = None, on_request: RequestHook | None = None
    ) -> ReplicateProvider:
        """Replicate with REPLICATE_API_TOKEN; without one, the simulator playing it: `simulator`, mounted
        here (called with its token, its webhooks verified with its secret), or the one at
        REPLICATE_API_BASE_URL (called with SIMULATOR_API_TOKEN, or any token when that is unset)."""
        group = settings.group(ReplicateSettings)
        token = group.api_token or settings.simulator.api_token or SIMULATOR_TOKEN
        webhook_secret = group.webhook_secret
        if simulator is not None and not group.api_token:
            token, webhook_secret = simulator.config.api_token or token, simulator.config.webhook_secret
        client = ReplicateClient(
            self.api_url(settings),
            token,
            timeout_seconds=group.timeout_seconds,
            connect_timeout_seconds=group.connect_timeout_seconds,
            max_retries=group.max_retries,
            retry_base_seconds=group.retry_base_seconds,
            retry_max_seconds=group.retry_max_seconds,
            on_request=on_request,
        )
        return ReplicateProvider(
            client,
            webhook_secret=webhook_secret,
            webhook_tolerance_seconds=group.webhook_tolerance_seconds,
            webhook_max_body_bytes=group.webhook_max_body_bytes,
        )

    def file_hosts(self, settings: Settings) -> list[str]:
        """REPLICATE_FILE_HOSTS' origin patterns, and the simulator's exact origin when it plays Replicate."""
        hosts = [host.strip().lower() for host in settings.group(ReplicateSettings).file_hosts.split(",")]
        simulator = self.api_url(settings)
        played = not self.has_token(settings) and origin_of(simulator) is not None
        return [host for host in hosts if host] + ([written_origin(simulator)] if played else [])

    def worker_problem(self, settings: Settings) -> str | None:
        if not self.embedded(settings):
            return None
        return (
            "no REPLICATE_API_TOKEN: set REPLICATE_API_BASE_URL to the Replicate simulator the API processes "
            "use (the URL of `darkroom simulator`, or http://API_HOST:PORT/simulator of the one `darkroom serve`, "
            "which asks for SIMULATOR_API_TOKEN, set on both, once API keys exist), or set REPLICATE_API_TOKEN, "
            "or leave replicate out of PROVIDERS"
        )

    def serve_simulator(
        self, settings: Settings, host: str, port: int, public_url: str | None, *, allow_private_inputs: bool
    ) -> None:
        from server.provider.replicate.simulator import Simulator
        from server.simulator.config import SimulatorConfig
        from server.simulator.service import serve_standalone, standalone_url

        url = standalone_url(host, port, public_url)
        config = SimulatorConfig.from_settings(settings, url, allow_private_inputs=allow_private_inputs)
        serve_standalone(Simulator(config), host, port, self.name)


ADAPTER = ReplicateAdapter()
