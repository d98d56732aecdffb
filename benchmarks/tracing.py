"""What tracing costs the push path: the push measurement at one rate in one process (memory://), with
tracing off and on, in the same run.

"On" is OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/HTTP collector this process runs (it decodes and
counts every span), with the SDK's default batching otherwise. The cases alternate (off, on, on, off), each
on a fresh server and database, so a drift of the machine falls on both sides alike; each side's figures
are the mean of its two cases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.scenarios import Bench

# The target: tracing adds at most this much to push p50.
OVERHEAD_TARGET = 0.10
RATE = 20.0
ORDER = ("off", "on", "on", "off")


def _mean(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return round(sum(known) / len(known), 2) if known else None


async def tracing(bench: Bench) -> dict[str, Any]:
    from benchmarks.scenarios import PushTarget, _push_case
    from tests.telemetry.collector import otlp_collector

    subscribers = bench.subscribers[0]
    cases: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with otlp_collector() as collector:
        for index, side in enumerate(ORDER):
            extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "darkroom-bench"}
            deployment = bench.deployment(
                await bench.database(f"tracing_{index}_{side}"), extra=extra if side == "on" else {}
            )
            try:
                server = await deployment.start(f"tracing-{index}-{side}")
                print(f"  tracing {side}: {subscribers:,} subscriber(s), {RATE:g} changes/s", flush=True)
                spans_before = len(collector.snapshot())
                case = await _push_case(bench, PushTarget("memory", server, server, deployment), subscribers, RATE)
            finally:
                await deployment.stop()  # stopping flushes the last spans
            case["spans_exported"] = len(collector.snapshot()) - spans_before
            cases[side].append(case)
    sides = {
        side: {
            "p50_ms": _mean([case["latency"]["p50_ms"] for case in runs]),
            "p99_ms": _mean([case["latency"]["p99_ms"] for case in runs]),
            "server_cpu_ms_per_change": _mean([case["server_cpu_ms_per_change"] for case in runs]),
            "delivered": sum(case["deliveries"] for case in runs),
            "expected": sum(case["expected_deliveries"] for case in runs),
            "spans_exported": sum(case["spans_exported"] for case in runs),
            "runs": [case["latency"] for case in runs],
        }
        for side, runs in cases.items()
    }
    off, on = sides["off"], sides["on"]

    def ratio(key: str) -> float | None:
        return round(on[key] / off[key], 3) if on[key] and off[key] else None

    return {
        "subscribers": subscribers,
        "rate": RATE,
        "order": list(ORDER),
        "off": off,
        "on": on,
        "p50_ratio": ratio("p50_ms"),
        "p99_ratio": ratio("p99_ms"),
        "cpu_ratio": ratio("server_cpu_ms_per_change"),
        "target": OVERHEAD_TARGET,
    }
