"""Replicate's webhooks as the provider (or an attacker holding the secret) sends them: signed, over HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Any

from server.db.models import Generation
from server.graphql.ids import decode_id
from server.provider.replicate.signing import sign_webhook
from tests.support.darkroom import Darkroom
from tests.support.flows import start_generation


async def post_webhook(darkroom: Darkroom, body: bytes, headers: dict[str, str], query: str = "") -> Any:
    return await darkroom.http.post(
        f"/webhooks/replicate{query}", content=body, headers={"content-type": "application/json", **headers}
    )


async def signed(
    darkroom: Darkroom, payload: Any, *, msg_id: str | None = None, at: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and the headers of a webhook carrying `payload`, signed with the server's secret."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    secret = await darkroom.replicate.webhook_secret()
    return body, sign_webhook(secret, msg_id or f"msg_{uuid.uuid4().hex}", body, at)


def prediction(prediction_id: str, status: str, **fields: Any) -> dict[str, Any]:
    """A prediction as Replicate's webhook body has it."""
    return {
        "id": prediction_id,
        "status": status,
        "model": "darkroom-sim/pixel-forge",
        "version": "v",
        "input": {},
        "logs": fields.pop("logs", ""),
        "output": fields.pop("output", None),
        "error": None,
        "created_at": "2026-01-01T00:00:00Z",
        "started_at": None,
        "completed_at": None,
        "urls": {},
        "metrics": {},
        **fields,
    }


async def stored_prediction(darkroom: Darkroom) -> dict[str, Any]:
    """A generation whose prediction is known to Darkroom but driven only by the webhooks we send."""
    await darkroom.http.patch("/simulator/_control/config", json={"webhook_drop_rate": 1.0, "run_seconds": 60})
    generation = await start_generation(darkroom)
    async with darkroom.runtime.sessions() as session:
        row = await session.get(Generation, decode_id(generation["id"], "Generation"))
        assert row is not None
    return {"generation": generation, "provider_id": row.provider_id}
