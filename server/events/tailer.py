"""The process's one reader of the event log: it hands every committed event, in id order, to its subscribers.

Event ids become visible in commit order (see server/services/event_log/events.py), so reading the rows after a
high-water mark, in id order, yields every committed event exactly once and in order, whichever process
wrote it. The tailer reads when it is poked (a local commit, or a doorbell from another process) and at
least every `interval` seconds of its own, so a lost doorbell or a broker outage only delays delivery.
One read serves every subscriber of the process; nothing here is done per subscriber but the handing over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from server import telemetry
from server.periodic import periodic_task

logger = logging.getLogger(__name__)


class EventLog(Protocol):
    """Where committed events are read from (the database's event log)."""

    async def newest_id(self) -> int: ...

    async def read_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` events with ids above `after_id`, in id order, each with its "id"."""
        ...

    async def current_state(self, generation_id: str) -> dict[str, Any] | None:
        """The generation's stored state in the shape of an event (None when it does not exist)."""
        ...


class LogTailer:
    def __init__(
        self,
        log: EventLog,
        deliver: Callable[[dict[str, Any]], None],
        *,
        interval: float,
        batch_size: int,
    ) -> None:
        self._log = log
        self._deliver = deliver
        self._interval = interval
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._reading = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.high_water = 0
        # The newest id this process has heard of (doorbells, its own commits, its reads).
        self.newest_known = 0
        self.readable = False
        self._behind_since: float | None = None

    @property
    def lag_events(self) -> int:
        return max(0, self.newest_known - self.high_water)

    @property
    def lag_seconds(self) -> float:
        """How long the tailer has been behind (unable to read, or not yet at the newest known event)."""
        return 0.0 if self._behind_since is None else time.monotonic() - self._behind_since

    async def start(self) -> None:
        self.high_water = self.newest_known = await self._log.newest_id()
        self.readable = True
        self._task = periodic_task(
            "event-log-tailer", self._interval, self.catch_up, self._stop, wake=self._wake, wait_first=True
        )

    async def stop(self) -> None:
        self.readable = False
        self._stop.set()
        self._wake.set()  # the tailer's task waits on its wake alone
        if self._task is not None:
            self._task.cancel()  # a read in flight is not waited for: nobody is left to deliver it to
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self, event_id: int | None = None) -> None:
        """Something was committed (up to `event_id`, when known): read the log soon."""
        if event_id is not None and event_id > self.newest_known:
            self.newest_known = event_id
            if self._behind_since is None:
                self._behind_since = time.monotonic()
        self._wake.set()

    async def catch_up(self) -> bool:
        """Read until the log has nothing newer; False when the log could not be read."""
        async with self._reading:
            while True:
                started = telemetry.clock()
                try:
                    rows = await self._log.read_after(self.high_water, self._batch_size)
                except Exception as exc:
                    self._unreadable(exc)
                    return False
                if not self.readable:
                    self.readable = True
                    logger.info("event log readable again; delivery resumed", extra={"after_id": self.high_water})
                for row in rows:
                    self.high_water = row["id"]
                    self._deliver(row)
                if rows and started:
                    # Only a read that found events is a span; it links to the spans that logged them.
                    telemetry.record(
                        "darkroom.event_log.read",
                        started,
                        {
                            "darkroom.events": len(rows),
                            "darkroom.first_event_id": rows[0]["id"],
                            "darkroom.last_event_id": rows[-1]["id"],
                        },
                        links=telemetry.links_to(row.get("traceparent") for row in rows),
                    )
                if len(rows) < self._batch_size:
                    # Nothing rung since this read began was missed (a ring sets _wake, which reads again),
                    # so whatever else was heard of was deleted or rolled back.
                    if not self._wake.is_set():
                        self.newest_known = self.high_water
                    self.newest_known = max(self.newest_known, self.high_water)
                    if self.newest_known == self.high_water:
                        self._behind_since = None
                    return True
                await asyncio.sleep(0)  # let subscribers drain between full batches

    def _unreadable(self, exc: Exception) -> None:
        if self._behind_since is None:
            self._behind_since = time.monotonic()
        if self.readable:
            self.readable = False
            logger.warning(
                "cannot read the event log; live delivery paused until it can",
                extra={"error": f"{type(exc).__name__}: {exc}", "after_id": self.high_water},
            )
