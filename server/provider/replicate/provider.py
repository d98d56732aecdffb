"""`ReplicateProvider`: Replicate (or the simulator playing it) behind Darkroom's provider port.

It speaks through a `ReplicateClient`, reads predictions into neutral updates through Replicate's status
map, verifies webhooks with the Standard Webhooks signature Replicate sends, and reads refusals as
`server.provider.replicate.refusals` says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from server.provider.errors import ProviderBadResponseError, ProviderError
from server.provider.port import WebhookRejected
from server.provider.replicate.client import ReplicateClient
from server.provider.replicate.prediction import Prediction
from server.provider.replicate.refusals import refusals_for
from server.provider.replicate.signing import WebhookVerificationError, verify_webhook
from server.provider.types import PredictionUpdate, Refusal

# The webhook events a generation follows: its start, each output and log line, and its end.
WEBHOOK_EVENTS = ["start", "output", "logs", "completed"]


def cancel_after(seconds: float) -> str:
    """The Cancel-After header for a deadline: whole seconds, rounded up, so that the provider never
    stops a job before Darkroom's own timeout would."""
    return f"{max(1, math.ceil(seconds))}s"


class ReplicateProvider:
    """The provider port over `client`. Webhooks are verified with `webhook_secret`, or without one the
    account's secret, fetched from Replicate once; a signature older than `webhook_tolerance_seconds`
    is refused."""

    name = "replicate"

    def __init__(
        self, client: ReplicateClient, *, webhook_secret: str | None = None, webhook_tolerance_seconds: int = 300
    ) -> None:
        self.client = client
        self._webhook_secret = webhook_secret
        self._webhook_tolerance_seconds = webhook_tolerance_seconds

    async def create(
        self,
        *,
        model_ref: str,
        version_id: str | None,
        input: dict[str, Any],
        webhook_url: str | None,
        deadline_seconds: float | None = None,
    ) -> PredictionUpdate:
        """A version runs through ``/v1/predictions`` (as "owner/name:<id>"); an official model without one
        through ``/v1/models/{owner}/{name}/predictions``, the route Replicate documents for it."""
        prediction = await self.client.create_prediction(
            version=f"{model_ref}:{version_id}" if version_id else None,
            model=None if version_id else model_ref,
            input=input,
            webhook=webhook_url,
            webhook_events_filter=WEBHOOK_EVENTS if webhook_url else None,
            cancel_after=cancel_after(deadline_seconds) if deadline_seconds is not None else None,
        )
        return prediction.to_update()

    async def get(self, prediction_id: str) -> PredictionUpdate:
        return (await self.client.get_prediction(prediction_id)).to_update()

    async def cancel(self, prediction_id: str) -> PredictionUpdate:
        return (await self.client.cancel_prediction(prediction_id)).to_update()

    async def upload(self, content: bytes, *, filename: str, content_type: str) -> str:
        uploaded = await self.client.upload_file(content, filename=filename, content_type=content_type)
        urls = uploaded.get("urls")
        url = urls.get("get") if isinstance(urls, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderBadResponseError("Bad response from provider", "the uploaded file has no urls.get")
        return url

    async def get_model(self, owner: str, name: str) -> dict[str, Any]:
        return await self.client.get_model(owner, name)

    async def get_collection(self, slug: str) -> dict[str, Any]:
        return await self.client.get_collection(slug)

    async def search(self, query: str, *, limit: int) -> dict[str, Any]:
        return await self.client.search(query, limit=limit)

    async def webhook_secret(self) -> str:
        """The secret webhooks are signed with: the configured one, else the account's, fetched once."""
        if self._webhook_secret is None:
            self._webhook_secret = await self.client.get_webhook_secret()
        return self._webhook_secret

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> PredictionUpdate:
        secret = await self.webhook_secret()
        try:
            verify_webhook(secret, headers, body, tolerance_seconds=self._webhook_tolerance_seconds)
        except WebhookVerificationError as exc:
            raise WebhookRejected(str(exc), signature=True) from None
        try:
            prediction = Prediction.from_json(json.loads(body))
        except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: JSON nested past the parser's depth
            raise WebhookRejected(f"not a prediction: {exc}", signature=False) from None
        return prediction.to_update()

    def refusals(self, error: ProviderError) -> list[Refusal]:
        return refusals_for(error)

    async def aclose(self) -> None:
        await self.client.aclose()
