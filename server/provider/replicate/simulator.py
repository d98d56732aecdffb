"""`Simulator`: the Replicate simulator, the shared simulator core (`server.simulator`) with Replicate's
routes (`server.simulator.app`) and its Standard Webhooks signature."""

from __future__ import annotations

from litestar import Litestar

from server.provider.replicate.signing import sign_webhook
from server.simulator.app import TokenRequired, build_app
from server.simulator.config import SimulatorConfig
from server.simulator.service import SimulatorCore

WEBHOOK_USER_AGENT = "Replicate-Webhook/1.0 (darkroom-sim)"


class Simulator(SimulatorCore):
    """A Replicate look-alike: `app` serves it, `config` tunes it live, `stats` says what it did.

    `app` routes start at ``/v1/...``; mount it anywhere (e.g. ``/simulator``) as long as
    ``config.public_base_url`` says where. Predictions and webhooks run in tasks created on demand, so
    a mounted app whose lifespan never runs works the same. Call `aclose()` when done with it.
    """

    def __init__(self, config: SimulatorConfig | None = None, *, token_required: TokenRequired | None = None) -> None:
        """`token_required()` says, per request, whether ``config.api_token`` is needed (None: whenever set)."""
        super().__init__(config or SimulatorConfig(), sign=self._sign, webhook_user_agent=WEBHOOK_USER_AGENT)
        self.app: Litestar = build_app(
            self.config, self.engine, self.files, self.stats, on_shutdown=[self.aclose], token_required=token_required
        )

    def _sign(self, prediction_id: str, webhook_id: str, body: bytes) -> dict[str, str]:
        """Replicate's signature: Standard Webhooks with the secret configured when the delivery is sent."""
        return sign_webhook(self.config.webhook_secret, webhook_id, body)
