"""Waiting on a condition instead of sleeping: a test goes on the moment what it needs is true."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Await `check()` (a plain or async callable) until it returns something truthy, and return that.

    Fails after `timeout` seconds; `interval` is only how briefly it polls in between.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def new_subscriptions(hub: Any, opened_before: int, count: int = 1, *, timeout: float = 10.0) -> None:
    """Wait until `count` subscriptions have registered with `hub` since it counted `opened_before`.

    A registered subscription is offered every event committed after it, so a test that waits here
    before making an event knows the subscriber will see it.
    """
    await eventually(lambda: hub.subscriptions_opened >= opened_before + count, timeout=timeout, interval=0.01)
