"""The async engine and session factory, configured alike for Postgres and SQLite."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_, greenlet_spawn

from server.settings import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.server.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, echo=settings.database.echo, connect_args={"timeout": 30}, pool_pre_ping=False
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the one writer; foreign keys give SQLite Postgres' cascades.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            # Let SQLAlchemy's "begin" hook below issue BEGIN instead of the driver's implicit one.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock at BEGIN so two writers queue instead of failing mid-transaction.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_async_engine(
        url,
        echo=settings.database.echo,
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.pool_size,
    )
    _ping_idle_connections(engine, settings.database.ping_idle_seconds)
    return engine


def _ping_idle_connections(engine: AsyncEngine, idle_seconds: float) -> None:
    """Pool pre-ping, for connections that sat idle: a dead one is replaced, with every pooled connection
    older than it, before anyone uses it.

    SQLAlchemy's own pre-ping costs three round trips on asyncpg (BEGIN, `;`, ROLLBACK) on every checkout,
    as many as a whole webhook's statements. This one is a single simple-protocol `SELECT 1`, and a
    connection back in the pool for less than `idle_seconds` is not pinged at all: it has just worked,
    and if the server went away since, the statement fails as it would with a ping a moment earlier.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["darkroom_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("darkroom_idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return  # a new connection, or one that just worked
        try:
            await_(record.driver_connection.execute("SELECT 1"))
        except Exception as exc:
            raise InvalidatePoolError(f"pooled connection failed its ping: {type(exc).__name__}") from exc


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_postgres(session: AsyncSession) -> bool:
    """Row locks and advisory locks exist only on Postgres; SQLite serialises writers instead."""
    return session.get_bind().dialect.name == "postgresql"


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled Postgres connection's own asyncpg connection, for a hot path that SQLAlchemy would slow.

    No transaction is open on it: each statement commits by itself. It goes back to the pool afterwards,
    except after an exception, when it is discarded, since it may be mid-statement or broken.
    """
    pooled = await engine.raw_connection()
    try:
        yield pooled.driver_connection
    except BaseException:
        await greenlet_spawn(pooled.invalidate)
        raise
    await greenlet_spawn(pooled.close)
