"""The measurements: push latency, capacity, webhook ingestion, reads, polling vs. push, the server's
memory while it stores a large video (local disk and S3), and its event loop under hostile load.

Each scenario starts its own servers on a fresh database, makes the generations it needs through the
GraphQL mutation (the embedded simulator accepts them and then stays silent), and drives every change
itself with signed webhooks, each carrying one more progress line, so each is a real change.

Push, capacity and burst also measure the peer (benchmarks/peer: a Node GraphQL server, Fastify with
Mercurius and its in-memory pubsub, no database) and the floor (benchmarks/floor: a bare Node `ws`
broadcaster, no GraphQL, no database) with the same subscriber processes, each triggered by a POST where
Darkroom gets a webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import re
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.attacks import (
    HTML_PAGE,
    OUTPUT_KINDS,
    Attack,
    Attacker,
    FileHost,
    alias_attacks,
    bomb_png,
    cursor_attacks,
    file_host,
    input_attacks,
    output_attack,
    small_png,
    upload_attack,
)
from benchmarks.burst import burst
from benchmarks.clients import (
    IMAGE_MODEL,
    START,
    STATUS,
    HttpConnection,
    PipelinedSender,
    PollerFleet,
    SubscriberFleet,
    Webhook,
    host_port,
    prediction_body,
    progress_logs,
    send_webhook,
)
from benchmarks.eta import eta
from benchmarks.harness import (
    REDIS_URL,
    S3_CREDENTIALS,
    CodeTree,
    Databases,
    Deployment,
    Server,
    code_tree,
    floor_unavailable,
    peer_unavailable,
    postgres_unavailable,
    redis_unavailable,
    s3_client,
    start_floor,
    start_peer,
    start_s3,
    stop_server,
    summary_ms,
)
from benchmarks.queue import queue
from benchmarks.storm import storm
from benchmarks.tracing import tracing
from benchmarks.webhooks_out import webhooks_out


class Skipped(Exception):
    """The scenario cannot run here (a service is down); the reason is reported instead of figures."""


@dataclass
class Bench:
    """One benchmark run: its sizes, where it keeps files, and the databases it made."""

    workdir: Path
    quick: bool = False
    db: str = "postgres"
    push_backends: list[str] = field(default_factory=lambda: ["memory", "postgres", "redis"])
    subscribers: list[int] = field(default_factory=lambda: [1000])
    push_rates: list[float] = field(default_factory=lambda: [2.0, 20.0])
    floor: bool = True
    """Measure the floor (benchmarks/floor) beside Darkroom in push, capacity and burst."""
    peer: bool = True
    """Measure the peer (benchmarks/peer) beside Darkroom in push, capacity and burst."""
    capacity: int = 10_000
    burst: int | None = None
    """Clients of the burst scenario (None: 1,000; quick: 100)."""
    storm: int | None = None
    """Feed subscribers of the storm scenario (None: 10,000; quick: 300)."""
    ingest_baseline: str | None = None
    """A git revision or another checkout's directory to run the ingest scenario against as well."""
    compression: bool = True
    profile_dir: Path | None = None
    databases: Databases = field(default_factory=Databases)
    _postgres_checked: str | None = None

    async def postgres(self, label: str) -> str:
        if self._postgres_checked is None:
            self._postgres_checked = await postgres_unavailable(self.databases.base) or ""
        if self._postgres_checked:
            raise Skipped(self._postgres_checked)
        return await self.databases.create(label)

    def deployment(self, database_url: str, **options: Any) -> Deployment:
        return Deployment(self.workdir, database_url, profile_dir=self.profile_dir, **options)

    async def database(self, label: str) -> str:
        """A fresh database of the run's kind (--db) for one scenario."""
        if self.db == "sqlite":
            (self.workdir / label).mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{self.workdir / label / 'darkroom.db'}"
        return await self.postgres(label)


# --- setup helpers --------------------------------------------------------------------------------


def connection(server: Server) -> HttpConnection:
    return HttpConnection(*host_port(server.base_url))


async def start_generations(server: Server, count: int, concurrency: int = 8) -> list[str]:
    """`count` generations started through the GraphQL mutation; their global ids."""
    ids: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    connections = [connection(server) for _ in range(concurrency)]

    async def start(index: int) -> None:
        async with gate:
            conn = connections.pop()
            try:
                result = await conn.graphql(
                    START, {"model": IMAGE_MODEL, "input": {"prompt": f"benchmark {index} {uuid.uuid4().hex[:6]}"}}
                )
            finally:
                connections.append(conn)
        payload = (result.get("data") or {}).get("startGeneration")
        if not payload or payload["userErrors"]:
            raise RuntimeError(f"startGeneration failed: {result}")
        ids.append(payload["generation"]["id"])

    await asyncio.gather(*(start(i) for i in range(count)))
    for conn in connections:
        await conn.close()
    return ids


def raw_id(global_id: str) -> uuid.UUID:
    from server.graphql.ids import decode_id

    return decode_id(global_id, "Generation")


async def sql(database_url: str, statement: str) -> list[Any]:
    """Rows of one read-only statement against the scenario's database (checks and set-up lookups)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from server.settings import normalize_database_url

    engine = create_async_engine(normalize_database_url(database_url))
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(statement))).all())
    finally:
        await engine.dispose()


async def prediction_ids(database_url: str, generation_ids: list[str]) -> dict[str, str]:
    """The provider's prediction id of each generation (webhooks name predictions, not generations)."""
    wanted = {raw_id(g): g for g in generation_ids}
    rows = await sql(database_url, "SELECT id, provider_id FROM generations")
    found = {wanted[uuid.UUID(str(row[0]))]: str(row[1]) for row in rows if uuid.UUID(str(row[0])) in wanted}
    missing = set(generation_ids) - set(found)
    if missing:
        raise RuntimeError(f"{len(missing)} generations have no prediction id")
    return found


async def current_sequence(conn: HttpConnection, generation_id: str) -> int:
    result = await conn.graphql(STATUS, {"id": generation_id})
    return int(result["data"]["generation"]["sequence"])


class Driver:
    """Sends one generation's progress webhooks, one more log line each, and tracks its sequence."""

    def __init__(self, secret: str, prediction_id: str, total_steps: int) -> None:
        self.secret = secret
        self.prediction_id = prediction_id
        self.total = total_steps
        self.step = 0

    def next_hook(self) -> Webhook:
        self.step += 1
        body = prediction_body(self.prediction_id, "processing", progress_logs(self.step, self.total))
        return Webhook.signed(self.secret, body)


async def metric(server: Server, name: str) -> float | None:
    conn = connection(server)
    try:
        status, body = await conn.request("GET", "/metrics")
    finally:
        await conn.close()
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", body.decode(), re.MULTILINE)
    return float(match.group(1)) if status == 200 and match else None


# --- push targets: Darkroom, the peer and the floor ------------------------------------------------


