"""POST /webhooks/{provider}: forged, stale and replayed deliveries on each provider; malformed, oversized,
unknown, duplicate and late ones on Replicate, whose webhooks report every step."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy import func, select

from server.db.models import Event, Generation
from server.graphql.ids import decode_id
from tests.support.darkroom import Darkroom
from tests.support.flows import get_generation, settled, start_generation, wait_settled
from tests.support.providers import ProviderCase, StartDarkroom
from tests.support.waiting import eventually
from tests.support.webhooks import post_webhook, prediction, signed, stored_prediction


async def _counts(darkroom: Darkroom) -> tuple[int, int]:
    async with darkroom.runtime.sessions() as session:
        generations = await session.scalar(select(func.count()).select_from(Generation))
        events = await session.scalar(select(func.count()).select_from(Event))
    return int(generations or 0), int(events or 0)


async def test_forged_stale_or_tampered_deliveries_change_nothing_and_a_replay_is_a_duplicate(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    async with start_darkroom(poller_enabled=False, **on_provider.settings) as darkroom:
        await on_provider.configure(darkroom, webhook_drop_rate=1.0, run_seconds=60)
        generation = await start_generation(darkroom, model=on_provider.image_model)
        async with darkroom.runtime.sessions() as session:
            row = await session.get(Generation, decode_id(generation["id"], "Generation"))
            assert row is not None and row.provider_id is not None
        job_id, url = row.provider_id, f"/webhooks/{on_provider.name}"
        before = await _counts(darkroom)
        body = on_provider.failed_delivery(job_id)

        async def deliver(headers: dict[str, str], content: bytes = body) -> int:
            return (await darkroom.http.post(url, content=content, headers=headers)).status_code

        now = int(time.time())
        assert await deliver(await on_provider.sign(darkroom, job_id, body, forged=True)) == 401
        assert await deliver(await on_provider.sign(darkroom, job_id, body, at=now - 3600)) == 401
        assert await deliver(await on_provider.sign(darkroom, job_id, body, at=now + 3600)) == 401
        tampered = body.replace(b"500", b"501").replace(b"out of memory", b"out of memorx")
        assert await deliver(await on_provider.sign(darkroom, job_id, body), tampered) == 401
        assert await deliver({}) == 401
        assert await _counts(darkroom) == before
        assert (await get_generation(darkroom, generation["id"]))["status"] == "STARTING"

        genuine = await on_provider.sign(darkroom, job_id, body)
        assert (await darkroom.http.post(url, content=body, headers=genuine)).json() == {"result": "applied"}
        # The provider delivers again (a retry), or someone replays what they caught: nothing more happens.
        assert (await darkroom.http.post(url, content=body, headers=genuine)).json() == {"result": "duplicate"}
        state = await get_generation(darkroom, generation["id"])
        assert (state["status"], state["sequence"]) == ("FAILED", 2)
        garbage = dict(genuine, **{"webhook-signature": "v1 ,,,, v2,zzz v1,%%%", "x-fal-webhook-signature": "zz"})
        assert await deliver(garbage) == 401


async def test_malformed_oversized_and_unknown_webhooks(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(poller_enabled=False, webhook_max_body_bytes=2048) as darkroom:
        before = await _counts(darkroom)
        body, headers = await signed(darkroom, b"{not json")
        response = await post_webhook(darkroom, body, headers)
        assert response.status_code == 400
        not_predictions: list[Any] = [{"id": "x", "status": None}, {"id": "x"}, {"id": 5, "status": "processing"}, []]
        for not_a_prediction in not_predictions:
            body, headers = await signed(darkroom, not_a_prediction)
            assert (await post_webhook(darkroom, body, headers)).status_code == 400, not_a_prediction
        body, headers = await signed(darkroom, prediction("p", "processing", logs="x" * 5000))
        assert (await post_webhook(darkroom, body, headers)).status_code == 413
        body, headers = await signed(darkroom, prediction("never-heard-of-it", "succeeded"))
        response = await post_webhook(darkroom, body, headers)
        assert response.status_code == 200
        assert response.json() == {"result": "unknown"}
        assert await _counts(darkroom) == before


async def test_duplicate_and_late_webhooks_are_no_ops(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(poller_enabled=False) as darkroom:
        known = await stored_prediction(darkroom)
        pid = known["provider_id"]
        progress = prediction(pid, "processing", logs=" 50%|█████     | 5/10 [00:01<00:01,  5.0it/s]")
        results = []
        for payload in (progress, progress, prediction(pid, "starting")):
            body, headers = await signed(darkroom, payload)
            results.append((await post_webhook(darkroom, body, headers)).json()["result"])
        assert results == ["applied", "duplicate", "stale"]
        state = await get_generation(darkroom, known["generation"]["id"])
        assert (state["status"], state["progress"]) == ("PROCESSING", 0.5)

        failed = prediction(pid, "failed", error="CUDA out of memory", completed_at="2026-01-01T00:01:00Z")
        body, headers = await signed(darkroom, failed, msg_id="msg_terminal")
        assert (await post_webhook(darkroom, body, headers)).json()["result"] == "applied"
        # Replicate retries the terminal webhook with the same id; and a late progress webhook follows.
        assert (await post_webhook(darkroom, body, headers)).json()["result"] == "duplicate"
        body, headers = await signed(darkroom, progress)
        assert (await post_webhook(darkroom, body, headers)).json()["result"] == "stale"
        state = await get_generation(darkroom, known["generation"]["id"])
        assert (state["status"], state["error"]) == ("FAILED", "CUDA out of memory")
        assert state["sequence"] == 3  # created, processing, failed: nothing else was recorded


async def test_aborted_is_terminal_and_kept_apart_from_canceled(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(poller_enabled=False) as darkroom:
        known = await stored_prediction(darkroom)
        body, headers = await signed(darkroom, prediction(known["provider_id"], "aborted"))
        assert (await post_webhook(darkroom, body, headers)).json()["result"] == "applied"
        state = await get_generation(darkroom, known["generation"]["id"])
        assert (state["status"], state["providerStatus"]) == ("CANCELED", "aborted")
        assert settled(state)


async def test_a_status_darkroom_does_not_know_leaves_the_generation_running(start_darkroom, caplog) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(poller_enabled=False) as darkroom:
        known = await stored_prediction(darkroom)
        pid = known["provider_id"]
        status = f"warming_up_{uuid.uuid4().hex[:6]}"  # new to this process, so it is reported
        results = []
        with caplog.at_level(logging.INFO):
            first = " 10%|█         | 1/10 [00:00<00:01,  5.0it/s]"
            # Logs only grow at the provider.
            for logs in (first, first + "\n 30%|███       | 3/10 [00:01<00:01,  5.0it/s]"):
                body, headers = await signed(darkroom, prediction(pid, status, logs=logs))
                response = await post_webhook(darkroom, body, headers)
                assert response.status_code == 200, response.text
                results.append(response.json()["result"])
        assert results == ["applied", "applied"]
        state = await get_generation(darkroom, known["generation"]["id"])
        assert (state["status"], state["providerStatus"], state["progress"]) == ("STARTING", status, 0.3)
        reported = [
            record
            for record in caplog.records
            if record.name == "server.provider.replicate.prediction"
            and getattr(record, "provider_status", None) == status
        ]
        assert len(reported) == 1 and reported[0].levelname == "WARNING", reported
        # It is still running: the provider's next known status moves it on as usual.
        body, headers = await signed(darkroom, prediction(pid, "processing", logs=logs + "\n 60%|██████    | 6/10"))
        assert (await post_webhook(darkroom, body, headers)).json()["result"] == "applied"
        assert (await get_generation(darkroom, known["generation"]["id"]))["status"] == "PROCESSING"


async def test_a_webhook_that_outruns_the_start_finds_its_generation(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    """The webhook URL carries the generation id, so an early webhook is matched before provider_id is stored."""
    async with start_darkroom(poller_enabled=False) as darkroom:
        generation_id = uuid.uuid4()
        async with darkroom.runtime.sessions.begin() as session:
            session.add(
                Generation(
                    provider="replicate", id=generation_id, kind="IMAGE", model_ref="a/b", input={}, status="STARTING"
                )
            )
        body, headers = await signed(darkroom, prediction("fresh-prediction", "processing", logs="1"))
        response = await post_webhook(darkroom, body, headers, f"?generation={generation_id}")
        assert response.json() == {"result": "applied"}
        async with darkroom.runtime.sessions() as session:
            row = await session.get(Generation, generation_id)
            assert row is not None and row.provider_id == "fresh-prediction"
        # ...but a webhook cannot hijack a generation that belongs to another prediction.
        body, headers = await signed(darkroom, prediction("someone-else", "succeeded"))
        response = await post_webhook(darkroom, body, headers, f"?generation={generation_id}")
        assert response.json() == {"result": "unknown"}


async def test_duplicated_and_reordered_webhooks_record_only_the_forward_path(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(poller_enabled=False) as darkroom:
        await darkroom.http.patch(
            "/simulator/_control/config", json={"webhook_duplicate_rate": 1.0, "webhook_reorder": True}
        )
        generations = [await start_generation(darkroom, f"scene {n}") for n in range(3)]
        for generation in generations:
            await wait_settled(darkroom, generation["id"])
        ranks = {"STARTING": 0, "PROCESSING": 1, "SUCCEEDED": 2}
        async with darkroom.runtime.sessions() as session:
            for generation in generations:
                rows = (
                    await session.scalars(
                        select(Event)
                        .where(Event.generation_id == decode_id(generation["id"], "Generation"))
                        .order_by(Event.seq)
                    )
                ).all()
                statuses = [row.payload["generation"]["status"] for row in rows]
                assert statuses[-1] == "SUCCEEDED"
                assert [ranks[s] for s in statuses] == sorted(ranks[s] for s in statuses), statuses
                terminal = [
                    row
                    for row in rows
                    if row.type == "GENERATION_UPDATED" and row.payload["generation"]["status"] == "SUCCEEDED"
                ]
                assert len(terminal) == 1, "the success was recorded exactly once"
                assert [row.seq for row in rows] == list(range(1, len(rows) + 1))


async def test_a_prediction_orphaned_by_a_failed_start_is_canceled_when_it_reports_in(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    """A create that failed after the provider began leaves a running prediction; its webhook stops it."""
    async with start_darkroom(poller_enabled=False, simulator_run_seconds=60) as darkroom:
        provider = darkroom.replicate.client
        orphan = await provider.create_prediction(model="darkroom-sim/pixel-forge", input={"prompt": "orphan"})
        stranger = await provider.create_prediction(model="darkroom-sim/pixel-forge", input={"prompt": "stranger"})

        body, headers = await signed(darkroom, {**orphan.raw, "status": "processing"})
        response = await post_webhook(darkroom, body, headers, f"?generation={uuid.uuid4()}")
        assert response.json() == {"result": "unknown"}
        # Without the address of one of our generations, an unknown prediction is only ignored.
        body, headers = await signed(darkroom, {**stranger.raw, "status": "processing"})
        assert (await post_webhook(darkroom, body, headers)).json() == {"result": "unknown"}

        async def orphan_canceled() -> bool:
            return (await provider.get_prediction(orphan.id)).status == "canceled"

        await eventually(orphan_canceled, timeout=20)
        assert not (await provider.get_prediction(stranger.id)).is_terminal
        assert await _counts(darkroom) == (0, 0), "nothing was written"
