"""Fixtures of the simulator's tests: a live simulator (`sim`, `start_simulator`) and a webhook `receiver`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.simulator.support import Receiver, RunningSimulator, StartSimulator, serve_simulator
from tests.support.live_server import live_server


@pytest.fixture
def start_simulator() -> StartSimulator:
    """`async with start_simulator(**config) as running:` serves a fresh simulator over HTTP."""
    return serve_simulator


@pytest.fixture
async def sim(start_simulator: StartSimulator) -> AsyncIterator[RunningSimulator]:
    async with start_simulator() as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = Receiver()
    async with live_server(app, lifespan="off") as url:
        app.url = url + "/hooks/replicate"
        yield app