@dataclass
class PushTarget:
    """Where push cases run: the floor, the peer, or Darkroom with one broadcast backend."""

    name: str
    """"floor", "peer", or Darkroom's broadcast: "memory", "postgres" or "redis"."""
    publisher: Server
    """Receives the triggers: Darkroom's signed webhooks, or the floor's and the peer's POST /publish."""
    subscriber: Server
    """Holds the subscriptions (the publisher itself in one-process cases)."""
    deployment: Deployment | None = None
    """Darkroom's settings; None for the floor and the peer."""

    @property
    def processes(self) -> int:
        return 1 if self.publisher is self.subscriber else 2

    @property
    def server(self) -> str:
        """ "darkroom", "peer" or "floor"."""
        return "darkroom" if self.deployment is not None else self.name


NODE_SERVERS = (("floor", floor_unavailable, start_floor), ("peer", peer_unavailable, start_peer))
"""The Node servers measured beside Darkroom: name, why it cannot run (or None), how to start it."""


def node_servers(bench: Bench) -> list[tuple[str, Callable[[], str | None], Callable[[Path, str], Any]]]:
    """The Node servers this run measures (--no-floor and --no-peer leave them out), the floor first."""
    wanted = {"floor": bench.floor, "peer": bench.peer}
    return [entry for entry in NODE_SERVERS if wanted[entry[0]]]


JSON_HEADERS = {"content-type": "application/json"}


@dataclass
class Subject:
    """One generation that subscribers follow, and the triggers that change it, built when needed (a
    webhook's signature carries its time)."""

    generation_id: str
    sequence: int
    """Its sequence before the first trigger."""
    next_trigger: Callable[[], tuple[str, bytes, dict[str, str]]]
    """Path, body and headers of the next change's POST."""


async def new_subject(target: PushTarget, changes: int) -> Subject:
    """A fresh generation, changed once before anyone listens (Darkroom: STARTING -> PROCESSING); the floor
    and the peer are told of it by POST /publish."""
    conn = connection(target.publisher)
    try:
        if target.deployment is None:
            from server.graphql.ids import encode_id

            generation_id = encode_id("Generation", uuid.uuid4())  # the size of Darkroom's ids
            total = changes + 1
            steps = iter(range(1, total + 1))

            def floor_trigger() -> tuple[str, bytes, dict[str, str]]:
                body = json.dumps({"id": generation_id, "progress": round(next(steps) / total, 2)}).encode()
                return "/publish", body, JSON_HEADERS

            path, body, headers = floor_trigger()
            status, data = await conn.request("POST", path, body, headers)
            assert status == 200, data
            return Subject(generation_id, int(json.loads(data)["sequence"]), floor_trigger)
        (generation_id,) = await start_generations(target.publisher, 1)
        database_url = target.deployment.database_url
        prediction = (await prediction_ids(database_url, [generation_id]))[generation_id]
        driver = Driver(target.deployment.webhook_secret, prediction, changes + 1)
        outcome = await send_webhook(conn, driver.next_hook())
        assert outcome == "applied", outcome
        sequence = await current_sequence(conn, generation_id)

        def webhook() -> tuple[str, bytes, dict[str, str]]:
            hook = driver.next_hook()
            return "/webhooks/replicate", hook.body, hook.headers

        return Subject(generation_id, sequence, webhook)
    finally:
        await conn.close()


def outcome_of(status: int, data: bytes) -> str:
    """Darkroom's verdict on a webhook (applied, duplicate, stale, unknown), the floor's or the peer's, or
    the status."""
    if status != 200:
        return f"http_{status}"
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(data).get("result"))
    return "unreadable"


def deliveries(records: list[tuple[str, list[tuple[int, float]]]], sent_at: dict[int, float]) -> dict[str, Any]:
    """Every change's arrival at every subscriber, measured from the moment its trigger was sent: all
    changes counted, the first change after subscribing also on its own."""
    latencies: list[float] = []
    by_change: dict[int, list[float]] = {}
    duplicates = out_of_order = unexpected = 0
    for _, received in records:
        seen: set[int] = set()
        highest = -1
        for seq, at in received:
            if seq not in sent_at:
                unexpected += 1
                continue
            if seq in seen:
                duplicates += 1
                continue
            seen.add(seq)
            if seq < highest:
                out_of_order += 1
            highest = max(highest, seq)
            latency = at - sent_at[seq]
            latencies.append(latency)
            by_change.setdefault(seq, []).append(latency)
    first = min(sent_at) if sent_at else None
    change_p50 = {seq: statistics.median(values) for seq, values in sorted(by_change.items())}
    first_p50 = change_p50.get(first) if first is not None else None
    later = [value for seq, value in change_p50.items() if seq != first]
    median_change = statistics.median(later) if later else None

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 3)

    return {
        "deliveries": len(latencies),
        "latency": summary_ms(latencies),
        "first_change_p50_ms": ms(first_p50),
        "median_change_p50_ms": ms(median_change),
        "first_vs_median_change": (
            round(first_p50 / median_change, 2) if first_p50 is not None and median_change else None
        ),
        "last_subscriber": summary_ms([max(by_change[seq]) for seq in sorted(by_change)]),
        "change_p50_ms": [round(value * 1000, 1) for value in change_p50.values()],
        "last_subscriber_by_change_ms": [round(max(by_change[seq]) * 1000, 1) for seq in sorted(by_change)],
        "duplicates": duplicates,
        "out_of_order": out_of_order,
        "unexpected": unexpected,
    }


def ratio(value: float | None, floor: float | None) -> float | None:
    return round(value / floor, 2) if value is not None and floor else None


# --- 1. push latency ------------------------------------------------------------------------------

SETTLE_SECONDS = 0.0
"""Pause between the last subscription's first frame and the first change, for Darkroom and the floor:
none, so work a server leaves for after a subscription's first frame is charged to the first change."""


