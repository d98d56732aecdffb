"""The fallbacks: the poller when webhooks are lost, and download retries when files fail."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from sqlalchemy import select

from server.db.models import Generation
from server.domain import GenerationStatus
from server.graphql.ids import decode_id
from tests.support.darkroom import Darkroom
from tests.support.flows import get_generation, start_generation, wait_settled
from tests.support.providers import ProviderCase, StartDarkroom
from tests.support.waiting import eventually


async def _configure(darkroom: Darkroom, **knobs: Any) -> None:
    response = await darkroom.http.patch("/simulator/_control/config", json=knobs)
    assert response.status_code == 200, response.text


async def _stats(darkroom: Darkroom) -> dict[str, Any]:
    response = await darkroom.http.get("/simulator/_control/stats")
    assert response.status_code == 200
    return dict(response.json())


async def test_the_poller_completes_generations_when_every_webhook_is_lost(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    async with start_darkroom(**on_provider.settings) as darkroom:
        await on_provider.configure(darkroom, webhook_drop_rate=1.0)
        generation = await start_generation(darkroom, model=on_provider.image_model)
        final = await wait_settled(darkroom, generation["id"])
        assert final["status"] == "SUCCEEDED"
        assert [media["status"] for media in final["media"]] == ["READY"]
        stats = await on_provider.stats(darkroom)
        assert not any(hook["delivered"] for hook in stats["webhooks"]), "no webhook reached us"


async def test_the_poller_times_out_generations_that_run_too_long(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    async with start_darkroom(generation_timeout_seconds=1.0, **on_provider.settings) as darkroom:
        await on_provider.configure(darkroom, run_seconds=120, webhook_drop_rate=1.0)
        generation = await start_generation(darkroom, model=on_provider.image_model)
        final = await wait_settled(darkroom, generation["id"])
        assert final["status"] == "TIMED_OUT"
        assert "timed out" in final["error"]
        # ...and the provider was asked to stop it.
        async with darkroom.runtime.sessions() as session:
            row = await session.get(Generation, decode_id(generation["id"], "Generation"))
            assert row is not None and row.provider_id
        job_id, model_ref = row.provider_id, row.model_ref

        async def canceled_at_provider() -> bool:
            return (await on_provider.job(darkroom, job_id, model_ref)).status is GenerationStatus.CANCELED

        await eventually(canceled_at_provider)


async def test_the_poller_settles_what_finished_while_the_server_was_down(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(poller_enabled=False, downloader_enabled=False) as darkroom:
        await _configure(darkroom, webhook_drop_rate=1.0, run_seconds=0.2)
        generation = await start_generation(darkroom)
        await asyncio.sleep(1.5)  # finished at the provider; nobody here heard
        assert (await get_generation(darkroom, generation["id"]))["status"] == "STARTING"
        runtime = darkroom.runtime
        from server.workers.poller import Poller

        polled = await Poller(runtime.settings, runtime.polls, runtime.providers, runtime.generations).poll_once()
        assert polled == 1
        assert (await get_generation(darkroom, generation["id"]))["status"] == "SUCCEEDED"


async def test_downloads_retry_until_the_file_serves(start_darkroom: StartDarkroom, on_provider: ProviderCase) -> None:
    async with start_darkroom(download_max_attempts=5, **on_provider.settings) as darkroom:
        await on_provider.configure(darkroom, download_failures=2)
        generation = await start_generation(darkroom, model=on_provider.image_model)
        final = await wait_settled(darkroom, generation["id"])
        [media] = final["media"]
        assert media["status"] == "READY"
        assert media["downloadAttempts"] == 3
        assert media["downloadError"] is None


async def test_downloads_fail_after_the_limit_and_retry_download_revives_them(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(download_max_attempts=2) as darkroom:
        await _configure(darkroom, download_failures=50)
        generation = await start_generation(darkroom)
        final = await wait_settled(darkroom, generation["id"])
        [media] = final["media"]
        assert (media["status"], media["downloadAttempts"]) == ("FAILED", 2)
        assert "500" in media["downloadError"]

        await _configure(darkroom, download_failures=0)
        await darkroom.http.post("/simulator/_control/reset")
        retried = await darkroom.query(
            "mutation($id: ID!) { retryDownload(input: {mediaId: $id}) {"
            " media { status downloadAttempts } userErrors { code } } }",
            {"id": media["id"]},
        )
        assert retried["data"]["retryDownload"] == {
            "media": {"status": "PENDING", "downloadAttempts": 0},
            "userErrors": [],
        }
        final = await wait_settled(darkroom, generation["id"])
        assert final["media"][0]["status"] == "READY"
        again = await darkroom.query(
            "mutation($id: ID!) { retryDownload(input: {mediaId: $id}) { media { status } userErrors { code } } }",
            {"id": media["id"]},
        )
        assert again["data"]["retryDownload"]["userErrors"][0]["code"] == "NOT_FAILED"


async def test_twenty_concurrent_generations_settle_and_no_file_is_fetched_twice(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(download_concurrency=4) as darkroom:
        await _configure(darkroom, webhook_duplicate_rate=0.5)
        started = await asyncio.gather(*(start_generation(darkroom, f"concurrent {n}") for n in range(20)))
        finals = await asyncio.gather(*(wait_settled(darkroom, g["id"], timeout=60) for g in started))
        assert all(final["status"] == "SUCCEEDED" for final in finals)
        assert all(media["status"] == "READY" for final in finals for media in final["media"])
        hits = Counter((await _stats(darkroom))["file_hits"])
        output_hits = {path: n for path, n in hits.items() if "/files/" in path}
        assert len(output_hits) == 20
        assert set(output_hits.values()) == {1}, "every output file was downloaded exactly once"
        async with darkroom.runtime.sessions() as session:
            ids = (await session.scalars(select(Generation.provider_id))).all()
        assert len(set(ids)) == 20


async def test_forged_output_hosts_are_never_fetched(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    from server.provider.replicate.prediction import Prediction

    async with start_darkroom(poller_enabled=False) as darkroom:
        await _configure(darkroom, webhook_drop_rate=1.0, run_seconds=60)
        generation = await start_generation(darkroom)
        async with darkroom.runtime.sessions() as session:
            row = await session.get(Generation, decode_id(generation["id"], "Generation"))
            assert row is not None
        forged = Prediction.from_json(
            {
                "id": row.provider_id,
                "status": "succeeded",
                "output": ["http://169.254.169.254/latest/meta-data"],
            }
        ).to_update()
        await darkroom.runtime.generations.apply_prediction_update(forged, provider="replicate")
        final = await wait_settled(darkroom, generation["id"])
        [media] = final["media"]
        assert media["status"] == "FAILED"
        assert "not an allowed file host" in media["downloadError"]
        assert media["downloadAttempts"] == 1
