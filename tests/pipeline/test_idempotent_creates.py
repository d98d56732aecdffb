"""Idempotency keys on startGeneration, animateImage and uploadMedia, over real HTTP: a repeat returns the first
call's result and the provider's simulator records one create, whether the repeat comes after the first call,
at the same time, or on another process; the same key for another request is refused; a refused first call
frees its key, and a repeat waiting on it then runs itself; a call that never finished holds its key until it
expires; an expired key starts anew and is swept by cleanup."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete, func, select, update

from server.db.models import IdempotencyKey, utcnow
from server.services.access.idempotency import ANONYMOUS_SCOPE, fingerprint
from tests.ops.support import raw_id, row_counts
from tests.support.creates import PROMPT, START, creates, start, upload
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL
from tests.support.graphql import data, gql
from tests.support.processes import darkroom_process, simulator_process
from tests.support.services import SESSION_CHANNEL, empty_postgres_database
from tests.uploads.support import png, uploaded

ANIMATE = """
mutation Animate($mediaId: ID!, $input: JSON, $key: String) {
  animateImage(input: {mediaId: $mediaId, input: $input, idempotencyKey: $key}) {
    generation { id kind }
    userErrors { field message code }
  }
}
"""


async def stored_keys(darkroom: Darkroom) -> int:
    async with darkroom.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0)


async def test_a_repeat_returns_the_first_generation_and_the_provider_is_asked_once(darkroom: Darkroom) -> None:
    first = await start(darkroom, "order-17")
    again = await start(darkroom, "order-17")

    assert first["userErrors"] == [] and again["userErrors"] == []
    assert again["generation"] == first["generation"]
    assert creates(darkroom) == 1
    assert (await row_counts(darkroom))["generations"] == 1
    # Another key is another request.
    other = await start(darkroom, "order-18")
    assert other["generation"]["id"] != first["generation"]["id"]
    assert creates(darkroom) == 2


async def test_concurrent_repeats_wait_for_the_first_call_and_share_its_generation(darkroom: Darkroom) -> None:
    payloads = await asyncio.gather(*(start(darkroom, "at-once") for _ in range(5)))

    assert all(payload["userErrors"] == [] for payload in payloads), payloads
    assert len({payload["generation"]["id"] for payload in payloads}) == 1
    assert creates(darkroom) == 1
    assert (await row_counts(darkroom))["generations"] == 1


async def test_the_same_key_for_another_request_is_refused_and_changes_nothing(darkroom: Darkroom) -> None:
    first = await start(darkroom, "reused")
    before = await row_counts(darkroom)

    for changed in (
        start(darkroom, "reused", {"prompt": "another prompt"}),
        start(darkroom, "reused", metadata={"orderId": "A-1"}),
    ):
        refused = await changed
        assert refused["generation"] is None
        assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [
            ("IDEMPOTENCY_KEY_REUSED", ["input", "idempotencyKey"])
        ]
    image = await uploaded(darkroom)
    animated = data(await darkroom.query(ANIMATE, {"mediaId": image["id"], "input": PROMPT, "key": "reused"}))
    assert [e["code"] for e in animated["animateImage"]["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]

    assert creates(darkroom) == 1
    after = await row_counts(darkroom)
    # The upload made a generation and a media of its own; the refusals made nothing.
    assert (after["generations"], after["media"]) == (before["generations"] + 1, before["media"] + 1)
    assert (await start(darkroom, "reused"))["generation"]["id"] == first["generation"]["id"]


async def test_a_refused_first_call_frees_its_key_for_the_corrected_request(darkroom: Darkroom) -> None:
    refused = await start(darkroom, "fix-me", {"prompt": "x", "num_outputs": 99})
    assert refused["generation"] is None and refused["userErrors"], refused
    assert await stored_keys(darkroom) == 0

    fixed = await start(darkroom, "fix-me", {"prompt": "x", "num_outputs": 1})
    assert fixed["userErrors"] == [], fixed
    assert creates(darkroom) == 1
    assert await stored_keys(darkroom) == 1


async def test_a_malformed_key_is_refused_before_anything_is_done(darkroom: Darkroom) -> None:
    for key in ("", "x" * 256, "tab\there"):
        refused = await start(darkroom, key)
        assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [
            ("INVALID_IDEMPOTENCY_KEY", ["input", "idempotencyKey"])
        ], key
    assert creates(darkroom) == 0
    assert (await row_counts(darkroom))["generations"] == 0
    assert await stored_keys(darkroom) == 0
    assert (await start(darkroom, "x" * 255))["userErrors"] == []


async def test_an_expired_key_starts_anew_and_cleanup_deletes_it(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(idempotency_key_ttl_seconds=0.5) as darkroom:
        first = await start(darkroom, "short-lived")
        await asyncio.sleep(0.6)
        again = await start(darkroom, "short-lived")

        assert again["userErrors"] == []
        assert again["generation"]["id"] != first["generation"]["id"]
        assert creates(darkroom) == 2
        assert await stored_keys(darkroom) == 1

        await asyncio.sleep(0.6)
        planned = await darkroom.runtime.retention.run(dry_run=True)
        assert planned.expired_idempotency_keys == 1 and await stored_keys(darkroom) == 1
        assert (await darkroom.runtime.retention.run()).expired_idempotency_keys == 1
        assert await stored_keys(darkroom) == 0


async def test_keys_belong_to_each_api_key(darkroom: Darkroom) -> None:
    from tests.auth.support import bearer, new_key

    one, two = await new_key(darkroom, "one"), await new_key(darkroom, "two")
    variables = {"model": IMAGE_MODEL, "input": PROMPT, "key": "shared-name"}
    first = data(await darkroom.query(START, variables, headers=bearer(one.token)))["startGeneration"]
    second = data(await darkroom.query(START, variables, headers=bearer(two.token)))["startGeneration"]
    assert first["userErrors"] == [] and second["userErrors"] == []
    assert first["generation"]["id"] != second["generation"]["id"]
    assert creates(darkroom) == 2


async def test_animate_image_with_a_key_starts_one_video(darkroom: Darkroom) -> None:
    image = await uploaded(darkroom)
    variables = {"mediaId": image["id"], "input": {"prompt": "slow zoom"}, "key": "animate-once"}
    first = data(await darkroom.query(ANIMATE, variables))["animateImage"]
    again = data(await darkroom.query(ANIMATE, variables))["animateImage"]

    assert first["userErrors"] == [] and first["generation"]["kind"] == "VIDEO", first
    assert again["generation"]["id"] == first["generation"]["id"]
    assert creates(darkroom) == 1


async def test_an_upload_with_a_key_returns_the_same_media(darkroom: Darkroom) -> None:
    content = png(32, 32)
    first = await upload(darkroom, content, "upload-1", metadata={"album": "holiday"})
    again = await upload(darkroom, content, "upload-1", metadata={"album": "holiday"})

    assert first["userErrors"] == [] and again["media"] == first["media"]
    assert first["media"]["metadata"] == {"album": "holiday"}
    assert (await row_counts(darkroom))["media"] == 1
    assert [entry.key async for entry in darkroom.runtime.storage.list_files()] != []

    other_file = await upload(darkroom, png(33, 33), "upload-1", metadata={"album": "holiday"})
    other_name = await upload(darkroom, content, "upload-1", "another.png", metadata={"album": "holiday"})
    for refused in (other_file, other_name):
        assert [e["code"] for e in refused["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"], refused
    assert (await row_counts(darkroom))["media"] == 1


async def test_concurrent_duplicates_on_two_processes_create_one_job(postgres_database: str, tmp_path: Path) -> None:
    """Two `darkroom serve` processes on one PostgreSQL database and one shared simulator: the primary key
    lets one claim win, and every duplicate on either process returns its generation."""
    await empty_postgres_database(postgres_database)
    async with simulator_process({"SIMULATOR_RUN_SECONDS": "0.5", "LOG_LEVEL": "WARNING"}, tmp_path / "sim.log") as sim:
        env = {
            "DATABASE_URL": postgres_database,
            "BROADCAST_URL": "memory://",
            "BROADCAST_CHANNEL": SESSION_CHANNEL,
            "REPLICATE_API_TOKEN": "",
            "REPLICATE_API_BASE_URL": sim,
            "PUBLIC_URL": "",
            "POLLER_ENABLED": "false",
            "DOWNLOADER_ENABLED": "false",
            "RATE_LIMIT_MUTATIONS_PER_MINUTE": "0",
            "LOG_LEVEL": "WARNING",
        }
        async with (
            darkroom_process({**env, "DATA_DIR": str(tmp_path / "a")}, tmp_path / "a.log") as process_a,
            darkroom_process({**env, "DATA_DIR": str(tmp_path / "b")}, tmp_path / "b.log") as process_b,
            httpx.AsyncClient(base_url=process_a, timeout=60) as client_a,
            httpx.AsyncClient(base_url=process_b, timeout=60) as client_b,
        ):
            variables = {"model": IMAGE_MODEL, "input": PROMPT, "key": "two-processes"}
            answers = await asyncio.gather(*(gql(client, START, variables) for client in [client_a, client_b] * 4))
            stats = (await client_a.get(f"{sim}/_control/stats")).json()

    payloads = [data(answer)["startGeneration"] for answer in answers]
    assert all(payload["userErrors"] == [] for payload in payloads), payloads
    assert len({payload["generation"]["id"] for payload in payloads}) == 1
    assert stats["predictions_created"] == 1


async def hold_key(darkroom: Darkroom, key: str, seconds: float = 60) -> None:
    """The key's row as a first call still in flight elsewhere leaves it: claimed for this request, no result."""
    now = utcnow()
    arguments = {"model": IMAGE_MODEL, "input": PROMPT, "metadata": None}
    async with darkroom.runtime.sessions.begin() as session:
        session.add(
            IdempotencyKey(
                scope=ANONYMOUS_SCOPE,
                key=key,
                operation="startGeneration",
                fingerprint=fingerprint("startGeneration", arguments),
                created_at=now,
                expires_at=now + timedelta(seconds=seconds),
            )
        )