async def push(bench: Bench) -> dict[str, Any]:
    """Darkroom, the peer and the floor, side by side: for each subscriber count and rate, the floor's case,
    the peer's, and then each backend's, every case on fresh subscriptions to a fresh generation."""
    cases: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    targets: list[PushTarget] = []
    deployments: list[Deployment] = []
    nodes: list[Server] = []
    try:
        for name, unavailable, start in node_servers(bench):
            reason = unavailable()
            if reason:
                skipped[name] = reason
                continue
            try:
                node = await start(bench.workdir, f"push-{name}")
            except Exception as exc:
                failed[name] = f"{type(exc).__name__}: {exc}"
                continue
            nodes.append(node)
            targets.append(PushTarget(name, node, node))
        for backend in bench.push_backends:
            try:
                if backend == "memory":
                    deployment = bench.deployment(await bench.database("push_memory"))
                else:
                    database = await bench.postgres(f"push_{backend}")
                    if backend == "redis":
                        reason = await redis_unavailable(REDIS_URL)
                        if reason:
                            raise Skipped(reason)
                    broadcast = database if backend == "postgres" else REDIS_URL
                    deployment = bench.deployment(database, broadcast_url=broadcast)
            except Skipped as exc:
                skipped[backend] = str(exc)
                continue
            deployments.append(deployment)
            try:
                a = await deployment.start(f"push-{backend}-a")
                b = a if backend == "memory" else await deployment.start(f"push-{backend}-b")
            except Exception as exc:
                failed[backend] = f"{type(exc).__name__}: {exc}"
                print(f"  push via {backend} failed: {failed[backend]}", flush=True)
                continue
            targets.append(PushTarget(backend, a, b, deployment))
        for count in bench.subscribers:
            for rate in bench.push_rates:
                for target in targets:
                    if target.name in failed:
                        continue
                    print(f"  push: {target.name}, {count:,} subscriber(s), {rate:g} changes/s", flush=True)
                    try:
                        cases.append(await _push_case(bench, target, count, rate))
                    except Exception as exc:  # one target failing keeps the others' figures
                        failed[target.name] = f"{type(exc).__name__}: {exc}"
                        print(f"  push via {target.name} failed: {failed[target.name]}", flush=True)
    finally:
        for deployment in deployments:
            await deployment.stop()
        for node in nodes:
            await stop_server(node)
    for case in cases:
        for other in ("floor", "peer"):
            other_case = next(
                (
                    c
                    for c in cases
                    if c["backend"] == other and c["subscribers"] == case["subscribers"] and c["rate"] == case["rate"]
                ),
                None,
            )
            # Darkroom against both; the peer against the floor.
            if other_case is not None and case["backend"] not in ("floor", other):
                case[f"vs_{other}"] = {
                    key: ratio(case["latency"][f"{key}_ms"], other_case["latency"][f"{key}_ms"])
                    for key in ("p50", "p95", "p99")
                }
    return {"cases": cases, "skipped": skipped, "failed": failed, "settle_seconds": SETTLE_SECONDS}


def _push_changes(bench: Bench, rate: float) -> int:
    """Changes per case: 30 at 2/s (15 s), 200 at 20/s (10 s); quick: 6 at 2/s, 20 at 20/s."""
    if bench.quick:
        return max(6, round(rate))
    return max(30, round(10 * rate))


@dataclass
class SentChanges:
    """Changes sent at a fixed rate, and what became of them."""

    sent_at: dict[int, float]
    """When each applied change was sent (time.time()), by the sequence it was given."""
    responses: list[float]
    outcomes: Counter[str]
    lag: list[float]
    """How late each send was against its schedule."""
    sent_at_rate: float | None
    answered: bool


async def send_changes(
    publisher: Server,
    triggers: list[tuple[str, bytes, dict[str, str]]],
    rate: float,
    sequence: int,
    *,
    enough: Callable[[int], bool] | None = None,
) -> SentChanges:
    """Send `triggers` at `rate` per second on one pipelined connection to `publisher`, open loop: change i
    goes at begin + i / rate, whatever became of the ones before it; with `enough`, the sending stops early
    once enough(changes sent so far) is true. `sequence` is the subject's before the first change; answers
    come in order, so the k-th applied change is sequence + k."""
    sender = PipelinedSender(*host_port(publisher.base_url))
    await sender.open()
    sent: list[float] = []
    lag: list[float] = []
    begin = time.monotonic() + 0.05
    for index, (path, body, headers) in enumerate(triggers):
        if enough is not None and enough(index):
            break
        due = begin + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(max(0.0, time.monotonic() - due))
        sent.append(sender.send("POST", path, body, headers))
    sending_seconds = time.monotonic() - begin
    answered = await sender.wait_answers(len(sent), within=120)
    sent_at: dict[int, float] = {}
    responses: list[float] = []
    outcomes: Counter[str] = Counter()
    for (status, data, at), sent_time in zip(sender.answers, sent, strict=False):
        outcome = outcome_of(status, data)
        outcomes[outcome] += 1
        responses.append(at - sent_time)
        if outcome == "applied":
            sequence += 1
            sent_at[sequence] = sent_time
    await sender.close()
    rate_sent = round((len(sent) - 1) / sending_seconds, 2) if sending_seconds > 0 else None
    return SentChanges(sent_at, responses, outcomes, lag, rate_sent, answered)


async def _push_case(bench: Bench, target: PushTarget, subscribers: int, rate: float) -> dict[str, Any]:
    changes = _push_changes(bench, rate)
    subject = await new_subject(target, changes)
    fleet = SubscriberFleet(
        target.subscriber.ws_url, [subject.generation_id] * subscribers, compression=bench.compression
    )
    await fleet.start()
    await asyncio.sleep(SETTLE_SECONDS)
    triggers = [subject.next_trigger() for _ in range(changes)]
    rss = target.subscriber.rss_bytes()
    servers = list({id(s): s for s in (target.publisher, target.subscriber)}.values())
    cpu_before = [server.cpu_seconds() for server in servers]
    sending = await send_changes(target.publisher, triggers, rate, subject.sequence)
    sent_at = sending.sent_at
    expected = fleet.opened * len(sent_at)
    all_arrived = await fleet.wait_quiet(expected, within=180, quiet=15)
    cpu = sum(server.cpu_seconds() - before for server, before in zip(servers, cpu_before, strict=True))
    await asyncio.sleep(0.2)
    records, errors, error_count = await fleet.stop()
    found = deliveries(records, sent_at)
    return {
        "backend": target.name,
        "server": target.server,
        "processes": target.processes,
        "subscribers": subscribers,
        "subscribed": fleet.opened,
        "subscribe_failures": fleet.failed,
        "rate": rate,
        "changes": changes,
        "events": len(sent_at),
        "sent_at_rate": sending.sent_at_rate,
        "send_lag": summary_ms(sending.lag),
        "expected_deliveries": expected,
        "all_delivered": all_arrived and found["deliveries"] == expected,
        **found,
        "webhook_response": summary_ms(sending.responses),
        "webhook_outcomes": dict(sending.outcomes),
        "all_answered": sending.answered,
        "server_cpu_ms_per_change": round(cpu / max(changes, 1) * 1000, 2),
        "subscriber_rss_mib": round(rss / 2**20, 1),
        "client_errors": error_count,
        "client_error_sample": errors[:3],
    }


# --- 2. capacity ----------------------------------------------------------------------------------


async def capacity(bench: Bench) -> dict[str, Any]:
    """Darkroom holding `bench.capacity` idle subscriptions in one process, then a few changes pushed to
    all of them; the peer and the floor the same way, when they can run, under "peer" and "floor"."""
    deployment = bench.deployment(await bench.database("capacity"))
    try:
        server = await deployment.start("capacity")
        result = await _hold_and_push(bench, PushTarget("memory", server, server, deployment))
    finally:
        await deployment.stop()
    for name, unavailable, start in node_servers(bench):
        reason = unavailable()
        if reason:
            result[name] = {"skipped": reason}
            continue
        try:  # a Node server failing keeps Darkroom's figures
            node = await start(bench.workdir, f"capacity-{name}")
            try:
                result[name] = await _hold_and_push(bench, PushTarget(name, node, node))
            finally:
                await stop_server(node)
        except Exception as exc:
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  capacity of the {name} failed: {result[name]['error']}", flush=True)
            continue
        theirs = result[name]
        mine = result["push"]["latency"]
        result["push"][f"vs_{name}"] = {
            key: ratio(mine[f"{key}_ms"], theirs["push"]["latency"][f"{key}_ms"]) for key in ("p50", "p99")
        }
        result[f"vs_{name}"] = {
            key: ratio(result[key], theirs[key]) for key in ("subscriptions_per_second", "kib_per_subscription")
        }
    if "push" in result.get("peer", {}) and "push" in result.get("floor", {}):
        floor_latency = result["floor"]["push"]["latency"]
        result["peer"]["push"]["vs_floor"] = {
            key: ratio(result["peer"]["push"]["latency"][f"{key}_ms"], floor_latency[f"{key}_ms"])
            for key in ("p50", "p99")
        }
    return result


