"""`Provider`: what Darkroom's services need of a media generation provider, and nothing of how it speaks.

An adapter (each in its own package under server/provider/) turns these calls into its provider's API,
and its answers into neutral types (server/provider/types.py): `PredictionUpdate`s whose status is
already a `GenerationStatus`, `ModelDescription`s whose input is a JSON Schema. Failures are raised as
`server.provider.errors.ProviderError` subclasses; `refusals` says what one means in Darkroom's error
codes. A job is found again by the `JobRef` Darkroom stores with its generation, so every call about a
job goes to the provider that started it (`server.provider.registry.Providers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from server.provider.errors import ProviderError
from server.provider.types import JobRef, ModelDescription, PredictionUpdate, Refusal


class WebhookRejected(Exception):
    """A webhook delivery that must not be applied. `signature` tells why: True when it is not proven to
    come from the provider (answered 401), False when it does but its body is not an update (400)."""

    def __init__(self, reason: str, *, signature: bool) -> None:
        super().__init__(reason)
        self.signature = signature


class Provider(Protocol):
    """A media generation provider, as the services use it."""

    # Recorded on every generation it runs, and on every model it describes: a word ("replicate", "fal").
    name: str
    # The largest webhook body it sends that Darkroom reads; a longer one is answered 413.
    webhook_max_body_bytes: int
    # Whether its webhooks report a job's progress as it runs (Replicate's do); when not (fal's report only
    # the end), a running job is polled for it every POLL_PROGRESS_SECONDS.
    progress_by_webhook: bool

    async def create(
        self,
        *,
        model_ref: str,
        version_id: str | None,
        input: dict[str, Any],
        webhook_url: str | None,
        deadline_seconds: float | None = None,
    ) -> PredictionUpdate:
        """Start a job of `model_ref` and return it as created.

        With a `version_id` (the caller's, or the model description's) that version runs; without one,
        whatever the model's owner serves under its name. With a `webhook_url` the provider reports
        progress there. With `deadline_seconds` the provider stops the job by itself once it has run (or
        waited) that long where it can, so the deadline holds while Darkroom is down (see
        `stopped_by_deadline`). After a 5xx or ProviderUnavailableError the job may exist anyway: a
        create is never sent twice.
        """
        ...

    async def get(self, job: JobRef) -> PredictionUpdate:
        """The job as it is now; ProviderNotFoundError when the provider has no such job."""
        ...

    async def cancel(self, job: JobRef) -> PredictionUpdate:
        """Ask the provider to stop the job; it comes back canceled, or as it finished."""
        ...

    def stopped_by_deadline(self, update: PredictionUpdate, deadline_seconds: float, elapsed_seconds: float) -> bool:
        """Whether `update` is the provider stopping the job at the deadline `create` gave it.

        `elapsed_seconds` is how long ago Darkroom created the job, by its own clock.
        """
        ...

    async def upload(self, content: bytes, *, filename: str, content_type: str) -> str:
        """Store a file with the provider; the URL by which an input may name it."""
        ...

    async def describe_model(self, ref: str) -> ModelDescription:
        """One model, `ref` written as the provider writes it; ProviderNotFoundError when there is none
        (a ref the provider could never name included)."""
        ...

    async def list_models(self) -> list[ModelDescription]:
        """The image and video models the provider lists, each with the listings (`groups`) it is in.

        A ProviderError when a listing cannot be read: the catalogue then keeps what it had.
        """
        ...

    async def search(self, query: str, *, limit: int) -> list[ModelDescription]:
        """Models matching `query`, at most `limit`, image and video models or not."""
        ...

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> PredictionUpdate:
        """The update a webhook delivery carries, once its signature is verified.

        WebhookRejected when it is unsigned, forged or malformed; a ProviderError when the means of
        verifying it (a signing secret the provider holds) cannot be had right now.
        """
        ...

    def refusals(self, error: ProviderError) -> list[Refusal]:
        """What `error` means for the caller, in Darkroom's error codes: one Refusal per reason, at least one."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...