async def test_a_repeat_waits_for_the_call_in_flight_and_returns_its_result(darkroom: Darkroom) -> None:
    done = (await start(darkroom, None))["generation"]
    await hold_key(darkroom, "in-flight")
    repeat = asyncio.create_task(start(darkroom, "in-flight"))
    await asyncio.sleep(0.5)
    assert not repeat.done()

    # The first call finishes: it records what it created.
    async with darkroom.runtime.sessions.begin() as session:
        await session.execute(update(IdempotencyKey).values(result_id=raw_id(done["id"])))
    answer = await asyncio.wait_for(repeat, 10)
    assert answer["generation"] == done
    assert creates(darkroom) == 1


async def test_a_repeat_runs_itself_when_the_call_in_flight_is_refused(darkroom: Darkroom) -> None:
    await hold_key(darkroom, "released")
    repeat = asyncio.create_task(start(darkroom, "released"))
    await asyncio.sleep(0.5)
    assert not repeat.done()

    # The first call was refused: it releases the key.
    async with darkroom.runtime.sessions.begin() as session:
        await session.execute(delete(IdempotencyKey))
    answer = await asyncio.wait_for(repeat, 10)
    assert answer["userErrors"] == [] and answer["generation"]["id"]
    assert creates(darkroom) == 1


