"""`SimulatorCore`: the parts every simulator wires together; `Simulator`, the Replicate one on it; and
`serve_simulator`, the standalone entrypoint."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx
from litestar import Litestar

from server.simulator.app import TokenRequired, build_app
from server.simulator.config import Dice, SimulatorConfig
from server.simulator.engine import Engine
from server.simulator.files import FileStore
from server.simulator.stats import Stats
from server.simulator.webhooks import USER_AGENT as WEBHOOK_USER_AGENT
from server.simulator.webhooks import Signer, WebhookDispatcher

if TYPE_CHECKING:
    from server.provider.fal.simulator import FalSimulator
    from server.settings import Settings

logger = logging.getLogger(__name__)


class SimulatorCore:
    """What every simulator holds, whichever provider it plays: `config` (live knobs), `stats`, the file
    store, the dice, the HTTP client its webhooks and input fetches use, the webhook dispatcher (with the
    provider's signer and User-Agent) and the engine (`engine_class`, the shared one or a provider's
    subclass). A provider's simulator adds its app."""

    # The provider's routes over the parts below, set by each provider's simulator.
    app: Litestar

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        engine_class: type[Engine] = Engine,
        sign: Signer | None = None,
        webhook_user_agent: str = WEBHOOK_USER_AGENT,
    ) -> None:
        self.config = config
        self.stats = Stats()
        self.files = FileStore()
        self._dice = Dice(self.config)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            headers={"user-agent": "darkroom-sim"},
            follow_redirects=False,
        )
        self.webhooks = WebhookDispatcher(
            self.config, self._dice, self.stats, self._http, sign=sign, user_agent=webhook_user_agent
        )
        self.engine = engine_class(self.config, self._dice, self.stats, self.files, self.webhooks, self._http)
        self._closed = False

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def file_hits(self, url_or_path: str) -> int:
        """How many GETs one file has had, given its URL or its path below the base URL."""
        return self.stats.hits(url_or_path, self.config.base_url)

    async def aclose(self) -> None:
        """Cancel running predictions and webhook deliveries, and close the HTTP client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.engine.aclose()
        await self.webhooks.aclose()
        await self._http.aclose()


class Simulator(SimulatorCore):
    """A Replicate look-alike: `app` serves it, `config` tunes it live, `stats` says what it did.

    `app` routes start at ``/v1/...``; mount it anywhere (e.g. ``/simulator``) as long as
    ``config.public_base_url`` says where. Predictions and webhooks run in tasks created on demand, so
    a mounted app whose lifespan never runs works the same. Call `aclose()` when done with it.
    """

    def __init__(self, config: SimulatorConfig | None = None, *, token_required: TokenRequired | None = None) -> None:
        """`token_required()` says, per request, whether ``config.api_token`` is needed (None: whenever set)."""
        super().__init__(config or SimulatorConfig())
        self.app: Litestar = build_app(
            self.config, self.engine, self.files, self.stats, on_shutdown=[self.aclose], token_required=token_required
        )


def serve_simulator(
    settings: Settings,
    host: str,
    port: int,
    public_url: str | None = None,
    *,
    allow_private_inputs: bool = False,
    provider: str = "replicate",
) -> None:
    """Run the simulator of `provider` ("replicate" or "fal") on its own with uvicorn until interrupted
    (``darkroom simulator``).

    `public_url` is where other processes reach it (its URLs are built on it); by default the address
    it binds, with loopback for a wildcard interface. Like the providers, it refuses input files on local
    and private hosts unless `allow_private_inputs`."""
    import uvicorn

    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base_url = public_url or f"http://{url_host}:{port}"
    simulator: Simulator | FalSimulator
    if provider == "fal":
        from server.provider.fal.simulator import FalSimulator, FalSimulatorConfig

        simulator = FalSimulator(
            FalSimulatorConfig.from_settings(settings, base_url, allow_private_inputs=allow_private_inputs)
        )
    else:
        simulator = Simulator(
            SimulatorConfig.from_settings(settings, base_url, allow_private_inputs=allow_private_inputs)
        )
    config = simulator.config
    logger.info(
        "simulator listening",
        extra={
            "provider": provider,
            "url": simulator.base_url,
            "allow_private_inputs": config.allow_private_inputs,
            "token_required": config.api_token is not None,
        },
    )
    if config.api_token is None:
        logger.warning(
            "the simulator takes any token and serves its controls to anyone who reaches it; set "
            "SIMULATOR_API_TOKEN (on it and on the Darkroom processes) to require one"
        )
    uvicorn.run(simulator.app, host=host, port=port, log_config=None, timeout_graceful_shutdown=5)
