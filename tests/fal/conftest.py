"""Fixtures of the fal tests: a live fal simulator with a provider (`fal`) and a webhook `receiver`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fal.support import RunningFal, serve_fal
from tests.simulator.support import Receiver
from tests.support.live_server import live_server


@pytest.fixture
async def fal() -> AsyncIterator[RunningFal]:
    async with serve_fal() as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = Receiver()
    async with live_server(app, lifespan="off") as url:
        app.url = url + "/hooks/fal"
        yield app
