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

import asyncio
import contextlib
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


async def freeze_after_subscription_bursts(
    stop: asyncio.Event,
    opened: Callable[[], int],
    open_now: Callable[[], int],
    quiet_seconds: float,
) -> None:
    """Freeze after each burst of new subscriptions; thaw and collect after many have closed."""
    frozen_at = seen_opened = opened()
    seen_closed = collected_closed = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=quiet_seconds)
        now_opened = opened()
        now_closed = now_opened - open_now()
        quiet = now_opened == seen_opened and now_closed == seen_closed
        seen_opened, seen_closed = now_opened, now_closed
        if not quiet:
            continue
        if now_closed - collected_closed >= max(CLOSED_BEFORE_FULL_COLLECTION, open_now() // 10):
            started = time.perf_counter()
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            collected_closed, frozen_at = now_closed, now_opened
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            logger.debug("collected the garbage of closed subscriptions", extra={"ms": elapsed_ms})
        elif now_opened != frozen_at:
            gc.freeze()
            frozen_at = now_opened
