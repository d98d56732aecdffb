"""Darkroom's own queue: past a key's limit of running generations a start waits QUEUED, in line, and starts
as a slot frees, in this process or another; it can be cancelled, outlives a restart, takes turns between
keys, absorbs the provider's rate limit, and times out."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from server.db.models import Event, Generation, utcnow
from server.services.access.api_keys import KeyLimits
from server.settings import normalize_database_url
from tests.auth.support import KeyClient, new_key
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL, START, start_payload, wait_settled
from tests.support.graphql import data, gql, ws_connect
from tests.support.live_server import free_port
from tests.support.processes import darkroom_process
from tests.support.providers import ProviderCase
from tests.support.services import SESSION_CHANNEL, empty_postgres_database
from tests.support.waiting import eventually

IN_LINE = "id status queuePosition queueReason error"
FOLLOW_LINE = f"subscription($id: ID!) {{ generation(id: $id) {{ {IN_LINE} }} }}"
GET_LINE = f"query($id: ID!) {{ generation(id: $id) {{ {IN_LINE} }} }}"
CANCEL = f"""mutation($id: ID!) {{
  cancelGeneration(input: {{id: $id}}) {{ generation {{ {IN_LINE} }} userErrors {{ code message }} }}
}}"""
RUNNING = ("STARTING", "PROCESSING")


async def start_many(darkroom: Any, count: int, prompt: str = "in line") -> list[dict[str, Any]]:
    """`count` starts one after another; each one's generation."""
    generations = []
    for index in range(count):
        payload = await start_payload(darkroom, IMAGE_MODEL, {"prompt": f"{prompt} {index}"})
        assert payload["userErrors"] == [], payload
        generations.append(payload["generation"])
    return generations


async def in_line(darkroom: Any, generation_id: str) -> dict[str, Any]:
    return dict(data(await darkroom.query(GET_LINE, {"id": generation_id}))["generation"])


async def prompts_in_order_sent(darkroom: Darkroom) -> list[str]:
    """The prompts of the jobs the simulator created, in the order it created them."""
    jobs = [record["prediction_id"] for record in darkroom.simulator.stats.creates]
    async with darkroom.runtime.sessions() as session:
        rows = (await session.execute(select(Generation.provider_id, Generation.input))).all()
    prompts = {job: stored["prompt"] for job, stored in rows}
    return [prompts[job] for job in jobs]


async def most_running_at_once(sessions: async_sessionmaker[Any]) -> int:
    """The most generations the event log shows running at one time, replayed in its order."""
    running: set[str] = set()
    most = 0
    async with sessions() as session:
        for payload in (await session.scalars(select(Event.payload).order_by(Event.id))).all():
            generation = payload["generation"]
            if generation["status"] in RUNNING:
                running.add(generation["id"])
            else:
                running.discard(generation["id"])
            most = max(most, len(running))
    return most


