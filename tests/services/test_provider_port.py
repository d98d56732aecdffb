"""The services know the provider only through its port, and each generation records which provider ran it."""

from __future__ import annotations

import ast
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.db.migrate import upgrade
from server.settings import normalize_database_url
from tests.support import services

SERVER = Path(__file__).resolve().parents[2] / "server"


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def test_no_service_imports_the_replicate_implementation() -> None:
    found = {
        f"{path.relative_to(SERVER)}: {name}"
        for path in sorted((SERVER / "services").rglob("*.py"))
        for name in _imports(path)
        if name == "server.provider.replicate" or name.startswith("server.provider.replicate.")
    }
    assert found == set()


def test_only_the_composition_asks_whether_the_simulator_plays_the_provider() -> None:
    """`settings.simulated` is read where the runtime is composed, not in the services or the client."""
    readers = {
        str(path.relative_to(SERVER))
        for path in sorted(SERVER.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "simulated"
    }
    assert readers <= {"runtime.py", "app.py", "settings.py"}, readers


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
async def test_generations_from_before_the_provider_column_ran_on_replicate(dialect: str, tmp_path: Path) -> None:
    if dialect == "postgres":
        reason = services.postgres_reachable()
        if reason:
            services.unavailable("PostgreSQL", reason)
        url = services.create_postgres_database()
    else:
        url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_async_engine(normalize_database_url(url))
    try:
        await upgrade(engine, "0002")
        old = uuid.uuid4()
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO generations (id, kind, model_ref, input, status, created_at, updated_at,"
                    " poll_attempts, event_seq) VALUES (:id, 'IMAGE', 'a/b', '{}', 'SUCCEEDED', :now, :now, 0, 0)"
                ),
                {"id": old.hex if dialect == "sqlite" else old, "now": datetime(2026, 1, 1, tzinfo=UTC)},
            )
        await upgrade(engine)
        async with engine.connect() as connection:
            providers = (await connection.execute(text("SELECT provider FROM generations"))).scalars().all()
        assert providers == ["replicate"]
    finally:
        await engine.dispose()
        if dialect == "postgres":
            services.drop_postgres_database(url)
