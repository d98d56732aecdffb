"""The queue's overhead: how long after a slot frees the next queued generation's create is done, and how
many generations a second start through the queue against direct starts, in the same run.

One server with one slot (MAX_RUNNING_TOTAL=1). A signed webhook ends the running generation, which frees
the slot; the queue of the process that applied it runs at once and sends the next. The floor is the same
server starting the same jobs directly, one at a time, with the slot free: the mutation and the provider's
create, which the queue does too. Both loops end each job with the same webhook.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING, Any

from benchmarks.clients import IMAGE_MODEL, START, STATUS, HttpConnection, Webhook, prediction_body, send_webhook
from benchmarks.harness import summary_ms

if TYPE_CHECKING:
    from benchmarks.scenarios import Bench

# How often the client looks for the next create; the figures are no finer than this.
POLL_SECONDS = 0.003


async def queue(bench: Bench) -> dict[str, Any]:
    from benchmarks.scenarios import connection, prediction_ids

    jobs = 5 if bench.quick else 40
    one_slot = {"MAX_RUNNING_PER_KEY": "1", "MAX_RUNNING_TOTAL": "1", "POLLER_ENABLED": "true"}
    # The poller and the queue's own rounds stay out of the way: only a freed slot starts the next.
    quiet = {"POLL_STALE_AFTER_SECONDS": "3600", "QUEUE_INTERVAL_SECONDS": "3600"}
    deployment = bench.deployment(await bench.database("queue"), extra={**one_slot, **quiet})
    try:
        server = await deployment.start("queue")
        conn = connection(server)

        async def ending(generation_id: str) -> Webhook:
            """The signed webhook that ends the generation (looked up before the clock runs)."""
            prediction = (await prediction_ids(deployment.database_url, [generation_id]))[generation_id]
            return Webhook.signed(deployment.webhook_secret, prediction_body(prediction, "canceled"))

        # The floor: each job started directly, then ended.
        direct_starts: list[float] = []
        direct_cycles: list[float] = []
        for index in range(jobs):
            started = time.perf_counter()
            generation = await _start(conn, f"direct {index}")
            direct_starts.append(time.perf_counter() - started)
            assert generation["status"] != "QUEUED", generation
            hook = await ending(generation["id"])
            sent = time.perf_counter()
            assert await send_webhook(conn, hook) == "applied"
            direct_cycles.append(direct_starts[-1] + time.perf_counter() - sent)

        # Through the queue: one runs, the rest wait; each ending starts the next.
        line = [await _start(conn, f"queued {index}") for index in range(jobs + 1)]
        assert [g["status"] == "QUEUED" for g in line] == [False] + [True] * jobs, line
        slot_to_create: list[float] = []
        queued_cycles: list[float] = []
        for running, following in itertools.pairwise(line):
            hook = await ending(running["id"])
            seen = await _sequence(conn, following["id"])
            started = time.perf_counter()
            assert await send_webhook(conn, hook) == "applied"
            freed = time.perf_counter()
            await _created(conn, following["id"], seen)
            done = time.perf_counter()
            slot_to_create.append(done - freed)
            queued_cycles.append(done - started)
        assert await send_webhook(conn, await ending(line[-1]["id"])) == "applied"
        await conn.close()
    finally:
        await deployment.stop()
    direct_rate = len(direct_cycles) / sum(direct_cycles)
    queued_rate = len(queued_cycles) / sum(queued_cycles)
    return {
        "database": "postgresql" if deployment.database_url.startswith("postgres") else "sqlite",
        "jobs": jobs,
        "slot_to_create": summary_ms(slot_to_create),
        "direct_start": summary_ms(direct_starts),
        "slot_to_create_vs_direct_start_p50": _ratio(slot_to_create, direct_starts),
        "starts_per_second": {"direct": round(direct_rate, 1), "queued": round(queued_rate, 1)},
        "queued_vs_direct_rate": round(queued_rate / direct_rate, 2),
        "poll_ms": POLL_SECONDS * 1000,
    }


async def _start(conn: HttpConnection, prompt: str) -> dict[str, Any]:
    result = await conn.graphql(START, {"model": IMAGE_MODEL, "input": {"prompt": prompt}})
    payload = result["data"]["startGeneration"]
    if payload["userErrors"]:
        raise RuntimeError(f"startGeneration failed: {payload['userErrors']}")
    return dict(payload["generation"])


async def _sequence(conn: HttpConnection, generation_id: str) -> int:
    return int((await conn.graphql(STATUS, {"id": generation_id}))["data"]["generation"]["sequence"])


async def _created(conn: HttpConnection, generation_id: str, seen: int, within: float = 30.0) -> None:
    """Wait until the queued generation's create is done: it is running, with an event after `seen` (a
    claim alone writes no event; the create's answer does)."""
    deadline = time.perf_counter() + within
    while True:
        state = (await conn.graphql(STATUS, {"id": generation_id}))["data"]["generation"]
        if state["status"] in ("STARTING", "PROCESSING") and int(state["sequence"]) > seen:
            return
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the queued generation never started: {state}")
        await asyncio.sleep(POLL_SECONDS)


def _ratio(values: list[float], floor: list[float]) -> float | None:
    ordered, base = sorted(values), sorted(floor)
    median, floor_median = ordered[len(ordered) // 2], base[len(base) // 2]
    return round(median / floor_median, 2) if floor_median else None
