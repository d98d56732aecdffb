"""The caller's metadata on a create, over real HTTP: stored and returned as given, carried by every event of the
generation (through each provider update, on PostgreSQL's one-statement path too), filterable by top-level
keys on both databases, and refused before anything is created when it is no object or too large."""

from __future__ import annotations

import json
from typing import Any

from tests.ops.support import row_counts
from tests.support.creates import PROMPT, START, creates, start, upload
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL, wait_settled
from tests.support.graphql import data, ws_connect
from tests.uploads.support import png

ORDER = {"orderId": "A-17", "count": 3, "vip": True, "tags": ["a", "b"], "nested": {"x": 1}}

GENERATIONS = """
query Generations($metadata: JSON) {
  generations(first: 50, filter: {metadata: $metadata}) { edges { node { id metadata } } }
}
"""

MEDIA = """
query Media($metadata: JSON) { media(first: 50, filter: {metadata: $metadata}) { edges { node { id metadata } } } }
"""

JSON_HEADERS = {"Content-Type": "application/json"}

FEED = """
subscription Feed($after: String) {
  generationEvents(after: $after) { type generation { id status metadata } }
}
"""


async def matching(darkroom: Darkroom, metadata: Any, query: str = GENERATIONS) -> list[str]:
    response = await darkroom.query(query, {"metadata": metadata})
    connection = data(response)["generations" if query is GENERATIONS else "media"]
    return sorted(edge["node"]["id"] for edge in connection["edges"])


async def test_metadata_is_stored_returned_and_carried_by_every_event(darkroom: Darkroom) -> None:
    cursor = data(await darkroom.query("{ feedCursor }"))["feedCursor"]
    started = await start(darkroom, None, metadata=ORDER)
    assert started["userErrors"] == [], started
    generation = started["generation"]
    assert generation["metadata"] == ORDER

    node = data(await darkroom.query("query($id: ID!) { generation(id: $id) { metadata } }", {"id": generation["id"]}))
    assert node["generation"]["metadata"] == ORDER

    # Every event, from the creation through each provider update to the end, carries it.
    async with ws_connect(darkroom.base_url) as client:
        events = []
        async for payload in client.subscribe(FEED, {"after": cursor}):
            events.append(data(payload)["generationEvents"])
            if events[-1]["generation"]["status"] == "SUCCEEDED":
                break
    assert events[0]["type"] == "GENERATION_CREATED"
    assert len(events) > 2, events
    assert all(event["generation"]["metadata"] == ORDER for event in events), events


async def test_generations_and_media_are_filtered_by_metadata(darkroom: Darkroom) -> None:
    first = (await start(darkroom, None, metadata=ORDER))["generation"]["id"]
    second = (await start(darkroom, None, metadata={"orderId": "A-18", "count": 3.0, "vip": False}))["generation"]["id"]
    text = (await start(darkroom, None, metadata={"count": "3", "vip": "true"}))["generation"]["id"]
    bare = (await start(darkroom, None))["generation"]["id"]
    odd_keys = {"order id.v[0]": "two\nlines", "é": "ü", 'say "hi"\\': "ok"}
    odd = (await start(darkroom, None, metadata=odd_keys))["generation"]["id"]

    assert await matching(darkroom, {"orderId": "A-17"}) == [first]
    assert await matching(darkroom, {"count": 3}) == sorted([first, second])
    assert await matching(darkroom, {"count": 3.0}) == sorted([first, second])
    assert await matching(darkroom, {"count": "3"}) == [text]
    assert await matching(darkroom, {"vip": True}) == [first]
    assert await matching(darkroom, {"vip": False}) == [second]
    assert await matching(darkroom, {"vip": "true"}) == [text]
    assert await matching(darkroom, {"orderId": "A-17", "vip": False}) == []
    assert await matching(darkroom, {"missing": "x"}) == []
    assert await matching(darkroom, odd_keys) == [odd]
    assert await matching(darkroom, {"é": "ü"}) == [odd]
    assert await matching(darkroom, {}) == sorted([first, second, text, bare, odd])
    assert await matching(darkroom, None) == sorted([first, second, text, bare, odd])

    media = await upload(darkroom, png(20, 20), None, metadata={"album": "holiday", "year": 2026})
    await upload(darkroom, png(21, 21), None, metadata={"album": "work"})
    assert media["userErrors"] == [] and media["media"]["metadata"] == {"album": "holiday", "year": 2026}
    assert await matching(darkroom, {"album": "holiday"}, MEDIA) == [media["media"]["id"]]
    assert await matching(darkroom, {"year": 2026}, MEDIA) == [media["media"]["id"]]


