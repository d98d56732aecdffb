"""The current state of each followed generation, kept from the events the tailer delivers.

A `generation(id)` subscription starts with the generation's current state. Read from the database for
each subscriber, that was two queries per subscribe, queued on the connection pool: opening a thousand
subscriptions at once took seconds, and every one of them waited behind the ones before it. Here the
state is read once per generation while anyone follows it, then kept up to date from the events the
tailer delivers, so a subscriber joining an existing group reads nothing.

Why that is never older than what the subscriber's own registration covers: a follower holds the entry
(`hold`) after registering with the hub, so any event delivered before that was committed before the
entry's first read, and any event delivered after it is observed into the entry. The first read and the
observed events are merged by sequence, the newer winning. An event whose media were cut short
(`mediaTruncated`) is no full state: the entry reads the database again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from server.metrics import SUBSCRIBE_READS

_READS = SUBSCRIBE_READS.labels("state")

Event = dict[str, Any]
StateLoader = Callable[[str], Awaitable[Event | None]]


@dataclass(slots=True)
class _Entry:
    followers: int = 0
    state: Event | None = None
    # The one database read in flight (or done) for this entry; None once an event made it stale.
    read: asyncio.Task[Event | None] | None = None
    # Events observed while the read was in flight: whichever is newer wins when it lands.
    observed: Event | None = field(default=None)


def _newer(first: Event | None, second: Event | None) -> Event | None:
    if first is None:
        return second
    if second is None:
        return first
    return second if second["seq"] > first["seq"] else first


class CurrentStates:
    """The newest known state of each generation someone follows, read from the database once."""

    def __init__(self, load: StateLoader) -> None:
        self._load = load
        self._entries: dict[str, _Entry] = {}
        self.reads = 0  # database reads made, for the metrics and the tests

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.asynccontextmanager
    async def hold(self, generation_id: str) -> AsyncIterator[None]:
        """Keep `generation_id`'s state while the block runs (call after registering with the hub)."""
        entry = self._entries.get(generation_id)
        if entry is None:
            entry = self._entries[generation_id] = _Entry()
        entry.followers += 1
        try:
            yield
        finally:
            entry.followers -= 1
            if entry.followers == 0 and self._entries.get(generation_id) is entry:
                del self._entries[generation_id]
                if entry.read is not None and not entry.read.done():
                    entry.read.cancel()

    async def current(self, generation_id: str) -> Event | None:
        """The generation's newest state (None when it does not exist); inside `hold(generation_id)`."""
        entry = self._entries[generation_id]
        while entry.state is None:
            read = entry.read
            if read is None:
                read = entry.read = asyncio.get_running_loop().create_task(self._read(generation_id))
            # Shielded: a follower that goes away must not cancel the read the others wait for.
            try:
                stored = await asyncio.shield(read)
            except Exception:
                if entry.read is read:
                    entry.read = None  # the next follower tries again
                raise
            if entry.read is not read:
                continue  # an event made this read stale while it ran: read again
            if stored is None and entry.observed is None:
                entry.read = None
                return None  # not (yet) in the database: the next follower reads again
            entry.state = _newer(stored, entry.observed)
            entry.observed = None
        return entry.state

    async def _read(self, generation_id: str) -> Event | None:
        self.reads += 1
        _READS.inc()
        return await self._load(generation_id)

    def observe(self, event: Event) -> None:
        """Called for every event the tailer delivers, before any subscriber gets it."""
        entry = self._entries.get(event.get("generationId", ""))
        if entry is None:
            return
        if event.get("mediaTruncated"):
            entry.state = entry.observed = None
            entry.read = None  # a full state comes from the database: the next `current` reads it
        elif entry.state is not None:
            entry.state = _newer(entry.state, event)
        else:
            entry.observed = _newer(entry.observed, event)
