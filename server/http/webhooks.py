"""POST /webhooks/{provider}: that provider's port verifies and reads the delivery, the service layer applies it.

Answers fast and never does slow work: downloads are queued as media rows for the downloader.
Status codes are chosen for the providers' retry rules (they retry a delivery on any 4xx/5xx): 404 for
a provider this process is not configured with, 401 for a bad signature, 400 for a malformed body, 413
past the provider's size limit, and 200 for an unknown job (logged), so that the provider stops
retrying something we will never be able to use; if it was addressed to a generation that was
withdrawn, the job is canceled after the answer.
"""

from __future__ import annotations

import logging
import time
import uuid

from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
)

from server import metrics, telemetry
from server.provider.errors import ProviderError
from server.provider.port import WebhookRejected
from server.runtime import Runtime

logger = logging.getLogger(__name__)


def _problem(status: int, detail: str) -> Response[dict[str, object]]:
    return Response({"status": status, "detail": detail}, status_code=status, media_type="application/problem+json")


def _declared_length(request: Request[object, object, State]) -> int:
    try:
        return int(request.headers.get("content-length") or 0)
    except ValueError:
        return 0


@post("/webhooks/{provider_name:str}", status_code=HTTP_200_OK, request_max_body_size=None)
async def provider_webhook(
    request: Request[object, object, State], state: State, provider_name: str
) -> Response[dict[str, object]]:
    arrived = time.perf_counter()
    runtime: Runtime = state.runtime
    if provider_name not in runtime.providers:
        metrics.WEBHOOKS.labels("unknown_provider").inc()
        return _problem(HTTP_404_NOT_FOUND, "no such provider is configured here")
    provider = runtime.providers.get(provider_name)
    limit = provider.webhook_max_body_bytes
    if _declared_length(request) > limit:
        metrics.WEBHOOKS.labels("too_large").inc()
        return _problem(HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"webhook bodies are limited to {limit} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            metrics.WEBHOOKS.labels("too_large").inc()
            return _problem(HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"webhook bodies are limited to {limit} bytes")
    body = bytes(received)
    try:
        update = await provider.parse_webhook(request.headers, body)
    except ProviderError as exc:
        logger.error("no webhook secret to verify with", extra={"error": str(exc)})
        return _problem(503, "the webhook signing secret is not available yet")
    except WebhookRejected as exc:
        if exc.signature:
            metrics.WEBHOOKS.labels("bad_signature").inc()
            logger.warning("webhook rejected", extra={"reason": str(exc)})
            return _problem(HTTP_401_UNAUTHORIZED, "invalid webhook signature")
        metrics.WEBHOOKS.labels("bad_request").inc()
        return _problem(HTTP_400_BAD_REQUEST, str(exc))
    try:
        hint = uuid.UUID(request.query_params.get("generation", ""))
    except ValueError:
        hint = None
    attributes = {telemetry.PROVIDER: provider.name, telemetry.PREDICTION_ID: update.prediction_id}
    with telemetry.span("darkroom.webhook", attributes):
        result = await runtime.generations.apply_prediction_update(update, provider=provider.name, generation_hint=hint)
    metrics.WEBHOOKS.labels(result.outcome.value).inc()
    if result.outcome == "applied":
        metrics.WEBHOOK_TO_PUBLISH.observe(time.perf_counter() - arrived)
    if result.outcome == "unknown":
        logger.info("webhook for an unknown prediction ignored", extra={"prediction": update.prediction_id})
        if hint is not None:
            # Addressed to a generation of ours that is gone: an orphan of a failed create; stop it after answering.
            cleanup = BackgroundTask(runtime.generations.cancel_withdrawn, provider, update, hint)
            return Response({"result": result.outcome.value}, status_code=HTTP_200_OK, background=cleanup)
    return Response({"result": result.outcome.value}, status_code=HTTP_200_OK)
