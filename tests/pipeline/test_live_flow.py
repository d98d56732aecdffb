"""End to end on the embedded default: a mutation, a live subscription, and downloaded media."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime

from tests.support.darkroom import Darkroom
from tests.support.flows import FOLLOW, START, VIDEO_MODEL, start_generation
from tests.support.graphql import ws_connect
from tests.support.waiting import new_subscriptions

FEED = """subscription Feed($after: String) {
  generationEvents(after: $after) { cursor sequence type at generation { id status progress media { status url } } }
}"""


async def test_a_subscriber_sees_every_step_and_gets_working_media(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(simulator_run_seconds=2.0) as darkroom:
        async with ws_connect(darkroom.base_url) as ws:
            generation = await start_generation(darkroom, "a red fox in snow", num_outputs=2, output_format="png")
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


async def test_the_event_feed_follows_a_generation_from_creation(darkroom: Darkroom) -> None:
    async with ws_connect(darkroom.base_url) as ws:
        opened = darkroom.runtime.hub.subscriptions_opened
        feed = ws.subscribe(FEED)
        first = asyncio.ensure_future(feed.__anext__())
        await new_subscriptions(darkroom.runtime.hub, opened)  # the feed is registered before anything happens
        generation = await start_generation(darkroom)
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


async def test_a_failed_generation_reaches_its_subscriber_with_the_error(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(simulator_fail_rate=1.0) as darkroom, ws_connect(darkroom.base_url) as ws:
        generation = await start_generation(darkroom, "a storm that never renders")
        states = [payload["data"]["generation"] async for payload in ws.subscribe(FOLLOW, {"id": generation["id"]})]

    final = states[-1]
    assert final["status"] == "FAILED"
    assert final["providerStatus"] == "failed"
    assert final["error"], "the provider's error reaches the client"
    assert final["media"] == []
    assert final["completedAt"]


async def test_text_to_video_ends_in_a_ready_playable_video(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(simulator_run_seconds=1.0) as darkroom, ws_connect(darkroom.base_url) as ws:
        result = await darkroom.query(START, {"model": VIDEO_MODEL, "input": {"prompt": "waves rolling in"}})
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
