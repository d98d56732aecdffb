"""A reconnect storm: every feed subscriber's socket dropped at once, and every one resuming at once.

One Darkroom process (memory://, the statement-counting launcher of sqlcount.py) holds N subscribers of
the feed (`generationEvents(after: $cursor)`, each on a socket of its own, all from the cursor read before
the first change) and 1,000 subscribers of `generation(id)` that stay connected throughout, while a
generation changes 20 times a second (signed webhooks, open loop). After a steady phase, every feed
socket is closed abruptly (the TCP connection aborted, no close frame) and every client reconnects at
once with the cursor of the last event it received as `after`; the changes keep flowing.

Reported: whether every feed client had every event exactly once and in order; the time from the drop
until every client was caught up (the first change sent after its resubscribe had arrived, and, in order,
everything before it; target within 10 s); the SQL statements the storm caused (those counted from the
drop to the end of the storm window, less what the same changes cost per second before it); and the push
p99 of the `generation(id)` subscribers during the storm, as a multiple of their p99 before it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks.clients import HttpConnection, SubscriberFleet
from benchmarks.feed_clients import FeedFleet, totals
from benchmarks.harness import summary_ms
from benchmarks.sqlcount import COUNTER_PATH

if TYPE_CHECKING:
    from benchmarks.scenarios import Bench

RATE = 20.0
"""Changes per second throughout."""
CATCH_UP_TARGET = 10.0
"""Seconds from the drop until every client is caught up."""


def storm_sizes(bench: Bench) -> tuple[int, int, float, float]:
    """Feed subscribers, generation(id) subscribers, seconds before the drop, seconds of the storm window."""
    if bench.quick:
        return bench.storm or 300, 100, 5.0, 20.0
    return bench.storm or 10_000, 1000, 10.0, 30.0


async def statements(conn: HttpConnection) -> int:
    status, body = await conn.request("GET", COUNTER_PATH)
    if status != 200:
        raise RuntimeError(f"{COUNTER_PATH} answered {status}")
    return int(json.loads(body)["statements"])


RENDER_METRICS = ("darkroom_subscription_renders_total", "darkroom_live_frames_total")
"""How the server rendered and wrote the live frames: per event and group of alike subscribers, or not."""


async def render_counts(conn: HttpConnection) -> dict[str, float]:
    """The server's render and frame counters, by metric and label value ("renders executed": 120.0, ...)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = await conn.request("GET", "/metrics")
    counts: dict[str, float] = {}
    if status != 200:
        return counts
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name in RENDER_METRICS:
                label = ",".join(str(value) for value in sample.labels.values())
                counts[f"{sample.name.removeprefix('darkroom_').removesuffix('_total')} {label}"] = sample.value
    return counts


def _per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    return {key: round((after[key] - before.get(key, 0.0)) / max(events, 1), 1) for key in sorted(after)}


