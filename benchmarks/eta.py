"""How honest the time left is before a job starts: the estimate a start is given (etaSeconds, from the
model's history of inputs of the same size) against how long the job then took, from sent to completed.

One server with its embedded simulator running for real: its jobs take a time that grows with the work the
input asks for (the preview model: outputs x pixels x steps), times a random factor of +-JITTER, as real
runs vary. Two input sizes run in turns, so each bucket builds its own history. Only the starts made once
their bucket has WARMUP runs count, as the target says ("once a model has 20 runs").
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from benchmarks.clients import HttpConnection

if TYPE_CHECKING:
    from benchmarks.scenarios import Bench

MODEL = "darkroom-sim/preview-image"
JITTER = 0.15
RUN_SECONDS = 1.2
# Two sizes whose run times differ by two: a quarter and half of the model's reference input.
SIZES = {
    "one 512x512": {"num_outputs": 1, "width": 512, "height": 512},
    "two 512x512": {"num_outputs": 2, "width": 512, "height": 512},
}
START = """mutation($model: String!, $input: JSON!) {
  startGeneration(input: {model: $model, input: $input}) {
    generation { id etaSeconds etaBasis } userErrors { code message }
  }
}"""
DONE = "query($id: ID!) { generation(id: $id) { status createdAt completedAt } }"


async def eta(bench: Bench) -> dict[str, Any]:
    from benchmarks.scenarios import connection

    warmup, measured = (3, 3) if bench.quick else (20, 10)
    settings = {
        "SIMULATOR_RUN_SECONDS": str(RUN_SECONDS),
        "SIMULATOR_WEBHOOK_DROP_RATE": "0",
        "POLLER_ENABLED": "true",
        "POLL_STALE_AFTER_SECONDS": "0.5",
        "POLL_INTERVAL_SECONDS": "0.1",
    }
    deployment = bench.deployment(await bench.database("eta"), extra=settings)
    try:
        server = await deployment.start("eta")
        conn = connection(server)
        status, _ = await conn.request(
            "PATCH",
            "/simulator/_control/config",
            f'{{"run_jitter": {JITTER}, "seed": 7}}'.encode(),
            {"content-type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"the simulator's controls answered {status}")
        errors: dict[str, list[float]] = {size: [] for size in SIZES}
        durations: dict[str, list[float]] = {size: [] for size in SIZES}
        for run in range(warmup + measured):
            for size, input in SIZES.items():
                estimate, took = await _run(conn, {"prompt": f"eta {run}", **input})
                durations[size].append(took)
                if run >= warmup:
                    if estimate is None:
                        raise RuntimeError(f"no estimate after {run} runs of {size}")
                    errors[size].append(abs(estimate - took) / took)
        await conn.close()
    finally:
        await deployment.stop()
    every = [error for values in errors.values() for error in values]
    return {
        "model": MODEL,
        "warmup_runs": warmup,
        "measured_runs": len(every),
        "jitter": JITTER,
        "median_seconds": {size: round(statistics.median(values), 2) for size, values in durations.items()},
        "median_abs_error_pct": round(100 * statistics.median(every), 1),
        "p90_abs_error_pct": round(100 * sorted(every)[int(0.9 * (len(every) - 1))], 1),
        "by_size_median_abs_error_pct": {
            size: round(100 * statistics.median(values), 1) for size, values in errors.items()
        },
    }


async def _run(conn: HttpConnection, input: dict[str, Any]) -> tuple[float | None, float]:
    """Start one job and wait for its end: the estimate it was started with, and how long it took."""
    payload = (await conn.graphql(START, {"model": MODEL, "input": input}))["data"]["startGeneration"]
    if payload["userErrors"]:
        raise RuntimeError(f"startGeneration failed: {payload['userErrors']}")
    generation = payload["generation"]
    deadline = time.perf_counter() + 60
    while True:
        state = (await conn.graphql(DONE, {"id": generation["id"]}))["data"]["generation"]
        if state["completedAt"] is not None:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the job never finished: {state}")
        await asyncio.sleep(0.05)
    if state["status"] != "SUCCEEDED":
        raise RuntimeError(f"the job ended {state['status']}")
    took = (datetime.fromisoformat(state["completedAt"]) - datetime.fromisoformat(state["createdAt"])).total_seconds()
    return generation["etaSeconds"], took
