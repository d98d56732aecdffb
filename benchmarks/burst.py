"""A subscribe burst: many clients subscribe at one moment and a change follows half a second later.

Every client's socket is opened and acknowledged first (graphql-transport-ws `connection_init` ->
`connection_ack`); then every client process sends all its `subscribe` messages at one agreed moment, and
the harness sends the change (Darkroom: a signed webhook; the peer and the floor: POST /publish) half a
second after it. Measured: how long each subscription's first frame (the current state) took from the
subscribe, and how long the change took to reach each subscriber from its trigger, p50 and p99, for
Darkroom in one process (memory://), the peer and the floor alike. A subscriber whose subscription was
answered after the change was applied has the change in its first frame; that still counts as the
change's arrival, and how many did is reported.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from benchmarks.clients import SubscriberFleet
from benchmarks.harness import Server, stop_server, summary_ms

if TYPE_CHECKING:
    from benchmarks.scenarios import Bench, PushTarget

CHANGE_AFTER = 0.5
"""Seconds between the subscribes and the change."""
SUBSCRIBE_LEAD = 0.5
"""Seconds between telling the client processes and the agreed moment, so they all hear it in time."""


def burst_size(bench: Bench) -> int:
    return bench.burst or (100 if bench.quick else 1000)


async def burst(bench: Bench) -> dict[str, Any]:
    """The floor, the peer and Darkroom (memory://), `rounds` bursts each on a fresh generation."""
    from benchmarks.scenarios import PushTarget, node_servers, ratio

    count = burst_size(bench)
    rounds = 1 if bench.quick else 3
    sides: dict[str, dict[str, Any]] = {}
    for name, unavailable, start in node_servers(bench):
        reason = unavailable()
        if reason:
            sides[name] = {"skipped": reason}
            continue
        try:
            node: Server = await start(bench.workdir, f"burst-{name}")
            try:
                sides[name] = await _side(bench, PushTarget(name, node, node), count, rounds)
            finally:
                await stop_server(node)
        except Exception as exc:
            sides[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"  burst of the {name} failed: {sides[name]['error']}", flush=True)
    deployment = bench.deployment(await bench.database("burst"))
    try:
        server = await deployment.start("burst")
        sides["darkroom"] = await _side(bench, PushTarget("memory", server, server, deployment), count, rounds)
    finally:
        await deployment.stop()
    mine = sides["darkroom"]["first_change"]
    for other in ("peer", "floor"):
        theirs = sides.get(other, {}).get("first_change")
        if theirs is not None:
            sides["darkroom"][f"vs_{other}"] = {
                key: ratio(mine[f"{key}_ms"], theirs[f"{key}_ms"]) for key in ("p50", "p99")
            }
    return {"subscribers": count, "rounds": rounds, "change_after_seconds": CHANGE_AFTER, **sides}


async def _side(bench: Bench, target: PushTarget, count: int, rounds: int) -> dict[str, Any]:
    from benchmarks.scenarios import connection, new_subject, outcome_of

    first_frames: list[float] = []
    first_change: list[float] = []
    in_first_frame = subscribed = expected = 0
    outcomes: list[str] = []
    errors: list[str] = []
    missed: list[list[int]] = []
    for index in range(1, rounds + 1):
        print(f"  burst: {target.server}, {count:,} subscribes at once ({index}/{rounds})", flush=True)
        subject = await new_subject(target, 1)
        fleet = SubscriberFleet(
            target.subscriber.ws_url,
            [subject.generation_id] * count,
            per_process=max(1, count // 4),
            compression=bench.compression,
            hold=True,
        )
        await fleet.start(within=300)
        conn = connection(target.publisher)
        try:
            path, body, headers = subject.next_trigger()
            await conn.request("GET", "/readyz")  # the connection is open before the clock starts
            subscribe_at = time.time() + SUBSCRIBE_LEAD
            fleet.subscribe_at(subscribe_at)
            await asyncio.sleep(max(0.0, subscribe_at + CHANGE_AFTER - time.time()))
            sent = time.time()
            status, data = await conn.request("POST", path, body, headers)
        finally:
            await conn.close()
        outcomes.append(outcome_of(status, data))
        change = subject.sequence + 1
        # Each subscriber gets its first frame and then the change, or the change as its first frame.
        await fleet.wait_quiet(2 * fleet.opened, within=120, quiet=5)
        records, part_errors, _ = await fleet.stop()
        errors += part_errors
        subscribed += fleet.opened
        expected += fleet.opened
        first_frames += [at - subscribe_at for at in fleet.first_frames]
        for _, received in records:
            arrival = next((at for seq, at in received if seq == change), None)
            if arrival is None:
                # Its first frame (if any) was the state before the change, and the change never followed.
                missed.append([seq for seq, _ in received])
                continue
            first_change.append(arrival - sent)
            if received[0][0] == change:
                in_first_frame += 1
    return {
        "server": target.server,
        "subscribed": subscribed,
        "first_frame": summary_ms(first_frames),
        "first_change": summary_ms(first_change),
        "delivered": len(first_change),
        "expected": expected,
        "change_in_first_frame": in_first_frame,
        "missed": len(missed),
        "missed_sample": missed[:3],  # the sequences a few of those received, first frame first
        "trigger_outcomes": outcomes,
        "client_errors": len(errors),
        "client_error_sample": errors[:3],
    }
