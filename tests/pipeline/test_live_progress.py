"""Live progress against the simulator's booting and yielding models, over real HTTP and WebSocket: the
phases in order, steps that rise, a time left that goes down while the job runs, estimates from history
before it starts, previews served by Darkroom and dropped (or kept) as it settles, and progress coalesced
without losing a change of status.

Run on SQLite: what is tested here is the services' rules, which the other tests run on both databases;
the Postgres statement that applies updates is covered there too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from server.db.models import Generation
from server.domain import GenerationStatus
from server.provider.types import PredictionUpdate
from server.services.generations.service import UpdateOutcome
from server.simulator.progress import progress_line
from tests.support.darkroom import Darkroom
from tests.support.flows import start_generation, wait_settled
from tests.support.graphql import data, ws_connect

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

BOOTING_MODEL = "darkroom-sim/slow-boot-video"
YIELDING_MODEL = "darkroom-sim/preview-image"
PLAIN_MODEL = "darkroom-sim/pixel-forge"

LIVE = "id status phase step totalSteps progress etaSeconds etaBasis previews { url at contentType } media { status }"
FOLLOW = f"subscription($id: ID!) {{ generation(id: $id) {{ {LIVE} }} }}"
FEED = f"subscription($after: String) {{ generationEvents(after: $after) {{ generation {{ {LIVE} }} }} }}"
GET = f"query($id: ID!) {{ generation(id: $id) {{ {LIVE} }} }}"
ESTIMATE = """query($model: String!, $input: JSON!) {
  estimateDuration(model: $model, input: $input) { seconds startSeconds runSeconds runs basis }
}"""
CANCEL = "mutation($id: ID!) { cancelGeneration(input: {id: $id}) { userErrors { code } } }"
START_ETA = """mutation($model: String!, $input: JSON!) {
  startGeneration(input: {model: $model, input: $input}) {
    generation { id status etaSeconds etaBasis } userErrors { code }
  }
}"""


async def follow(darkroom: Darkroom, generation_id: str) -> list[dict[str, Any]]:
    async with ws_connect(darkroom.base_url) as client:
        return [data(payload)["generation"] async for payload in client.subscribe(FOLLOW, {"id": generation_id})]


async def every_state(darkroom: Darkroom, model: str, prompt: str) -> list[dict[str, Any]]:
    """Each state of a generation started now, from its first event on (the feed, from a cursor read first),
    until it has finished."""
    cursor = data(await darkroom.query("{ feedCursor }"))["feedCursor"]
    generation = await start_generation(darkroom, prompt, model=model)
    states = []
    async with ws_connect(darkroom.base_url) as client:
        async for payload in client.subscribe(FEED, {"after": cursor}):
            state = data(payload)["generationEvents"]["generation"]
            if state["id"] == generation["id"]:
                states.append(state)
                if state["phase"] == "FINISHED":
                    return states
    raise AssertionError("the feed ended")


def in_order(seen: list[str], expected: list[str]) -> bool:
    """Whether `seen`, with repeats collapsed, is `expected` (each phase once, in that order)."""
    collapsed = [phase for index, phase in enumerate(seen) if index == 0 or seen[index - 1] != phase]
    return collapsed == expected


async def test_a_booting_video_goes_through_its_phases_with_rising_steps_and_a_falling_eta(
    start_darkroom: Callable[..., Any],
) -> None:
    async with start_darkroom(simulator_run_seconds=3.0) as darkroom:
        await darkroom.http.patch("/simulator/_control/config", json={"boot_seconds": 1.0})
        states = await every_state(darkroom, BOOTING_MODEL, "a slow dawn")

        phases = [state["phase"] for state in states]
        assert in_order(phases, ["WAITING", "BOOTING", "RUNNING", "SAVING", "FINISHED"]), phases
        running = [state for state in states if state["phase"] == "RUNNING" and state["step"] is not None]
        steps = [state["step"] for state in running]
        assert steps == sorted(steps) and steps[-1] > steps[0], steps
        assert all(state["totalSteps"] == running[0]["totalSteps"] for state in running)
        # The time left comes from the progress lines and goes down as the job runs.
        etas = [state["etaSeconds"] for state in running if state["etaBasis"] == "PROGRESS"]
        assert len(etas) >= 3 and etas[-1] < etas[0], etas
        assert states[-1]["etaSeconds"] is None and states[-1]["etaBasis"] is None


async def test_estimates_before_the_start_rest_on_the_history_of_inputs_of_the_same_size(
    start_darkroom: Callable[..., Any],
) -> None:
    async with start_darkroom(simulator_run_seconds=0.3) as darkroom:
        small = {"prompt": "a pebble", "num_outputs": 1}
        # No history: no estimate, never a made-up number.
        none = data(await darkroom.query(ESTIMATE, {"model": PLAIN_MODEL, "input": small}))["estimateDuration"]
        assert none == {"seconds": None, "startSeconds": None, "runSeconds": None, "runs": 0, "basis": None}
        first = data(await darkroom.query(START_ETA, {"model": PLAIN_MODEL, "input": small}))["startGeneration"]
        assert (first["generation"]["etaSeconds"], first["generation"]["etaBasis"]) == (None, None)
        await wait_settled(darkroom, first["generation"]["id"])
        for index in range(2):
            done = await start_generation(darkroom, f"a pebble {index}", num_outputs=1)
            await wait_settled(darkroom, done["id"])

        estimate = data(await darkroom.query(ESTIMATE, {"model": PLAIN_MODEL, "input": small}))["estimateDuration"]
        assert estimate["runs"] == 3 and estimate["basis"] == "HISTORY"
        assert 0.2 < estimate["runSeconds"] < 5 and estimate["seconds"] >= estimate["runSeconds"]
        # Another size has no history of its own.
        other = {"prompt": "many", "num_outputs": 4}
        assert (
            data(await darkroom.query(ESTIMATE, {"model": PLAIN_MODEL, "input": other}))["estimateDuration"]["basis"]
            is None
        )
        # A start of the known size is estimated the moment it is created.
        started = data(await darkroom.query(START_ETA, {"model": PLAIN_MODEL, "input": small}))["startGeneration"]
        assert started["generation"]["etaBasis"] == "HISTORY"
        assert 0 < started["generation"]["etaSeconds"] <= estimate["seconds"] + 0.5
        await wait_settled(darkroom, started["generation"]["id"])


Previews = list[dict[str, Any]]


async def _previews_while_running(darkroom: Darkroom) -> tuple[list[Previews], httpx.Response, dict[str, Any]]:
    """The previews each state showed, the first preview fetched the moment it was pushed, and the end."""
    generation = await start_generation(darkroom, "a growing tree", model=YIELDING_MODEL)
    shown: list[Previews] = []
    first: httpx.Response | None = None
    async with ws_connect(darkroom.base_url) as client:
        async for payload in client.subscribe(FOLLOW, {"id": generation["id"]}):
            previews = data(payload)["generation"]["previews"]
            if previews:
                shown.append(previews)
                first = first or await darkroom.http.get(previews[0]["url"])
    assert first is not None, "no preview was pushed while the job ran"
    return shown, first, await wait_settled(darkroom, generation["id"])


@pytest.mark.parametrize("keep", [False, True])
async def test_previews_are_served_by_darkroom_and_dropped_or_kept_as_it_settles(
    start_darkroom: Callable[..., Any], keep: bool
) -> None:
    async with start_darkroom(simulator_run_seconds=2.0, previews_keep_after_settle=keep) as darkroom:
        shown, first, final = await _previews_while_running(darkroom)
        assert first.status_code == 200 and first.headers["content-type"] == "image/png"
        newest = shown[-1]
        assert 1 <= len(newest) <= darkroom.settings.progress.previews_per_generation
        assert all(preview["url"].startswith(darkroom.base_url + "/media/previews/") for preview in newest)
        # Previews are no outputs: the final files alone are media.
        assert [media["status"] for media in final["media"]] == ["READY"]
        listed = data(await darkroom.query("{ media(first: 50) { edges { node { id } } } }"))["media"]["edges"]
        assert len(listed) == 1
        await darkroom.runtime.previews.settled()
        after = data(await darkroom.query(GET, {"id": final["id"]}))["generation"]
        if keep:
            assert after["previews"] == newest
            assert (await darkroom.http.get(newest[-1]["url"])).status_code == 200
        else:
            assert after["previews"] == []
            for preview in newest:
                assert (await darkroom.http.get(preview["url"])).status_code == 404


async def test_progress_is_coalesced_but_every_change_of_status_is_pushed(
    start_darkroom: Callable[..., Any],
) -> None:
    """Thirty progress updates in a burst, applied as the webhooks would be: at most one is written per
    interval; the cancel that follows at once, a change of status, is never held back."""
    async with start_darkroom(
        simulator_run_seconds=60.0, progress_min_interval_seconds=0.5, poller_enabled=False
    ) as darkroom:
        # The simulator's own webhooks stay out of the way: this test sends the updates.
        await darkroom.http.patch("/simulator/_control/config", json={"webhook_drop_rate": 1.0})
        generation = await start_generation(darkroom, "a measured pace")
        async with ws_connect(darkroom.base_url) as client:
            stream = aiter(client.subscribe(FOLLOW, {"id": generation["id"]}))
            states = [data(await anext(stream))["generation"]]
            async with darkroom.runtime.sessions() as session:
                job = await session.scalar(select(Generation.provider_id))
            outcomes = []
            began = time.monotonic()
            for step in range(1, 31):
                logs = "".join(progress_line(done, 30, done * 0.1) + "\n" for done in range(1, step + 1))
                update = PredictionUpdate(job, GenerationStatus.PROCESSING, "processing", logs=logs)
                applied = await darkroom.runtime.generations.apply_prediction_update(update, provider="replicate")
                outcomes.append(applied.outcome)
                await asyncio.sleep(0.04)
            burst = time.monotonic() - began
            canceled = await darkroom.query(CANCEL, {"id": generation["id"]})
            assert data(canceled)["cancelGeneration"]["userErrors"] == []
            async for payload in stream:
                states.append(data(payload)["generation"])

        written = outcomes.count(UpdateOutcome.APPLIED)
        # The first (a change of status), then at most one per 0.5 s of the burst (about 1.5 s, longer on a
        # loaded machine): far fewer than the 30 sent.
        assert 2 <= written <= 2 + burst / 0.5, (burst, outcomes)
        assert outcomes.count(UpdateOutcome.COALESCED) == 30 - written, outcomes
        statuses = [state["status"] for state in states]
        collapsed = [status for index, status in enumerate(statuses) if index == 0 or statuses[index - 1] != status]
        assert collapsed == ["STARTING", "PROCESSING", "CANCELED"], statuses
        steps = [state["step"] for state in states if state["status"] == "PROCESSING"]
        assert len(steps) == written and steps == sorted(steps), steps
