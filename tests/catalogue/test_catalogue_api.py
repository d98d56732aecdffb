"""The catalogue over GraphQL on a live server, with the simulator playing the provider.

Listing per kind, paging, model(ref), search (the provider's and the cache's), cache hits, and a
provider outage served from the cache, marked stale, then refreshed once the provider is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from server.provider.replicate.client import ReplicateClient
from tests.catalogue.flows import (
    FRAME_FLOW,
    MODEL,
    MODELS,
    MOTION_SKETCH,
    PIXEL_FORGE,
    SNAP_STILL,
    STILL_MOTION,
    models,
    provider_down,
)
from tests.support.darkroom import Darkroom
from tests.support.graphql import data
from tests.support.waiting import eventually

# Copies of real Replicate models' schemas (server/simulator/real_schemas).
REAL_IMAGE = ["darkroom-sim/flux-schnell", "darkroom-sim/sdxl"]
REAL_VIDEO = [
    "darkroom-sim/kling-v1.6-pro",
    "darkroom-sim/minimax-video-01",
    "darkroom-sim/minimax-video-01-live",
    "darkroom-sim/stable-video-diffusion",
    "darkroom-sim/wan-2.1-1.3b",
]
# The simulated models that show live progress: previews while running, and a cold boot.
PREVIEW_IMAGE = "darkroom-sim/preview-image"
SLOW_BOOT_VIDEO = "darkroom-sim/slow-boot-video"
IMAGE_MODELS = sorted([PIXEL_FORGE, PREVIEW_IMAGE, SNAP_STILL, *REAL_IMAGE])
VIDEO_MODELS = sorted([FRAME_FLOW, MOTION_SKETCH, SLOW_BOOT_VIDEO, STILL_MOTION, *REAL_VIDEO])
ALL = sorted(IMAGE_MODELS + VIDEO_MODELS)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (None, ALL),
        ("IMAGE", IMAGE_MODELS),
        ("VIDEO", VIDEO_MODELS),
    ],
)
async def test_models_lists_the_collections_by_kind(darkroom: Darkroom, kind: str | None, expected: list[str]) -> None:
    found = await models(darkroom, kind=kind)
    assert [model["ref"] for model in found] == expected
    assert all(not model["stale"] for model in found)


async def test_models_describe_their_inputs_and_image_field(darkroom: Darkroom) -> None:
    by_ref = {model["ref"]: model for model in await models(darkroom)}

    still, frame = by_ref[STILL_MOTION], by_ref[FRAME_FLOW]
    assert (still["acceptsImage"], still["imageInputField"]) == (True, "image")
    assert (frame["acceptsImage"], frame["imageInputField"]) == (True, "first_frame_image")
    assert still["collections"] == ["image-to-video"] and still["kind"] == "VIDEO"
    frame_inputs = {field["name"]: field for field in frame["inputs"]}
    assert frame_inputs["first_frame_image"]["isImageInput"] and frame_inputs["first_frame_image"]["required"]
    assert frame_inputs["first_frame_image"]["isFile"] and frame_inputs["first_frame_image"]["format"] == "uri"

    forge = by_ref[PIXEL_FORGE]
    assert (forge["acceptsImage"], forge["imageInputField"], forge["kind"]) == (False, None, "IMAGE")
    assert [field["name"] for field in forge["inputs"]] == [
        "prompt",
        "negative_prompt",
        "width",
        "height",
        "num_outputs",
        "seed",
        "scheduler",
        "guidance_scale",
        "num_inference_steps",
        "output_format",
    ]
    inputs = {field["name"]: field for field in forge["inputs"]}
    assert inputs["num_outputs"] | {"options": None} == inputs["num_outputs"]
    assert (
        inputs["num_outputs"]["type"],
        inputs["num_outputs"]["minimum"],
        inputs["num_outputs"]["maximum"],
    ) == (
        "integer",
        1,
        4,
    )
    assert inputs["num_outputs"]["default"] == 1 and not inputs["num_outputs"]["required"]
    assert inputs["prompt"]["required"] and inputs["prompt"]["type"] == "string"
    # The old-style enum ({"allOf": [{"$ref": ...}]}) is resolved, in the form and in the schema.
    assert inputs["scheduler"]["options"][0] == "DDIM" and inputs["scheduler"]["default"] == "K_EULER"
    scheduler = forge["inputSchema"]["properties"]["scheduler"]
    assert "allOf" not in scheduler and scheduler["enum"][0] == "DDIM"
    assert inputs["output_format"]["options"] == ["png", "webp", "jpg"]

    sketch = {field["name"]: field for field in by_ref[MOTION_SKETCH]["inputs"]}
    assert sketch["api_key"]["isSecret"] and not sketch["prompt"]["isSecret"]
    assert by_ref[MOTION_SKETCH]["acceptsImage"] is False


async def test_models_pages_follow_the_cursor(darkroom: Darkroom) -> None:
    seen: list[str] = []
    after = None
    for _ in range(len(ALL)):
        page = data(await darkroom.query(MODELS, {"first": 2, "after": after}))["models"]
        seen += [edge["node"]["ref"] for edge in page["edges"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert seen == ALL


async def test_model_by_ref(darkroom: Darkroom) -> None:
    found = data(await darkroom.query(MODEL, {"ref": FRAME_FLOW}))["model"]
    assert found["ref"] == FRAME_FLOW and found["imageInputField"] == "first_frame_image"
    assert found["versionId"] and len(found["versionId"]) == 64
    for missing in ("darkroom-sim/no-such-model", "not a ref", "a/b/c", "owner/name:version"):
        assert data(await darkroom.query(MODEL, {"ref": missing}))["model"] is None, missing


async def test_model_by_ref_before_any_listing_fetches_it(darkroom: Darkroom) -> None:
    found = data(await darkroom.query(MODEL, {"ref": STILL_MOTION}))["model"]
    assert (found["kind"], found["imageInputField"], found["stale"]) == ("VIDEO", "image", False)


@pytest.mark.parametrize(
    ("search", "kind", "expected"),
    [
        # Found by the cache filter (ref or description)...
        ("frame", None, [FRAME_FLOW]),
        ("single picture", None, [SNAP_STILL]),
        ("simulated", "IMAGE", [PIXEL_FORGE, PREVIEW_IMAGE, SNAP_STILL]),
        # ...and only by the provider's search (a tag), merged into the cache.
        ("animation", None, [STILL_MOTION]),
        ("batch", "IMAGE", [PIXEL_FORGE]),
        ("batch", "VIDEO", []),
        ("nothing-matches-this", None, []),
    ],
)
async def test_search(darkroom: Darkroom, search: str, kind: str | None, expected: list[str]) -> None:
    assert [model["ref"] for model in await models(darkroom, search=search, kind=kind)] == expected


async def test_search_with_the_provider_down_filters_the_cache(darkroom: Darkroom) -> None:
    await models(darkroom)  # fill the cache
    async with provider_down(darkroom):
        assert [model["ref"] for model in await models(darkroom, search="frame")] == [FRAME_FLOW]
        # A tag only the provider's search knows: the cache alone cannot find it.
        assert await models(darkroom, search="animation") == []


async def test_a_fresh_cache_is_served_without_asking_the_provider(darkroom: Darkroom) -> None:
    first = {model["ref"]: model["fetchedAt"] for model in await models(darkroom)}
    async with provider_down(darkroom):
        again = {model["ref"]: model for model in await models(darkroom)}
        assert {ref: model["fetchedAt"] for ref, model in again.items()} == first
        assert not any(model["stale"] for model in again.values())
        found = data(await darkroom.query(MODEL, {"ref": FRAME_FLOW}))["model"]
        assert found["fetchedAt"] == first[FRAME_FLOW]


async def test_stale_cache_is_served_while_the_provider_is_down_then_refreshed(
    start_darkroom: Callable[..., Any],
) -> None:
    # Long enough that a whole refresh on a busy machine still reads as fresh right after it.
    ttl = 2.0
    async with start_darkroom(catalogue_ttl_seconds=ttl) as darkroom:
        assert darkroom.runtime.catalogue.ttl_seconds == ttl, "CATALOGUE_TTL_SECONDS must reach the catalogue"
        first = {model["ref"]: model["fetchedAt"] for model in await models(darkroom)}
        async with provider_down(darkroom):
            await asyncio.sleep(ttl + 0.2)
            stale = await models(darkroom)
            assert [model["ref"] for model in stale] == ALL
            assert all(model["stale"] for model in stale)
            assert {model["ref"]: model["fetchedAt"] for model in stale} == first
            # The background refresh fails; the next reads still answer from the cache, no error.
            await asyncio.sleep(0.3)
            assert all(model["stale"] for model in await models(darkroom, kind="VIDEO"))
            found = data(await darkroom.query(MODEL, {"ref": STILL_MOTION}))["model"]
            assert found["stale"] and found["imageInputField"] == "image"

        async def refreshed() -> bool:
            current = await models(darkroom)
            return all(not model["stale"] and model["fetchedAt"] != first[model["ref"]] for model in current)

        await eventually(refreshed, timeout=20, interval=0.2)


class HeldCollection:
    """The provider's client, but reading one collection waits until the test opens the gate."""

    def __init__(self, client: Any, slug: str) -> None:
        self._client = client
        self._slug = slug
        self.asked = asyncio.Event()
        self.gate = asyncio.Event()

    async def get_collection(self, slug: str) -> dict[str, Any]:
        if slug == self._slug:
            self.asked.set()
            await self.gate.wait()
        body: dict[str, Any] = await self._client.get_collection(slug)
        return body

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def test_a_listing_during_the_first_fill_waits_for_all_of_it(darkroom: Darkroom) -> None:
    # A page opened twice in a row asks twice while the empty cache fills: the second must not get the
    # models stored so far (the images only) as if they were the whole catalogue.
    held = HeldCollection(darkroom.replicate.client, "text-to-video")
    darkroom.replicate.client = cast(ReplicateClient, held)
    first = asyncio.create_task(models(darkroom))
    await asyncio.wait_for(held.asked.wait(), timeout=20)  # the fill is under way
    second = asyncio.create_task(models(darkroom))
    try:
        # With the fill held, nothing lets the second listing answer; one that did would show here.
        answered, _ = await asyncio.wait({second}, timeout=0.5)
        assert not answered, "a listing during the first fill answered before the fill ended"
    finally:
        held.gate.set()  # the fill ends either way, so the server can stop
    assert [model["ref"] for model in await first] == ALL
    assert [model["ref"] for model in await second] == ALL


async def test_an_empty_cache_with_the_provider_down_is_an_error(darkroom: Darkroom) -> None:
    async with provider_down(darkroom):
        response = await darkroom.query(MODELS, {})
    assert response["errors"][0]["extensions"]["code"] == "CATALOGUE_UNAVAILABLE"
    assert [model["ref"] for model in await models(darkroom)] == ALL
