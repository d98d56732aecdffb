"""A Darkroom Media ID wherever a model takes a file (`format: uri`), and uploadMedia -> animateImage -> a READY
video, over real HTTP. The stored input names Darkroom's lasting URL; the provider gets one it can fetch."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from server.db.models import CatalogModel
from server.graphql.ids import encode_id
from tests.auth.support import bearer, new_key
from tests.catalogue.flows import ANIMATIONS, FRAME_FLOW, PIXEL_FORGE, STILL_MOTION, animate
from tests.catalogue.test_image_delivery import sent_input
from tests.support.darkroom import Darkroom
from tests.support.flows import START, start_payload, wait_settled
from tests.support.graphql import data
from tests.support.providers import ProviderCase, StartDarkroom
from tests.uploads.support import png, upload_response, uploaded


def refusals(payload: dict[str, Any]) -> list[tuple[list[str], str]]:
    assert payload["generation"] is None
    return [(error["field"], error["code"]) for error in payload["userErrors"]]


async def test_an_uploaded_image_is_animated_into_a_ready_video(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    async with start_darkroom(**on_provider.settings) as darkroom:
        image = await uploaded(darkroom, png(80, 60), "portrait.png")
        payload = await animate(darkroom, image["id"], on_provider.animate_model, input={"prompt": "slow zoom"})
        assert payload["userErrors"] == [], payload
        started = payload["generation"]
        assert started["sourceMedia"] == {"id": image["id"], "kind": "IMAGE", "status": "READY"}
        field = on_provider.animate_field
        assert started["input"][field] == image["url"]
        assert sent_input(on_provider.simulator(darkroom))[field] == image["url"]

        done = await wait_settled(darkroom, started["id"])
        assert done["status"] == "SUCCEEDED", done
        (video,) = done["media"]
        assert (video["kind"], video["status"]) == ("VIDEO", "READY")
        assert video["contentType"].startswith("video/") and video["url"]
        assert (await darkroom.http.get(video["url"])).status_code == 200
        node = data(await darkroom.query(ANIMATIONS, {"id": image["id"]}))["node"]
        assert node["animations"] == [{"id": started["id"], "sourceMedia": {"id": image["id"]}}]


@pytest.mark.parametrize(("model", "field"), [(STILL_MOTION, "image"), (FRAME_FLOW, "first_frame_image")])
async def test_a_media_id_is_a_file_input_of_start_generation(darkroom: Darkroom, model: str, field: str) -> None:
    image = await uploaded(darkroom)
    payload = await start_payload(darkroom, model, {field: f"  {image['id']} ", "prompt": "drift"})
    assert payload["userErrors"] == [], payload
    assert payload["generation"]["input"][field] == image["url"]
    assert sent_input(darkroom.simulator)[field] == image["url"]
    done = await wait_settled(darkroom, payload["generation"]["id"])
    assert done["status"] == "SUCCEEDED" and done["media"][0]["kind"] == "VIDEO"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_provider_that_cannot_reach_darkroom_gets_an_upload_of_the_media(
    start_darkroom: StartDarkroom, on_provider: ProviderCase
) -> None:
    async with on_provider.behind_a_separate_simulator(start_darkroom) as (darkroom, simulator):
        content, field = png(32, 32), on_provider.animate_field
        image = await uploaded(darkroom, content)
        payload = await start_payload(darkroom, on_provider.animate_model, {field: image["id"], "prompt": "drift"})
        assert payload["userErrors"] == [], payload
        assert payload["generation"]["input"][field] == image["url"], "the record keeps Darkroom's lasting URL"
        (upload,) = simulator.files.uploads.values()
        assert upload.content == content
        sent = sent_input(simulator)[field]
        assert sent != image["url"] and not sent.startswith(darkroom.base_url)
        done = await wait_settled(darkroom, payload["generation"]["id"])
        assert done["status"] == "SUCCEEDED", done


async def test_media_ids_that_name_nothing_usable_are_user_errors_at_their_path(darkroom: Darkroom) -> None:
    alice, bob = await new_key(darkroom, "alice"), await new_key(darkroom, "bob")
    response = await upload_response(darkroom, png(), headers=bearer(alice.token))
    alices = response.json()["data"]["uploadMedia"]["media"]["id"]

    async def start(client: Any, model: str, input: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = data(await client.query(START, {"model": model, "input": input}))
        return dict(result["startGeneration"])

    # Another key's media, and media that never existed: not found, at the input's path.
    assert refusals(await start(bob, STILL_MOTION, {"image": alices})) == [(["input", "image"], "NOT_FOUND")]
    missing = encode_id("Media", uuid.uuid4())
    assert refusals(await start(alice, FRAME_FLOW, {"first_frame_image": missing})) == [
        (["input", "first_frame_image"], "NOT_FOUND")
    ]
    # An ID of something else is not a URL.
    generation = encode_id("Generation", uuid.uuid4())
    assert refusals(await start(alice, STILL_MOTION, {"image": generation})) == [(["input", "image"], "INVALID_URI")]

    # Media that is not READY: its download failed.
    darkroom.simulator.config.download_failures = 1000
    broken = await start(alice, PIXEL_FORGE, {"prompt": "a cat"})
    failed = (await wait_settled(alice, broken["generation"]["id"]))["media"][0]
    assert failed["status"] == "FAILED"
    assert refusals(await start(alice, STILL_MOTION, {"image": failed["id"]})) == [
        (["input", "image"], "MEDIA_NOT_READY")
    ]
    # animateImage fills its image from mediaId; an ID there too is refused like a URL would be.
    payload = await animate_as(alice, alices, {"image": alices})
    assert refusals(payload) == [(["input", "image"], "IMAGE_FROM_MEDIA")]


async def animate_as(client: Any, media_id: str, input: dict[str, Any]) -> dict[str, Any]:
    mutation = """mutation($id: ID!, $input: JSON) {
      animateImage(input: {mediaId: $id, model: "darkroom-sim/still-motion", input: $input}) {
        generation { id } userErrors { field code }
      }
    }"""
    result: dict[str, Any] = data(await client.query(mutation, {"id": media_id, "input": input}))
    return dict(result["animateImage"])


# A model with a list of files and a second image beside the one animateImage fills, as some real ones have.
REFERENCES_MODEL = "test-owner/reference-motion"
REFERENCES_SCHEMA = {
    "type": "object",
    "properties": {
        "first_frame_image": {"type": "string", "format": "uri", "title": "First Frame Image", "x-order": 0},
        "last_frame_image": {"type": "string", "format": "uri", "title": "Last Frame Image", "x-order": 1},
        "reference_images": {
            "type": "array",
            "items": {"type": "string", "format": "uri"},
            "title": "Reference Images",
            "x-order": 2,
        },
        "prompt": {"type": "string", "title": "Prompt", "x-order": 3},
    },
    "required": ["first_frame_image"],
}


async def cache_references_model(darkroom: Darkroom) -> None:
    """Put the model straight into the catalogue cache (fresh, so it is served from there)."""
    async with darkroom.runtime.sessions.begin() as session:
        session.add(
            CatalogModel(
                provider="replicate",
                ref=REFERENCES_MODEL,
                owner="test-owner",
                name="reference-motion",
                kind="VIDEO",
                collections=["image-to-video"],
                version_id="v-references",
                input_schema=REFERENCES_SCHEMA,
                accepts_image=True,
                image_input_field="first_frame_image",
            )
        )


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_media_ids_in_a_list_and_beside_animate_images_own_are_resolved(darkroom: Darkroom) -> None:
    await cache_references_model(darkroom)
    first, last, reference = [await uploaded(darkroom, png(8 + n, 8)) for n in range(3)]
    missing = encode_id("Media", uuid.uuid4())

    # Every unusable ID is named at its own path, list index included, and nothing is sent.
    bad = {"last_frame_image": missing, "reference_images": [reference["id"], missing, "https://example.com/a.png"]}
    payload = await animate(darkroom, first["id"], REFERENCES_MODEL, bad)
    assert refusals(payload) == [
        (["input", "last_frame_image"], "NOT_FOUND"),
        (["input", "reference_images", "1"], "NOT_FOUND"),
    ]

    # Good IDs pass: resolved to URLs, the input validates, and only then does the simulator, which has no
    # such model, refuse it.
    good = {"last_frame_image": last["id"], "reference_images": [reference["id"], "https://example.com/a.png"]}
    payload = await animate(darkroom, first["id"], REFERENCES_MODEL, good)
    assert refusals(payload) == [(["model"], "INVALID_VERSION")]
