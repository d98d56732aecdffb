"""The outgoing webhook deliverer: sends each endpoint the events after its cursor, signed, one at a time.

Each round (at once when an event is published or a delivery ends, else every WEBHOOK_INTERVAL_SECONDS)
claims due endpoints up to WEBHOOK_CONCURRENCY, and delivers each in a task of its own, so a slow or
dead endpoint never delays another one, nor the live feed. A task sends its endpoint's events in log
order (which keeps each generation's events in order), moves the cursor after each 2xx, and ends when
it has caught up, or at the first failure: the retry is scheduled in the database and the claim
released, so an endpoint in backoff holds no slot. The lease is renewed before every attempt, and an
attempt lasts at most WEBHOOK_TIMEOUT_SECONDS, well within it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import standardwebhooks

from server import metrics, telemetry
from server.events import EventHub, SubscriberOverflow
from server.periodic import periodic_task
from server.services.webhooks_out import payloads
from server.services.webhooks_out.deliveries import Attempt, Claim, DeliveryService
from server.services.webhooks_out.guard import guarded_client, is_refusal
from server.settings import Settings

logger = logging.getLogger(__name__)

EXCERPT_BYTES = 500
# How often the endpoints' lag is measured for /metrics, at most.
LAG_EVERY_SECONDS = 5.0


class WebhookSender:
    def __init__(self, settings: Settings, deliveries: DeliveryService, hub: EventHub) -> None:
        self._settings = settings
        self._deliveries = deliveries
        self._hub = hub
        config = settings.webhooks_out
        self._client = guarded_client(
            allow_private=config.allow_private_urls,
            timeout_seconds=config.timeout_seconds,
            max_connections=config.concurrency,
        )
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._lag_measured = 0.0

    def start(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        """The deliverer's tasks: its rounds, and what wakes them (new events, and `stop`)."""
        rounds = periodic_task(
            "webhooks-out", self._settings.webhooks_out.interval_seconds, self.round, stop, wake=self._wake
        )
        return [rounds, asyncio.create_task(self._wake_on_events(stop), name="webhooks-out-waker")]

    async def _wake_on_events(self, stop: asyncio.Event) -> None:
        waiting = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                try:
                    async with self._hub.subscribe() as events:
                        listening = asyncio.create_task(self._forward(events))
                        await asyncio.wait({waiting, listening}, return_when=asyncio.FIRST_COMPLETED)
                        listening.cancel()
                        with contextlib.suppress(asyncio.CancelledError, SubscriberOverflow):
                            await listening
                except SubscriberOverflow:
                    pass  # a missed ring only delays delivery to the next round
        finally:
            waiting.cancel()
            self._wake.set()  # the rounds wait on their wake alone
            await self._shutdown()

    async def _forward(self, events: Any) -> None:
        async for _event in events:
            self._wake.set()

    async def _shutdown(self) -> None:
        self._stopping = True  # a round still in flight claims nothing more
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await self._client.aclose()

    async def round(self) -> None:
        """Claim due endpoints while slots are free, each delivered in its own task."""
        await self._measure_lag()
        while not self._stopping and len(self._running) < self._settings.webhooks_out.concurrency:
            claim = await self._deliveries.claim_next()
            if claim is None:
                return
            task = asyncio.create_task(self._deliver(claim), name=f"webhooks-out-{claim.endpoint_id}")
            self._running.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # a slot is free: the next round claims another endpoint

    async def _measure_lag(self) -> None:
        if time.monotonic() - self._lag_measured < LAG_EVERY_SECONDS:
            return
        self._lag_measured = time.monotonic()
        lags = await self._deliveries.lag()
        metrics.observe_webhook_lag([(str(lag.endpoint_id), lag.events, lag.seconds) for lag in lags])

    async def _deliver(self, claim: Claim) -> None:
        try:
            await self.deliver(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("webhook delivery failed unexpectedly", extra={"endpoint_id": str(claim.endpoint_id)})
        finally:
            # However it ended (caught up, failed, lost, shutting down): hand the endpoint back at once, for
            # this or another process to take. A claim already lost or released matches nothing.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._deliveries.release(claim))

    async def deliver(self, claim: Claim) -> None:
        """Send the endpoint its events after its cursor until it has caught up, or an attempt failed."""
        while True:
            events = await self._deliveries.events_after(claim)
            if not events:
                return
            skipped: int | None = None
            for event in events:
                if not claim.wants(event):
                    skipped = event["id"]
                    continue
                if skipped is not None:
                    if not await self._deliveries.skip_to(claim, skipped):
                        return
                    skipped = None
                if not await self._deliveries.renew(claim):
                    return  # taken over, replayed or disabled meanwhile: its new state is someone else's
                attempt = await self._traced_send(claim, event)
                if attempt.delivered:
                    metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
                    if not await self._deliveries.delivered(claim, attempt):
                        return
                    continue
                await self._failed(claim, attempt)
                return
            if skipped is not None and not await self._deliveries.skip_to(claim, skipped):
                return

    async def _failed(self, claim: Claim, attempt: Attempt) -> None:
        refused = attempt.error is not None and attempt.error.startswith("refused: ")
        metrics.WEBHOOK_DELIVERIES.labels("gone" if attempt.gone else "refused" if refused else "failed").inc()
        failure = await self._deliveries.failed(claim, attempt)
        endpoint = str(claim.endpoint_id)
        if failure.disabled_reason is not None:
            metrics.WEBHOOK_ENDPOINTS_DISABLED.labels("gone" if attempt.gone else "failing").inc()
            # The receiver's doing, not a fault of ours: WARNING, never ERROR.
            logger.warning(
                "webhook endpoint disabled: %s",
                failure.disabled_reason,
                extra={"endpoint_id": endpoint, "event_id": attempt.event_id},
            )
            return
        logger.info(
            "webhook delivery failed; retrying later",
            extra={
                "endpoint_id": endpoint,
                "event_id": attempt.event_id,
                "attempt": failure.attempt,
                "status": attempt.status_code,
                "error": attempt.error,
                "next_retry_at": failure.next_retry_at.isoformat() if failure.next_retry_at else None,
            },
        )

    async def _traced_send(self, claim: Claim, event: dict[str, Any]) -> Attempt:
        """`send` in a span of its own trace, linked to the span that appended the event (a deliverer is a
        long-lived task: under no request's span)."""
        attributes = {
            telemetry.GENERATION_ID: event.get("generationId"),
            "darkroom.webhook_endpoint_id": str(claim.endpoint_id),
            "darkroom.event_id": event["id"],
        }
        links = telemetry.links_to([event.get("traceparent")])
        with telemetry.span("darkroom.webhook_out.deliver", attributes, links=links, root=True):
            attempt = await self.send(claim, event)
            telemetry.set_attributes(
                {"http.response.status_code": attempt.status_code, "darkroom.delivered": attempt.delivered}
            )
        return attempt

    async def send(self, claim: Claim, event: dict[str, Any]) -> Attempt:
        """One signed POST of one event; what it came to (never raises for the receiver's doing)."""
        body = payloads.body(event, self._settings)
        message_id = payloads.message_id(event["id"])
        now = datetime.now(UTC)
        signature = standardwebhooks.Webhook(claim.secret).sign(message_id, now, body)
        headers = {
            "content-type": "application/json",
            "user-agent": "Darkroom-Webhooks/1",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        started = time.monotonic()

        def attempt(status: int | None, excerpt: str | None = None, error: str | None = None) -> Attempt:
            duration = (time.monotonic() - started) * 1000
            return Attempt(event["id"], message_id, status, duration, response_excerpt=excerpt, error=error)

        try:
            # The whole attempt has one deadline: a receiver trickling its answer cannot hold the endpoint.
            async with asyncio.timeout(self._settings.webhooks_out.timeout_seconds):
                async with self._client.stream("POST", claim.url, content=body, headers=headers) as response:
                    excerpt = await _excerpt(response)
        except TimeoutError:
            return attempt(None, error="timed out after WEBHOOK_TIMEOUT_SECONDS")
        except httpx.HTTPError as exc:
            if is_refusal(exc):
                return attempt(None, error=str(exc))
            return attempt(None, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        status = response.status_code
        if 300 <= status < 400:
            return attempt(status, excerpt, error="redirects are not followed")
        if not 200 <= status < 300:
            return attempt(status, excerpt, error=f"answered {status}")
        return attempt(status, excerpt)


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer's body, never the whole of it."""
    read = b""
    async for chunk in response.aiter_raw():
        read += chunk
        if len(read) >= EXCERPT_BYTES:
            break
    return read[:EXCERPT_BYTES].decode("utf-8", "replace")