async def test_a_call_that_never_finished_holds_its_key_until_it_expires(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(idempotency_wait_seconds=0.5) as darkroom:
        await hold_key(darkroom, "crashed", seconds=1.5)
        waited = await start(darkroom, "crashed")
        assert [(e["code"], e["field"]) for e in waited["userErrors"]] == [
            ("IDEMPOTENCY_KEY_IN_FLIGHT", ["input", "idempotencyKey"])
        ]
        assert creates(darkroom) == 0

        await asyncio.sleep(1.2)
        assert (await start(darkroom, "crashed"))["userErrors"] == []
        assert creates(darkroom) == 1


async def test_a_key_with_an_input_that_is_no_text_is_refused_as_without_one(darkroom: Darkroom) -> None:
    """A lone surrogate, which only an escape in the JSON body can carry, is fingerprinted like any text."""
    answers = []
    for key in (None, "odd-input"):
        variables = {"model": IMAGE_MODEL, "input": {"prompt": "\ud800"}, "key": key}
        body = json.dumps({"query": START, "variables": variables})
        response = await darkroom.http.post("/graphql", content=body, headers={"Content-Type": "application/json"})
        answers.append(response.json())
    refusals = [data(answer)["startGeneration"]["userErrors"] for answer in answers]
    assert refusals[0] and refusals[0] == refusals[1], refusals
    assert creates(darkroom) == 0
