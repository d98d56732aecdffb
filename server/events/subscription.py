"""A subscriber's registration with the hub: a filter and a bounded queue, iterated by its owner.

A slow socket falls behind alone: when its queue is full it is told (SubscriberOverflow) instead of
silently missing events or delaying anyone else, and resumes from its last cursor. An owner that can
take events as they come (a live fan-out) hands the subscription over: from then on each event is
passed to it during the tailer's delivery, with no queue and no task switch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_OVERFLOW: dict[str, Any] = {"__overflow__": True}


class SubscriberOverflow(Exception):
    """The subscriber did not keep up: its queue filled and events were dropped for it."""


class Subscription:
    def __init__(self, predicate: Predicate | None, size: int, high_water: int) -> None:
        self._predicate = predicate
        # Dropped at hand-over: held by every idle subscription, it cost about 3 KiB of memory each.
        self._queue: asyncio.Queue[dict[str, Any]] | None = asyncio.Queue(maxsize=size)
        self.overflowed = False
        # The log position this subscription was registered at: every event after it is offered, in order.
        self.registered_at = high_water
        self._consumer: Callable[[dict[str, Any]], None] | None = None

    def hand_over(self, consumer: Callable[[dict[str, Any]], None]) -> None:
        """Pass every later event to `consumer` as it is delivered, the ones already queued first, in order."""
        queue = self._queue
        if queue is None:
            raise RuntimeError("this subscription was already handed over")
        while not queue.empty():
            event = queue.get_nowait()
            if event is _OVERFLOW:
                raise SubscriberOverflow("events arrived faster than this subscriber read them")
            consumer(event)
        self._consumer = consumer
        self._queue = None

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed or (self._predicate is not None and not self._predicate(event)):
            return
        if self._consumer is not None:
            self._consumer(event)
            return
        queue = self._queue
        assert queue is not None  # no consumer yet: the queue holds what comes
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            # Wake the consumer so it learns at once rather than after draining a stale backlog.
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(_OVERFLOW)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._queue is None:
            raise RuntimeError("this subscription was handed over: its consumer takes the events")
        event = await self._queue.get()
        if event is _OVERFLOW:
            raise SubscriberOverflow("events arrived faster than this subscriber read them")
        return event
