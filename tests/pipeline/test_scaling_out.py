"""Darkroom across several processes: two `darkroom serve` with their workers off, one `darkroom worker`,
one `darkroom simulator` they all use, on one PostgreSQL, one Redis and one media store (a shared
directory, or a bucket on a real S3 server).

The simulator drops every webhook, so only the worker's poller can move a generation on, and only its
downloader can store the files: the API processes answer clients and nothing else.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.flows import FOLLOW, IMAGE_MODEL, START, settled
from tests.support.graphql import data, gql, ws_connect
from tests.support.object_storage import CREDENTIALS, MediaStore
from tests.support.processes import darkroom_process, simulator_process
from tests.support.services import SESSION_CHANNEL, empty_postgres_database

OUTPUTS = 2


@pytest.fixture(params=["file", "s3"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[MediaStore, dict[str, str]]:
    """The media store every process shares, and the environment that points a process at it.

    "file": one directory every process uses as MEDIA_ROOT (one host). "s3": one bucket on a real S3
    server (moto, over HTTP), as separate hosts share it.
    """
    if request.param == "s3":
        store = MediaStore.s3(request.getfixturevalue("s3_endpoint"))
        return store, {
            "MEDIA_STORAGE_URL": store.settings["media_storage_url"],
            "S3_ENDPOINT_URL": store.settings["s3_endpoint_url"],
            **CREDENTIALS,
        }
    shared = tmp_path / "media"
    shared.mkdir()
    return MediaStore("local"), {"MEDIA_ROOT": str(shared)}


def process_env(
    name: str, database: str, broadcast: str, simulator: str, tmp_path: Path, storage: dict[str, str]
) -> dict[str, str]:
    return {
        "DATABASE_URL": database,
        "BROADCAST_URL": broadcast,
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(tmp_path / name),
        "REPLICATE_API_TOKEN": "",
        "REPLICATE_API_BASE_URL": simulator,
        "PUBLIC_URL": "",
        "RATE_LIMIT_MUTATIONS_PER_MINUTE": "0",
        "EVENT_TAIL_INTERVAL_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
        **storage,
    }


API_ENV = {"POLLER_ENABLED": "false", "DOWNLOADER_ENABLED": "false", "CLEANUP_ENABLED": "false"}
WORKER_ENV = {
    "POLL_INTERVAL_SECONDS": "0.2",
    "POLL_STALE_AFTER_SECONDS": "0.3",
    "POLL_BACKOFF_MAX_SECONDS": "0.5",
    "DOWNLOAD_IDLE_SECONDS": "0.2",
}
SIMULATOR_ENV = {"SIMULATOR_RUN_SECONDS": "1.0", "SIMULATOR_WEBHOOK_DROP_RATE": "1.0", "LOG_LEVEL": "WARNING"}


async def downloads(process: str) -> dict[str, float]:
    """One process' darkroom_downloads_total, by result."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{process}/metrics")).text
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "darkroom_downloads_total"
    }


async def served(base: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        response = await client.get(path)
    assert response.status_code == 200, (base, path, response.status_code)
    return response


async def test_a_generation_started_on_one_api_and_followed_on_another_is_carried_by_the_worker(
    postgres_database: str, redis_url: str, shared_store: tuple[MediaStore, dict[str, str]], tmp_path: Path
) -> None:
    store, storage_env = shared_store
    await empty_postgres_database(postgres_database)
    async with simulator_process(SIMULATOR_ENV, tmp_path / "simulator.log") as simulator:

        def env(name: str, extra: dict[str, str]) -> dict[str, str]:
            shared = process_env(name, postgres_database, redis_url, simulator, tmp_path, storage_env)
            return {**shared, **extra}

        async with (
            darkroom_process(env("api1", API_ENV), tmp_path / "api1.log") as api1,
            darkroom_process(env("api2", API_ENV), tmp_path / "api2.log") as api2,
            darkroom_process(env("worker", WORKER_ENV), tmp_path / "worker.log", command="worker") as worker,
        ):
            async with httpx.AsyncClient(base_url=api1, timeout=30) as client:
                started = data(
                    await gql(
                        client, START, {"model": IMAGE_MODEL, "input": {"prompt": "scaled out", "num_outputs": OUTPUTS}}
                    )
                )["startGeneration"]
            assert started["userErrors"] == [], started
            generation_id = started["generation"]["id"]

            async with ws_connect(api2) as ws:
                states: list[dict[str, Any]] = []
                async for payload in ws.subscribe(FOLLOW, {"id": generation_id}, timeout=60):
                    states.append(data(payload)["generation"])
                    if settled(states[-1]):
                        break
            final = states[-1]
            assert final["status"] == "SUCCEEDED", final
            assert len(final["media"]) == OUTPUTS
            assert all(media["status"] == "READY" for media in final["media"]), final

            for media in final["media"]:
                path = httpx.URL(media["url"]).path
                first, second = await asyncio.gather(served(api1, path), served(api2, path))
                assert first.content == second.content
                assert hashlib.sha256(first.content).hexdigest() == media["sha256"]
                assert first.headers["etag"] == second.headers["etag"]
                assert media["downloadAttempts"] == 1, media
            if store.kind == "s3":  # in the bucket itself, with the digest the API serves
                for media in final["media"]:
                    key = httpx.URL(media["url"]).path.removeprefix("/media/")
                    assert store.object(key)["Metadata"]["sha256"] == media["sha256"]

            # Each output file was fetched from the provider once, by the worker alone.
            async with httpx.AsyncClient(base_url=simulator, timeout=10) as client:
                hits = (await client.get("/_control/stats")).json()["file_hits"]
            assert len(hits) == OUTPUTS and set(hits.values()) == {1}, hits
            assert await downloads(worker) == {"ready": OUTPUTS}
            assert await downloads(api1) == {} and await downloads(api2) == {}
