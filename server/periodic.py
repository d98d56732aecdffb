"""Background work that runs every few seconds until the process stops: one loop for all of it.

`periodic_task(name, interval, work, stop)` runs `work()` once at start-up (or after the first wait, with
`wait_first`), then again after each interval, until `stop` is set; setting `stop` ends a wait at once
(a round in flight is finished, or cancelled by its owner). With `wake`, setting that event starts the
next round early: "read when poked, and at least every interval". The wait is then on `wake` alone (one
event, no helper tasks on a hot path), so whoever sets `stop` sets `wake` too.

Every such task behaves alike:

- a round that raises is a server fault: it is logged once, at ERROR with its traceback, under one message
  naming the task, and the next round runs on schedule;
- each wait is a little shorter than the interval, by a random fraction of up to JITTER_FRACTION, so
  processes started together do not hit the database or the broker in lockstep. Never longer: a setting
  that promises "within N seconds" keeps its promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

# The largest share of an interval a wait may be shortened by.
JITTER_FRACTION = 0.1
# Our own generator: drawing from the shared `random` module would disturb anyone who seeded it.
_rng = random.Random()


def jittered(interval_seconds: float) -> float:
    """A wait for one interval: `interval_seconds` less a random fraction of it, up to JITTER_FRACTION."""
    return interval_seconds * _rng.uniform(1.0 - JITTER_FRACTION, 1.0)


def periodic_task(
    name: str,
    interval_seconds: float,
    work: Callable[[], Awaitable[object]],
    stop: asyncio.Event,
    *,
    wake: asyncio.Event | None = None,
    wait_first: bool = False,
) -> asyncio.Task[None]:
    """Start a task named `name` that runs `work()` every `interval_seconds` until `stop` is set."""
    return asyncio.create_task(_run(name, interval_seconds, work, stop, wake, wait_first), name=name)


async def _run(
    name: str,
    interval_seconds: float,
    work: Callable[[], Awaitable[object]],
    stop: asyncio.Event,
    wake: asyncio.Event | None,
    wait_first: bool,
) -> None:
    if wait_first:
        await _pause(interval_seconds, stop, wake)
    while not stop.is_set():
        try:
            await work()
        except Exception:
            logger.exception("periodic task %s failed; it runs again after its interval", name, extra={"task": name})
        await _pause(interval_seconds, stop, wake)


async def _pause(interval_seconds: float, stop: asyncio.Event, wake: asyncio.Event | None) -> None:
    """Wait out one jittered interval, or less if the event waited on (`wake` if given, else `stop`) is set."""
    event = stop if wake is None else wake
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(jittered(interval_seconds)):
            await event.wait()
    if wake is not None:
        wake.clear()
