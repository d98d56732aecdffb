"""`FalSimulator`: the fal simulator's parts wired together (the shared engine, file store, stats and
webhook dispatcher, with fal's signer). `darkroom simulator --provider fal` runs one on its own
(`server.simulator.service.serve_simulator`)."""

from __future__ import annotations

from litestar import Litestar

from server.provider.fal.signing import private_key_from_text, sign_webhook
from server.provider.fal.simulator.app import build_app
from server.provider.fal.simulator.config import FalSimulatorConfig
from server.provider.fal.simulator.engine import FalEngine
from server.simulator.service import SimulatorCore
from server.simulator.serving import TokenRequired

WEBHOOK_USER_AGENT = "fal-webhook/1.0 (darkroom-sim)"


class FalSimulator(SimulatorCore):
    """A fal look-alike: `app` serves it, `config` tunes it live, `stats` says what it did.

    Requests and webhooks run in tasks created on demand, so a mounted app whose lifespan never runs
    works the same. Call `aclose()` when done with it.
    """

    engine: FalEngine
    config: FalSimulatorConfig

    def __init__(
        self, config: FalSimulatorConfig | None = None, *, token_required: TokenRequired | None = None
    ) -> None:
        super().__init__(
            config or FalSimulatorConfig(),
            engine_class=FalEngine,
            sign=self._sign,
            webhook_user_agent=WEBHOOK_USER_AGENT,
        )
        self.app: Litestar = build_app(
            self.config, self.engine, self.files, self.stats, on_shutdown=[self.aclose], token_required=token_required
        )

    def _sign(self, request_id: str, webhook_id: str, body: bytes) -> dict[str, str]:
        """fal's signature of one delivery, with the key configured at the moment it is sent."""
        key = private_key_from_text(self.config.webhook_signing_key)
        return sign_webhook(key, request_id, self.config.webhook_user_id, body)
