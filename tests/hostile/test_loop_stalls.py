"""The event loop's monitor: a held loop shows on /metrics and in a WARNING, and the monitor can be turned off.

What holds the loop here is the test itself (the server runs on the test's event loop): no input can be
relied on to stall it, and one that did would be a bug the rest of the hostile suite is there to fix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.darkroom import Darkroom
from tests.support.waiting import eventually

HELD_SECONDS = 0.3
INTERVAL_SECONDS = 0.01


def hold_the_loop(seconds: float) -> None:
    """Block the server's event loop (the test's own), as a blocking call in a request handler would."""
    time.sleep(seconds)


async def loop_figures(darkroom: Darkroom) -> dict[str, float]:
    """The monitor's longest stall and its count of wake-ups, as GET /metrics reports them."""
    response = await darkroom.http.get("/metrics")
    assert response.status_code == 200
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in ("darkroom_event_loop_max_stall_seconds", "darkroom_event_loop_lag_seconds_count"):
                figures[sample.name] = sample.value
    return figures


async def test_a_held_event_loop_is_measured_and_logged(
    start_darkroom: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.loop_monitor")
    async with start_darkroom(
        loop_monitor_interval_seconds=INTERVAL_SECONDS, loop_stall_warn_seconds=HELD_SECONDS / 2
    ) as darkroom:
        before = await loop_figures(darkroom)
        assert before["darkroom_event_loop_max_stall_seconds"] < HELD_SECONDS - INTERVAL_SECONDS
        hold_the_loop(HELD_SECONDS)

        async def measured() -> dict[str, float]:
            figures = await loop_figures(darkroom)
            assert figures["darkroom_event_loop_lag_seconds_count"] > before["darkroom_event_loop_lag_seconds_count"]
            return figures

        after = await eventually(measured)
        # The monitor's sleep was due at most one interval after the loop was taken: it woke that much late.
        assert after["darkroom_event_loop_max_stall_seconds"] >= HELD_SECONDS - INTERVAL_SECONDS
        warnings = [r for r in caplog.records if r.name == "server.loop_monitor"]
        assert len(warnings) == 1
        warning: Any = warnings[0]
        assert warning.levelno == logging.WARNING
        assert warning.stall_seconds >= HELD_SECONDS - INTERVAL_SECONDS


async def test_a_zero_interval_turns_the_monitor_off(
    start_darkroom: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.loop_monitor")
    async with start_darkroom(loop_monitor_interval_seconds=0, loop_stall_warn_seconds=0.01) as darkroom:
        assert not [task for task in asyncio.all_tasks() if task.get_name() == "loop-monitor"]
        before = await loop_figures(darkroom)
        hold_the_loop(0.05)
        assert (await loop_figures(darkroom)) == before
        assert not [r for r in caplog.records if r.name == "server.loop_monitor"]
