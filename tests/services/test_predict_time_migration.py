"""Migration 0004 on a database with rows: run times start unknown, and cached models are refetched to
learn which are official."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from server.db.migrate import upgrade
from server.db.models import CatalogModel, Generation
from server.services.catalogue.service import is_stale
from server.settings import normalize_database_url
from tests.support import services


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_rows_from_before_have_no_run_time_and_models_are_refetched(dialect: str, tmp_path: Path) -> None:
    if dialect == "postgres":
        reason = services.postgres_reachable()
        if reason:
            services.unavailable("PostgreSQL", reason)
        url = services.create_postgres_database()
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_async_engine(normalize_database_url(url))
    try:
        await upgrade(engine, "0003")
        old = uuid.uuid4()
        now = datetime.now(UTC)
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO generations (id, kind, model_ref, input, status, created_at, updated_at,"
                    " poll_attempts, event_seq) VALUES (:id, 'IMAGE', 'a/b', '{}', 'SUCCEEDED', :now, :now, 0, 0)"
                ),
                {"id": old.hex if dialect == "sqlite" else old, "now": now},
            )
            await connection.execute(
                text(
                    "INSERT INTO models (ref, owner, name, kind, collections, accepts_image, fetched_at)"
                    " VALUES ('a/b', 'a', 'b', 'IMAGE', '[]', false, :now)"
                ),
                {"now": now},
            )
        await upgrade(engine)
        async with async_sessionmaker(engine)() as session:
            generation = await session.get(Generation, old)
            model = await session.get(CatalogModel, "a/b")
        assert generation is not None and generation.predict_time is None
        assert model is not None and model.is_official is False
        assert is_stale(model.fetched_at, 3600.0)
    finally:
        await engine.dispose()
        if dialect == "postgres":
            services.drop_postgres_database(url)
