"""Fixtures of the provider client's tests: a live simulator behind a live fault proxy, and clients of it.

    client --HTTP--> FaultProxy (records, injects faults) --HTTP--> Simulator

The simulator's public base URL is the proxy's, so every URL it hands out (next pages, output files,
uploads) leads back through the proxy too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from server.provider.replicate.client import ReplicateClient
from server.provider.replicate.prediction import Prediction
from server.provider.replicate.simulator import Simulator
from server.simulator import SimulatorConfig
from tests.provider.fault_proxy import FaultProxy
from tests.support.live_server import free_port, live_server

TOKEN = "r8_test-token"
IMAGES = "darkroom-sim/pixel-forge"  # text-to-image, a list of `num_outputs` URLs
STILL = "darkroom-sim/snap-still"  # text-to-image, one URL
SMALL = {"prompt": "a lighthouse at dusk", "width": 128, "height": 128, "num_inference_steps": 4}

MakeClient = Callable[..., ReplicateClient]


@dataclass
class Stack:
    simulator: Simulator
    proxy: FaultProxy

    @property
    def url(self) -> str:
        """The base URL clients are given: the proxy's."""
        return self.proxy.url

    @property
    def config(self) -> SimulatorConfig:
        return self.simulator.config

    @property
    def predictions_created(self) -> int:
        """Predictions the simulator created, whatever the client saw."""
        return self.simulator.stats.predictions_created


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    proxy = FaultProxy()
    proxy_port = free_port()
    simulator = Simulator(
        SimulatorConfig(
            public_base_url=f"http://127.0.0.1:{proxy_port}",
            api_token=TOKEN,
            run_seconds=0.3,
            start_seconds=0.05,
            seed=7,
        )
    )
    try:
        async with live_server(proxy, proxy_port) as proxy_url, live_server(simulator.app) as simulator_url:
            proxy.url, proxy.upstream = proxy_url, simulator_url
            yield Stack(simulator, proxy)
    finally:
        await simulator.aclose()
        await proxy.aclose()


@pytest.fixture
async def make_client(stack: Stack) -> AsyncIterator[MakeClient]:
    """`make_client(**options)`: a client of the proxy with tiny retry delays; closed after the test."""
    clients: list[ReplicateClient] = []

    def make(base_url: str | None = None, token: str | None = TOKEN, **options: Any) -> ReplicateClient:
        values: dict[str, Any] = {
            "timeout_seconds": 20.0,
            "max_retries": 3,
            "retry_base_seconds": 0.001,
            "retry_max_seconds": 0.05,
        }
        values.update(options)
        client = ReplicateClient(base_url or stack.url, token, **values)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def client(make_client: MakeClient) -> ReplicateClient:
    return make_client()


async def finished(client: ReplicateClient, prediction_id: str, within: float = 30.0) -> Prediction:
    """Poll the prediction until it is terminal (deadline `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        prediction = await client.get_prediction(prediction_id)
        if prediction.is_terminal:
            return prediction
        assert time.monotonic() < deadline, f"still {prediction.status}"
        await asyncio.sleep(0.05)
