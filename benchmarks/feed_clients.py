"""Feed subscribers in their own processes: each client follows `generationEvents(after: $cursor)` on a
WebSocket of its own, resumes from the cursor of the last event it received whenever its socket goes, and
can have every socket dropped at once.

A client keeps the sequences of the subject generation's events it received and when; the checks against
what was sent (once each, in order, none missing, caught up when) run in the client process, so only a
summary per client crosses the pipe. Receive times are `time.time()`, as in clients.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from benchmarks.clients import SPAWN, _receive

FLUSH_SECONDS = 0.05

FEED = (
    "subscription Feed($after: String) { generationEvents(after: $after) "
    "{ cursor sequence type generation { id sequence } } }"
)


@dataclass(frozen=True)
class FeedSpec:
    ws_url: str
    clients: int
    after: str
    """The feed cursor every client starts from."""
    subject: str
    """The generation whose events are checked; others are only counted."""
    connect_concurrency: int = 64
    """Sockets opened together when the clients first connect (reconnecting is at once, unbounded)."""
    compression: bool = True


@dataclass
class ClientSummary:
    """One client's events of the subject, checked against what was sent."""

    received: int
    missing: int
    duplicates: int
    out_of_order: int
    reconnects: int
    caught_up_at: float | None
    """When the first change sent after its last resubscribe arrived (time.time()); in order, so everything
    before it had arrived too. None: none did."""


def _feed_process(spec: FeedSpec, pipe: Connection, counter: Synchronized) -> None:  # type: ignore[type-arg]
    from benchmarks.harness import raise_fd_limit

    raise_fd_limit()
    asyncio.run(_feed_main(spec, pipe, counter))


async def _feed_main(spec: FeedSpec, pipe: Connection, counter: Synchronized) -> None:  # type: ignore[type-arg]
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.typing import Subprotocol

    cursors = [spec.after] * spec.clients
    received: list[list[tuple[int, float]]] = [[] for _ in range(spec.clients)]
    subscribed_at: list[list[float]] = [[] for _ in range(spec.clients)]
    sockets: list[ClientConnection | None] = [None] * spec.clients
    others = [0]
    errors: list[str] = []
    overflows = [0]
    refusals = [0]
    stopping = asyncio.Event()
    first_open = asyncio.Semaphore(spec.connect_concurrency)
    ready = [0]
    all_ready = asyncio.Event()
    counted = [0]
    """Events received, added to the shared counter every FLUSH_SECONDS rather than one by one: with
    thousands of clients the lock would cost more than the events."""

    async def flush() -> None:
        flushed = 0
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if counted[0] != flushed:
                with counter.get_lock():
                    counter.value += counted[0] - flushed
                flushed = counted[0]

    async def open_socket(index: int) -> ClientConnection:
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
        subscribed_at[index].append(time.time())
        variables = {"after": cursors[index]}
        await socket.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": FEED, "variables": variables}})
        )
        return socket

    async def follow(index: int) -> None:
        first = True
        backoff = 0.1
        while not stopping.is_set():
            try:
                if first:
                    async with first_open:
                        socket = await open_socket(index)
                    first = False
                    ready[0] += 1
                    if ready[0] == spec.clients:
                        all_ready.set()
                else:
                    socket = await open_socket(index)
            except Exception as exc:
                if "1013" in str(exc):  # the server's "try again later": retried, as a client would
                    refusals[0] += 1
                else:
                    errors.append(f"connect: {type(exc).__name__}: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.1
            sockets[index] = socket
            try:
                async for raw in socket:
                    now = time.time()
                    message = json.loads(raw)
                    kind = message.get("type")
                    if kind == "next":
                        payload = message["payload"]
                        if payload.get("errors"):
                            if "SUBSCRIBER_OVERFLOW" in str(payload["errors"]):
                                overflows[0] += 1
                            else:
                                errors.append(str(payload["errors"])[:300])
                            break  # resubscribe from the last cursor, on a fresh socket
                        event = payload["data"]["generationEvents"]
                        cursors[index] = event["cursor"]
                        if event["generation"]["id"] == spec.subject:
                            received[index].append((int(event["sequence"]), now))
                        else:
                            others[0] += 1
                        counted[0] += 1
                    elif kind == "ping":
                        await socket.send('{"type":"pong"}')
                    elif kind in ("error", "complete"):
                        if "SUBSCRIBER_OVERFLOW" in str(message):
                            overflows[0] += 1
                        else:
                            errors.append(f"{kind}: {str(message)[:300]}")
                        break
            except Exception:  # the socket went: resume from the last cursor
                pass
            finally:
                sockets[index] = None
            if not stopping.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(socket.close(), 1)

    tasks = [asyncio.create_task(follow(i)) for i in range(spec.clients)]
    tasks.append(asyncio.create_task(flush()))
    await all_ready.wait()
    pipe.send(("ready", spec.clients))
    while True:
        try:
            command = await asyncio.to_thread(pipe.recv)
        except EOFError:  # the benchmark went away
            stopping.set()
            return
        if command[0] == "drop":
            # Abruptly: no close frame, the TCP connection just goes; every client reconnects at once.
            dropped_at = time.time()
            for socket in list(sockets):
                if socket is not None:
                    socket.transport.abort()
            pipe.send(("dropped", dropped_at))
        elif command[0] == "stop":
            _, sent_at = command
            break
    stopping.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(s.close() for s in sockets if s is not None), return_exceptions=True)
    summaries = [_summary(received[i], subscribed_at[i], sent_at) for i in range(spec.clients)]
    pipe.send(("result", summaries, others[0], overflows[0], refusals[0], errors[:20], len(errors)))
    pipe.close()