async def test_past_the_limit_starts_wait_in_line_and_start_as_slots_free(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(max_running_per_key=2, simulator_run_seconds=2.0) as darkroom:
        generations = await start_many(darkroom, 5)
        assert [g["status"] in RUNNING for g in generations] == [True, True, False, False, False]
        queued = [await in_line(darkroom, g["id"]) for g in generations[2:]]
        assert [(g["status"], g["queuePosition"]) for g in queued] == [("QUEUED", 1), ("QUEUED", 2), ("QUEUED", 3)]
        assert "at most 2 generations at once" in queued[0]["queueReason"]

        async with ws_connect(darkroom.base_url) as ws:
            states = [
                data(payload)["generation"]
                async for payload in ws.subscribe(FOLLOW_LINE, {"id": generations[-1]["id"]}, timeout=60)
            ]
        places = [state["queuePosition"] for state in states if state["status"] == "QUEUED"]
        # Pushed live as slots freed: down from 3 to 1 (two slots freeing together skip a place).
        assert places[0] == 3 and places[-1] == 1 and places == sorted(set(places), reverse=True), states
        assert states[-1]["status"] == "SUCCEEDED" and states[-1]["queuePosition"] is None
        for generation in generations:
            assert (await wait_settled(darkroom, generation["id"]))["status"] == "SUCCEEDED"
        assert darkroom.simulator.stats.predictions_created == 5
        assert await most_running_at_once(darkroom.runtime.sessions) == 2


async def test_a_queued_generation_is_cancelled_without_reaching_the_provider(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(max_running_per_key=1, simulator_run_seconds=30.0) as darkroom:
        running, second, third = await start_many(darkroom, 3)
        [figures] = data(await darkroom.query("{ stats { models { queued running } } }"))["stats"]["models"]
        assert figures == {"queued": 2, "running": 1}
        canceled = data(await darkroom.query(CANCEL, {"id": second["id"]}))["cancelGeneration"]
        assert canceled["userErrors"] == []
        assert canceled["generation"]["status"] == "CANCELED"
        assert "never reached the provider" in canceled["generation"]["error"]
        assert (await in_line(darkroom, third["id"]))["queuePosition"] == 1  # it moved up
        assert darkroom.simulator.stats.predictions_created == 1
        again = data(await darkroom.query(CANCEL, {"id": second["id"]}))["cancelGeneration"]
        assert [error["code"] for error in again["userErrors"]] == ["ALREADY_FINISHED"]

        # Ending the running one frees its slot: the third starts.
        assert data(await darkroom.query(CANCEL, {"id": running["id"]}))["cancelGeneration"]["userErrors"] == []

        async def third_started() -> bool:
            return (await in_line(darkroom, third["id"]))["status"] in RUNNING

        await eventually(third_started, timeout=10)
        assert darkroom.simulator.stats.predictions_created == 2


async def test_a_restart_loses_nothing_that_is_queued(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    # No poller, so nothing starts the queued ones before the restart.
    async with start_darkroom(max_running_per_key=1, poller_enabled=False) as darkroom:
        first, *waiting = await start_many(darkroom, 3)
        assert (await wait_settled(darkroom, first["id"]))["status"] == "SUCCEEDED"
        assert [(await in_line(darkroom, g["id"]))["status"] for g in waiting] == ["QUEUED", "QUEUED"]
    async with start_darkroom(max_running_per_key=1) as darkroom:
        for generation in waiting:
            assert (await wait_settled(darkroom, generation["id"]))["status"] == "SUCCEEDED"
        assert await most_running_at_once(darkroom.runtime.sessions) == 1


async def test_keys_take_turns_and_each_keeps_its_own_order(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    # One slot for everyone: the order in which jobs reach the provider is the queue's order.
    async with start_darkroom(max_running_total=1, simulator_run_seconds=0.3) as darkroom:
        alice, bob = await new_key(darkroom, "alice"), await new_key(darkroom, "bob")
        turns = [("alice", alice, 0), ("alice", alice, 1), ("alice", alice, 2), ("bob", bob, 0), ("bob", bob, 1)]
        callers = [caller for _, caller, _ in turns]
        started = [await start_payload(caller, IMAGE_MODEL, {"prompt": f"{name} {n}"}) for name, caller, n in turns]
        assert all(payload["userErrors"] == [] for payload in started)
        assert [payload["generation"]["status"] == "QUEUED" for payload in started] == [False] + [True] * 4
        for caller, payload in zip(callers, started, strict=True):
            assert (await wait_settled(caller, payload["generation"]["id"]))["status"] == "SUCCEEDED"
        # Bob, never served yet, goes before Alice's second; then they alternate.
        assert await prompts_in_order_sent(darkroom) == ["alice 0", "bob 0", "alice 1", "bob 1", "alice 2"]


async def test_a_key_has_a_limit_of_its_own(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(max_running_per_key=5, simulator_run_seconds=30.0) as darkroom:
        created = await darkroom.runtime.api_keys.create("tight", KeyLimits(max_running=1))
        tight = KeyClient(darkroom, created.token)
        first, second = [await start_payload(tight, IMAGE_MODEL, {"prompt": f"tight {n}"}) for n in range(2)]
        assert first["generation"]["status"] in RUNNING
        assert second["generation"]["status"] == "QUEUED"
        assert "at most 1 generation at once" in (await in_line(tight, second["generation"]["id"]))["queueReason"]
        # Another key is not held back by it.
        other = await new_key(darkroom, "roomy")
        assert (await start_payload(other, IMAGE_MODEL, {"prompt": "roomy"}))["generation"]["status"] in RUNNING


async def test_the_providers_rate_limit_holds_a_start_in_the_queue_not_the_user(  # type: ignore[no-untyped-def]
    start_darkroom, on_provider: ProviderCase
) -> None:
    async with start_darkroom(**on_provider.settings, queue_interval_seconds=0.2) as darkroom:
        await on_provider.configure(darkroom, rate_limited_creates=2, rate_limit_retry_after_seconds=0.5)
        payload = await start_payload(darkroom, on_provider.image_model, {"prompt": "throttled"})
        assert payload["userErrors"] == [], payload  # never RATE_LIMITED
        generation = await in_line(darkroom, payload["generation"]["id"])
        assert generation["status"] == "QUEUED" and "rate limiting" in generation["queueReason"], generation
        final = await wait_settled(darkroom, generation["id"])
        assert final["status"] == "SUCCEEDED", final
        stats = await on_provider.stats(darkroom)
        assert stats["rate_limited"] == 2 and stats["predictions_created"] == 1


async def test_a_generation_that_cannot_start_before_its_deadline_times_out(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    # No poller: the test runs the queue's round itself, once the queued one is past its deadline (set
    # back by hand, so that no deadline, the running job's included, passes while the test runs).
    async with start_darkroom(
        max_running_per_key=1, simulator_run_seconds=30.0, generation_timeout_seconds=120.0, poller_enabled=False
    ) as darkroom:
        _, waiting = await start_many(darkroom, 2)
        async with darkroom.runtime.sessions.begin() as session:
            long_ago = utcnow() - timedelta(seconds=121)
            await session.execute(update(Generation).where(Generation.status == "QUEUED").values(created_at=long_ago))
        assert await darkroom.runtime.generations.dispatch_queued() == 0
        state = await in_line(darkroom, waiting["id"])
        assert state["status"] == "TIMED_OUT" and "waited in the queue for 120 s" in state["error"], state
        assert darkroom.simulator.stats.predictions_created == 1


async def test_queued_generations_start_on_another_process_as_slots_free(
    postgres_database: str, tmp_path: Path
) -> None:
    """A queues them and sends none: no poller, so no queue of its own. B starts each as a slot frees."""
    await empty_postgres_database(postgres_database)
    port_a, port_b = free_port(), free_port()
    env = {
        "DATABASE_URL": postgres_database,
        "BROADCAST_URL": postgres_database,
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(tmp_path / "var"),
        "REPLICATE_API_TOKEN": "",
        "PUBLIC_URL": "",
        "SIMULATOR_RUN_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
        "MAX_RUNNING_PER_KEY": "1",
        "QUEUE_INTERVAL_SECONDS": "0.2",
        "REPLICATE_FILE_HOSTS": f"http://127.0.0.1:{port_a},http://127.0.0.1:{port_b}",
    }
    async with (
        darkroom_process({**env, "POLLER_ENABLED": "false"}, tmp_path / "a.log", port_a) as process_a,
        darkroom_process(env, tmp_path / "b.log", port_b) as process_b,
        httpx.AsyncClient(base_url=process_a, timeout=30) as client_a,
        httpx.AsyncClient(base_url=process_b, timeout=30) as client_b,
    ):
        ids = []
        for index in range(4):
            started = data(await gql(client_a, START, {"model": IMAGE_MODEL, "input": {"prompt": f"shared {index}"}}))
            ids.append(started["startGeneration"]["generation"]["id"])

        async def all_succeeded() -> bool:
            query = "query($id: ID!) { generation(id: $id) { status } }"
            states = [data(await gql(client_a, query, {"id": i}))["generation"]["status"] for i in ids]
            return states == ["SUCCEEDED"] * 4

        await eventually(all_succeeded, timeout=60, interval=0.3)
        stats_a = (await client_a.get("/simulator/_control/stats")).json()
        stats_b = (await client_b.get("/simulator/_control/stats")).json()
        assert (stats_a["predictions_created"], stats_b["predictions_created"]) == (1, 3)
    engine = create_async_engine(normalize_database_url(postgres_database))
    try:
        assert await most_running_at_once(async_sessionmaker(engine)) == 1
    finally:
        await _dispose(engine)


async def _dispose(engine: AsyncEngine) -> None:
    with contextlib.suppress(Exception):
        await engine.dispose()
    await asyncio.sleep(0)
