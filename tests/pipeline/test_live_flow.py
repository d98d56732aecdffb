"""End to end on each provider's embedded simulator: a mutation, a live subscription, and downloaded media;
a failure, a cancel, and a video made from an uploaded image."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime

from tests.support.flows import FOLLOW, START, start_generation, wait_settled
from tests.support.graphql import data, ws_connect
from tests.support.providers import ProviderCase, StartDarkroom
from tests.support.waiting import new_subscriptions

FEED = """subscription Feed($after: String) {
  generationEvents(after: $after) { cursor sequence type at generation { id status progress media { status url } } }
}"""


async def test_a_subscriber_sees_every_step_and_gets_working_media(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    # fal reports progress only when polled: every 0.3 s here.
    async with start_darkroom(simulator_run_seconds=2.0, poll_progress_seconds=0.3, **on_provider.settings) as darkroom:
        async with ws_connect(darkroom.base_url) as ws:
            generation = await start_generation(
                darkroom, "a red fox in snow", model=on_provider.image_model, **on_provider.two_pngs
            )
            states = [payload["data"]["generation"] async for payload in ws.subscribe(FOLLOW, {"id": generation["id"]})]

        statuses = [state["status"] for state in states]
        assert statuses[0] == "STARTING"
        assert "PROCESSING" in statuses
        assert statuses[-1] == "SUCCEEDED"
        assert statuses.index("PROCESSING") < statuses.index("SUCCEEDED")
        sequences = [state["sequence"] for state in states]
        assert sequences == sorted(set(sequences)), "each change arrives once, in order"
        progress = [
            state["progress"] for state in states if state["status"] == "PROCESSING" and state["progress"] is not None
        ]
        assert progress and progress == sorted(progress), progress
        assert any(0 < value < 1 for value in progress)

        final = states[-1]
        assert final["progress"] == 1.0
        assert [media["status"] for media in final["media"]] == ["READY", "READY"]
        for media in final["media"]:
            assert media["url"].startswith(darkroom.base_url + "/media/")
            assert "simulator" not in media["url"]
            response = await darkroom.http.get(media["url"])
            assert response.status_code == 200
            assert response.headers["content-type"] == media["contentType"] == "image/png"
            assert hashlib.sha256(response.content).hexdigest() == media["sha256"]
            assert len(response.content) == media["byteSize"]
            assert media["width"] and media["height"]


async def test_the_event_feed_follows_a_generation_from_creation(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    async with start_darkroom(**on_provider.settings) as darkroom, ws_connect(darkroom.base_url) as ws:
        opened = darkroom.runtime.hub.subscriptions_opened
        feed = ws.subscribe(FEED)
        first = asyncio.ensure_future(feed.__anext__())
        await new_subscriptions(darkroom.runtime.hub, opened)  # the feed is registered before anything happens
        generation = await start_generation(darkroom, model=on_provider.image_model)
        events = [(await first)["data"]["generationEvents"]]
        while not (
            events[-1]["generation"]["status"] == "SUCCEEDED"
            and all(media["status"] == "READY" for media in events[-1]["generation"]["media"])
        ):
            events.append((await feed.__anext__())["data"]["generationEvents"])
        await feed.aclose()
    assert events[0]["type"] == "GENERATION_CREATED"
    assert events[0]["generation"]["id"] == generation["id"]
    assert events[0]["generation"]["status"] == "STARTING"
    assert [event["sequence"] for event in events] == list(range(1, len(events) + 1))
    assert len({event["cursor"] for event in events}) == len(events)
    times = [datetime.fromisoformat(event["at"]) for event in events]
    assert times == sorted(times)


async def test_a_failed_generation_reaches_its_subscriber_with_the_error(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    settings = {"simulator_fail_rate": 1.0, **on_provider.settings}
    async with start_darkroom(**settings) as darkroom, ws_connect(darkroom.base_url) as ws:
        generation = await start_generation(darkroom, "a storm that never renders", model=on_provider.image_model)
        states = [payload["data"]["generation"] async for payload in ws.subscribe(FOLLOW, {"id": generation["id"]})]

    final = states[-1]
    assert final["status"] == "FAILED"
    # fal's word for the end: its status answer's, or its webhook's.
    assert final["providerStatus"] in {"replicate": {"failed"}, "fal": {"COMPLETED", "ERROR"}}[on_provider.name]
    assert final["error"], "the provider's error reaches the client"
    assert final["media"] == []
    assert final["completedAt"]


async def test_text_to_video_ends_in_a_ready_playable_video(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    settings = {"simulator_run_seconds": 1.0, **on_provider.settings}
    async with start_darkroom(**settings) as darkroom, ws_connect(darkroom.base_url) as ws:
        video = {"model": on_provider.video_model, "input": {"prompt": "waves rolling in"}}
        result = await darkroom.query(START, video)
        assert result["data"]["startGeneration"]["userErrors"] == [], result
        generation = result["data"]["startGeneration"]["generation"]
        assert generation["kind"] == "VIDEO"
        states = [payload["data"]["generation"] async for payload in ws.subscribe(FOLLOW, {"id": generation["id"]})]

        final = states[-1]
        assert final["status"] == "SUCCEEDED"
        [video] = final["media"]
        assert video["kind"] == "VIDEO"
        assert video["status"] == "READY"
        assert video["contentType"] == "video/mp4"
        assert video["durationSeconds"] and video["durationSeconds"] > 0
        response = await darkroom.http.get(video["url"])
        assert response.status_code == 200
        assert response.content[4:8] == b"ftyp", "an MP4 container"


CANCEL = """mutation Cancel($id: ID!) {
  cancelGeneration(input: {id: $id}) { generation { status provider providerStatus } userErrors { code } }
}"""


async def test_a_cancel_stops_the_job_at_its_provider(start_darkroom: StartDarkroom, on_provider: ProviderCase) -> None:
    async with start_darkroom(simulator_run_seconds=60.0, **on_provider.settings) as darkroom:
        generation = await start_generation(darkroom, "never finished", model=on_provider.image_model)
        payload = data(await darkroom.query(CANCEL, {"id": generation["id"]}))["cancelGeneration"]
        assert payload["userErrors"] == []
        assert (payload["generation"]["status"], payload["generation"]["provider"]) == ("CANCELED", on_provider.name)
        final = await wait_settled(darkroom, generation["id"])
        assert final["status"] == "CANCELED" and final["media"] == []
