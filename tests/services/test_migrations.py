"""Migrations on a database that already holds rows: what earlier versions wrote reads sensibly after."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from server.db.migrate import alembic_config, upgrade
from server.db.models import CatalogModel, Generation
from server.settings import normalize_database_url
from tests.support import services

dialects = pytest.mark.parametrize("dialect", ["sqlite", "postgres"])


@contextlib.asynccontextmanager
async def database_at(revision: str, dialect: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A new database migrated up to `revision` only, on SQLite or a fresh PostgreSQL database."""
    if dialect == "postgres":
        reason = services.postgres_reachable()
        if reason:
            services.unavailable("PostgreSQL", reason)
        url = services.create_postgres_database()
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_async_engine(normalize_database_url(url))
    try:
        await upgrade(engine, revision)
        yield engine
    finally:
        await engine.dispose()
        if dialect == "postgres":
            services.drop_postgres_database(url)


async def insert_old_generation(engine: AsyncEngine, dialect: str, now: datetime) -> uuid.UUID:
    """A generation row as the columns every revision has describe it."""
    old = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO generations (id, kind, model_ref, input, status, created_at, updated_at,"
                " poll_attempts, event_seq) VALUES (:id, 'IMAGE', 'a/b', '{}', 'SUCCEEDED', :now, :now, 0, 0)"
            ),
            {"id": old.hex if dialect == "sqlite" else old, "now": now},
        )
    return old


@dialects
async def test_generations_from_before_the_provider_column_ran_on_replicate(dialect: str, tmp_path: Path) -> None:
    async with database_at("0002", dialect, tmp_path) as engine:
        await insert_old_generation(engine, dialect, datetime(2026, 1, 1, tzinfo=UTC))
        await upgrade(engine)
        async with engine.connect() as connection:
            providers = (await connection.execute(text("SELECT provider FROM generations"))).scalars().all()
        assert providers == ["replicate"]


@dialects
async def test_rows_from_before_have_no_run_time_and_the_model_cache_starts_again(dialect: str, tmp_path: Path) -> None:
    """0004: run times start unknown. 0006: the model cache, keyed by provider and ref now, refills from
    the providers; a job's id is unique per provider."""
    async with database_at("0003", dialect, tmp_path) as engine:
        now = datetime.now(UTC)
        old = await insert_old_generation(engine, dialect, now)
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO models (ref, owner, name, kind, collections, accepts_image, fetched_at)"
                    " VALUES ('a/b', 'a', 'b', 'IMAGE', '[]', false, :now)"
                ),
                {"now": now},
            )
            json_value = "CAST(:payload AS JSON)" if dialect == "postgres" else ":payload"
            await connection.execute(
                text(
                    "INSERT INTO events (generation_id, seq, type, payload, created_at)"
                    f" VALUES (:generation, 1, 'GENERATION_CREATED', {json_value}, :now)"
                ),
                {
                    "generation": old.hex if dialect == "sqlite" else old,
                    "payload": '{"seq": 1, "generation": {"status": "SUCCEEDED"}}',
                    "now": now,
                },
            )
        await upgrade(engine)
        async with engine.connect() as connection:
            [payload] = (await connection.execute(text("SELECT payload FROM events"))).scalars().all()
        payload = json.loads(payload) if isinstance(payload, str) else payload
        # The snapshot now says which provider ran it, as its generation does (it ran before fal existed).
        assert payload == {"seq": 1, "generation": {"status": "SUCCEEDED", "provider": "replicate"}}
        async with async_sessionmaker(engine)() as session:
            generation = await session.get(Generation, old)
            assert generation is not None and generation.predict_time is None
            assert await session.get(CatalogModel, ("replicate", "a/b")) is None
            one, other = (
                Generation(provider="replicate", kind="IMAGE", model_ref="a/b", status="STARTING") for _ in range(2)
            )
            one.provider, one.provider_id, other.provider, other.provider_id = "replicate", "p1", "fal", "p1"
            session.add_all([one, other])
            await session.commit()
            twin = Generation(kind="IMAGE", model_ref="a/b", status="STARTING", provider="fal", provider_id="p1")
            session.add(twin)
            with pytest.raises(IntegrityError):
                await session.commit()


async def downgrade_to(engine: AsyncEngine, revision: str) -> None:
    def run(connection: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


@dialects
async def test_the_rate_limit_buckets_table_comes_and_goes(dialect: str, tmp_path: Path) -> None:
    """0005: the shared token buckets' table, empty; a downgrade to 0004 takes it away again."""
    async with database_at("0004", dialect, tmp_path) as engine:
        await upgrade(engine)
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM rate_limit_buckets"))).scalar() == 0
        await downgrade_to(engine, "0004")
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        assert "rate_limit_buckets" not in tables and "models" in tables