async def test_a_filter_that_is_no_object_of_scalars_is_a_clear_graphql_error(darkroom: Darkroom) -> None:
    for refused in (
        ["orderId"],
        "orderId",
        3,
        {"nested": {"x": 1}},
        {"list": [1]},
        {"none": None},
        {"": "x"},
        {"nul": "a\u0000"},
    ):
        response = await darkroom.query(GENERATIONS, {"metadata": refused})
        assert response["data"] is None, response
        [error] = response["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert "filter.metadata" in error["message"], error


async def test_metadata_that_is_no_object_or_too_large_is_refused_before_anything_is_created(
    darkroom: Darkroom,
) -> None:
    too_large = {"note": "x" * 4100}
    for refused in ([1, 2], "text", 3, too_large, {"nul": "a\u0000b"}):
        payload = await start(darkroom, "same-key", metadata=refused)
        assert payload["generation"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
            ("INVALID_METADATA", ["input", "metadata"])
        ], refused
    assert "4096" in (await start(darkroom, None, metadata=too_large))["userErrors"][0]["message"]
    # A lone surrogate, which only an escape in the JSON body can carry (it is no UTF-8).
    body = {"query": START, "variables": {"model": IMAGE_MODEL, "input": PROMPT, "metadata": {"half": "\ud800"}}}
    response = await darkroom.http.post("/graphql", content=json.dumps(body), headers=JSON_HEADERS)
    [error] = data(response.json())["startGeneration"]["userErrors"]
    assert (error["code"], error["field"]) == ("INVALID_METADATA", ["input", "metadata"])
    refused_upload = await upload(darkroom, png(), "upload-key", metadata=["not", "an", "object"])
    assert [e["code"] for e in refused_upload["userErrors"]] == ["INVALID_METADATA"]

    assert creates(darkroom) == 0
    counts = await row_counts(darkroom)
    assert (counts["generations"], counts["media"], counts["events"]) == (0, 0, 0)
    # Just within the limit is taken, and the refused calls left the key free.
    within = {"note": "x" * (4096 - len('{"note":""}'))}
    assert (await start(darkroom, "same-key", metadata=within))["userErrors"] == []


async def test_the_metadata_limit_is_a_setting(start_darkroom: Any) -> None:
    async with start_darkroom(metadata_max_bytes=20) as darkroom:
        refused = await start(darkroom, None, metadata={"note": "x" * 20})
        assert [e["code"] for e in refused["userErrors"]] == ["INVALID_METADATA"]
        taken = data(await darkroom.query(START, {"model": "darkroom-sim/pixel-forge", "input": {"prompt": "p"}}))
        assert taken["startGeneration"]["userErrors"] == []


async def test_an_animation_keeps_its_own_metadata(darkroom: Darkroom) -> None:
    image = await upload(darkroom, png(24, 24), None, metadata={"album": "holiday"})
    animate = """
    mutation($mediaId: ID!, $metadata: JSON) {
      animateImage(input: {mediaId: $mediaId, input: {prompt: "slow zoom"}, metadata: $metadata}) {
        generation { id metadata sourceMedia { metadata } }
        userErrors { code }
      }
    }
    """
    variables = {"mediaId": image["media"]["id"], "metadata": {"shot": 2}}
    payload = data(await darkroom.query(animate, variables))["animateImage"]
    assert payload["userErrors"] == []
    assert payload["generation"]["metadata"] == {"shot": 2}
    assert payload["generation"]["sourceMedia"]["metadata"] == {"album": "holiday"}
    assert await matching(darkroom, {"shot": 2}) == [payload["generation"]["id"]]
    # Settled before the server stops, so no fetch of the image or download is cut short at shutdown.
    assert (await wait_settled(darkroom, payload["generation"]["id"]))["status"] == "SUCCEEDED"
