"""How a generation reaches the provider and how the provider's deadline ends it.

Official models go through Replicate's models endpoint, others by version, and a pinned version is sent
as given; the simulator records the route each create came through. Every create carries Cancel-After
from GENERATION_TIMEOUT_SECONDS, and a job the provider stops at that deadline ends TIMED_OUT as the
provider reported it, with Darkroom's own poller unable to have fired first.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from server.db.models import Generation
from server.graphql.ids import decode_id
from server.provider.replicate.prediction import Prediction
from server.simulator.catalogue import find_by_ref
from tests.support.darkroom import Darkroom
from tests.support.flows import start_payload, wait_settled
from tests.support.graphql import data

OFFICIAL = "darkroom-sim/pixel-forge"
COMMUNITY = "darkroom-sim/sdxl"  # a real model's schema (SDXL), not official at Replicate
PINNABLE = "darkroom-sim/snap-still"

DETAILS = """query Details($id: ID!) {
  generation(id: $id) { id status model modelVersion providerStatus error predictTime }
}"""
STATS = "{ stats(windowHours: 1) { models { model total succeeded timedOut predictTime } } }"


def version_of(ref: str) -> str:
    model = find_by_ref(ref)
    assert model is not None, ref
    return model.version_id


async def configure(darkroom: Darkroom, **knobs: Any) -> None:
    response = await darkroom.http.patch("/simulator/_control/config", json=knobs)
    assert response.status_code == 200, response.text


async def start(darkroom: Darkroom, model: str, input: dict[str, Any]) -> dict[str, Any]:
    payload = await start_payload(darkroom, model, input)
    assert payload["userErrors"] == [], payload
    return dict(payload["generation"])


async def details(darkroom: Darkroom, generation_id: str) -> dict[str, Any]:
    return dict(data(await darkroom.query(DETAILS, {"id": generation_id}))["generation"])


async def prediction_id(darkroom: Darkroom, generation_id: str) -> str:
    async with darkroom.runtime.sessions() as session:
        row = await session.get(Generation, decode_id(generation_id, "Generation"))
    assert row is not None and row.provider_id is not None
    return row.provider_id


async def create_record(darkroom: Darkroom, generation_id: str) -> dict[str, Any]:
    return dict(darkroom.simulator.stats.create_of(await prediction_id(darkroom, generation_id)))


async def test_official_models_run_by_name_others_by_version_and_a_pin_is_sent_as_given(
    darkroom: Darkroom,
) -> None:
    official = await start(darkroom, OFFICIAL, {"prompt": "by name", "width": 256, "height": 256})
    community = await start(darkroom, COMMUNITY, {"prompt": "by version", "width": 256, "height": 256})
    pinned_version = version_of(PINNABLE)
    pinned = await start(darkroom, f"{PINNABLE}:{pinned_version}", {"prompt": "pinned"})

    deadline = f"{darkroom.settings.poller.generation_timeout_seconds:.0f}s"
    by_name = await create_record(darkroom, official["id"])
    assert {key: by_name[key] for key in ("prediction_id", "path", "version", "cancel_after")} == {
        "prediction_id": await prediction_id(darkroom, official["id"]),
        "path": f"/v1/models/{OFFICIAL}/predictions",
        "version": None,
        "cancel_after": deadline,
    }
    by_version = await create_record(darkroom, community["id"])
    assert by_version["path"] == "/v1/predictions"
    assert by_version["version"] == f"{COMMUNITY}:{version_of(COMMUNITY)}"
    assert by_version["cancel_after"] == deadline
    by_pin = await create_record(darkroom, pinned["id"])
    assert (by_pin["path"], by_pin["version"]) == ("/v1/predictions", f"{PINNABLE}:{pinned_version}")
    assert pinned["model"] == PINNABLE  # the reference without its version

    for generation, ref in ((official, OFFICIAL), (community, COMMUNITY), (pinned, PINNABLE)):
        assert (await wait_settled(darkroom, generation["id"]))["status"] == "SUCCEEDED"
        final = await details(darkroom, generation["id"])
        # The version the provider says ran (the simulator serves one version of each model).
        assert final["modelVersion"] == version_of(ref)
        assert final["predictTime"] is not None and final["predictTime"] > 0

    # The provider measured each run; stats sum those per model.
    async with darkroom.runtime.sessions() as session:
        rows = (await session.scalars(select(Generation))).all()
        measured = {row.model_ref: row.predict_time for row in rows}
    stats = {row["model"]: row for row in data(await darkroom.query(STATS))["stats"]["models"]}
    for ref in (OFFICIAL, COMMUNITY, PINNABLE):
        assert stats[ref]["predictTime"] == pytest.approx(measured[ref])


async def test_a_version_the_provider_does_not_have_is_refused_and_nothing_is_left(darkroom: Darkroom) -> None:
    before = darkroom.simulator.stats.predictions_created
    unknown = await start_payload(darkroom, f"{PINNABLE}:{'0' * 64}", {"prompt": "nowhere"})
    assert unknown["generation"] is None and unknown["userErrors"], unknown
    empty = await start_payload(darkroom, f"{PINNABLE}:", {"prompt": "nowhere"})
    assert [error["code"] for error in empty["userErrors"]] == ["INVALID_MODEL_REF"]
    assert darkroom.simulator.stats.predictions_created == before
    async with darkroom.runtime.sessions() as session:
        assert (await session.scalars(select(Generation))).first() is None


async def test_the_providers_deadline_times_a_generation_out_before_darkroom_could(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    # No poller: Darkroom's own timeout check cannot fire; only the provider's deadline can end these.
    async with start_darkroom(generation_timeout_seconds=2.0, poller_enabled=False) as darkroom:
        await configure(darkroom, start_seconds=60.0)
        never_started = await start(darkroom, OFFICIAL, {"prompt": "queued forever"})
        await configure(darkroom, start_seconds=0.05, run_seconds=60.0)
        running = await start(darkroom, OFFICIAL, {"prompt": "runs forever"})
        assert (await create_record(darkroom, never_started["id"]))["cancel_after"] == "2s"

        for generation, provider_status in ((never_started, "aborted"), (running, "canceled")):
            final = await wait_settled(darkroom, generation["id"], timeout=20.0)
            assert final["status"] == "TIMED_OUT", final
            assert final["providerStatus"] == provider_status
            assert "timed out after 2 s" in final["error"] and "deadline" in final["error"]
            # ...as the simulator reported it, at its deadline.
            prediction = await darkroom.replicate.client.get_prediction(await prediction_id(darkroom, generation["id"]))
            assert prediction.status == provider_status
            assert prediction.completed_at is not None and prediction.created_at is not None
            assert prediction.completed_at - prediction.created_at >= timedelta(seconds=1.9)
        stats = {row["model"]: row for row in data(await darkroom.query(STATS))["stats"]["models"]}
        assert stats[OFFICIAL]["timedOut"] == 2


async def test_an_abort_the_deadline_did_not_cause_is_a_cancellation(darkroom: Darkroom) -> None:
    await configure(darkroom, start_seconds=60.0, webhook_drop_rate=1.0)
    generation = await start(darkroom, OFFICIAL, {"prompt": "aborted early"})
    provider_id = await prediction_id(darkroom, generation["id"])
    created = await darkroom.replicate.client.get_prediction(provider_id)
    assert created.created_at is not None
    # Replicate aborting the job a second in, long before the 1800 s deadline: not a timeout.
    aborted = Prediction.from_json(
        {
            **created.raw,
            "status": "aborted",
            "completed_at": (created.created_at + timedelta(seconds=1)).isoformat(),
        }
    ).to_update()
    await darkroom.runtime.generations.apply_prediction_update(aborted, provider="replicate")
    final = await details(darkroom, generation["id"])
    assert (final["status"], final["providerStatus"]) == ("CANCELED", "aborted")
    assert final["error"] == "aborted by the provider before it started"

    # The same abort at the deadline is the deadline's: the rule reads the provider's clock.
    late = await start(darkroom, OFFICIAL, {"prompt": "aborted at the deadline"})
    late_created = await darkroom.replicate.client.get_prediction(await prediction_id(darkroom, late["id"]))
    assert late_created.created_at is not None
    deadline = darkroom.settings.poller.generation_timeout_seconds
    at_deadline = Prediction.from_json(
        {
            **late_created.raw,
            "status": "aborted",
            "completed_at": (late_created.created_at + timedelta(seconds=deadline)).isoformat(),
        }
    ).to_update()
    await darkroom.runtime.generations.apply_prediction_update(at_deadline, provider="replicate")
    final = await details(darkroom, late["id"])
    assert (final["status"], final["providerStatus"]) == ("TIMED_OUT", "aborted")
