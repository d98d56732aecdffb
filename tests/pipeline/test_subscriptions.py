"""Subscriptions over real WebSockets: resuming, both protocols, keep-alive, and dropped sockets."""

from __future__ import annotations

import asyncio
import json

import websockets

from tests.support.darkroom import Darkroom
from tests.support.flows import FOLLOW, get_generation, start_generation, wait_settled
from tests.support.graphql import ws_connect
from tests.support.waiting import eventually, new_subscriptions

FEED = """subscription Feed($after: String) {
  generationEvents(after: $after) { cursor sequence type generation { id status } }
}"""


async def test_a_resumed_feed_replays_what_it_missed_once_then_goes_live(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(simulator_run_seconds=1.5) as darkroom:
        received: list[dict] = []
        async with ws_connect(darkroom.base_url) as ws:
            opened = darkroom.runtime.hub.subscriptions_opened
            feed = ws.subscribe(FEED)
            first = asyncio.ensure_future(feed.__anext__())
            await new_subscriptions(darkroom.runtime.hub, opened)
            generation = await start_generation(darkroom)
            received.append((await first)["data"]["generationEvents"])
            received.append((await feed.__anext__())["data"]["generationEvents"])
            ws.socket.transport.abort()  # no close frame: the way a phone loses its network
        cursor = received[-1]["cursor"]

        # While nobody listens, the generation finishes.
        await wait_settled(darkroom, generation["id"])
        total = (await get_generation(darkroom, generation["id"]))["sequence"]

        async with ws_connect(darkroom.base_url) as ws:
            feed = ws.subscribe(FEED, {"after": cursor})
            replayed = [(await feed.__anext__())["data"]["generationEvents"] for _ in range(total - 2)]
            # ...and it goes on live after the replay.
            second = await start_generation(darkroom, "a second one")
            live = (await feed.__anext__())["data"]["generationEvents"]
            await feed.aclose()
        sequences = [event["sequence"] for event in received + replayed]
        assert sequences == list(range(1, total + 1)), "every event exactly once, in order"
        assert replayed[-1]["generation"]["status"] == "SUCCEEDED"
        assert live["generation"]["id"] == second["id"] and live["type"] == "GENERATION_CREATED"


async def test_subscribing_to_a_settled_generation_sends_its_state_and_completes(darkroom: Darkroom) -> None:
    generation = await start_generation(darkroom)
    await wait_settled(darkroom, generation["id"])
    async with ws_connect(darkroom.base_url) as ws:
        states = [p["data"]["generation"] async for p in ws.subscribe(FOLLOW, {"id": generation["id"]})]
    assert len(states) == 1 and states[0]["status"] == "SUCCEEDED"


async def test_the_legacy_graphql_ws_protocol_works(darkroom: Darkroom) -> None:
    generation = await start_generation(darkroom)
    url = darkroom.base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-ws"]) as socket:  # type: ignore[list-item]
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "start",
                    "payload": {"query": FOLLOW, "variables": {"id": generation["id"]}},
                }
            )
        )
        statuses = []
        while True:
            message = json.loads(await asyncio.wait_for(socket.recv(), 30))
            if message["type"] == "ka":
                continue
            if message["type"] == "complete":
                break
            assert message["type"] == "data", message
            statuses.append(message["payload"]["data"]["generation"]["status"])
    assert statuses[-1] == "SUCCEEDED"


async def test_the_server_keeps_idle_sockets_alive(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(graphql_keep_alive_seconds=0.2) as darkroom, ws_connect(darkroom.base_url) as ws:
        message = json.loads(await asyncio.wait_for(ws.socket.recv(), 5))
        assert message["type"] == "ping"


async def test_an_abruptly_dropped_socket_leaks_no_subscription(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(simulator_run_seconds=30) as darkroom:
        hub = darkroom.runtime.hub
        generation = await start_generation(darkroom)
        # Counted once the provider's first word has come back: the start's own requests are over.
        await eventually(lambda: _status_is(darkroom, generation["id"], "PROCESSING"))
        baseline_subscribers = hub.subscriber_count
        baseline_tasks = len(asyncio.all_tasks())
        for _ in range(5):
            async with ws_connect(darkroom.base_url) as ws:
                feed = ws.subscribe(FOLLOW, {"id": generation["id"]})
                await feed.__anext__()
                await ws.socket.send(json.dumps({"id": "x", "type": "subscribe", "payload": {"query": FEED}}))
                await eventually(lambda: hub.subscriber_count >= baseline_subscribers + 2)
                ws.socket.transport.abort()
                await feed.aclose()
        await eventually(lambda: hub.subscriber_count == baseline_subscribers, timeout=10)
        await eventually(lambda: len(asyncio.all_tasks()) <= baseline_tasks + 1, timeout=10)


async def _status_is(darkroom: Darkroom, generation_id: str, status: str) -> bool:
    return (await get_generation(darkroom, generation_id))["status"] == status


async def test_a_feed_started_from_feed_cursor_misses_nothing_since_it_was_read(darkroom: Darkroom) -> None:
    """Read feedCursor, query, subscribe later: what happened in between still arrives, first."""
    cursor = (await darkroom.query("{ feedCursor }"))["data"]["feedCursor"]
    generation = await start_generation(darkroom)  # while no feed is open
    async with ws_connect(darkroom.base_url) as ws:
        feed = ws.subscribe(FEED, {"after": cursor})
        first = (await feed.__anext__())["data"]["generationEvents"]
        await feed.aclose()
    assert first["type"] == "GENERATION_CREATED"
    assert first["generation"]["id"] == generation["id"]
    assert (await darkroom.query("{ feedCursor }"))["data"]["feedCursor"] != cursor
