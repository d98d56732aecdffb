"""Starting Darkroom for a benchmark: free ports, throwaway databases, server processes, /proc readings.

Every server is a real `darkroom serve` process (or the statement-counting launcher in sqlcount.py,
which serves the same app) configured only through environment settings, as an operator would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx

REPO = Path(__file__).resolve().parent.parent
FLOOR_DIR = REPO / "benchmarks" / "floor"
PEER_DIR = REPO / "benchmarks" / "peer"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> int:
    """Lift this process' open-file limit to its hard limit (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Iterable[float]) -> dict[str, float | int | None]:
    """Count, p50/p95/p99 and max of durations given in seconds, in milliseconds."""
    values = [s * 1000 for s in seconds]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return {
        "n": len(values),
        "p50_ms": rounded(percentile(values, 50)),
        "p95_ms": rounded(percentile(values, 95)),
        "p99_ms": rounded(percentile(values, 99)),
        "max_ms": rounded(max(values) if values else None),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError):
        memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }


# --- external services ---------------------------------------------------------------------------


def _admin_url(base: str) -> str:
    parsed = urlparse(base)
    return urlunparse(parsed._replace(path="/postgres"))


def database_url(base: str, name: str) -> str:
    return urlunparse(urlparse(base)._replace(path=f"/{name}"))


