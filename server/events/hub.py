"""One broadcaster channel per process, fanned out locally to bounded per-subscriber queues.

Every process subscribes to the single channel once; each GraphQL subscription registers a filter and
a bounded queue here. That keeps the broker's work independent of the number of subscribers (one
message per event per process) and lets a slow socket fall behind alone: when its queue is full it is
told (SubscriberOverflow) instead of silently missing events or delaying anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlparse

from broadcaster import Broadcast

from server.events.redis_backend import RedisPubSubBackend

logger = logging.getLogger(__name__)

Predicate = Callable[[dict[str, Any]], bool]


class SubscriberOverflow(Exception):
    """The subscriber did not keep up: its queue filled and events were dropped for it."""


class Subscription:
    """A registration with the hub: a filter and a bounded queue, iterated by its owner."""

    def __init__(self, hub: EventHub, predicate: Predicate | None, size: int) -> None:
        self._hub = hub
        self._predicate = predicate
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed or (self._predicate is not None and not self._predicate(event)):
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            # Wake the consumer so it learns at once rather than after draining a stale backlog.
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self._queue.put_nowait({"__overflow__": True})

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        event = await self._queue.get()
        if "__overflow__" in event:
            raise SubscriberOverflow("events arrived faster than this subscriber read them")
        return event


class EventHub:
    """Publish events to every process; subscribe to them in this one."""

    def __init__(self, url: str, *, channel: str = "darkroom_events", queue_size: int = 256) -> None:
        self.url = url
        self.channel = channel
        self.queue_size = queue_size
        self._broadcast = _broadcast(url)
        self._subscriptions: set[Subscription] = set()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        # broadcaster's Postgres backend publishes on its one listening connection; asyncpg allows
        # one operation at a time per connection.
        self._publish_lock = asyncio.Lock()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def healthy(self) -> bool:
        return self._listener is not None and not self._listener.done()

    async def start(self) -> None:
        await self._broadcast.connect()
        self._listener = asyncio.create_task(self._listen(), name="event-hub-listener")
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)
        logger.info("event hub connected", extra={"broadcast": urlparse(self.url).scheme})

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(Exception):
            await self._broadcast.disconnect()

    async def publish(self, event: dict[str, Any]) -> None:
        message = json.dumps(event, separators=(",", ":"))
        async with self._publish_lock:
            await self._broadcast.publish(self.channel, message)

    @contextlib.asynccontextmanager
    async def subscribe(self, predicate: Predicate | None = None) -> AsyncIterator[Subscription]:
        """Register for events matching `predicate` until the block exits (also on cancellation)."""
        subscription = Subscription(self, predicate, self.queue_size)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def deliver_local(self, event: dict[str, Any]) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(event)

    async def _listen(self) -> None:
        async with self._broadcast.subscribe(self.channel) as subscriber:
            self._subscribed.set()
            async for message in subscriber:  # type: ignore[union-attr]
                if message is None:
                    continue
                try:
                    event = json.loads(message.message)
                except (TypeError, ValueError):
                    logger.warning("dropped an undecodable broadcast message")
                    continue
                self.deliver_local(event)


def _broadcast(url: str) -> Broadcast:
    """broadcaster for `url`: its own backends, but ours for Redis (see redis_backend.py)."""
    scheme = urlparse(url).scheme
    if scheme in ("redis", "rediss"):
        return Broadcast(backend=RedisPubSubBackend(url))
    # broadcaster's Postgres backend speaks asyncpg, which wants a plain postgresql:// URL.
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if url.startswith(prefix):
            url = "postgresql://" + url[len(prefix) :]
    return Broadcast(url)
