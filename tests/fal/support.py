"""Helpers of the fal tests: a fal simulator served over HTTP, and a FalProvider pointed at it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from server.domain import GenerationStatus
from server.provider.fal import FalClient, FalProvider
from server.provider.fal.simulator import FalSimulator, FalSimulatorConfig
from server.provider.types import JobRef, PredictionUpdate
from tests.support.live_server import free_port, live_server

KEY = "test-key"
AUTH = {"authorization": f"Key {KEY}"}


def fast_config(port: int, **overrides: Any) -> FalSimulatorConfig:
    """Quick requests (0.15 s queued, 0.3 s running) and a fixed seed, on 127.0.0.1:`port`."""
    values: dict[str, Any] = {
        "public_base_url": f"http://127.0.0.1:{port}",
        "start_seconds": 0.15,
        "run_seconds": 0.3,
        "seed": 4321,
    }
    values.update(overrides)
    return FalSimulatorConfig(**values)


def fal_client(url: str, **overrides: Any) -> FalClient:
    """A FalClient whose every fal host is the simulator at `url`, with quick retries."""
    options: dict[str, Any] = {
        "queue_base_url": url,
        "rest_base_url": url,
        "cdn_base_url": url,
        "openapi_base_url": url,
        "api_base_url": url,
        "timeout_seconds": 10.0,
        "retry_base_seconds": 0.01,
        "retry_max_seconds": 0.05,
    }
    options.update(overrides)
    return FalClient(KEY, **options)


@dataclass
class RunningFal:
    simulator: FalSimulator
    url: str
    http: httpx.AsyncClient
    provider: FalProvider

    @property
    def config(self) -> FalSimulatorConfig:
        return self.simulator.config

    async def until(
        self, job: JobRef, check: Callable[[PredictionUpdate], bool], within: float = 15.0
    ) -> PredictionUpdate:
        """Poll `provider.get(job)` until `check` holds (each update is also kept in `seen`)."""
        deadline = time.monotonic() + within
        while True:
            update = await self.provider.get(job)
            self.seen.append(update)
            if check(update):
                return update
            assert time.monotonic() < deadline, f"still {update.provider_status}"
            await asyncio.sleep(0.02)

    async def finished(self, job: JobRef, within: float = 15.0) -> PredictionUpdate:
        return await self.until(job, lambda u: u.status is not None and u.status.is_terminal, within)

    def __post_init__(self) -> None:
        self.seen: list[PredictionUpdate] = []


TERMINAL = {GenerationStatus.SUCCEEDED, GenerationStatus.FAILED, GenerationStatus.CANCELED}


@asynccontextmanager
async def serve_fal(*, jwks_min_refresh_seconds: float = 60.0, **overrides: Any) -> AsyncIterator[RunningFal]:
    """A fresh fal simulator over HTTP on a free port, and a FalProvider pointed at it."""
    port = free_port()
    simulator = FalSimulator(fast_config(port, **overrides))
    try:
        async with (
            live_server(simulator.app, port) as url,
            httpx.AsyncClient(base_url=url, headers=AUTH, timeout=20) as http,
        ):
            provider = FalProvider(
                fal_client(url),
                jwks_url=f"{url}/.well-known/jwks.json",
                jwks_min_refresh_seconds=jwks_min_refresh_seconds,
            )
            try:
                yield RunningFal(simulator, url, http, provider)
            finally:
                await provider.aclose()
    finally:
        await simulator.aclose()
