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

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import create_async_engine

from server.provider.replicate import ReplicateProvider
from server.settings import Settings
from tests.support import services
from tests.support.graphql import gql
from tests.support.live_server import free_port, live_server
from tests.support.object_storage import CREDENTIALS, MediaStore, moto_server

if TYPE_CHECKING:
    from server.runtime import Runtime

hypothesis_settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

# Test sessions may share a Redis server; each publishes on its own channel.
SESSION_CHANNEL = f"darkroom_test_{uuid.uuid4().hex[:8]}"
TABLES = "events, media, generations, models, api_keys"


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


async def _truncate(url: str) -> None:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.begin() as connection:
            exists = await connection.exec_driver_sql("SELECT to_regclass('public.generations')")
            if exists.scalar() is not None:
                await connection.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A DATABASE_URL for this test, empty: a new SQLite file, or the session's Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'darkroom.db'}"
    url: str = request.getfixturevalue("postgres_database")
    await _truncate(url)
    return url


both_stores = pytest.mark.parametrize("media_store", ["local", "s3"], indirect=True)


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


@dataclass
class Darkroom:
    """A running server: its URL, an HTTP client on it, and its runtime for looking inside."""

    base_url: str
    settings: Settings
    http: httpx.AsyncClient
    runtime: Runtime

    @property
    def simulator(self) -> Any:
        return self.runtime.simulator

    @property
    def replicate(self) -> ReplicateProvider:
        """The runtime's provider, which is Replicate's (or the simulator playing it) unless a test chose another."""
        assert isinstance(self.runtime.provider, ReplicateProvider), self.runtime.provider
        return self.runtime.provider

    async def query(self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        return await gql(self.http, query, variables, **kwargs)


@pytest.fixture
def start_darkroom(make_settings: Callable[..., Settings]) -> Callable[..., Any]:
    """`async with start_darkroom(**settings) as darkroom:` runs a server until the block ends."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Darkroom]:
        from server.app import create_app

        settings = make_settings(**overrides)
        app = create_app(settings)
        async with (
            live_server(app, settings.server.port) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            yield Darkroom(base_url, settings, http, app.state.runtime)

    return start


@pytest.fixture
async def darkroom(start_darkroom: Callable[..., Any]) -> AsyncIterator[Darkroom]:
    async with start_darkroom() as running:
        yield running


async def eventually(check: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Await `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
