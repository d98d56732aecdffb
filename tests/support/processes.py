"""Real processes for the multi-process tests: `darkroom serve`, `worker` and `simulator`, and throwaway
PostgreSQL and Redis servers.

Restart and outage tests stop and start servers of their own, on free ports, never the shared ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.support.live_server import free_port
from tests.support.services import unavailable


@asynccontextmanager
async def darkroom_process(
    env: dict[str, str], log: Path, port: int | None = None, command: str = "serve"
) -> AsyncIterator[str]:
    """`darkroom serve` (or `darkroom worker`) in a process of its own with `env`, until the block exits;
    yields its base URL once /readyz answers 200."""
    port = port or free_port()
    async with _running([command, "--port", str(port)], env, log, f"http://127.0.0.1:{port}", "/readyz") as base:
        yield base


@asynccontextmanager
async def simulator_process(
    env: dict[str, str], log: Path, port: int | None = None, args: Sequence[str] = ()
) -> AsyncIterator[str]:
    """`darkroom simulator` on its own (with `args`), as several Darkroom processes share it; yields its
    base URL."""
    port = port or free_port()
    async with _running(
        ["simulator", "--port", str(port), *args], env, log, f"http://127.0.0.1:{port}", "/_control/config"
    ) as base:
        yield base


UNLIMITED_QUEUE = {"MAX_RUNNING_PER_KEY": "1000", "MAX_RUNNING_TOTAL": "1000"}


@asynccontextmanager
async def _running(args: list[str], env: dict[str, str], log: Path, base: str, ready_path: str) -> AsyncIterator[str]:
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", *args],
            # Replicate (or its simulator) alone, unless a test asks for more; the queue's limits only where
            # a test is about them.
            env={**os.environ, **UNLIMITED_QUEUE, "PROVIDERS": "replicate", **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            async with httpx.AsyncClient() as client:
                for _ in range(300):
                    try:
                        if (await client.get(f"{base}{ready_path}")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if process.poll() is not None:
                        raise AssertionError(f"server exited:\n{log.read_text()}")
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError(f"server did not become ready:\n{log.read_text()}")
            yield base
        finally:
            stop_process(process, timeout=15)


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Ask `process` to end (SIGTERM); kill it if it has not within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _postgres_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class ThrowawayPostgres:
    """A PostgreSQL server of the test's own (initdb in a temporary folder), that it may stop and start."""

    def __init__(self) -> None:
        bindir = _postgres_bindir()
        if bindir is None:
            unavailable("PostgreSQL's server programs (initdb, pg_ctl)", "not installed")
        self._bindir = bindir
        self.port = free_port()
        self._root = Path(tempfile.mkdtemp(prefix="darkroom-pg-"))
        self.data = self._root / "data"
        self._user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._user = "postgres"
            record = pwd.getpwnam(self._user)
            os.chown(self._root, record.pw_uid, record.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bindir / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self._root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self._root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self._root, ignore_errors=True)


class ThrowawayRedis:
    """A Redis server of the test's own, keeping nothing on disk, that it may stop and start."""

    def __init__(self) -> None:
        self._program = shutil.which("redis-server")
        if self._program is None:
            unavailable("redis-server", "not installed")
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self._program is not None
        self._process = subprocess.Popen(
            [self._program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            if self._process.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