async def postgres_unavailable(base: str = POSTGRES_URL) -> str | None:
    """Why PostgreSQL cannot be used, or None when it answers."""
    import asyncpg

    try:
        connection = await asyncpg.connect(_admin_url(base), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {urlparse(base).netloc} does not answer: {type(exc).__name__}"
    await connection.close()
    return None


async def redis_unavailable(url: str = REDIS_URL) -> str | None:
    import redis.asyncio as redis

    client = redis.from_url(url)
    try:
        await client.ping()
    except Exception as exc:
        return f"Redis at {urlparse(url).netloc} does not answer: {type(exc).__name__}"
    finally:
        await client.aclose()
    return None


class Databases:
    """Fresh PostgreSQL databases for one benchmark run, all dropped when it ends."""

    def __init__(self, base: str = POSTGRES_URL) -> None:
        self.base = base
        self.run = uuid.uuid4().hex[:8]
        self.created: list[str] = []

    async def create(self, label: str) -> str:
        import asyncpg

        name = f"darkroom_bench_{self.run}_{label}"
        connection = await asyncpg.connect(_admin_url(self.base))
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        self.created.append(name)
        return database_url(self.base, name)

    async def drop_all(self) -> None:
        import asyncpg

        if not self.created:
            return
        connection = await asyncpg.connect(_admin_url(self.base))
        try:
            for name in self.created:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()
        self.created.clear()


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    """One Darkroom process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    profiler: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        """Resident memory of the server process, from /proc/<pid>/statm."""
        pages = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        return pages * PAGE_SIZE

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server process has used, from /proc/<pid>/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Deployment:
    """The settings a group of servers share, and the servers started with them."""

    workdir: Path
    database_url: str
    broadcast_url: str = "memory://"
    channel: str = field(default_factory=lambda: f"darkroom_bench_{uuid.uuid4().hex[:8]}")
    webhook_secret: str = field(default_factory=new_webhook_secret)
    extra: dict[str, str] = field(default_factory=dict)
    tree: CodeTree | None = None
    """The code the servers run; None: this checkout."""
    profile_dir: Path | None = None
    """When set, each server is sampled by py-spy from start to stop: DIR/<server>.folded."""
    servers: list[Server] = field(default_factory=list)

    def env(self, name: str) -> dict[str, str]:
        data_dir = self.workdir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        code = {} if self.tree is None else {"PYTHONPATH": str(self.tree.path)}
        return {
            **os.environ,
            **code,
            "DATABASE_URL": self.database_url,
            "BROADCAST_URL": self.broadcast_url,
            "BROADCAST_CHANNEL": self.channel,
            "DATA_DIR": str(data_dir),
            # The embedded simulator plays Replicate, but never sends webhooks of its own and never
            # finishes: every change a benchmark measures is a webhook the benchmark signed and sent.
            "REPLICATE_API_TOKEN": "",
            "PUBLIC_URL": "",
            "REPLICATE_WEBHOOK_SECRET": self.webhook_secret,
            "SIMULATOR_WEBHOOK_DROP_RATE": "1.0",
            "SIMULATOR_RUN_SECONDS": "86400",
            "POLLER_ENABLED": "false",
            "DOWNLOADER_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "MIGRATE_ON_START": "true",
            "RATE_LIMIT_MUTATIONS_PER_MINUTE": "0",
            # Generations never finish here: the queue's limits would hold all but the first few.
            "MAX_RUNNING_PER_KEY": "1000000",
            "MAX_RUNNING_TOTAL": "1000000",
            "CLEANUP_ENABLED": "false",
            **self.extra,
        }

    async def start(self, name: str, *, count_sql: bool = False) -> Server:
        port = free_port()
        module = "benchmarks.sqlcount" if count_sql else "server.cli"
        python = sys.executable if self.tree is None else self.tree.python
        command = [python, "-m", module, "serve", "--port", str(port)]
        cwd = REPO if self.tree is None else self.tree.path
        log = self.workdir / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(command, env=self.env(name), cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        server = Server(name, port, process, log)
        self.servers.append(server)
        await wait_ready(server)
        if self.profile_dir is not None:
            server.profiler = start_profiler(server.pid, self.profile_dir / f"{name}.folded")
        return server

    async def stop(self) -> None:
        for server in reversed(self.servers):
            await stop_server(server)
        self.servers.clear()


@dataclass(frozen=True)
class CodeTree:
    """Another version of Darkroom for servers to run, to compare with this checkout."""

    path: Path
    python: str
    label: str


def code_tree(spec: str, workdir: Path) -> CodeTree:
    """The code named by `spec`: a directory holding another checkout (served with its own
    .venv/bin/python when it has one, else this one), or a git revision of this repository, whose files
    are exported under `workdir` with `git archive` (no work tree or branch is touched) and served with
    this checkout's Python and packages."""
    directory = Path(spec).expanduser()
    if directory.is_dir():
        directory = directory.resolve()
        if not (directory / "server" / "cli.py").is_file():
            raise ValueError(f"{directory} holds no Darkroom checkout (no server/cli.py)")
        venv_python = directory / ".venv" / "bin" / "python"
        python = str(venv_python) if venv_python.exists() else sys.executable
        return CodeTree(directory, python, str(directory))
    found = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        raise ValueError(f"{spec!r} is neither a directory nor a git revision of {REPO}")
    commit = found.stdout.strip()
    target = workdir / f"tree-{commit[:12]}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], capture_output=True)
        if archive.returncode != 0:
            raise ValueError(f"git archive {commit} failed: {archive.stderr.decode(errors='replace')[:300]}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(target, filter="data")
    return CodeTree(target, sys.executable, f"{spec} ({commit[:10]})")


# --- the floor and the peer ------------------------------------------------------------------------


def floor_unavailable() -> str | None:
    """Why the floor (benchmarks/floor, a Node `ws` broadcaster) cannot run here, or None."""
    return _node_unavailable("floor", FLOOR_DIR, "ws", "a Node ws broadcaster")


def peer_unavailable() -> str | None:
    """Why the peer (benchmarks/peer, Fastify with Mercurius) cannot run here, or None."""
    return _node_unavailable("peer", PEER_DIR, "mercurius", "a Node GraphQL server, Fastify with Mercurius")


def _node_unavailable(name: str, directory: Path, package: str, what: str) -> str | None:
    if shutil.which("node") is None:
        return f"node is not installed (the {name} is {what})"
    if not (directory / "node_modules" / package / "package.json").is_file():
        rel = directory.relative_to(REPO)
        return f"the {name}'s npm packages are missing: npm ci --prefix {rel}"
    return None


async def start_floor(workdir: Path, name: str = "floor") -> Server:
    """The floor on a free port: a bare WebSocket broadcaster the same subscriber processes connect to."""
    reason = floor_unavailable()
    if reason:
        raise RuntimeError(reason)
    return await _start_node(FLOOR_DIR, workdir, name)


async def start_peer(workdir: Path, name: str = "peer") -> Server:
    """The peer on a free port: a Node GraphQL server with the same subscription and the same POST /publish
    trigger as the floor."""
    reason = peer_unavailable()
    if reason:
        raise RuntimeError(reason)
    return await _start_node(PEER_DIR, workdir, name)


async def _start_node(directory: Path, workdir: Path, name: str) -> Server:
    port = free_port()
    node = shutil.which("node") or "node"
    log = workdir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [node, str(directory / "server.mjs"), "--port", str(port)],
            cwd=directory,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, port, process, log)
    try:
        await wait_ready(server, within=30)
    except BaseException:
        await stop_server(server)
        raise
    return server


async def wait_ready(server: Server, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server {server.name} exited:\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{server.base_url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server {server.name} did not become ready in {within:.0f} s:\n{server.log_tail()}")


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` into collapsed stacks (flamegraph.pl and speedscope read them)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--nonblocking", "-o", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_summary(folded: Path, top: int = 15) -> dict[str, list[tuple[float, str]]]:
    """Where the samples of a collapsed-stack file went: the functions running (self) and the functions
    on the stack (inclusive, leaving out the frames under nearly every sample), as % of samples."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack:
            continue
        samples = int(count)
        total += samples
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + samples
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
    if not total:
        return {"self": [], "inclusive": []}

    def ranked(counts: dict[str, int], limit: float) -> list[tuple[float, str]]:
        shares = [(round(n / total * 100, 1), frame) for frame, n in counts.items() if n / total <= limit]
        return sorted(shares, reverse=True)[:top]

    return {"self": ranked(own, 1.0), "inclusive": ranked(inclusive, 0.6)}


async def stop_server(server: Server) -> None:
    if server.profiler is not None and server.profiler.poll() is None:
        server.profiler.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(server.profiler.wait, 30)
        except subprocess.TimeoutExpired:
            server.profiler.kill()
    if server.process.poll() is None:
        server.process.terminate()
        try:
            await asyncio.to_thread(server.process.wait, 20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            await asyncio.to_thread(server.process.wait)


# --- an S3 server --------------------------------------------------------------------------------

# moto accepts any credentials; these keep the benchmark off whatever the machine has configured.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "darkroom-bench",
    "AWS_SECRET_ACCESS_KEY": "darkroom-bench-secret",
    "AWS_REGION": "us-east-1",
}


@contextlib.asynccontextmanager
async def start_s3(workdir: Path) -> AsyncIterator[str]:
    """moto's S3 server in a process of its own, on a free port, until the block exits; its endpoint."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = workdir / "moto.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, **S3_CREDENTIALS},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(f"{endpoint}/moto-api/", timeout=1)
                    break
                if process.poll() is not None:
                    raise RuntimeError(f"moto exited: {log.read_text(errors='replace')}")
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("moto did not answer within 30 s")
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_REGION"],
    )
