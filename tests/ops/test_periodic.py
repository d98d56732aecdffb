"""The one loop every background task runs on: stopping, a failing round, waking early, and jitter."""

from __future__ import annotations

import asyncio
import logging

import pytest

from server.periodic import JITTER_FRACTION, jittered, periodic_task

AN_HOUR = 3600.0


async def test_setting_stop_ends_a_long_wait_at_once() -> None:
    stop, ran = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        ran.set()

    task = periodic_task("test-stop", AN_HOUR, work, stop)
    await asyncio.wait_for(ran.wait(), 5)  # the first round runs at start-up
    stop.set()
    await asyncio.wait_for(task, 5)  # ...and the hour's wait after it ends with `stop`


async def test_a_failing_round_is_logged_once_at_error_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop, third_round = asyncio.Event(), asyncio.Event()
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("the database went away")
        if rounds == 3:
            third_round.set()

    with caplog.at_level(logging.ERROR, logger="server.periodic"):
        task = periodic_task("test-flaky", 0.001, work, stop)
        await asyncio.wait_for(third_round.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 5)

    [failure] = [record for record in caplog.records if record.name == "server.periodic"]
    assert failure.levelno == logging.ERROR
    assert "test-flaky" in failure.getMessage() and getattr(failure, "task", None) == "test-flaky"
    assert failure.exc_info is not None and isinstance(failure.exc_info[1], RuntimeError)


async def test_wake_starts_the_next_round_before_the_interval_is_over() -> None:
    stop, wake, ran = asyncio.Event(), asyncio.Event(), asyncio.Event()
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1
        ran.set()

    task = periodic_task("test-wake", AN_HOUR, work, stop, wake=wake, wait_first=True)
    wake.set()
    await asyncio.wait_for(ran.wait(), 5)
    assert rounds == 1 and not wake.is_set(), "the wake that started the round is used up"
    stop.set()
    wake.set()  # with `wake`, the task waits on it alone
    await asyncio.wait_for(task, 5)
    assert rounds == 1, "a wake that comes with `stop` starts no round"


async def test_wait_first_runs_no_round_before_the_first_interval() -> None:
    stop = asyncio.Event()
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1

    task = periodic_task("test-wait-first", AN_HOUR, work, stop, wait_first=True)
    for _ in range(10):
        await asyncio.sleep(0)  # let the task start and settle into its wait
    stop.set()
    await asyncio.wait_for(task, 5)
    assert rounds == 0


def test_each_wait_is_at_most_the_interval_and_shorter_by_at_most_the_jitter_fraction() -> None:
    waits = [jittered(10.0) for _ in range(1000)]
    assert all(10.0 * (1 - JITTER_FRACTION) <= wait <= 10.0 for wait in waits)
    # Spread over the range, not one fixed offset: processes started together drift apart.
    assert max(waits) - min(waits) > 10.0 * JITTER_FRACTION / 2
