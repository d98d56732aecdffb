"""Prometheus metrics, served at GET /metrics.

Counters are process-wide (the prometheus-client default registry); every name starts with darkroom_.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

GENERATIONS_STARTED = Counter(
    "darkroom_generations_started_total", "Generations accepted by the provider.", ["model", "kind"]
)
GENERATIONS_FINISHED = Counter(
    "darkroom_generations_finished_total",
    "Generations that reached a terminal status.",
    ["model", "kind", "status"],
)
WEBHOOKS = Counter(
    "darkroom_webhooks_total",
    "Webhooks received, by result: applied, duplicate, stale, unknown, bad_signature, bad_request, too_large.",
    ["result"],
)
POLL_CYCLES = Counter("darkroom_poll_cycles_total", "Poller cycles run.")
POLLED_PREDICTIONS = Counter(
    "darkroom_polled_predictions_total", "Predictions fetched by the poller, by outcome.", ["result"]
)
DOWNLOADS = Counter("darkroom_downloads_total", "Download attempts, by result: ready, retry, failed.", ["result"])
DOWNLOAD_RETRIES = Counter(
    "darkroom_download_retries_total",
    "Download attempts after a media file's first, by result: ready, retry, failed.",
    ["result"],
)
PROVIDER_REQUESTS = Histogram(
    "darkroom_provider_request_seconds",
    "Latency of requests to the provider.",
    ["method", "path", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROVIDER_ERRORS = Counter(
    "darkroom_provider_errors_total",
    "Requests to the provider that failed: an HTTP status of 400 or more, or `unreachable`.",
    ["method", "path", "reason"],
)
OPEN_SUBSCRIPTIONS = Gauge("darkroom_open_subscriptions", "GraphQL subscriptions open in this process.")
WEBHOOK_TO_PUBLISH = Histogram(
    "darkroom_webhook_to_publish_seconds",
    "From a webhook's arrival to its event's publication.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)


def observe_provider_request(method: str, path: str, status: int | None, seconds: float) -> None:
    """The provider client's `on_request` hook: one call per HTTP attempt (`status` None: no answer)."""
    PROVIDER_REQUESTS.labels(method, path, str(status) if status is not None else "error").observe(seconds)
    if status is None or status >= 400:
        PROVIDER_ERRORS.labels(method, path, str(status) if status is not None else "unreachable").inc()


def observe_download(result: str, attempt: int) -> None:
    """One finished download attempt of a media file (`attempt` counts from 1)."""
    DOWNLOADS.labels(result).inc()
    if attempt > 1:
        DOWNLOAD_RETRIES.labels(result).inc()


@asynccontextmanager
async def open_subscription() -> AsyncIterator[None]:
    """Count a GraphQL subscription as open for as long as the block runs."""
    OPEN_SUBSCRIPTIONS.inc()
    try:
        yield
    finally:
        OPEN_SUBSCRIPTIONS.dec()


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
