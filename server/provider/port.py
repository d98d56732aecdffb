"""`Provider`: what Darkroom's services need of a media generation provider, and nothing of how it speaks.

An implementation (Replicate's is `server.provider.replicate.ReplicateProvider`) turns these calls into
its own API, and its answers into `PredictionUpdate`s whose status is already a `GenerationStatus`.
Failures are raised as `server.provider.errors.ProviderError` subclasses; `refusals` says what one means
in Darkroom's error codes. Which implementation runs is decided once, where the runtime is composed.

Models are read as the catalogue stores them: records shaped like Replicate's model object (``owner``,
``name``, ``description``, ``latest_version`` with its ``id`` and ``openapi_schema``, ``cover_image_url``,
``run_count``, ``default_example``), and collections and searches as ``{"models": [record, ...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from server.provider.errors import ProviderError
from server.provider.types import PredictionUpdate, Refusal


class WebhookRejected(Exception):
    """A webhook delivery that must not be applied. `signature` tells why: True when it is not proven to
    come from the provider (answered 401), False when it does but its body is not an update (400)."""

    def __init__(self, reason: str, *, signature: bool) -> None:
        super().__init__(reason)
        self.signature = signature


class Provider(Protocol):
    """A media generation provider, as the services use it."""

    # Recorded on every generation it runs ("replicate").
    name: str

    async def create(
        self,
        *,
        model_ref: str,
        version_id: str | None,
        input: dict[str, Any],
        webhook_url: str | None,
        deadline_seconds: float | None = None,
    ) -> PredictionUpdate:
        """Start a prediction of `model_ref` and return it as created.

        With a `version_id` that version runs; without one, whatever version the model's owner serves
        under its name. With a `webhook_url` the provider reports progress there. With `deadline_seconds`
        the provider stops the job by itself once it has run (or waited) that long, and reports it
        canceled, so the deadline holds while Darkroom is down. After a 5xx or ProviderUnavailableError
        the prediction may exist anyway.
        """
        ...

    async def get(self, prediction_id: str) -> PredictionUpdate:
        """The prediction as it is now; ProviderNotFoundError when the provider has none with this id."""
        ...

    async def cancel(self, prediction_id: str) -> PredictionUpdate:
        """Ask the provider to stop the prediction; it comes back canceled, or as it finished."""
        ...

    async def upload(self, content: bytes, *, filename: str, content_type: str) -> str:
        """Store a file with the provider; the URL by which an input may name it."""
        ...

    async def get_model(self, owner: str, name: str) -> dict[str, Any]:
        """The record of one model (see the module docstring); ProviderNotFoundError when there is none."""
        ...

    async def get_collection(self, slug: str) -> dict[str, Any]:
        """A collection's models, ``{"models": [record, ...]}``."""
        ...

    async def search(self, query: str, *, limit: int) -> dict[str, Any]:
        """Models matching `query`, ``{"models": [record or {"model": record}, ...]}``."""
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
