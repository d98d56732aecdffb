"""`FalSimulatorConfig`: the shared simulator knobs (`server.simulator.config.SimulatorConfig`) plus
fal's own: the ED25519 key webhooks are signed with (random per process unless given; never shown or
changed over HTTP), the user id the signature names, and how long the queue is ahead of a new request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from server.provider.fal.signing import new_private_key_text
from server.simulator.config import SimulatorConfig


@dataclass
class FalSimulatorConfig(SimulatorConfig):
    """How the fal simulator behaves. All fields are mutable at runtime.

    `start_seconds` is the time a request spends IN_QUEUE (its queue position counts down from
    `queue_length` over it), `run_seconds` the time IN_PROGRESS. `page_size` is the model listing's
    default page size.
    """

    webhook_signing_key: str = field(default_factory=new_private_key_text)
    """The base64url seed of the ED25519 key webhooks are signed with; its public half is the JWKS."""
    webhook_user_id: str = "darkroom-sim"
    """The X-Fal-Webhook-User-Id deliveries carry (and sign)."""
    queue_length: int = 2
    """The queue position a new request starts at; it reaches 0 when the request starts."""

    FIELD_KINDS: ClassVar[dict[str, str]] = {
        **SimulatorConfig.FIELD_KINDS,
        "webhook_signing_key": "string",
        "webhook_user_id": "string",
        "queue_length": "integer",
    }
    # The private key would let whoever reads it forge webhooks.
    SET_IN_PROCESS_ONLY: ClassVar[frozenset[str]] = SimulatorConfig.SET_IN_PROCESS_ONLY | {"webhook_signing_key"}