def _summary(events: list[tuple[int, float]], subscribed: list[float], sent_at: dict[int, float]) -> ClientSummary:
    expected = sorted(sent_at)
    seen: set[int] = set()
    duplicates = out_of_order = 0
    highest = -1
    for seq, _ in events:
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if seq < highest:
            out_of_order += 1
        highest = max(highest, seq)
    resubscribed = subscribed[-1] if len(subscribed) > 1 else None
    caught_up_at: float | None = None
    if resubscribed is not None:
        caught_up_at = next(
            (at for seq, at in events if seq in sent_at and sent_at[seq] > resubscribed and at >= resubscribed), None
        )
    return ClientSummary(
        received=len(events),
        missing=len(set(expected) - seen),
        duplicates=duplicates,
        out_of_order=out_of_order,
        reconnects=len(subscribed) - 1,
        caught_up_at=caught_up_at,
    )


class FeedFleet:
    """Feed subscribers spread over a few client processes; `received` counts events across all of them."""

    def __init__(
        self,
        ws_url: str,
        clients: int,
        after: str,
        subject: str,
        *,
        per_process: int = 500,
        max_processes: int = 4,
        compression: bool = True,
    ) -> None:
        processes = max(1, min(max_processes, math.ceil(clients / per_process)))
        shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
        self.counter: Synchronized = SPAWN.Value("q", 0)  # type: ignore[type-arg]
        self._specs = [FeedSpec(ws_url, n, after, subject, compression=compression) for n in shares if n]
        self._parts: list[tuple[SpawnProcess, Connection]] = []

    @property
    def received(self) -> int:
        return int(self.counter.value)

    async def start(self, within: float = 600.0) -> None:
        for spec in self._specs:
            mine, theirs = SPAWN.Pipe()
            process = SPAWN.Process(target=_feed_process, args=(spec, theirs, self.counter), daemon=True)
            process.start()
            self._parts.append((process, mine))
        for process, pipe in self._parts:
            await _receive(pipe, process, within)

    async def drop(self) -> float:
        """Every socket of every process dropped at once; the earliest drop (time.time())."""
        for _, pipe in self._parts:
            pipe.send(("drop",))
        times = [(await _receive(pipe, process, 60))[1] for process, pipe in self._parts]
        return float(min(times))

    async def stop(self, sent_at: dict[int, float], within: float = 300.0) -> dict[str, Any]:
        """Close every socket; each client's summary against `sent_at` (the subject's changes by sequence),
        the events of other generations, the overflows, the connections refused with 1013 (try again later)
        and retried, and the errors (a sample, and how many)."""
        summaries: list[ClientSummary] = []
        others = overflows = refusals = error_count = 0
        errors: list[str] = []
        for _, pipe in self._parts:
            pipe.send(("stop", sent_at))
        for process, pipe in self._parts:
            _, part, part_others, part_overflows, part_refusals, part_errors, part_count = await _receive(
                pipe, process, within
            )
            summaries += part
            refusals += part_refusals
            others += part_others
            overflows += part_overflows
            errors += part_errors
            error_count += part_count
        for process, _ in self._parts:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self._parts.clear()
        return {
            "summaries": summaries,
            "other_events": others,
            "overflows": overflows,
            "refusals": refusals,
            "errors": errors,
            "error_count": error_count,
        }


def totals(summaries: Sequence[ClientSummary]) -> dict[str, int]:
    return {
        "missing": sum(s.missing for s in summaries),
        "duplicates": sum(s.duplicates for s in summaries),
        "out_of_order": sum(s.out_of_order for s in summaries),
        "reconnects": sum(s.reconnects for s in summaries),
    }
