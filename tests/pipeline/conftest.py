"""Fixtures of the pipeline tests that run several Darkroom processes on one Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import SESSION_CHANNEL, empty_postgres_database


@pytest.fixture(params=["postgres", "redis"])
def broadcast(request: pytest.FixtureRequest, postgres_database: str) -> str:
    if request.param == "postgres":
        return postgres_database
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def shared_env(postgres_database: str, broadcast: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """What every process of a test shares: an empty Postgres database and the broadcast under test."""
    asyncio.run(empty_postgres_database(postgres_database))
    yield {
        "DATABASE_URL": postgres_database,
        "BROADCAST_URL": broadcast,
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(tmp_path / "var"),
        "REPLICATE_API_TOKEN": "",
        "PUBLIC_URL": "",
        "POLLER_ENABLED": "false",
        "SIMULATOR_RUN_SECONDS": "1.0",
        "LOG_LEVEL": "WARNING",
    }
