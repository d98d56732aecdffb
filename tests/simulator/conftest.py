"""Fixtures of the simulator's tests: a live simulator (`sim`, `start_simulator`) and a webhook `receiver`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from server.simulator import Simulator
from tests.simulator.support import AUTH, Receiver, RunningSimulator, StartSimulator, fast_config
from tests.support.live_server import free_port, live_server


@pytest.fixture
def start_simulator() -> StartSimulator:
    """`async with start_simulator(**config) as running:` serves a fresh simulator over HTTP."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RunningSimulator]:
        port = free_port()
        simulator = Simulator(fast_config(port, **overrides))
        try:
            async with (
                live_server(simulator.app, port) as url,
                httpx.AsyncClient(base_url=url, headers=AUTH, timeout=20) as http,
            ):
                yield RunningSimulator(simulator, url, http)
        finally:
            await simulator.aclose()

    return start


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