def _capacity_changes(bench: Bench) -> int:
    return 3 if bench.quick else 5


async def _hold_and_push(bench: Bench, target: PushTarget) -> dict[str, Any]:
    count = bench.capacity
    server = target.subscriber
    changes = _capacity_changes(bench)
    subject = await new_subject(target, changes)
    # A few subscriptions first, so one-off costs (imports, caches) are not charged per subscription.
    warm = SubscriberFleet(server.ws_url, [subject.generation_id] * 10, compression=bench.compression)
    await warm.start()
    await asyncio.sleep(1.0)
    rss_base = server.rss_bytes()
    print(f"  capacity: {target.name}, opening {count:,} subscriptions", flush=True)
    fleet = SubscriberFleet(
        server.ws_url,
        [subject.generation_id] * count,
        per_process=2500,
        max_processes=4,
        compression=bench.compression,
    )
    started = time.perf_counter()
    await fleet.start(within=900)
    open_seconds = time.perf_counter() - started
    await asyncio.sleep(2.0)
    rss_after = server.rss_bytes()
    open_gauge = await metric(server, "darkroom_open_subscriptions") if target.deployment is not None else None
    # Still alive? A few changes, one at a time, each to every subscriber (the warm ones included).
    print(f"  capacity: {target.name}, {changes} changes to all of them", flush=True)
    conn = connection(target.publisher)
    sent_at: dict[int, float] = {}
    responses: list[float] = []
    outcomes: Counter[str] = Counter()
    sequence = subject.sequence
    cpu_before = server.cpu_seconds()
    all_arrived = True
    for _ in range(changes):
        path, body, headers = subject.next_trigger()
        before = time.time()
        status, data = await conn.request("POST", path, body, headers)
        responses.append(time.time() - before)
        outcome = outcome_of(status, data)
        outcomes[outcome] += 1
        if outcome == "applied":
            sequence += 1
            sent_at[sequence] = before
        arrived = await fleet.wait_quiet(fleet.opened * len(sent_at), within=300, quiet=30)
        all_arrived = all_arrived and arrived
        await asyncio.sleep(0.5)
    cpu_push = server.cpu_seconds() - cpu_before
    rss_peak = server.rss_bytes()
    await conn.close()
    records, errors, error_count = await fleet.stop()
    await warm.stop()
    found = deliveries(records, sent_at)
    per_subscription = (rss_after - rss_base) / max(fleet.opened, 1)
    projected = rss_base + per_subscription * 10_000
    expected = fleet.opened * len(sent_at)
    return {
        "subscriptions": count,
        "subscribed": fleet.opened,
        "subscribe_failures": fleet.failed,
        "failure_sample": fleet.failures[:3],
        "open_gauge": open_gauge,
        "open_seconds": round(open_seconds, 2),
        "subscriptions_per_second": fleet.opening_rate(),
        "rss_base_mib": round(rss_base / 2**20, 1),
        "rss_mib": round(rss_after / 2**20, 1),
        "rss_after_push_mib": round(rss_peak / 2**20, 1),
        "kib_per_subscription": round(per_subscription / 1024, 2),
        "projected_rss_at_10000_mib": round(projected / 2**20, 1),
        "websocket_compression": bench.compression,
        "push": {
            "changes": changes,
            "events": len(sent_at),
            "expected_deliveries": expected,
            "all_delivered": all_arrived and found["deliveries"] == expected,
            **found,
            "webhook_response": summary_ms(responses),
            "webhook_outcomes": dict(outcomes),
            "server_cpu_ms_per_change": round(cpu_push / max(changes, 1) * 1000, 1),
        },
        "client_errors": error_count,
        "client_error_sample": errors[:3],
    }


# --- 3. webhook ingestion -------------------------------------------------------------------------


async def ingest(bench: Bench) -> dict[str, Any]:
    """One run against this checkout; with --ingest-baseline, runs against the baseline code and this
    checkout interleaved (baseline, current, current, baseline; quick: one each), each on a fresh
    database and server, and both sides reported with their ratio."""
    if bench.ingest_baseline is None:
        single = await _ingest_run(bench, None, "ingest")
        single.pop("response_seconds")
        return single
    baseline = code_tree(bench.ingest_baseline, bench.workdir)
    order: list[CodeTree | None] = [baseline, None] if bench.quick else [baseline, None, None, baseline]
    runs: list[dict[str, Any]] = []
    for index, tree in enumerate(order, start=1):
        side = "baseline" if tree is not None else "current"
        print(f"  ingest: {side} ({index}/{len(order)})", flush=True)
        run = await _ingest_run(bench, tree, f"ingest_{index}_{side}")
        runs.append({"tree": side, "code": tree.label if tree is not None else "this checkout", **run})
    current = _combine_ingest([r for r in runs if r["tree"] == "current"])
    before = _combine_ingest([r for r in runs if r["tree"] == "baseline"])
    return {
        **current,
        "baseline": {"code": baseline.label, **before},
        "vs_baseline": {
            "webhooks_per_second": ratio(current["webhooks_per_second"], before["webhooks_per_second"]),
            "server_cpu_ms_per_webhook": ratio(
                current["server_cpu_ms_per_webhook"], before["server_cpu_ms_per_webhook"]
            ),
            "response_p50": ratio(current["response"]["p50_ms"], before["response"]["p50_ms"]),
        },
        "runs": [{k: v for k, v in r.items() if k != "response_seconds"} for r in runs],
    }


