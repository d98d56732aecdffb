"""The benchmark's clients: a lean HTTP/1.1 client, signed webhooks, and subscriber and poller processes.

Subscribers and pollers run in their own processes (spawned, one event loop each), so the figures are
those of the server and of sockets between processes, not of one shared event loop. Every receive
time is `time.time()`, comparable across processes on one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from server.provider.replicate.signing import sign_webhook

SPAWN = multiprocessing.get_context("spawn")

FOLLOW = "subscription Follow($id: ID!) { generation(id: $id) { id status progress sequence } }"
STATUS = "query Status($id: ID!) { generation(id: $id) { id status progress sequence } }"
START = """
mutation Start($model: String!, $input: JSON!) {
  startGeneration(input: {model: $model, input: $input}) {
    generation { id status sequence }
    userErrors { field message code }
  }
}
"""
IMAGE_MODEL = "darkroom-sim/pixel-forge"


# --- a lean HTTP/1.1 client -------------------------------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to the server. Far cheaper per request than a full client, so
    the client side costs little of the two shared cores the server is measured on."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        reused = self._writer is not None and not self._writer.is_closing()
        try:
            return await self._request(method, path, body, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            # The server let an idle keep-alive connection go: once more on a fresh one.
            await self.close()
            return await self._request(method, path, body, headers)

    async def _request(self, method: str, path: str, body: bytes, headers: dict[str, str] | None) -> tuple[int, bytes]:
        reader, writer = await self._connect()
        writer.write(request_bytes(self.host, self.port, method, path, body, headers))
        try:
            status, data, close = await read_response(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            await self.close()
            raise
        if close:
            await self.close()
        return status, data

    async def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        status, data = await self.request("POST", "/graphql", body, {"content-type": "application/json"})
        if status != 200:
            raise RuntimeError(f"/graphql answered {status}: {data[:300]!r}")
        result: dict[str, Any] = json.loads(data)
        return result

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None


def request_bytes(host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, str] | None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: its status, its body, and whether the server closes the connection."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length: int | None = None
    chunked = False
    close = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and value.lower() == "close":
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        data = b"".join(parts)
    else:
        data = await reader.readexactly(length or 0)
    return status, data, close


class PipelinedSender:
    """Requests written on one keep-alive connection at the caller's pace, each without waiting for the
    answer to the one before (HTTP/1.1 pipelining). The server still reads and answers them one after
    another, in order, so a generation's changes are applied in the order they were sent; a slow answer
    delays the server's next request, never the client's schedule. Answers are read in the background."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.answers: list[tuple[int, bytes, float]] = []
        """(status, body, time.time() it arrived), in the order the requests were sent."""
        self._writer: asyncio.StreamWriter | None = None
        self._reading: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def open(self) -> None:
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._reading = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                status, data, close = await read_response(reader)
                self.answers.append((status, data, time.time()))
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self._error = exc

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> float:
        """Write one request now; the time.time() it was written."""
        assert self._writer is not None, "open() first"
        data = request_bytes(self.host, self.port, method, path, body, headers)
        at = time.time()
        self._writer.write(data)
        return at

    async def wait_answers(self, count: int, within: float) -> bool:
        """Wait until `count` answers have arrived; False on timeout or a lost connection."""
        deadline = time.monotonic() + within
        while len(self.answers) < count:
            if self._error is not None or (self._reading is not None and self._reading.done()):
                return False
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    async def close(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._writer = None


def host_port(base_url: str) -> tuple[str, int]:
    rest = base_url.split("://", 1)[1].rstrip("/")
    host, _, port = rest.partition(":")
    return host, int(port)


# --- webhooks -------------------------------------------------------------------------------------


def progress_logs(steps: int, total: int) -> str:
    """tqdm-style lines, as a diffusion model prints them: each webhook carries one line more."""
    lines = []
    for step in range(1, steps + 1):
        percent = min(100, step * 100 // max(total, 1))
        lines.append(f"{percent:3d}%| | {step}/{total} [00:01<00:01, 9.99it/s]")
    return "\n".join(lines) + "\n"


def prediction_body(prediction_id: str, status: str, logs: str = "", output: list[str] | None = None) -> bytes:
    return json.dumps(
        {
            "id": prediction_id,
            "status": status,
            "model": IMAGE_MODEL,
            "input": {},
            "logs": logs,
            "output": output,
            "error": None,
            "created_at": "2026-01-01T00:00:00.000000Z",
            "started_at": "2026-01-01T00:00:00.100000Z",
            "completed_at": "2026-01-01T00:00:05.000000Z" if status == "succeeded" else None,
            "metrics": {},
            "urls": {},
        },
        separators=(",", ":"),
    ).encode()


@dataclass(frozen=True, slots=True)
class Webhook:
    """A signed delivery, ready to send: the same bytes Replicate would POST."""

    body: bytes
    headers: dict[str, str]

    @classmethod
    def signed(cls, secret: str, body: bytes) -> Webhook:
        headers = sign_webhook(secret, f"msg_{uuid.uuid4().hex}", body)
        return cls(body, {"content-type": "application/json", **headers})


async def send_webhook(connection: HttpConnection, hook: Webhook) -> str:
    """POST one signed webhook; the server's verdict (applied, duplicate, stale, unknown) or the status."""
    status, data = await connection.request("POST", "/webhooks/replicate", hook.body, hook.headers)
    if status != 200:
        return f"http_{status}"
    return str(json.loads(data).get("result"))


# --- subscriber processes -------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberSpec:
    ws_url: str
    generation_ids: list[str]
    """One subscription (on its own WebSocket) per entry."""
    connect_concurrency: int = 64
    compression: bool = True
    hold: bool = False
    """Open and acknowledge every socket, then wait for the word to send every subscribe at once; the first
    frame (the current state) is then recorded and counted as any other."""


def _subscriber_process(spec: SubscriberSpec, pipe: Connection, counter: Synchronized) -> None:  # type: ignore[type-arg]
    from benchmarks.harness import raise_fd_limit

    raise_fd_limit()
    asyncio.run(_subscriber_main(spec, pipe, counter))


async def _subscriber_main(spec: SubscriberSpec, pipe: Connection, counter: Synchronized) -> None:  # type: ignore[type-arg]
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.typing import Subprotocol

    records: list[list[tuple[int, float]]] = [[] for _ in spec.generation_ids]
    first_frames: list[float | None] = [None for _ in spec.generation_ids]
    """When each subscription's first frame (the current state) arrived, time.time()."""
    errors: list[str] = []
    gate = asyncio.Semaphore(spec.connect_concurrency)
    started = time.time()

    async def connect_one() -> ClientConnection:
        socket = await connect(
            spec.ws_url,
            subprotocols=[Subprotocol("graphql-transport-ws")],
            open_timeout=120,
            ping_interval=None,
            compression="deflate" if spec.compression else None,
            max_size=None,
        )
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        while json.loads(await socket.recv())["type"] != "connection_ack":
            pass
        return socket

    async def subscribe(index: int, socket: ClientConnection) -> None:
        variables = {"id": spec.generation_ids[index]}
        await socket.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": FOLLOW, "variables": variables}})
        )

    async def open_one(index: int) -> ClientConnection:
        async with gate:
            socket = await connect_one()
            await subscribe(index, socket)
            while True:  # the current state comes first
                message = json.loads(await socket.recv())
                if message["type"] == "next":
                    first_frames[index] = time.time()
                    return socket
                if message["type"] in ("error", "complete"):
                    raise RuntimeError(f"subscription refused: {message}")

    async def connect_held(_: int) -> ClientConnection:
        async with gate:
            return await connect_one()

    async def read(index: int, socket: ClientConnection) -> None:
        mine = records[index]
        try:
            async for raw in socket:
                now = time.time()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    payload = message["payload"]
                    if payload.get("errors"):
                        errors.append(str(payload["errors"])[:300])
                        continue
                    if first_frames[index] is None:  # held: the current state, recorded as well
                        first_frames[index] = now
                    mine.append((int(payload["data"]["generation"]["sequence"]), now))
                    with counter.get_lock():
                        counter.value += 1
                elif kind == "ping":
                    await socket.send('{"type":"pong"}')
                elif kind in ("error", "complete"):
                    errors.append(f"{kind}: {str(message)[:300]}")
                    return
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    count = len(spec.generation_ids)
    opened = await asyncio.gather(
        *((connect_held if spec.hold else open_one)(i) for i in range(count)), return_exceptions=True
    )
    sockets = [(i, s) for i, s in enumerate(opened) if not isinstance(s, BaseException)]
    failures = [f"{type(s).__name__}: {s}" for s in opened if isinstance(s, BaseException)]
    readers = [asyncio.create_task(read(i, s)) for i, s in sockets]
    pipe.send(("ready", len(sockets), failures[:5], len(failures), started, [at for at in first_frames if at]))
    if spec.hold:
        try:
            _, at = await asyncio.to_thread(pipe.recv)  # ("subscribe", time.time() to send them at)
        except EOFError:
            return
        await asyncio.sleep(max(0.0, at - time.time()))
        await asyncio.gather(*(subscribe(i, s) for i, s in sockets), return_exceptions=True)
    try:
        await asyncio.to_thread(pipe.recv)  # "stop"
    except EOFError:  # the benchmark went away
        return
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.gather(*(s.close() for _, s in sockets), return_exceptions=True)
    held = [at for at in first_frames if at] if spec.hold else []
    pipe.send(("result", records, errors[:20], len(errors), held))
    pipe.close()


class SubscriberFleet:
    """Subscriptions spread over a few client processes; `received` counts messages across all of them
    (the changes; held fleets count the first frames too).

    With `hold`, start() opens and acknowledges every socket without subscribing, and subscribe_at() has
    every process send all its subscribes at one moment."""

    def __init__(
        self,
        ws_url: str,
        generation_ids: Sequence[str],
        *,
        per_process: int = 500,
        max_processes: int = 4,
        compression: bool = True,
        hold: bool = False,
    ) -> None:
        count = len(generation_ids)
        processes = max(1, min(max_processes, math.ceil(count / per_process)))
        self.counter: Synchronized = SPAWN.Value("q", 0)  # type: ignore[type-arg]
        self._parts: list[tuple[SpawnProcess, Connection]] = []
        self._specs = [
            SubscriberSpec(ws_url, list(generation_ids[i::processes]), compression=compression, hold=hold)
            for i in range(processes)
        ]
        self.opened = 0
        self.failed = 0
        self.failures: list[str] = []
        self.connecting_from: float | None = None
        """When the first client process began to connect (time.time())."""
        self.first_frames: list[float] = []
        """When each subscription's first frame arrived (time.time()); held: filled by stop()."""

    @property
    def received(self) -> int:
        return int(self.counter.value)

    def opening_rate(self) -> float | None:
        """Subscriptions opened per second, each counted when its first frame arrived: from the moment the
        client processes began to connect (their own start-up left out) to the last first frame."""
        if not self.first_frames or self.connecting_from is None:
            return None
        seconds = max(self.first_frames) - self.connecting_from
        return round(len(self.first_frames) / seconds, 1) if seconds > 0 else None

    async def start(self, within: float = 300.0) -> None:
        for spec in self._specs:
            mine, theirs = SPAWN.Pipe()
            process = SPAWN.Process(target=_subscriber_process, args=(spec, theirs, self.counter), daemon=True)
            process.start()
            self._parts.append((process, mine))
        for process, pipe in self._parts:
            message = await _receive(pipe, process, within)
            _, opened, failures, failed, started, first_frames = message
            self.opened += opened
            self.failed += failed
            self.failures += failures
            self.first_frames += first_frames
            self.connecting_from = started if self.connecting_from is None else min(self.connecting_from, started)

    def subscribe_at(self, at: float) -> None:
        """Held fleets: every process sends all its subscribes at time.time() == `at`."""
        for _, pipe in self._parts:
            pipe.send(("subscribe", at))

    async def wait_for(self, total: int, within: float) -> bool:
        """Wait until `total` messages have arrived across the fleet; False on timeout."""
        deadline = time.monotonic() + within
        while self.received < total:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.0005)
        return True

    async def wait_quiet(self, total: int, within: float, quiet: float) -> bool:
        """Wait until `total` messages have arrived, for at most `within` seconds, or until none has
        arrived for `quiet` seconds (the rest are not coming); True when all arrived."""
        deadline = time.monotonic() + within
        seen = self.received
        last_change = time.monotonic()
        while self.received < total:
            now = time.monotonic()
            if now > deadline or now - last_change > quiet:
                return False
            if self.received != seen:
                seen = self.received
                last_change = now
            await asyncio.sleep(0.005)
        return True

    async def stop(self, within: float = 120.0) -> tuple[list[tuple[str, list[tuple[int, float]]]], list[str], int]:
        """Close every socket: each subscription's generation id and (sequence, receive time) records, and
        the errors the clients saw (a sample, and how many)."""
        records: list[tuple[str, list[tuple[int, float]]]] = []
        errors: list[str] = []
        error_count = 0
        for _, pipe in self._parts:
            pipe.send("stop")
        for (process, pipe), spec in zip(self._parts, self._specs, strict=True):
            try:
                _, part, part_errors, part_count, held = await _receive(pipe, process, within)
            except (RuntimeError, TimeoutError, EOFError) as exc:
                errors.append(f"client process lost: {exc}")
                error_count += 1
                continue
            records += list(zip(spec.generation_ids, part, strict=True))
            self.first_frames += held
            errors += part_errors
            error_count += part_count
        for process, _ in self._parts:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self._parts.clear()
        return records, errors, error_count


