"""`ReplicateProvider`: Replicate (or the simulator playing it) behind Darkroom's provider port.

It speaks through a `ReplicateClient`, reads predictions into neutral updates through Replicate's status
map and model records into neutral descriptions (`server.provider.replicate.models`), verifies webhooks
with the Standard Webhooks signature Replicate sends, and reads refusals as
`server.provider.replicate.refusals` says.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from server.concurrency import gather_bounded
from server.domain import GenerationStatus
from server.provider.errors import ProviderBadResponseError, ProviderError, ProviderNotFoundError
from server.provider.port import WebhookRejected
from server.provider.replicate.client import ReplicateClient
from server.provider.replicate.models import COLLECTION_KINDS, describe_record, has_schema, ref_of
from server.provider.replicate.prediction import Prediction
from server.provider.replicate.refusals import refusals_for
from server.provider.replicate.signing import WebhookVerificationError, verify_webhook
from server.provider.types import JobRef, ModelDescription, PredictionUpdate, Refusal

logger = logging.getLogger(__name__)

# The webhook events a generation follows: its start, each output and log line, and its end.
WEBHOOK_EVENTS = ["start", "output", "logs", "completed"]
# Records fetched at once while a listing is completed.
FETCH_CONCURRENCY = 4
# A Cancel-After timer and Replicate's timestamps are not exact to the millisecond.
DEADLINE_SLACK_SECONDS = 0.5


def cancel_after(seconds: float) -> str:
    """The Cancel-After header for a deadline: whole seconds, rounded up, so that the provider never
    stops a job before Darkroom's own timeout would."""
    return f"{max(1, math.ceil(seconds))}s"


class ReplicateProvider:
    """The provider port over `client`. Webhooks are verified with `webhook_secret`, or without one the
    account's secret, fetched from Replicate once; a signature older than `webhook_tolerance_seconds`
    is refused."""

    name = "replicate"
    progress_by_webhook = True  # it is asked for start, output, logs and completed webhooks

    def __init__(
        self,
        client: ReplicateClient,
        *,
        webhook_secret: str | None = None,
        webhook_tolerance_seconds: int = 300,
        webhook_max_body_bytes: int = 1_048_576,
    ) -> None:
        self.client = client
        self.webhook_max_body_bytes = webhook_max_body_bytes
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

    async def get(self, job: JobRef) -> PredictionUpdate:
        return (await self.client.get_prediction(job.id)).to_update()

    async def cancel(self, job: JobRef) -> PredictionUpdate:
        return (await self.client.cancel_prediction(job.id)).to_update()

    def stopped_by_deadline(self, update: PredictionUpdate, deadline_seconds: float, elapsed_seconds: float) -> bool:
        """Cancel-After ends a job `aborted` when it never started and `canceled` when it was running (both
        read as CANCELED): one that ends `deadline_seconds` or more after it was created is the deadline's.
        Replicate's own clock measures that when it gives both times, else ours."""
        if update.status is not GenerationStatus.CANCELED:
            return False
        if update.created_at is not None and update.completed_at is not None:
            elapsed_seconds = (update.completed_at - update.created_at).total_seconds()
        return elapsed_seconds >= deadline_seconds - DEADLINE_SLACK_SECONDS

    async def upload(self, content: bytes, *, filename: str, content_type: str) -> str:
        uploaded = await self.client.upload_file(content, filename=filename, content_type=content_type)
        urls = uploaded.get("urls")
        url = urls.get("get") if isinstance(urls, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderBadResponseError("Bad response from provider", "the uploaded file has no urls.get")
        return url

    async def describe_model(self, ref: str) -> ModelDescription:
        owner, slash, name = ref.partition("/")
        if not owner or not slash or not name or "/" in name:
            raise ProviderNotFoundError("Not found", f"Replicate names models owner/name, not {ref!r}", status=404)
        return describe_record(await self.client.get_model(owner, name))

    async def list_models(self) -> list[ModelDescription]:
        """The models of the text-to-image, text-to-video and image-to-video collections. A record that
        cannot be completed is left out (logged); an unreadable collection raises."""
        listed: list[tuple[dict[str, Any], str]] = []
        for slug in COLLECTION_KINDS:
            collection = await self.client.get_collection(slug)
            entries = collection.get("models")
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and entry.get("owner") and entry.get("name"):
                    listed.append((entry, slug))
        found = await gather_bounded([self._complete(entry) for entry, _ in listed], FETCH_CONCURRENCY)
        groups: dict[str, list[str]] = {}
        records: dict[str, dict[str, Any]] = {}
        for (_, slug), full in zip(listed, found, strict=True):
            if full is not None:
                records[ref_of(full)] = full
                groups.setdefault(ref_of(full), []).append(slug)
        return [describe_record(record, groups[ref]) for ref, record in records.items()]

    async def search(self, query: str, *, limit: int) -> list[ModelDescription]:
        answer = await self.client.search(query, limit=limit)
        records = []
        for item in answer.get("models") or []:
            record = item.get("model") if isinstance(item, dict) and isinstance(item.get("model"), dict) else item
            if isinstance(record, dict) and record.get("owner") and record.get("name"):
                records.append(record)
        found = await gather_bounded([self._complete(record) for record in records[:limit]], FETCH_CONCURRENCY)
        return [describe_record(record) for record in found if record is not None]

    async def _complete(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """`record` itself when it carries its version's schema, else the model's own record; None when
        that cannot be read (logged)."""
        if has_schema(record):
            return record
        try:
            full = await self.client.get_model(str(record["owner"]), str(record["name"]))
        except ProviderError as exc:
            logger.warning("could not load a model", extra={"model": ref_of(record), "error": str(exc)})
            return None
        return full if full.get("owner") else record

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