async def storm(bench: Bench) -> dict[str, Any]:
    from benchmarks.scenarios import PushTarget, connection, deliveries, new_subject, ratio, send_changes

    clients, watchers, steady, window = storm_sizes(bench)
    most = round((steady + window + 10) * RATE)
    deployment = bench.deployment(await bench.database("storm"))
    try:
        server = await deployment.start("storm", count_sql=True)
        subject = await new_subject(PushTarget("memory", server, server, deployment), most)
        conn = connection(server)
        cursor = await conn.graphql("query { feedCursor }")
        after = cursor["data"]["feedCursor"]
        watch = SubscriberFleet(server.ws_url, [subject.generation_id] * watchers, compression=bench.compression)
        await watch.start()
        print(f"  storm: opening {clients:,} feed subscriptions", flush=True)
        feed = FeedFleet(server.ws_url, clients, after, subject.generation_id, compression=bench.compression)
        opening = time.perf_counter()
        await feed.start()
        open_seconds = time.perf_counter() - opening
        rss_before = server.rss_bytes()
        triggers = [subject.next_trigger() for _ in range(most)]
        enough = asyncio.Event()
        sending = asyncio.create_task(
            send_changes(server, triggers, RATE, subject.sequence, enough=lambda _: enough.is_set())
        )
        await asyncio.sleep(1.0)  # the changes flowing to everyone before anything is counted
        print(f"  storm: {RATE:g} changes/s, steady for {steady:g} s", flush=True)
        steady_from = time.time()
        count_before = await statements(conn)
        renders_before = await render_counts(conn)
        await asyncio.sleep(steady)
        count_drop = await statements(conn)
        renders_steady = await render_counts(conn)
        steady_until = time.time()
        print(f"  storm: dropping {clients:,} feed sockets at once", flush=True)
        dropped_at = await feed.drop()
        cpu_before = server.cpu_seconds()
        await asyncio.sleep(window)
        cpu = server.cpu_seconds() - cpu_before
        count_end = await statements(conn)
        window_end = time.time()
        rss_peak = server.rss_bytes()
        enough.set()
        sent = await sending
        events = len(sent.sent_at)
        await _wait_quiet(lambda: feed.received, clients * events, within=120, quiet=10)
        await watch.wait_quiet(watch.opened * events, within=60, quiet=10)
        watch_records, watch_errors, watch_error_count = await watch.stop()
        found = await feed.stop(sent.sent_at)
        await conn.close()
    finally:
        await deployment.stop()

    summaries = found["summaries"]
    checks = totals(summaries)
    caught = [s.caught_up_at - dropped_at for s in summaries if s.caught_up_at is not None]
    all_caught = len(caught) == len(summaries)
    catch_up = max(caught) if all_caught and caught else None
    storm_end = dropped_at + catch_up if catch_up is not None else window_end
    before = {seq: at for seq, at in sent.sent_at.items() if steady_from <= at < dropped_at}
    steady_events = sum(1 for at in sent.sent_at.values() if steady_from <= at < steady_until)
    during = {seq: at for seq, at in sent.sent_at.items() if dropped_at <= at <= storm_end}

    def latency(window_sent: dict[int, float]) -> dict[str, Any]:
        mine = [(g, [(seq, at) for seq, at in received if seq in window_sent]) for g, received in watch_records]
        return deliveries(mine, window_sent)["latency"]

    watch_before, watch_during = latency(before), latency(during)
    per_second = (count_drop - count_before) / steady
    storm_statements = count_end - count_drop
    return {
        "feed_subscribers": clients,
        "generation_subscribers": watch.opened,
        "rate": RATE,
        "events": events,
        "steady_seconds": steady,
        "window_seconds": window,
        "open_seconds": round(open_seconds, 1),
        "every_event_once_in_order": checks["missing"] == checks["duplicates"] == checks["out_of_order"] == 0
        and all(s.received == events for s in summaries),
        **checks,
        "clients_short": sum(1 for s in summaries if s.received != events),
        "all_caught_up": all_caught,
        "caught_up_clients": len(caught),
        "catch_up_seconds": round(catch_up, 2) if catch_up is not None else None,
        "catch_up_p50_seconds": round(statistics.median(caught), 2) if caught else None,
        "catch_up_within_target": catch_up is not None and catch_up <= CATCH_UP_TARGET,
        "overflows": found["overflows"],
        "connects_refused_and_retried": found["refusals"],
        "other_events": found["other_events"],
        "sql_statements_per_second_before": round(per_second, 1),
        "sql_statements_in_window": storm_statements,
        "sql_statements_caused": round(storm_statements - per_second * window),
        "sql_statements_caused_per_client": round((storm_statements - per_second * window) / max(clients, 1), 2),
        "server_cpu_share_in_window": round(cpu / window, 2),
        "renders_and_frames_per_event_before": _per_event(renders_before, renders_steady, steady_events),
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(rss_peak / 2**20, 1),
        "generation_push_before": watch_before,
        "generation_push_during": watch_during,
        "generation_push_p99_vs_before": ratio(watch_during["p99_ms"], watch_before["p99_ms"]),
        "webhook_outcomes": dict(sent.outcomes),
        "send_lag": summary_ms(sent.lag),
        "client_errors": found["error_count"] + watch_error_count,
        "client_error_sample": (found["errors"] + watch_errors)[:3],
    }


async def _wait_quiet(received: Callable[[], int], total: int, within: float, quiet: float) -> bool:
    deadline = time.monotonic() + within
    seen = received()
    last_change = time.monotonic()
    while received() < total:
        now = time.monotonic()
        if now > deadline or now - last_change > quiet:
            return False
        if received() != seen:
            seen = received()
            last_change = now
        await asyncio.sleep(0.05)
    return True
