"""Each generation and media row belongs to the key that made it; no other key sees it, or learns it exists."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from server.db.models import Generation, Media
from server.graphql.ids import decode_id, encode_id
from server.graphql.pagination import encode_cursor
from tests.auth.support import KeyClient, bearer, init, new_key, operation_messages, raw_socket
from tests.support.darkroom import Darkroom
from tests.support.flows import FOLLOW, start_generation, wait_settled
from tests.support.graphql import data, ws_connect
from tests.support.waiting import new_subscriptions

LISTS = """
query($generationId: ID) {
  generations(first: 50) { edges { node { id } } }
  media(first: 50, filter: {generationId: $generationId}) { edges { node { id } } }
}
"""
BY_ID = """
query($generation: ID!, $media: ID!) {
  generation(id: $generation) { id }
  asNode: node(id: $generation) { id }
  mediaNode: node(id: $media) { id }
}
"""
CANCEL = "mutation($id: ID!) { cancelGeneration(input: {id: $id}) { generation { id } userErrors { field code } } }"
RETRY = "mutation($id: ID!) { retryDownload(input: {mediaId: $id}) { media { id } userErrors { field code } } }"
DELETE = "mutation($id: ID!) { deleteMedia(input: {mediaId: $id}) { deletedMediaId userErrors { field code } } }"
ANIMATE = """mutation($id: ID!) {
  animateImage(input: {mediaId: $id, model: "darkroom-sim/still-motion", input: {prompt: "drift"}}) {
    generation { id } userErrors { field code }
  }
}"""
FEED = "subscription { generationEvents { type generation { id } } }"


def global_id(type_name: str) -> str:
    return encode_id(type_name, uuid.uuid4())


async def mutate(client: KeyClient, document: str, object_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = next(iter(data(await client.query(document, {"id": object_id})).values()))
    return payload


async def test_another_key_neither_sees_nor_touches_a_generation_or_its_media(darkroom: Darkroom) -> None:
    alice = await new_key(darkroom, "alice")
    bob = await new_key(darkroom, "bob")
    made = await start_generation(alice)
    generation = await wait_settled(alice, made["id"])
    media_id = generation["media"][0]["id"]

    mine = data(await alice.query(LISTS, {"generationId": generation["id"]}))
    assert [edge["node"]["id"] for edge in mine["generations"]["edges"]] == [generation["id"]]
    assert media_id in [edge["node"]["id"] for edge in mine["media"]["edges"]]
    assert data(await bob.query(LISTS, {"generationId": generation["id"]})) == {
        "generations": {"edges": []},
        "media": {"edges": []},
    }
    assert data(await bob.query(BY_ID, {"generation": generation["id"], "media": media_id})) == {
        "generation": None,
        "asNode": None,
        "mediaNode": None,
    }

    # Every mutation answers exactly as it does for an id that does not exist.
    for document, object_id, missing in [
        (CANCEL, generation["id"], global_id("Generation")),
        (RETRY, media_id, global_id("Media")),
        (DELETE, media_id, global_id("Media")),
        (ANIMATE, media_id, global_id("Media")),
    ]:
        refused = await mutate(bob, document, object_id)
        assert refused["userErrors"] and refused["userErrors"][0]["code"] == "NOT_FOUND", refused
        assert refused == await mutate(bob, document, missing)

    # ...and nothing of Alice's changed; she herself is answered about her own rows.
    assert (await mutate(alice, CANCEL, generation["id"]))["userErrors"][0]["code"] == "ALREADY_FINISHED"
    async with darkroom.runtime.sessions() as session:
        row = await session.get(Generation, decode_id(generation["id"], "Generation"))
        media = await session.get(Media, decode_id(media_id, "Media"))
    assert row is not None and media is not None and media.status == "READY"
    assert row.owner_id is not None and media.owner_id == row.owner_id


async def test_a_subscription_to_another_keys_generation_receives_nothing(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(simulator_run_seconds=1.5) as darkroom:
        alice = await new_key(darkroom, "alice")
        bob = await new_key(darkroom, "bob")
        async with (
            ws_connect(darkroom.base_url, payload=bearer(alice.token)) as alice_ws,
            ws_connect(darkroom.base_url, payload=bearer(bob.token)) as bob_ws,
        ):
            opened = darkroom.runtime.hub.subscriptions_opened
            alice_feed = alice_ws.subscribe(FEED)
            bob_feed = bob_ws.subscribe(FEED)
            alice_first = asyncio.ensure_future(alice_feed.__anext__())
            bob_first = asyncio.ensure_future(bob_feed.__anext__())
            await new_subscriptions(darkroom.runtime.hub, opened, 2)  # both feeds are live
            hers = await start_generation(alice)

            # Bob following Alice's running generation is told what a random id tells him: not found.
            async with raw_socket(darkroom.base_url) as socket:
                assert (await init(socket, bearer(bob.token)))["type"] == "connection_ack"
                followed = await operation_messages(socket, FOLLOW, {"id": hers["id"]})
                made_up = await operation_messages(socket, FOLLOW, {"id": global_id("Generation")}, op_id="2")
            assert followed[0]["type"] in ("next", "error") and "NOT_FOUND" in str(followed)
            assert [{**m, "id": "1"} for m in made_up] == followed
            assert hers["id"] not in str(followed)

            await wait_settled(alice, hers["id"])
            first_for_alice = (await alice_first)["data"]["generationEvents"]
            assert first_for_alice["generation"]["id"] == hers["id"]
            # Bob's feed stayed silent through all of Alice's events: the first thing it gets is his own.
            assert not bob_first.done()
            his = await start_generation(bob)
            first_for_bob = (await asyncio.wait_for(bob_first, 20))["data"]["generationEvents"]
            assert first_for_bob == {"type": "GENERATION_CREATED", "generation": {"id": his["id"]}}
            await alice_feed.aclose()
            await bob_feed.aclose()


async def test_a_resumed_feed_replays_only_the_callers_events(darkroom: Darkroom) -> None:
    alice = await new_key(darkroom, "alice")
    bob = await new_key(darkroom, "bob")
    his = await start_generation(bob)
    hers = await start_generation(alice)
    await wait_settled(alice, hers["id"])
    events = (await wait_settled(bob, his["id"]))["sequence"]
    start = encode_cursor("event", 0)
    replay = "subscription($after: String) { generationEvents(after: $after) { sequence generation { id } } }"
    async with ws_connect(darkroom.base_url, payload=bearer(bob.token)) as ws:
        feed = ws.subscribe(replay, {"after": start})
        seen = [(await feed.__anext__())["data"]["generationEvents"] for _ in range(events)]
        await feed.aclose()
    # Alice's events, interleaved with Bob's in the log, are skipped: Bob gets his own, in order.
    assert [event["generation"]["id"] for event in seen] == [his["id"]] * events
    assert [event["sequence"] for event in seen] == list(range(1, events + 1))
