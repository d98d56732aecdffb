"""Two `darkroom serve` processes on one Postgres: a key revoked by the CLI is shut out of both."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.auth.support import bearer, closed_with, init, raw_socket
from tests.support.processes import darkroom_process
from tests.support.services import SESSION_CHANNEL, empty_postgres_database

QUERY = {"query": "{ generations(first: 1) { edges { cursor } } }"}


def darkroom(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_key_revoked_by_the_cli_is_shut_out_of_every_process(postgres_database: str, tmp_path: Path) -> None:
    await empty_postgres_database(postgres_database)
    env = {
        "DATABASE_URL": postgres_database,
        "BROADCAST_URL": "memory://",  # revocation travels through the database, not the broadcast
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(tmp_path / "var"),
        "REPLICATE_API_TOKEN": "",
        "PUBLIC_URL": "",
        "POLLER_ENABLED": "false",
        "DOWNLOADER_ENABLED": "false",
        "AUTH_REFRESH_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
    }
    created = await asyncio.to_thread(darkroom, env, "api-key", "create", "--name", "everywhere")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()

    async with (
        darkroom_process(env, tmp_path / "a.log") as process_a,
        darkroom_process(env, tmp_path / "b.log") as process_b,
        httpx.AsyncClient(timeout=30) as http,
        raw_socket(process_a) as socket_a,
        raw_socket(process_b) as socket_b,
    ):
        for base in (process_a, process_b):
            assert (await http.post(f"{base}/graphql", json=QUERY)).status_code == 401
            assert (await http.post(f"{base}/graphql", json=QUERY, headers=bearer(token))).status_code == 200
        assert (await init(socket_a, bearer(token)))["type"] == "connection_ack"
        assert (await init(socket_b, bearer(token)))["type"] == "connection_ack"

        revoked = await asyncio.to_thread(darkroom, env, "api-key", "revoke", token[:12])
        assert revoked.returncode == 0, revoked.stderr

        codes = await asyncio.gather(closed_with(socket_a), closed_with(socket_b))
        assert codes == [4403, 4403]
        for base in (process_a, process_b):
            assert (await http.post(f"{base}/graphql", json=QUERY, headers=bearer(token))).status_code == 401
