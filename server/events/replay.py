"""Replaying the log after many subscribers' cursors at once: from memory, else one read per range.

After a deploy or a network blip every feed subscriber reconnects together, each with the cursor of the
last event it got, and replays the log after it before going live. Read per subscriber, that is one
query per client, all at once, while the connected subscribers wait behind them. Here the subscribers
waiting for a read are served in rounds. A round reads forward from the lowest waiting cursor, batch
after batch, into one window (at most ROUND_BATCHES batches), and hands every waiter the part of the
window after its own cursor: a view, not a copy. A waiter beyond the window starts the next window. So a
storm costs about one read per `batch_size` events between the lowest cursor and the end of the log,
however many clients share them. The events are read whole; each subscriber keeps the ones it may see.

Before any of that, the newest events are kept in memory (`tail_size` of them, appended as the tailer
delivers them, in order and with no gap from the position it started at). A cursor among them, the
common case after a blip, is served from there with no read at all.

A window is complete for a subscriber when it reached the end of the log and the subscriber's live
events (those after its registration with the hub) begin within it: handing over to them leaves no gap.
The last window read also serves the subscribers that ask after it, on that same condition, so a storm
that arrives over several seconds shares its reads too.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from server.events.tailer import EventLog
from server.metrics import SUBSCRIBE_READS

_READS = SUBSCRIBE_READS.labels("replay")

Event = dict[str, Any]


# Batches one round reads ahead into one window before its waiters must ask again: bounds the memory a
# storm holds (the window is shared by every waiter in it).
ROUND_BATCHES = 10


@dataclass(frozen=True, slots=True)
class Replayed:
    """The events after one subscriber's cursor, as a view of a window read for many."""

    window: list[Event]
    start: int
    reached_end: bool  # the window ends where the log ended when it was read

    def __iter__(self) -> Iterator[Event]:
        return itertools.islice(self.window, self.start, None)


Waiter = tuple[int, int, "asyncio.Future[Replayed]"]  # cursor, live_from, answer


class SharedReplay:
    def __init__(self, log: EventLog, batch_size: int, tail_size: int = 0) -> None:
        self._log = log
        self._batch_size = batch_size
        self._waiting: list[Waiter] = []
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # reads made, for the tests
        self._tail_size = tail_size
        # Every delivered event with an id above `_tail_base`, in order (None: not started).
        self._tail: list[Event] = []
        self._tail_ids: list[int] = []
        self._tail_base: int | None = None
        # The last window read: later waiters it covers are served from it (a storm arrives over seconds).
        self._recent: _Window | None = None

    def begin(self, position: int) -> None:
        """The tailer starts delivering after `position`: from there on, the tail holds every event."""
        if self._tail_size == 0:
            return  # no tail kept: every replay reads the log
        self._tail, self._tail_ids, self._tail_base = [], [], position

    def remember(self, event: Event) -> None:
        """Called for every event the tailer delivers, in order."""
        if self._tail_base is None:
            return
        self._tail.append(event)
        self._tail_ids.append(event["id"])
        if len(self._tail) > 2 * self._tail_size:
            # New lists, not trimmed in place: a subscriber may be replaying from the old one.
            self._tail_base = self._tail_ids[-self._tail_size - 1]
            self._tail = self._tail[-self._tail_size :]
            self._tail_ids = self._tail_ids[-self._tail_size :]

    async def after(self, cursor: int, live_from: int) -> Replayed:
        """Events with ids above `cursor`, in order (a window's worth); ask again after the last unless
        `reached_end`. `live_from` is where the caller's live events begin (its registration with the hub)."""
        if self._tail_base is not None and cursor >= self._tail_base:
            return Replayed(self._tail, bisect.bisect_right(self._tail_ids, cursor), True)
        recent = self._recent
        if recent is not None:
            served = recent.serve(cursor, live_from)
            if served is not None:
                return served  # read for the subscribers before it: no read of its own
        future: asyncio.Future[Replayed] = asyncio.get_running_loop().create_future()
        self._waiting.append((cursor, live_from, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve(), name="log-replay")
        return await future

    async def _serve(self) -> None:
        try:
            while self._waiting:
                # One round: the waiters so far, lowest cursor first; later ones wait for the next round.
                pending = sorted((w for w in self._waiting if not w[2].done()), key=lambda w: w[0])
                self._waiting = []
                while pending:
                    pending = await self._window_for(pending)
        finally:
            self._task = None

    async def _window_for(self, pending: list[Waiter]) -> list[Waiter]:
        """Read forward from the lowest cursor; serve the waiters the window covers, return the others."""
        events: list[Event] = []
        position = start = pending[0][0]
        reached_end = False
        try:
            for _ in range(ROUND_BATCHES):
                self.reads += 1
                _READS.inc()
                batch = await self._log.read_after(position, self._batch_size)
                events += batch
                reached_end = len(batch) < self._batch_size
                if reached_end:
                    break
                position = batch[-1]["id"]  # every waiter will want what follows: read on
        except Exception as exc:
            for _, _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return []
        window = self._recent = _Window(start, events, [event["id"] for event in events], reached_end)
        left = []
        for cursor, live_from, future in pending:
            if future.done():
                continue  # the subscriber went away
            served = window.serve(cursor, live_from)
            if served is not None:
                future.set_result(served)
            else:
                left.append((cursor, live_from, future))
        return left


@dataclass(frozen=True, slots=True)
class _Window:
    """Consecutive events read after `start`; `reached_end`: nothing followed them when they were read."""

    start: int
    events: list[Event]
    ids: list[int]
    reached_end: bool

    def serve(self, cursor: int, live_from: int) -> Replayed | None:
        """The part after `cursor`, or None when this window cannot tell what follows `cursor`."""
        last = self.ids[-1] if self.ids else self.start
        if cursor < self.start or (cursor >= last and not self.reached_end):
            return None
        # Complete for this caller when nothing it needs (up to where its live events begin) lies beyond.
        complete = self.reached_end and live_from <= max(cursor, last)
        if cursor >= last and not complete:
            return None
        return Replayed(self.events, bisect.bisect_right(self.ids, cursor), complete)
