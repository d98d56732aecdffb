"""Prometheus metrics, served at GET /metrics.

Counters are process-wide (the prometheus-client default registry); every name starts with darkroom_.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

GENERATIONS_STARTED = Counter(
    "darkroom_generations_started_total", "Generations accepted by the provider.", ["model", "kind"]
)
GENERATIONS_FINISHED = Counter(
    "darkroom_generations_finished_total",
    "Generations that reached a terminal status.",
    ["model", "kind", "status"],
)
GENERATIONS_QUEUED = Counter(
    "darkroom_generations_queued_total",
    "Generations that waited QUEUED at their start, past a key's or Darkroom's limit of running generations.",
)
GENERATIONS_REQUEUED = Counter(
    "darkroom_generations_requeued_total",
    "Creates the provider did not take (PROVIDER_RATE_LIMITED: its rate limit; PROVIDER_UNAVAILABLE: never "
    "sent), whose generations went back to the queue.",
    ["code"],
)
WEBHOOKS = Counter(
    "darkroom_webhooks_total",
    "Webhooks received, by result: applied, duplicate, stale, unknown, bad_signature, bad_request, too_large, "
    "unknown_provider.",
    ["result"],
)
LIVE_FRAMES = Counter(
    "darkroom_live_frames_total",
    "Live subscription frames sent on WebSockets, by what wrote them: fan_out (one task per group of alike "
    "subscribers, writing to each socket) or operation (each subscription's own task, when the server does not "
    "let sockets be written to directly).",
    ["writer"],
)
PREVIEWS = Counter(
    "darkroom_previews_total",
    "Intermediate outputs of running generations, by what became of them: shown (stored as a preview), "
    "refused (not an image, too large, not on an allowed file host, or no longer wanted) or failed (a fault).",
    ["result"],
)
SPEND = Counter(
    "darkroom_spend_total",
    "Settled costs of generations, in the price table's currency, counted once as each settles.",
    ["model"],
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

EVENT_TAIL_POSITION = Gauge(
    "darkroom_event_tail_position", "Id of the newest event this process has delivered to its subscribers."
)
EVENT_LOG_NEWEST = Gauge("darkroom_event_log_newest_id", "Newest event id this process knows the log holds.")
EVENT_TAIL_LAG_EVENTS = Gauge(
    "darkroom_event_tail_lag_events", "Events logged but not yet delivered by this process (newest id - position)."
)
EVENT_TAIL_LAG_SECONDS = Gauge(
    "darkroom_event_tail_lag_seconds",
    "How long this process's delivery has been behind the log: unreadable, or short of the newest event (0: none).",
)

EVENT_LOOP_LAG = Histogram(
    "darkroom_event_loop_lag_seconds",
    "How late the event loop monitor woke, each LOOP_MONITOR_INTERVAL_SECONDS: how long the loop was held.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENT_LOOP_MAX_STALL = Gauge(
    "darkroom_event_loop_max_stall_seconds", "The longest the event loop was held since this process started."
)

SUBSCRIBE_READS = Counter(
    "darkroom_subscribe_reads_total",
    "Database reads made for subscribers as they start: state (a followed generation's current state, read once "
    "while anyone follows it) or replay (the log after resuming subscribers' cursors, one read per range shared "
    "by every subscriber in it).",
    ["read"],
)
SUBSCRIPTION_RENDERS = Counter(
    "darkroom_subscription_renders_total",
    "Subscription results by how they were made: executed (once per event and group of alike subscribers) "
    "or shared (reused from that execution).",
    ["result"],
)

WEBHOOK_DELIVERIES = Counter(
    "darkroom_webhook_deliveries_total",
    "Outgoing webhook attempts, by result: delivered (2xx), failed (another answer, a redirect, a timeout, "
    "a broken connection; retried), gone (410: the endpoint is disabled), refused (the address is not public).",
    ["result"],
)
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "darkroom_webhook_endpoints_disabled_total",
    "Outgoing webhook endpoints disabled by Darkroom, by reason: gone (410), failing (too long).",
    ["reason"],
)
WEBHOOK_LAG_EVENTS = Gauge(
    "darkroom_webhook_lag_events",
    "Events in the log after an enabled outgoing webhook endpoint's cursor (by event id).",
    ["endpoint"],
)
WEBHOOK_LAG_SECONDS = Gauge(
    "darkroom_webhook_lag_seconds",
    "Age of the oldest event an enabled outgoing webhook endpoint has not been sent yet (0: caught up).",
    ["endpoint"],
)


def observe_webhook_lag(lags: list[tuple[str, int, float]]) -> None:
    """Each enabled endpoint's lag (id, events, seconds); endpoints no longer listed are dropped."""
    WEBHOOK_LAG_EVENTS.clear()
    WEBHOOK_LAG_SECONDS.clear()
    for endpoint, events, seconds in lags:
        WEBHOOK_LAG_EVENTS.labels(endpoint).set(events)
        WEBHOOK_LAG_SECONDS.labels(endpoint).set(seconds)


class TailerState(Protocol):
    high_water: int
    newest_known: int

    @property
    def lag_events(self) -> int: ...

    @property
    def lag_seconds(self) -> float: ...


def watch_event_tailer(tailer: TailerState) -> None:
    """Report `tailer`'s position and lag at every scrape (the newest tailer started in this process)."""
    EVENT_TAIL_POSITION.set_function(lambda: tailer.high_water)
    EVENT_LOG_NEWEST.set_function(lambda: tailer.newest_known)
    EVENT_TAIL_LAG_EVENTS.set_function(lambda: tailer.lag_events)
    EVENT_TAIL_LAG_SECONDS.set_function(lambda: tailer.lag_seconds)


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