async def _receive(pipe: Connection, process: SpawnProcess, within: float) -> Any:
    deadline = time.monotonic() + within
    while not pipe.poll():
        if not process.is_alive():
            raise RuntimeError(f"client process {process.pid} exited with {process.exitcode}")
        if time.monotonic() > deadline:
            raise TimeoutError("a client process did not answer in time")
        await asyncio.sleep(0.02)
    return pipe.recv()


# --- poller processes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PollerSpec:
    base_url: str
    generation_ids: list[str]
    interval: float = 1.0


def _poller_process(spec: PollerSpec, pipe: Connection) -> None:
    asyncio.run(_poller_main(spec, pipe))


async def _poller_main(spec: PollerSpec, pipe: Connection) -> None:
    """Each generation polled over HTTP every `interval`, as the seed's client did: (index, time, sequence)."""
    host, port = host_port(spec.base_url)
    records: list[tuple[int, float, int]] = []
    requests = 0
    errors: list[str] = []
    stop = asyncio.Event()

    async def poll(index: int, generation_id: str) -> None:
        nonlocal requests
        connection = HttpConnection(host, port)
        await asyncio.sleep(spec.interval * index / max(len(spec.generation_ids), 1))
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                result = await connection.graphql(STATUS, {"id": generation_id})
                requests += 1
                records.append((index, time.time(), int(result["data"]["generation"]["sequence"])))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            next_at += spec.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        await connection.close()

    tasks = [asyncio.create_task(poll(i, g)) for i, g in enumerate(spec.generation_ids)]
    pipe.send(("ready",))
    try:
        await asyncio.to_thread(pipe.recv)  # "stop"
    except EOFError:
        return
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send(("result", records, requests, errors[:20]))
    pipe.close()


class PollerFleet:
    def __init__(self, base_url: str, generation_ids: Sequence[str], interval: float = 1.0) -> None:
        self._spec = PollerSpec(base_url, list(generation_ids), interval)
        self._part: tuple[SpawnProcess, Connection] | None = None

    async def start(self) -> None:
        mine, theirs = SPAWN.Pipe()
        process = SPAWN.Process(target=_poller_process, args=(self._spec, theirs), daemon=True)
        process.start()
        self._part = (process, mine)
        await _receive(mine, process, 60)

    async def stop(self) -> tuple[list[tuple[int, float, int]], int, list[str]]:
        assert self._part is not None
        process, pipe = self._part
        pipe.send("stop")
        _, records, requests, errors = await _receive(pipe, process, 60)
        process.join(timeout=10)
        return records, requests, errors
