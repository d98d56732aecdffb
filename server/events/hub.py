"""Live delivery in one process: the event log is the truth, the broker only rings the bell.

After a commit a service calls `publish(event)`: that pokes this process's tailer and rings the doorbell
for the others. Each process runs one `LogTailer`, which reads the log after its high-water mark, in
commit order, and offers each event to every local `Subscription` (a filter and a bounded queue). So a
subscriber gets every event it may see, once and in order, whichever process wrote it, and a broker
outage or a lost ring only delays delivery by up to EVENT_TAIL_INTERVAL_SECONDS.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

from server.events.current_states import CurrentStates
from server.events.doorbell import Doorbell
from server.events.replay import SharedReplay
from server.events.subscription import Predicate, Subscription
from server.events.tailer import EventLog, LogTailer

logger = logging.getLogger(__name__)


class EventHub:
    def __init__(
        self,
        url: str,
        log: EventLog,
        *,
        channel: str = "darkroom_events",
        queue_size: int = 256,
        replay_buffer: int = 0,
        tail_interval: float = 1.0,
        tail_batch_size: int = 500,
        check_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self.subscriptions_opened = 0
        # Each followed generation's newest state, read once and then kept from the events delivered here.
        self.states = CurrentStates(log.current_state)
        # Subscribers resuming from cursors share their reads of the log (a reconnect storm).
        self.replay = SharedReplay(log, tail_batch_size, replay_buffer)
        self.tailer = LogTailer(log, self.deliver_local, interval=tail_interval, batch_size=tail_batch_size)
        # memory:// is one process: its own commits poke its tailer, there is nobody to ring for.
        self.doorbell: Doorbell | None = None
        if urlparse(url).scheme != "memory":
            self.doorbell = Doorbell(
                url,
                channel,
                on_ring=self.tailer.poke,
                on_reconnect=self.tailer.catch_up,
                check_seconds=check_seconds,
            )

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def broadcast_connected(self) -> bool:
        return self.doorbell is None or self.doorbell.connected

    @property
    def log_readable(self) -> bool:
        return self.tailer.readable

    async def start(self) -> None:
        await self.tailer.start()
        self.replay.begin(self.tailer.high_water)
        if self.doorbell is not None:
            await self.doorbell.start()

    async def stop(self) -> None:
        if self.doorbell is not None:
            await self.doorbell.stop()
        await self.tailer.stop()

    async def publish(self, event_id: int) -> None:
        """The event `event_id` was committed: deliver it here and to every other process (via the log, in order)."""
        self.tailer.poke(event_id)
        if self.doorbell is not None:
            self.doorbell.ring(event_id)

    @contextlib.asynccontextmanager
    async def subscribe(self, predicate: Predicate | None = None) -> AsyncIterator[Subscription]:
        """Every event after the tailer's current position that matches `predicate`, until the block exits.

        `subscription.registered_at` is that position: a reader that replays the log itself hands over
        to the subscription after it, with no gap (the tailer offers everything above it, in order).
        """
        subscription = Subscription(predicate, self.queue_size, self.tailer.high_water)
        self._subscriptions.add(subscription)
        self.subscriptions_opened += 1
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def deliver_local(self, event: dict[str, Any]) -> None:
        self.states.observe(event)
        self.replay.remember(event)
        for subscription in list(self._subscriptions):
            subscription.offer(event)
