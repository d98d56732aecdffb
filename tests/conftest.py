"""Shared fixtures: a database per test (SQLite file, or a fresh Postgres database), and a live server.

Every test that takes `database` runs twice, on SQLite and on PostgreSQL. Outside CI the Postgres half
is skipped when no server answers; under CI=true it fails instead.

Media are kept on the local disk, unless a test is marked `@both_stores` (or a module sets it as
`pytestmark`): then it runs on the local disk and on a bucket of a real S3 server (moto, over HTTP).

Property-based tests run derandomized: the same examples on every machine and every run, with no example
database, so a fresh clone passes or fails exactly as CI does. HYPOTHESIS_PROFILE=explore draws fresh
random examples instead, for hunting new failures by hand.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from hypothesis import settings as hypothesis_settings

from server.settings import Settings
from tests.support import services
from tests.support.darkroom import Darkroom
from tests.support.live_server import free_port, live_server
from tests.support.object_storage import CREDENTIALS, MediaStore, moto_server
from tests.support.providers import PROVIDER_CASES, ProviderCase
from tests.support.services import SESSION_CHANNEL

# Re-exported: test modules import it from here as well as from tests.support.
from tests.support.waiting import eventually as eventually

hypothesis_settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    reason = services.postgres_reachable()
    if reason:
        services.unavailable("PostgreSQL", reason)
    url = services.create_postgres_database()
    try:
        yield url
    finally:
        services.drop_postgres_database(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    reason = services.redis_reachable()
    if reason:
        services.unavailable("Redis", reason)
    return services.REDIS_URL


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A DATABASE_URL for this test, empty: a new SQLite file, or the session's Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'darkroom.db'}"
    url: str = request.getfixturevalue("postgres_database")
    await services.empty_postgres_database(url)
    return url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server for the test session."""
    yield from moto_server()


@pytest.fixture
def media_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> MediaStore:
    """Where this test's media live: the local disk, or (with `both_stores`) also a fresh S3 bucket."""
    kind = getattr(request, "param", "local")
    if kind == "local":
        return MediaStore("local")
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return MediaStore.s3(request.getfixturevalue("s3_endpoint"))


@pytest.fixture
def make_settings(database: str, tmp_path: Path, media_store: MediaStore) -> Callable[..., Settings]:
    """Settings for a test server: the test's database, the simulator, and fast timings."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database,
            "data_dir": tmp_path / "var",
            "port": free_port(),
            "replicate_api_token": None,
            # Replicate's simulator alone, unless a test runs fal too (PROVIDERS).
            "providers": "replicate",
            # Darkroom's queue limits only the tests about it (tests/pipeline/test_queue.py).
            "max_running_per_key": 1000,
            "max_running_total": 1000,
            "public_url": None,
            "broadcast_url": "memory://",
            "broadcast_channel": SESSION_CHANNEL,
            "simulator_run_seconds": 0.6,
            "poll_interval_seconds": 0.2,
            "poll_stale_after_seconds": 1.0,
            "poll_backoff_max_seconds": 2.0,
            "download_retry_base_seconds": 0.05,
            "download_retry_max_seconds": 0.2,
            "download_idle_seconds": 0.2,
            "log_level": "WARNING",
            **media_store.settings,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def start_darkroom(make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """`async with start_darkroom(**settings) as darkroom:` runs a server until the block ends (`ws`: uvicorn's
    WebSocket implementation)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(
        ws: Literal["websockets", "websockets-sansio"] = "websockets-sansio", **overrides: Any
    ) -> AsyncIterator[Darkroom]:
        from server.app import create_app

        settings = make_settings(**overrides)
        app = create_app(settings)
        async with (
            live_server(
                app, settings.server.port, ws=ws, per_message_deflate=settings.graphql.ws_compression
            ) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            yield Darkroom(base_url, settings, http, app.state.runtime)

    return start


@pytest.fixture(params=sorted(PROVIDER_CASES))
def on_provider(request: pytest.FixtureRequest) -> ProviderCase:
    """Each provider in turn, for the tests that run the same pipeline on every one
    (`start_darkroom(**on_provider.settings)`)."""
    return PROVIDER_CASES[request.param]


@pytest.fixture
async def darkroom(start_darkroom: Callable[..., Any]) -> AsyncIterator[Darkroom]:
    async with start_darkroom() as running:
        yield running
