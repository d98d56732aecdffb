"""Webhook delivery, as Replicate does it, plus the fault knobs that make it misbehave on purpose.

Each prediction with a `webhook` gets a `WebhookChannel`. The engine tells it what happened (``start``,
``logs``, ``output``, ``completed``); the channel keeps only the events in the prediction's
``webhook_events_filter`` and queues a delivery whose body is the prediction JSON at that moment (exactly
what GET returns). A background task per channel sends the queue in order, so webhooks never hold up
the prediction.

Contracts:
- ``logs`` and ``output`` are throttled: at most one delivery per event type per THROTTLE_SECONDS. A
  change inside the window is sent when the window ends, carrying the state of that moment. When the
  prediction completes, a throttled delivery still waiting is dropped if ``completed`` is wanted (the
  completed body supersedes it), else sent at once.
- Each delivery has its own ``webhook-id`` (``msg_...``), kept across retries and duplicates, and is
  signed with Standard Webhooks headers using the current ``config.webhook_secret``.
- Only the terminal (``completed``) delivery is retried, on connection failure or a 4xx/5xx answer,
  up to MAX_ATTEMPTS attempts with backoff RETRY_BASE_SECONDS * 2**n. Redirects are not followed.
- Faults, read at delivery time: ``webhook_drop_rate`` (the delivery is never sent, terminal included),
  ``webhook_duplicate_rate`` (sent twice, same webhook-id), ``webhook_reorder`` (each delivery is held
  back and sent after the next one; the terminal one overtakes a held one), ``webhook_delay_ms``
  (sleep before each delivery).
- Every attempt, and every drop, is appended to `Stats.webhooks`.

What is Replicate's here is only the default: the dispatcher takes the provider's signer (the headers a
delivery is signed with) and User-Agent, so another provider's simulator (fal's, which sends one
terminal delivery per request) delivers through the same channels, retries and faults.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from server.simulator.config import Dice, SimulatorConfig
from server.simulator.stats import Stats, WebhookRecord

logger = logging.getLogger(__name__)

THROTTLE_SECONDS = 0.5
RETRY_BASE_SECONDS = 0.2
MAX_ATTEMPTS = 5
TIMEOUT_SECONDS = 5.0
THROTTLED_EVENTS = ("logs", "output")

Signer = Callable[[str, str, bytes], dict[str, str]]
"""``sign(prediction_id, webhook_id, body)``: the headers that sign one delivery attempt."""


@dataclass(frozen=True, slots=True)
class Delivery:
    event: str
    body: bytes
    status: str
    webhook_id: str

    @property
    def terminal(self) -> bool:
        return self.event == "completed"


def new_webhook_id() -> str:
    return "msg_" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


class WebhookDispatcher:
    """Owns the channels of every prediction and the HTTP client they send with."""

    def __init__(
        self,
        config: SimulatorConfig,
        dice: Dice,
        stats: Stats,
        http: httpx.AsyncClient,
        *,
        sign: Signer,
        user_agent: str,
    ) -> None:
        """`sign` gives a delivery's signature headers as the provider writes them, `user_agent` its sender."""
        self.config = config
        self.dice = dice
        self.stats = stats
        self.http = http
        self.sign = sign
        self.user_agent = user_agent
        self._tasks: set[asyncio.Task[None]] = set()
        self._channels: set[WebhookChannel] = set()

    def open(
        self, prediction_id: str, url: str, events: frozenset[str], snapshot: Callable[[], dict[str, Any]]
    ) -> WebhookChannel:
        channel = WebhookChannel(self, prediction_id, url, events, snapshot)
        self._channels.add(channel)
        return channel

    def spawn(self, channel: WebhookChannel) -> asyncio.Task[None]:
        task = asyncio.create_task(channel.run(), name=f"simulator-webhooks-{channel.prediction_id}")
        self._tasks.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._channels.discard(channel)

        task.add_done_callback(forget)
        return task

    async def idle(self, within: float = 30.0) -> None:
        """Wait until every queued delivery (retries included) is done; for tests."""
        deadline = time.monotonic() + within
        while self._tasks or any(c.pending for c in self._channels):
            if time.monotonic() > deadline:
                raise TimeoutError("webhook deliveries still running")
            await asyncio.sleep(0.02)

    async def aclose(self) -> None:
        for channel in list(self._channels):
            channel.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class WebhookChannel:
    """The webhooks of one prediction, in the order they happen."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        prediction_id: str,
        url: str,
        events: frozenset[str],
        snapshot: Callable[[], dict[str, Any]],
    ) -> None:
        self.dispatcher = dispatcher
        self.prediction_id = prediction_id
        self.url = url
        self.events = events
        self._snapshot = snapshot
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._last_sent: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._finished = False

    @property
    def pending(self) -> bool:
        return bool(self._timers) or not self._queue.empty()

    def notify(self, event: str) -> None:
        """Something happened to the prediction: `event` is start, logs, output or completed."""
        if self._finished:
            return
        if event == "completed":
            self._finished = True
            for throttled, timer in list(self._timers.items()):
                timer.cancel()
                if "completed" not in self.events:
                    self._enqueue(throttled)
            self._timers.clear()
        if event not in self.events:
            if event == "completed":
                self._enqueue_end()
            return
        if event not in THROTTLED_EVENTS:
            self._enqueue(event)
            return
        if event in self._timers:
            return  # the waiting delivery will carry this change too
        wait = self._last_sent.get(event, float("-inf")) + THROTTLE_SECONDS - time.monotonic()
        if wait <= 0:
            self._enqueue(event)
        else:
            self._timers[event] = asyncio.get_running_loop().call_later(wait, self._fire, event)

    def close(self) -> None:
        self._finished = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _fire(self, event: str) -> None:
        self._timers.pop(event, None)
        if not self._finished:
            self._enqueue(event)

    def _enqueue(self, event: str) -> None:
        self._last_sent[event] = time.monotonic()
        body = self._snapshot()
        delivery = Delivery(event, json.dumps(body).encode(), str(body.get("status")), new_webhook_id())
        self._queue.put_nowait(delivery)
        if self._task is None:
            self._task = self.dispatcher.spawn(self)

    def _enqueue_end(self) -> None:
        """Let the sender stop after what is queued, when no completed webhook will come."""
        self._queue.put_nowait(Delivery("end", b"", "", ""))
        if self._task is None:
            self._task = self.dispatcher.spawn(self)

    async def run(self) -> None:
        held: Delivery | None = None
        while True:
            delivery = await self._queue.get()
            if delivery.event == "end":
                if held is not None:
                    await self._deliver(held)
                return
            if self.dispatcher.config.webhook_reorder and held is None and not delivery.terminal:
                held = delivery
                continue
            await self._deliver(delivery)
            if held is not None:
                await self._deliver(held)
                held = None
            if delivery.terminal:
                return

    async def _deliver(self, delivery: Delivery) -> None:
        config, dice = self.dispatcher.config, self.dispatcher.dice
        if config.webhook_delay_ms > 0:
            await asyncio.sleep(config.webhook_delay_ms / 1000)
        if dice.chance(config.webhook_drop_rate):
            self._record(delivery, attempt=0, delivered=False, status=None, dropped=True)
            return
        await self._send(delivery, duplicate=False)
        if dice.chance(config.webhook_duplicate_rate):
            await self._send(delivery, duplicate=True)

    async def _send(self, delivery: Delivery, *, duplicate: bool) -> None:
        attempts = MAX_ATTEMPTS if delivery.terminal else 1
        for attempt in range(1, attempts + 1):
            headers = self.dispatcher.sign(self.prediction_id, delivery.webhook_id, delivery.body)
            headers.update({"content-type": "application/json", "user-agent": self.dispatcher.user_agent})
            status: int | None = None
            error: str | None = None
            try:
                response = await self.dispatcher.http.post(
                    self.url, content=delivery.body, headers=headers, timeout=TIMEOUT_SECONDS
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            delivered = status is not None and 200 <= status < 300
            self._record(delivery, attempt, delivered, status, duplicate=duplicate, error=error)
            if delivered or (status is not None and status < 400):
                return
            if attempt < attempts:
                await asyncio.sleep(RETRY_BASE_SECONDS * 2 ** (attempt - 1))
        logger.info(
            "simulator webhook not delivered",
            extra={"prediction_id": self.prediction_id, "event": delivery.event, "url": self.url},
        )

    def _record(
        self,
        delivery: Delivery,
        attempt: int,
        delivered: bool,
        status: int | None,
        *,
        dropped: bool = False,
        duplicate: bool = False,
        error: str | None = None,
    ) -> None:
        record: WebhookRecord = {
            "prediction_id": self.prediction_id,
            "event": delivery.event,
            "status": delivery.status,
            "attempt": attempt,
            "delivered": delivered,
            "response_status": status,
            "webhook_id": delivery.webhook_id,
            "url": self.url,
            "dropped": dropped,
            "duplicate": duplicate,
            "error": error,
        }
        self.dispatcher.stats.webhooks.append(record)
