"""Real PostgreSQL and Redis for the tests: found from the environment, skipped (or failed in CI) if absent."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from typing import Any, NoReturn
from urllib.parse import urlparse, urlunparse

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Test sessions may share a Redis server; each publishes on its own channel.
SESSION_CHANNEL = f"darkroom_test_{uuid.uuid4().hex[:8]}"
TABLES = "events, media, generations, models, api_keys, rate_limit_buckets, idempotency_keys"


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip outside CI; in CI a missing service is a failure, never a silent skip."""
    message = f"{what} is not reachable ({reason})"
    if IN_CI:
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)


def run_blocking(coroutine: Any) -> Any:
    """Run a coroutine to completion from sync code, even when an event loop is running here already."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _postgres_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def create_postgres_database() -> str:
    """Create a fresh database for this test session; returns its asyncpg URL."""
    name = f"darkroom_test_{uuid.uuid4().hex[:10]}"
    run_blocking(_postgres_admin(f'CREATE DATABASE "{name}"'))
    parsed = urlparse(POSTGRES_ADMIN_URL)
    return urlunparse(parsed._replace(path=f"/{name}"))


def drop_postgres_database(url: str) -> None:
    name = urlparse(url).path.lstrip("/")
    run_blocking(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def empty_postgres_database(url: str) -> None:
    """Remove every row Darkroom wrote to the session's database (if it has been migrated yet)."""
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.begin() as connection:
            exists = await connection.exec_driver_sql("SELECT to_regclass('public.generations')")
            if exists.scalar() is not None:
                await connection.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await engine.dispose()


def postgres_reachable() -> str | None:
    try:
        run_blocking(_postgres_admin("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def redis_reachable() -> str | None:
    async def ping() -> None:
        from redis import asyncio as redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        run_blocking(ping())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
