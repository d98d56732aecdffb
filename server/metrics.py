"""Prometheus metrics, served at GET /metrics.

Counters are process-wide (the prometheus-client default registry); every name starts with darkroom_.
"""

from __future__ import annotations

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
    "Webhooks received, by result: applied, duplicate, stale, unknown, bad_signature, bad_request.",
    ["result"],
)
POLL_CYCLES = Counter("darkroom_poll_cycles_total", "Poller cycles run.")
POLLED_PREDICTIONS = Counter(
    "darkroom_polled_predictions_total", "Predictions fetched by the poller, by outcome.", ["result"]
)
DOWNLOADS = Counter("darkroom_downloads_total", "Download attempts, by result: ready, retry, failed.", ["result"])
PROVIDER_REQUESTS = Histogram(
    "darkroom_provider_request_seconds",
    "Latency of requests to the provider.",
    ["method", "path", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OPEN_SUBSCRIPTIONS = Gauge("darkroom_open_subscriptions", "GraphQL subscriptions open in this process.")
WEBHOOK_TO_PUBLISH = Histogram(
    "darkroom_webhook_to_publish_seconds",
    "From a webhook's arrival to its event's publication.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)


def observe_provider_request(method: str, path: str, status: int | None, seconds: float) -> None:
    PROVIDER_REQUESTS.labels(method, path, str(status) if status is not None else "error").observe(seconds)


def render() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
