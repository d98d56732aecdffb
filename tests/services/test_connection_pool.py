"""The Postgres pool replaces a connection that died while idle before anyone uses it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import text

from server.db.session import create_engine, driver_connection
from server.settings import Settings


@pytest.mark.parametrize("idle_seconds", [0.0, 0.2])
async def test_a_connection_killed_while_idle_is_replaced_unnoticed(
    make_settings: Callable[..., Settings], database: str, idle_seconds: float
) -> None:
    if not database.startswith("postgres"):
        pytest.skip("SQLite has no server to lose")
    settings = make_settings(database_pool_size=1, database_ping_idle_seconds=idle_seconds)
    engine = create_engine(settings)
    killer = create_engine(make_settings())
    try:
        async with engine.connect() as connection:
            first = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with killer.connect() as connection:
            assert await connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        await asyncio.sleep(idle_seconds + 0.1)
        # Both ways in: the ORM's sessions and the driver connection of the webhook path.
        async with engine.connect() as connection:
            second = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with driver_connection(engine) as raw:
            assert await raw.fetchval("SELECT pg_backend_pid()") == second
        assert second != first
    finally:
        await engine.dispose()
        await killer.dispose()
