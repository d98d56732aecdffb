"""What a server needs to show live progress: a model that yields previews while it runs, a model that
boots before it runs, and run times that depend on the input and vary with `run_jitter`."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest

from server.simulator.catalogue import find_by_ref
from server.simulator.config import Dice, SimulatorConfig
from server.simulator.outputs import boot_lines
from tests.simulator.support import TERMINAL, Receiver, RunningSimulator, StartSimulator

PREVIEW_MODEL = "darkroom-sim/preview-image"
BOOT_MODEL = "darkroom-sim/slow-boot-video"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def _watch(sim: RunningSimulator, prediction_id: str, within: float = 10.0) -> list[dict[str, Any]]:
    """Every state GET showed, polled often, until the prediction ended (the last one)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while not seen or seen[-1]["status"] not in TERMINAL:
        assert time.monotonic() < deadline, "prediction still running"
        seen.append((await sim.http.get(f"/v1/predictions/{prediction_id}")).json())
        await asyncio.sleep(0.02)
    return seen


async def test_previews_grow_while_processing_then_only_the_final_output_stays(
    start_simulator: StartSimulator, receiver: Receiver
) -> None:
    # 512 x 512 is a quarter of the reference megapixel: 6 * 0.25 = 1.5 s of processing, a preview at
    # 0.375, 0.75 and 1.125 s, far enough apart for the webhook throttle (0.5 s) to send each one.
    async with start_simulator(run_seconds=6.0) as sim:
        created = await sim.create(
            PREVIEW_MODEL,
            {"prompt": "a greenhouse", "width": 512, "height": 512, "seed": 3},
            webhook=receiver.url,
            webhook_events_filter=["output", "completed"],
        )
        seen = await _watch(sim, created["id"])
        await sim.simulator.webhooks.idle()

        processing = [state["output"] for state in seen if state["status"] == "processing" and state["output"]]
        shown = list(dict.fromkeys(tuple(output) for output in processing))
        assert [len(output) for output in shown] == [1, 2, 3]
        previews = list(shown[-1])
        assert all(tuple(previews[: len(output)]) == output for output in shown)  # each list extends the last
        assert [url.rsplit("/", 1)[1] for url in previews] == ["preview-1.png", "preview-2.png", "preview-3.png"]
        for url in previews:
            served = await sim.http.get(url)
            assert served.status_code == 200 and served.headers["content-type"] == "image/png"
            assert served.content.startswith(PNG_SIGNATURE) and len(served.content) < 16_000

        done = seen[-1]
        assert done["status"] == "succeeded"
        assert done["output"] == [f"{sim.url}/files/{created['id']}/out-0.webp"]
        assert done["metrics"]["predict_time"] == pytest.approx(1.5, abs=0.4)

        bodies = [delivery.json for delivery in receiver.deliveries]
        running = [body["output"] for body in bodies if body["status"] == "processing"]
        assert len({len(output) for output in running}) >= 2  # the list grew between deliveries
        assert all(output == previews[: len(output)] for output in running)
        assert bodies[-1]["status"] == "succeeded" and bodies[-1]["output"] == done["output"]
        events = {record["event"] for record in sim.simulator.stats.webhooks_for(created["id"])}
        assert events == {"output", "completed"}  # the filter holds: no start, no logs


async def test_a_cold_boot_stays_starting_with_growing_logs(
    start_simulator: StartSimulator, receiver: Receiver
) -> None:
    async with start_simulator(boot_seconds=0.8, run_seconds=0.4) as sim:
        created = await sim.create(
            BOOT_MODEL, {"prompt": "fog on a lake", "duration": 1, "seed": 5}, webhook=receiver.url
        )
        other = await sim.create("darkroom-sim/snap-still", {"prompt": "no boot", "seed": 1})
        seen = await _watch(sim, created["id"])
        await sim.simulator.webhooks.idle()

        model = find_by_ref(BOOT_MODEL)
        assert model is not None
        lines = boot_lines(model)
        assert lines[0] == f"Starting a new worker for {BOOT_MODEL}" and lines[-1] == "Model loaded"
        starting = [state["logs"] for state in seen if state["status"] == "starting"]
        assert len(set(starting)) >= 3  # the boot lines came one by one
        assert all("\n".join(lines).startswith(logs.rstrip("\n")) for logs in starting)
        done = seen[-1]
        assert done["status"] == "succeeded" and done["output"].endswith(".mp4")
        assert done["logs"].startswith("\n".join(lines) + "\nUsing seed: 5\n")
        booted = (_at(done["started_at"]) - _at(done["created_at"])).total_seconds()
        assert 0.75 <= booted < 1.5
        # One second of 8 fps video is half the reference frames: half of run_seconds.
        assert done["metrics"]["predict_time"] == pytest.approx(0.2, abs=0.25)

        # A model that does not boot waits start_seconds alone (0.05 s here).
        quick = await sim.finished(other["id"])
        assert (_at(quick["started_at"]) - _at(quick["created_at"])).total_seconds() < 0.5

        bodies = [delivery.json for delivery in receiver.deliveries]
        assert bodies[0]["status"] == "starting"
        boot_logs = [body["logs"] for body in bodies if body["status"] == "starting"]
        assert len(set(boot_logs)) >= 2  # logs webhooks while still starting, growing
        records = sim.simulator.stats.webhooks_for(created["id"])
        assert records[0]["event"] == "start"
        assert [r["status"] for r in records if r["event"] == "logs"][:2] == ["starting", "starting"]
        assert "start" not in [r["event"] for r in records[1:]]  # sent once, when the boot began
        assert bodies[-1]["status"] == "succeeded"


async def test_run_jitter_spreads_run_times_reproducibly(sim: RunningSimulator) -> None:
    config = (await sim.http.get("/_control/config")).json()
    assert config["boot_seconds"] == 2.0 and config["run_jitter"] == 0.0
    changed = await sim.http.patch("/_control/config", json={"run_jitter": 0.6, "run_seconds": 0.5, "seed": 77})
    assert changed.status_code == 200, changed.text

    # The same seed draws the same factors: what each run (given a seed, so no other draw) must last.
    expected_dice = Dice(SimulatorConfig(seed=77))
    factors = [expected_dice.jitter(0.6) for _ in range(3)]
    assert max(factors) - min(factors) > 0.3
    for factor in factors:
        done = await sim.run("darkroom-sim/snap-still", {"prompt": "jitter", "seed": 9})
        assert done["status"] == "succeeded"
        # The run sleeps 0.5 * factor, then renders its picture (a few tens of milliseconds).
        assert 0.5 * factor - 0.02 <= done["metrics"]["predict_time"] <= 0.5 * factor + 0.2


async def test_boot_and_jitter_knobs_are_checked(sim: RunningSimulator) -> None:
    refused = await sim.http.patch("/_control/config", json={"boot_seconds": "long", "run_jitter": 0.1})
    assert refused.status_code == 422
    assert (await sim.http.get("/_control/config")).json()["run_jitter"] == 0.0
    accepted = await sim.http.patch("/_control/config", json={"boot_seconds": 1, "run_jitter": 0.1})
    assert accepted.status_code == 200, accepted.text
    assert sim.config.boot_seconds == 1.0 and sim.config.run_jitter == 0.1
