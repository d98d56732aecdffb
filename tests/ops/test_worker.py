"""`darkroom worker`: the background workers in a process of their own, answering only health and metrics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.processes import darkroom_process
from tests.support.services import SESSION_CHANNEL


def worker_env(tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'darkroom.db'}",
        "BROADCAST_URL": "memory://",
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(tmp_path / "var"),
        "REPLICATE_API_TOKEN": "",
        "PUBLIC_URL": "",
        # Nothing answers there; the worker only has to know where the API processes' simulator is.
        "REPLICATE_API_BASE_URL": "http://127.0.0.1:9/simulator",
        "POLLER_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }


async def test_a_worker_serves_health_and_metrics_and_nothing_else(tmp_path: Path) -> None:
    async with (
        darkroom_process(worker_env(tmp_path), tmp_path / "worker.log", command="worker") as base,
        httpx.AsyncClient(base_url=base, timeout=10) as client,
    ):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": True, "event_log": True, "broadcast": True, "downloader": True}
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert "darkroom_downloads_total" in metrics.text
        for path in ("/graphql", "/webhooks/replicate", "/gallery/", "/media/x.png", "/simulator/v1/models"):
            assert (await client.get(path)).status_code == 404, path
        assert (await client.post("/graphql", json={"query": "{ __typename }"})).status_code == 404


def test_a_worker_without_a_token_or_a_simulator_address_refuses_to_start(tmp_path: Path) -> None:
    env = {**worker_env(tmp_path), "REPLICATE_API_BASE_URL": "https://api.replicate.com"}
    finished = subprocess.run(
        [sys.executable, "-m", "server.cli", "worker"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2, finished
    assert "REPLICATE_API_BASE_URL" in finished.stderr
