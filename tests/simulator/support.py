"""Helpers of the simulator's tests: a running simulator with an HTTP client, and a webhook receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from server.provider.replicate.simulator import Simulator
from server.simulator import SimulatorConfig
from server.simulator.catalogue import find_by_ref
from tests.support.live_server import free_port, live_server, read_body

AUTH = {"authorization": "Bearer test-token"}
TERMINAL = {"succeeded", "failed", "canceled", "aborted"}

StartSimulator = Callable[..., Any]


def version_id(ref: str) -> str:
    """The version id of the simulated model `ref`."""
    model = find_by_ref(ref)
    assert model is not None, ref
    return model.version_id


def fast_config(port: int, **overrides: Any) -> SimulatorConfig:
    """Quick runs (0.05 s starting, 0.3 s processing) and a fixed seed, on 127.0.0.1:`port`."""
    values: dict[str, Any] = {
        "public_base_url": f"http://127.0.0.1:{port}",
        "run_seconds": 0.3,
        "start_seconds": 0.05,
        "seed": 1234,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@dataclass
class RunningSimulator:
    simulator: Simulator
    url: str
    http: httpx.AsyncClient

    @property
    def config(self) -> SimulatorConfig:
        return self.simulator.config

    async def create(self, model: str, input: dict[str, Any], **body: Any) -> dict[str, Any]:
        """Create a prediction of `model` the way Replicate takes it: an official model through
        POST /v1/models/{model}/predictions, another by its version through /v1/predictions; asserts 201."""
        known = find_by_ref(model)
        if known is None or known.is_official:
            response = await self.http.post(f"/v1/models/{model}/predictions", json={"input": input, **body})
        else:
            version = f"{known.ref}:{known.version_id}"
            response = await self.http.post("/v1/predictions", json={"version": version, "input": input, **body})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def finished(self, prediction_id: str, within: float = 15.0) -> dict[str, Any]:
        """Poll the prediction until its status is terminal."""
        deadline = time.monotonic() + within
        while True:
            body: dict[str, Any] = (await self.http.get(f"/v1/predictions/{prediction_id}")).json()
            if body["status"] in TERMINAL:
                return body
            assert time.monotonic() < deadline, f"prediction still {body['status']}"
            await asyncio.sleep(0.03)

    async def run(self, model: str, input: dict[str, Any], **body: Any) -> dict[str, Any]:
        created = await self.create(model, input, **body)
        return await self.finished(created["id"])


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    received_at: float
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A raw ASGI app that records every webhook and answers `respond(body)` (200 by default)."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    respond: Callable[[dict[str, Any]], int] = lambda body: 200

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status = self.respond(json.loads(body))
        self.deliveries.append(Delivery(headers, body, time.monotonic(), status))
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    def statuses(self) -> list[str]:
        return [d.json["status"] for d in self.deliveries]

    async def wait_for(self, check: Callable[[list[Delivery]], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not check(self.deliveries):
            assert time.monotonic() < deadline, f"receiver got {len(self.deliveries)} deliveries"
            await asyncio.sleep(0.02)


@asynccontextmanager
async def serve_simulator(**overrides: Any) -> AsyncIterator[RunningSimulator]:
    """A fresh simulator served over HTTP on a free port, with fast_config's settings and `overrides`."""
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