def _combine_ingest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's runs as one figure: totals over all its webhooks, means of the per-webhook costs."""
    webhooks = sum(r["webhooks"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    waiters = [r["postgres_lock_waiters_mean"] for r in runs if r["postgres_lock_waiters_mean"] is not None]
    outcomes: Counter[str] = Counter()
    for r in runs:
        outcomes.update(r["outcomes"])
    return {
        "runs_combined": len(runs),
        "webhooks": webhooks,
        "generations": runs[0]["generations"],
        "in_flight": runs[0]["in_flight"],
        "seconds": round(seconds, 3),
        "webhooks_per_second": round(webhooks / seconds, 1) if seconds else None,
        "webhooks_per_second_by_run": [r["webhooks_per_second"] for r in runs],
        "outcomes": dict(outcomes),
        "lost": sum(r["lost"] for r in runs),
        "generations_with_wrong_final_state": sum(r["generations_with_wrong_final_state"] for r in runs),
        "response": summary_ms([s for r in runs for s in r["response_seconds"]]),
        "server_cpu_ms_per_webhook": round(statistics.mean(r["server_cpu_ms_per_webhook"] for r in runs), 3),
        "server_cpu_share": round(statistics.mean(r["server_cpu_share"] for r in runs), 2),
        "client_cpu_share": round(statistics.mean(r["client_cpu_share"] for r in runs), 2),
        "postgres_lock_waiters_mean": round(statistics.mean(waiters), 2) if waiters else None,
    }


async def _ingest_run(bench: Bench, tree: CodeTree | None, label: str) -> dict[str, Any]:
    """5,000 signed webhooks (100 generations x 50 progress updates, 100 in flight) into one server
    running `tree` (None: this checkout) on a fresh PostgreSQL database, and the log checked after."""
    generations, per_generation = (5, 10) if bench.quick else (100, 50)
    database = await bench.postgres(label)
    deployment = bench.deployment(database, tree=tree)
    try:
        server = await deployment.start(label.replace("_", "-"))
        ids = await start_generations(server, generations)
        predictions = await prediction_ids(database, ids)
        hooks = {
            g: [
                Webhook.signed(
                    deployment.webhook_secret,
                    prediction_body(predictions[g], "processing", progress_logs(step, per_generation)),
                )
                for step in range(1, per_generation + 1)
            ]
            for g in ids
        }
        before = {uuid.UUID(str(row[0])): int(row[1]) for row in await sql(database, _EVENT_COUNTS)}
        outcomes: dict[str, Counter[str]] = {g: Counter() for g in ids}
        latencies: list[float] = []

        async def drive(generation_id: str) -> None:
            conn = connection(server)
            for hook in hooks[generation_id]:  # in order per generation; generations side by side
                started = time.perf_counter()
                outcomes[generation_id][await send_webhook(conn, hook)] += 1
                latencies.append(time.perf_counter() - started)
            await conn.close()

        print(f"  ingest: {generations * per_generation} webhooks, {generations} in flight", flush=True)
        cpu_before = server.cpu_seconds()
        client_before = time.process_time()
        started = time.perf_counter()
        done = asyncio.Event()
        sampling = asyncio.create_task(_lock_waiters(database, done))
        await asyncio.gather(*(drive(g) for g in ids))
        elapsed = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu_before
        client_cpu = time.process_time() - client_before
        done.set()
        waiters = await sampling
        rows = await sql(database, _EVENT_COUNTS)
        stored = await sql(database, "SELECT id, logs, progress FROM generations")
    finally:
        await deployment.stop()
    after = {uuid.UUID(str(row[0])): int(row[1]) for row in rows}
    state = {uuid.UUID(str(row[0])): (row[1], row[2]) for row in stored}
    lost = 0
    wrong_state = 0
    for g in ids:
        key = raw_id(g)
        applied = outcomes[g]["applied"]
        lost += max(0, applied - (after.get(key, 0) - before.get(key, 0)))
        expected_logs = progress_logs(per_generation, per_generation)
        logs, progress = state.get(key, (None, None))
        if logs != expected_logs or progress != 1.0:
            wrong_state += 1
    total = generations * per_generation
    totals: Counter[str] = Counter()
    for counter in outcomes.values():
        totals.update(counter)
    return {
        "webhooks": total,
        "generations": generations,
        "in_flight": generations,
        "seconds": round(elapsed, 3),
        "webhooks_per_second": round(total / elapsed, 1),
        "outcomes": dict(totals),
        "lost": lost + (total - totals["applied"]),
        "generations_with_wrong_final_state": wrong_state,
        "response": summary_ms(latencies),
        "response_seconds": latencies,
        "server_cpu_ms_per_webhook": round(cpu / total * 1000, 3),
        "server_cpu_share": round(cpu / elapsed, 2),
        "client_cpu_share": round(client_cpu / elapsed, 2),
        "postgres_lock_waiters_mean": round(statistics.mean(waiters), 2) if waiters else None,
    }


async def _lock_waiters(database: str, done: asyncio.Event) -> list[int]:
    """Sessions of the database waiting on a lock, sampled every 50 ms until `done`."""
    import asyncpg

    samples: list[int] = []
    connection = await asyncpg.connect(database)
    try:
        while not done.is_set():
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            samples.append(int(waiting))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.05)
    finally:
        await connection.close()
    return samples


_EVENT_COUNTS = "SELECT generation_id, count(*) FROM events GROUP BY generation_id"


# --- 4. reads -------------------------------------------------------------------------------------

MEDIA_PAGE = """
query Page($first: Int!) {
  media(first: $first) {
    edges {
      cursor
      node {
        id kind status url contentType width height createdAt position
        generation { id status model modelVersion progress input createdAt completedAt }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def reads(bench: Bench) -> dict[str, Any]:
    generations, outputs = 25, 4  # 100 media rows
    deployment = bench.deployment(await bench.database("reads"))
    try:
        server = await deployment.start("reads", count_sql=True)
        ids = await start_generations(server, generations)
        predictions = await prediction_ids(deployment.database_url, ids)
        conn = connection(server)
        for g in ids:
            urls = [f"https://replicate.delivery/bench/{predictions[g]}/out-{k}.png" for k in range(outputs)]
            hook = Webhook.signed(
                deployment.webhook_secret, prediction_body(predictions[g], "succeeded", progress_logs(4, 4), urls)
            )
            outcome = await send_webhook(conn, hook)
            assert outcome == "applied", outcome

        async def statements() -> int:
            status, body = await conn.request("GET", "/_bench/sql-statements")
            assert status == 200, body
            return int(json.loads(body)["statements"])

        async def page(first: int) -> int:
            result = await conn.graphql(MEDIA_PAGE, {"first": first})
            if result.get("errors"):
                raise RuntimeError(f"media page failed: {result['errors']}")
            return len(result["data"]["media"]["edges"])

        statements_by_size: dict[str, int] = {}
        for first in (1, 10, 50, 100):
            counts = []
            for _ in range(5):
                before = await statements()
                items = await page(first)
                counts.append(await statements() - before)
            assert items == first, (items, first)
            statements_by_size[str(first)] = int(statistics.median(counts))
        for _ in range(20):
            await page(50)
        timings: list[float] = []
        for _ in range(30 if bench.quick else 300):
            started = time.perf_counter()
            await page(50)
            timings.append(time.perf_counter() - started)
        await conn.close()

        duration = 2.0 if bench.quick else 10.0
        clients = 4
        done = 0
        stop_at = time.perf_counter() + duration

        async def hammer() -> None:
            nonlocal done
            mine = connection(server)
            while time.perf_counter() < stop_at:
                result = await mine.graphql(MEDIA_PAGE, {"first": 50})
                assert not result.get("errors"), result
                done += 1
            await mine.close()

        cpu_before = server.cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(hammer() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        cpu = server.cpu_seconds() - cpu_before
    finally:
        await deployment.stop()
    return {
        "database": "postgresql" if deployment.database_url.startswith("postgres") else "sqlite",
        "page_size": 50,
        "latency": summary_ms(timings),
        "throughput_clients": clients,
        "pages_per_second": round(done / elapsed, 1),
        "server_cpu_ms_per_page": round(cpu / max(done, 1) * 1000, 3),
        "statements_by_page_size": statements_by_size,
        "statements_constant": len(set(list(statements_by_size.values())[1:])) == 1,
    }


# --- 5. polling vs. push --------------------------------------------------------------------------


async def baseline(bench: Bench) -> dict[str, Any]:
    """The seed's client (poll every second over HTTP) and a subscription, against the same changes."""
    count, period, duration = (5, 2.0, 6.0) if bench.quick else (50, 3.0, 30.0)
    deployment = bench.deployment(await bench.database("baseline"))
    try:
        server = await deployment.start("baseline")
        ids = await start_generations(server, count)
        predictions = await prediction_ids(deployment.database_url, ids)
        steps = int(duration / period * 3 + 10)
        drivers = {g: Driver(deployment.webhook_secret, predictions[g], steps) for g in ids}
        conn = connection(server)
        for g in ids:
            await send_webhook(conn, drivers[g].next_hook())
        sequences = {g: await current_sequence(conn, g) for g in ids}

        async def changes() -> tuple[list[tuple[str, int, float]], float]:
            """Changes spread evenly: one generation after another, each changing every `period` s."""
            sent: list[tuple[str, int, float]] = []
            slot = period / count
            cpu_before = server.cpu_seconds()
            start = time.monotonic()
            index = 0
            while time.monotonic() - start < duration:
                g = ids[index % count]
                at = time.time()
                if await send_webhook(conn, drivers[g].next_hook()) == "applied":
                    sequences[g] += 1
                    sent.append((g, sequences[g], at))
                index += 1
                await asyncio.sleep(max(0.0, start + index * slot - time.monotonic()))
            return sent, server.cpu_seconds() - cpu_before

        print(f"  baseline: {count} clients, webhooks only", flush=True)
        _, cpu_webhooks = await changes()

        print(f"  baseline: {count} clients polling every second", flush=True)
        pollers = PollerFleet(server.base_url, ids, interval=1.0)
        await pollers.start()
        await asyncio.sleep(1.5)
        polled_changes, cpu_polling = await changes()
        window_end = time.time()
        await asyncio.sleep(1.5)
        poll_records, requests_total, poll_errors = await pollers.stop()

        print(f"  baseline: {count} clients subscribed", flush=True)
        fleet = SubscriberFleet(server.ws_url, ids, compression=bench.compression)
        await fleet.start()
        pushed_changes, cpu_push = await changes()
        await fleet.wait_for(len(pushed_changes), within=10)
        push_records, push_errors, _ = await fleet.stop()
        await conn.close()
    finally:
        await deployment.stop()

    # Polling: a change is noticed by the first poll after it that shows its sequence (or a later one).
    polls: dict[int, list[tuple[float, int]]] = {}
    for index, at, seq in poll_records:
        polls.setdefault(index, []).append((at, seq))
    position = {g: i for i, g in enumerate(ids)}
    poll_notice: list[float] = []
    for g, seq, at in polled_changes:
        for polled_at, polled_seq in sorted(polls.get(position[g], [])):
            if polled_at > at and polled_seq >= seq:
                poll_notice.append(polled_at - at)
                break
    window_start = polled_changes[0][2] if polled_changes else 0.0
    window_requests = sum(1 for _, at, _ in poll_records if window_start <= at <= window_end)
    poll_updates = 0  # responses showing a state the poller had not seen yet
    for entries in polls.values():
        seen = None
        for at, seq in sorted(entries):
            if seen is not None and seq != seen and window_start <= at <= window_end:
                poll_updates += 1
            seen = seq
    # Push: each change arrives as one message.
    arrival = {(g, seq): at for g, received in push_records for seq, at in received}
    push_notice = [arrival[(g, seq)] - at for g, seq, at in pushed_changes if (g, seq) in arrival]
    push_updates = len(push_notice)

    def per_update(cpu: float, updates: int) -> float | None:
        return round(cpu / updates * 1000, 3) if updates else None

    return {
        "clients": count,
        "change_every_seconds": period,
        "phase_seconds": duration,
        "poll_interval_seconds": 1.0,
        "polling": {
            "changes": len(polled_changes),
            "noticed": len(poll_notice),
            "updates_delivered": poll_updates,
            "time_to_notice": summary_ms(poll_notice),
            "mean_notice_ms": round(statistics.mean(poll_notice) * 1000, 1) if poll_notice else None,
            "requests": window_requests,
            "requests_total": requests_total,
            "requests_per_update": round(window_requests / poll_updates, 2) if poll_updates else None,
            "server_cpu_seconds": round(cpu_polling, 3),
            "server_cpu_ms_per_update": per_update(cpu_polling, poll_updates),
            "server_cpu_ms_per_update_beyond_webhooks": per_update(cpu_polling - cpu_webhooks, poll_updates),
            "errors": poll_errors[:3],
        },
        "subscription": {
            "changes": len(pushed_changes),
            "noticed": len(push_notice),
            "updates_delivered": push_updates,
            "time_to_notice": summary_ms(push_notice),
            "mean_notice_ms": round(statistics.mean(push_notice) * 1000, 1) if push_notice else None,
            "requests": count,
            "requests_per_update": round(count / push_updates, 3) if push_updates else None,
            "server_cpu_seconds": round(cpu_push, 3),
            "server_cpu_ms_per_update": per_update(cpu_push, push_updates),
            "server_cpu_ms_per_update_beyond_webhooks": per_update(cpu_push - cpu_webhooks, push_updates),
            "errors": push_errors[:3],
        },
        "webhooks_only_server_cpu_seconds": round(cpu_webhooks, 3),
    }


# --- 6. storing a large file ---------------------------------------------------------------------

MIB = 1024 * 1024
# The start of an MP4: the downloader's content sniffing takes the file for a video.
VIDEO_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


@contextlib.asynccontextmanager
async def _video_host(size: int) -> Any:
    """An HTTP server sending a `size`-byte video/mp4, generated as it goes (the benchmark holds 1 MiB)."""
    block = VIDEO_HEAD + bytes(uuid.uuid4().bytes * (MIB // 16))[len(VIDEO_HEAD) :]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {size}\r\n\r\n".encode())
            sent = 0
            while sent < size:
                chunk = block[: min(MIB, size - sent)]
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/bench.mp4"
    finally:
        server.close()


async def storage(bench: Bench) -> dict[str, Any]:
    """One server downloads a 200 MB video (quick: 20 MB) from a file host into its store, the local disk
    and then an S3 bucket (moto in a process of its own): its resident memory is sampled every 10 ms
    from before the webhook that announces the file until the media row is READY."""
    size = (20 if bench.quick else 200) * MIB
    cases = [await _store_case(bench, "local", size)]
    try:
        import moto  # noqa: F401  (in the test extra)
    except ImportError:
        cases.append({"store": "s3", "skipped": "moto is not installed (pip install -e '.[test]')"})
    else:
        cases.append(await _store_case(bench, "s3", size))
    return {"file_mib": size // MIB, "cases": cases}


async def _store_case(bench: Bench, store: str, size: int) -> dict[str, Any]:
    label = f"storage_{store}"
    extra = {"DOWNLOADER_ENABLED": "true", "DOWNLOAD_MAX_BYTES": str(size * 2), "DOWNLOAD_TIMEOUT_SECONDS": "600"}
    async with contextlib.AsyncExitStack() as stack:
        if store == "s3":
            endpoint = await stack.enter_async_context(start_s3(bench.workdir))
            bucket = f"darkroom-bench-{uuid.uuid4().hex[:8]}"
            await asyncio.to_thread(s3_client(endpoint).create_bucket, Bucket=bucket)
            extra |= {**S3_CREDENTIALS, "MEDIA_STORAGE_URL": f"s3://{bucket}/media", "S3_ENDPOINT_URL": endpoint}
        deployment = bench.deployment(await bench.database(label), extra=extra)
        try:
            server = await deployment.start(label)
            (generation,) = await start_generations(server, 1)
            prediction = (await prediction_ids(deployment.database_url, [generation]))[generation]
            host = await stack.enter_async_context(_video_host(size))
            conn = connection(server)
            baseline_rss = server.rss_bytes()
            peak = baseline_rss
            hook = Webhook.signed(deployment.webhook_secret, prediction_body(prediction, "succeeded", "", [host]))
            started = time.perf_counter()
            assert await send_webhook(conn, hook) == "applied"
            await conn.close()
            done = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, server.rss_bytes())
                    await asyncio.sleep(0.01)

            sampler = asyncio.create_task(sample())
            try:
                while True:  # the database is the case's own: its one media row is the video's
                    rows = await sql(deployment.database_url, "SELECT status, byte_size FROM media")
                    if rows and rows[0][0] in ("READY", "FAILED"):
                        break
                    if time.perf_counter() - started > 900:
                        raise RuntimeError("the download did not finish in 15 minutes")
                    await asyncio.sleep(0.1)
            finally:
                done.set()
                await sampler
            elapsed = time.perf_counter() - started
            status, stored = rows[0]
            if status != "READY" or stored != size:
                raise RuntimeError(f"the download ended {status} with {stored} bytes: {server.log_tail()}")
        finally:
            await deployment.stop()
    return {
        "store": store,
        "seconds": round(elapsed, 2),
        "mib_per_second": round(size / MIB / elapsed, 1),
        "rss_before_mib": round(baseline_rss / MIB, 1),
        "rss_peak_mib": round(peak / MIB, 1),
        "rss_growth_mib": round((peak - baseline_rss) / MIB, 1),
    }


# --- 7. hostile load -----------------------------------------------------------------------------

HOSTILE_RATE = 10.0
"""Changes per second the live subscriber follows, with and without the attack."""
HOSTILE_FILLER = (25, 4)
"""Generations, and stored outputs of each, for the alias query to walk (as the reads scenario's page)."""


async def hostile(bench: Bench) -> dict[str, Any]:
    """A live subscriber follows a generation changing HOSTILE_RATE times a second, first in quiet, then
    while the attacks of benchmarks/attacks.py are sent beside it (bounded: each `rounds` times at most,
    none started after `attack_seconds`). Reported: the server's longest event-loop stall in each phase (its
    monitor's figures on /metrics), the subscriber's push latency in each, how the attacks were answered,
    and the hostile outputs' media as the downloader left them."""
    seconds, rounds = (3.0, 1) if bench.quick else (15.0, 5)
    changes = round(seconds * HOSTILE_RATE)
    # The attack phase lasts until every attack was answered, at least `seconds` and at most this long.
    attack_seconds = 60.0 if bench.quick else 180.0
    bomb = await asyncio.to_thread(bomb_png)
    files = {
        "page.html": (HTML_PAGE, "text/html"),
        "bomb.png": (bomb, "image/png"),
        "small.png": (small_png(), "image/png"),
    }
    async with file_host(files) as host:
        extra = {
            "DOWNLOADER_ENABLED": "true",
            # The benchmark's own file host, by its origin: nothing leaves the machine.
            "REPLICATE_FILE_HOSTS": host.base_url,
            "DOWNLOAD_MAX_ATTEMPTS": "1",  # a refused file is FAILED at once, not retried through the run
        }
        deployment = bench.deployment(await bench.database("hostile"), extra=extra)
        try:
            server = await deployment.start("hostile")
            victims = await _hostile_setup(server, deployment, host, rounds * len(OUTPUT_KINDS))
            target = PushTarget("memory", server, server, deployment)
            subject = await new_subject(target, changes + round(attack_seconds * HOSTILE_RATE))
            fleet = SubscriberFleet(server.ws_url, [subject.generation_id], compression=bench.compression)
            await fleet.start()
            print(f"  hostile: {changes} changes at {HOSTILE_RATE:g}/s, quiet", flush=True)
            quiet = await _hostile_phase(server, subject, fleet, changes)
            attacks = _attack_plan(deployment.webhook_secret, victims, host, bomb, rounds)
            print(f"  hostile: {changes} changes at {HOSTILE_RATE:g}/s, {len(attacks)} attacks beside", flush=True)
            attacker = Attacker(*host_port(server.base_url))
            attacked = await _hostile_phase(server, subject, fleet, changes, attacker, attacks, attack_seconds)
            records, errors, error_count = await fleet.stop()
            outputs = await _hostile_outputs(deployment.database_url, victims, within=10 if bench.quick else 30)
        finally:
            await deployment.stop()
    phases = {}
    for name, phase in (("quiet", quiet), ("attack", attacked)):
        sent_at = phase.pop("sent_at")
        mine = [(g, [(seq, at) for seq, at in received if seq in sent_at]) for g, received in records]
        found = deliveries(mine, sent_at)
        phases[name] = {
            **phase,
            "events": len(sent_at),
            "deliveries": found["deliveries"],
            "latency": found["latency"],
        }
    stall = phases["attack"]["max_stall_ms"]
    return {
        "rate": HOSTILE_RATE,
        "subscribers": 1,
        "phase_seconds": seconds,
        "rounds": rounds,
        **phases,
        "max_stall_ms": stall,
        "push_p99_vs_quiet": ratio(phases["attack"]["latency"]["p99_ms"], phases["quiet"]["latency"]["p99_ms"]),
        "attacks_sent": attacker.sent,
        "answers": attacker.totals(),
        "answers_by_family": attacker.by_family(),
        "answers_by_attack": {name: dict(counts) for name, counts in attacker.verdicts.items()},
        "hostile_outputs": outputs,
        "client_errors": error_count,
        "client_error_sample": errors[:3],
    }


async def _hostile_setup(server: Server, deployment: Deployment, host: FileHost, victims: int) -> list[str]:
    """Media for the alias query to walk (filler generations finished with small PNG outputs from the file
    host, settled before anything is measured), and the prediction ids of `victims` generations, left
    running, that the hostile outputs will finish."""
    generations, outputs = HOSTILE_FILLER
    ids = await start_generations(server, generations + victims)
    predictions = await prediction_ids(deployment.database_url, ids)
    conn = connection(server)
    try:
        for g in ids[:generations]:
            hook = Webhook.signed(
                deployment.webhook_secret,
                prediction_body(predictions[g], "succeeded", "", [host.url("small.png")] * outputs),
            )
            outcome = await send_webhook(conn, hook)
            if outcome != "applied":
                raise RuntimeError(f"a filler generation's webhook was {outcome}")
    finally:
        await conn.close()
    deadline = time.monotonic() + 120
    while True:
        rows = await sql(deployment.database_url, "SELECT status FROM media")
        if len(rows) >= generations * outputs and all(row[0] in ("READY", "FAILED") for row in rows):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the filler media were not stored in 2 minutes: {Counter(r[0] for r in rows)}")
        await asyncio.sleep(0.1)
    return [predictions[g] for g in ids[generations:]]


def _attack_plan(
    secret: str, victims: list[str], host: FileHost, bomb: bytes, rounds: int
) -> list[Callable[[], Attack]]:
    """Every attack, `rounds` times over; each built when its turn comes, each hostile output on a victim
    of its own (a finished generation takes no second result)."""
    plan: list[Callable[[], Attack]] = []
    spare = iter(victims)
    for _ in range(rounds):
        fixed = [*input_attacks(), *alias_attacks(), *cursor_attacks(), upload_attack(bomb)]
        plan += [functools.partial(_same, attack) for attack in fixed]
        plan += [functools.partial(output_attack, kind, secret, next(spare), host) for kind in OUTPUT_KINDS]
    return plan


def _same(attack: Attack) -> Attack:
    return attack


async def _loop_reading(server: Server) -> tuple[float | None, dict[float, float]]:
    """The server's event-loop monitor: its longest stall since start (s), and its histogram's wake-ups
    by bucket (cumulative: late by at most `le` seconds; inf: all of them)."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = connection(server)
    try:
        status, body = await conn.request("GET", "/metrics")
    finally:
        await conn.close()
    longest: float | None = None
    buckets: dict[float, float] = {}
    if status != 200:
        return longest, buckets
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "darkroom_event_loop_max_stall_seconds":
                longest = sample.value
            elif sample.name == "darkroom_event_loop_lag_seconds_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    return longest, buckets


def _phase_stalls(
    before: tuple[float | None, dict[float, float]], after: tuple[float | None, dict[float, float]]
) -> dict[str, Any]:
    """A phase's longest stall from two readings. The gauge holds the longest since the server started, so
    it is the phase's own only when the phase raised it; otherwise the phase's longest is bounded by the
    smallest histogram bucket that holds all of the phase's wake-ups (and by the gauge)."""
    (longest_before, buckets_before), (longest, buckets) = before, after
    if longest is None or not buckets:
        return {"max_stall_ms": None, "max_stall_in_this_phase": False, "loop_wakes": 0, "stalls_over_50ms": 0}
    within = {le: count - buckets_before.get(le, 0.0) for le, count in buckets.items()}
    wakes = within[math.inf]
    raised = longest_before is None or longest > longest_before
    bound = min(le for le, count in within.items() if count == wakes)
    stall = longest if raised else min(longest, bound)
    return {
        "max_stall_ms": round(stall * 1000, 1),
        "max_stall_in_this_phase": raised,
        "loop_wakes": int(wakes),
        "stalls_over_50ms": int(wakes - within.get(0.05, 0.0)),
    }


async def _hostile_phase(
    server: Server,
    subject: Subject,
    fleet: SubscriberFleet,
    changes: int,
    attacker: Attacker | None = None,
    plan: list[Callable[[], Attack]] | None = None,
    attack_seconds: float = 0.0,
) -> dict[str, Any]:
    """`changes` changes at HOSTILE_RATE; with `attacker`, its `plan` sent beside them, the changes going on
    until every attack was answered or `attack_seconds` passed."""
    conn = connection(server)
    try:
        sequence = await current_sequence(conn, subject.generation_id)
    finally:
        await conn.close()
    most = changes if attacker is None else max(changes, round(attack_seconds * HOSTILE_RATE))
    triggers = [subject.next_trigger() for _ in range(most)]
    received = fleet.received
    loop_before = await _loop_reading(server)
    rss_before = server.rss_bytes()
    cpu_before = server.cpu_seconds()
    started = time.monotonic()
    attacking: asyncio.Task[None] | None = None
    if attacker is not None and plan is not None:
        until = asyncio.get_running_loop().time() + attack_seconds
        attacking = asyncio.create_task(attacker.run(plan, until))

    def enough(sent: int) -> bool:
        return sent >= changes and (attacking is None or attacking.done())

    sending = await send_changes(server, triggers, HOSTILE_RATE, sequence, enough=enough)
    if attacking is not None:
        await attacking
    all_arrived = await fleet.wait_quiet(received + len(sending.sent_at), within=60, quiet=10)
    seconds = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    stalls = _phase_stalls(loop_before, await _loop_reading(server))
    return {
        "sent_at": sending.sent_at,
        "seconds": round(seconds, 2),
        "all_delivered": all_arrived,
        "webhook_outcomes": dict(sending.outcomes),
        **stalls,
        "server_cpu_share": round(cpu / seconds, 2) if seconds else None,
        "rss_growth_mib": round((server.rss_bytes() - rss_before) / 2**20, 1),
    }


async def _hostile_outputs(database_url: str, victims: list[str], within: float) -> dict[str, dict[str, int]]:
    """The media each kind of hostile output made, by status, once the downloader settled them all (or after
    `within` seconds). Victim i was given OUTPUT_KINDS[i % 3] (see _attack_plan)."""
    kinds = {victim: OUTPUT_KINDS[index % len(OUTPUT_KINDS)] for index, victim in enumerate(victims)}
    deadline = time.monotonic() + within
    while True:
        rows = await sql(
            database_url, "SELECT g.provider_id, m.status FROM media m JOIN generations g ON g.id = m.generation_id"
        )
        found: dict[str, Counter[str]] = {kind: Counter() for kind in OUTPUT_KINDS}
        for provider_id, status in rows:
            if str(provider_id) in kinds:
                found[kinds[str(provider_id)]][str(status)] += 1
        settled = all(set(statuses) <= {"READY", "FAILED"} for statuses in found.values())
        if settled or time.monotonic() > deadline:
            return {kind: dict(statuses) for kind, statuses in found.items()}
        await asyncio.sleep(0.2)


SCENARIOS = {
    "push": push,
    "capacity": capacity,
    "burst": burst,
    "storm": storm,
    "ingest": ingest,
    "reads": reads,
    "baseline": baseline,
    "storage": storage,
    "hostile": hostile,
    "queue": queue,
    "eta": eta,
    "tracing": tracing,
    "webhooks_out": webhooks_out,
}


async def run_scenario(name: str, bench: Bench) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = await SCENARIOS[name](bench)
    except Skipped as exc:
        result = {"skipped": str(exc)}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result
