"""How long the event loop was kept from running other work: a task that sleeps a short interval and measures
how late it wakes.

Every request, subscription and background job of a process shares one event loop, so anything that holds
it (a slow parse, a decode, a CPU-bound query) delays all of them at once. The lateness of each wake-up is
observed in `darkroom_event_loop_lag_seconds`; the longest seen since the process started is
`darkroom_event_loop_max_stall_seconds`; one longer than LOOP_STALL_WARN_SECONDS is logged as a WARNING.
At the default interval the task wakes 20 times a second, which costs next to nothing.
"""

from __future__ import annotations

import asyncio
import logging

from server.metrics import EVENT_LOOP_LAG, EVENT_LOOP_MAX_STALL

logger = logging.getLogger(__name__)


class LoopMonitor:
    """Measures the event loop's lateness every `interval_seconds`; warns of stalls over `warn_seconds`."""

    def __init__(self, interval_seconds: float, warn_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self.warn_seconds = warn_seconds
        self.longest_seconds = 0.0

    def observe(self, lag_seconds: float) -> None:
        """Record one wake-up that came `lag_seconds` after it was due."""
        EVENT_LOOP_LAG.observe(lag_seconds)
        if lag_seconds > self.longest_seconds:
            self.longest_seconds = lag_seconds
            EVENT_LOOP_MAX_STALL.set(lag_seconds)
        if self.warn_seconds > 0 and lag_seconds > self.warn_seconds:
            logger.warning(
                "the event loop was held for %.3f s: every request and subscription of this process waited",
                lag_seconds,
                extra={"stall_seconds": round(lag_seconds, 4)},
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Sleep, wake, measure, until `stop` is set (noticed within one interval)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            due = loop.time() + self.interval_seconds
            # A plain sleep, not a wait on `stop`: one timer a round, nothing else to schedule.
            await asyncio.sleep(self.interval_seconds)
            self.observe(max(0.0, loop.time() - due))


def start_loop_monitor(interval_seconds: float, warn_seconds: float, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """The monitor's task, ending when `stop` is set; None when `interval_seconds` is 0 (monitor off)."""
    if interval_seconds <= 0:
        return None
    monitor = LoopMonitor(interval_seconds, warn_seconds)
    return asyncio.create_task(monitor.run(stop), name="loop-monitor")
