"""`SimulatorCore`: the parts every simulator wires together (each provider's adds its routes and its
signature); and `serve_standalone`, which runs one on its own."""

from __future__ import annotations

import logging

import httpx
from litestar import Litestar

from server.simulator.config import Dice, SimulatorConfig
from server.simulator.engine import Engine
from server.simulator.files import FileStore
from server.simulator.stats import Stats
from server.simulator.webhooks import Signer, WebhookDispatcher

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
        sign: Signer,
        webhook_user_agent: str,
        engine_class: type[Engine] = Engine,
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


def serve_standalone(simulator: SimulatorCore, host: str, port: int, provider: str) -> None:
    """Run `simulator` (of `provider`) on its own with uvicorn until interrupted (``darkroom simulator``)."""
    import uvicorn

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


def standalone_url(host: str, port: int, public_url: str | None) -> str:
    """Where other processes reach a standalone simulator: `public_url`, else the address it binds (with
    loopback for a wildcard interface)."""
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return public_url or f"http://{url_host}:{port}"
