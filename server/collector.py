"""Garbage collection for a process that holds many long-lived subscriptions.

A collection scans every object of the generations it collects, so with thousands of open
subscriptions a full pass stalls all of them, and a pass that lands on an event delays that event for
everyone. Three things keep it off the delivery path:

- start-up objects live as long as the process: they are frozen out of every pass;
- collections are rarer (GC_THRESHOLDS);
- what a burst of new subscriptions allocated lives as long as those subscriptions: once subscriptions
  have stopped opening for GC_FREEZE_AFTER_SUBSCRIBE_SECONDS it is frozen too (an O(1) move, no pass),
  so the first change after subscribing scans no more than any other. Frozen objects are never
  collected, so once enough subscriptions have closed, the process thaws, collects and freezes again,
  at a moment when no subscription opened or closed for that long.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

# Closed subscriptions (at least this many, and a tenth of those open) whose garbage a full pass reclaims.
CLOSED_BEFORE_FULL_COLLECTION = 100


def tune_after_start_up(thresholds: str) -> None:
    gc.collect()
    gc.freeze()
    if thresholds.strip():
        gc.set_threshold(*(int(part) for part in thresholds.split(",")))


class SubscriptionFreezer:
    """Freeze after each burst of new subscriptions; thaw and collect after many have closed.

    `look()` is its periodic round, every GC_FREEZE_AFTER_SUBSCRIBE_SECONDS: it acts only when nothing
    opened or closed since the previous look.
    """

    def __init__(self, opened: Callable[[], int], open_now: Callable[[], int]) -> None:
        self._opened = opened
        self._open_now = open_now
        self._frozen_at = self._seen_opened = opened()
        self._seen_closed = self._collected_closed = 0

    async def look(self) -> None:
        now_opened = self._opened()
        now_closed = now_opened - self._open_now()
        quiet = now_opened == self._seen_opened and now_closed == self._seen_closed
        self._seen_opened, self._seen_closed = now_opened, now_closed
        if not quiet:
            return
        if now_closed - self._collected_closed >= max(CLOSED_BEFORE_FULL_COLLECTION, self._open_now() // 10):
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._collected_closed, self._frozen_at = now_closed, now_opened
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            logger.debug("collected the garbage of closed subscriptions", extra={"ms": elapsed_ms})
        elif now_opened != self._frozen_at:
            gc.freeze()
            self._frozen_at = now_opened
