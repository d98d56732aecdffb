"""Image-to-video on a live server: a READY image becomes a video whose generation points back at it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from server.graphql.ids import encode_id
from tests.catalogue.flows import (
    FRAME_FLOW,
    MOTION_SKETCH,
    PIXEL_FORGE,
    SIM,
    STILL_MOTION,
    animate,
    animations_of,
    generation_count,
    ready_image,
)
from tests.support.darkroom import Darkroom
from tests.support.flows import follow, get_generation, start_payload, wait_settled


@pytest.mark.parametrize(("model", "field"), [(STILL_MOTION, "image"), (FRAME_FLOW, "first_frame_image")])
async def test_an_image_becomes_a_video_that_points_back_at_it(darkroom: Darkroom, model: str, field: str) -> None:
    image = await ready_image(darkroom)

    payload = await animate(darkroom, image["id"], model, {"prompt": "slow zoom", "duration": "3"})
    assert payload["userErrors"] == []
    started = payload["generation"]
    assert (started["model"], started["kind"]) == (model, "VIDEO")
    assert started["sourceMedia"] == {"id": image["id"], "kind": "IMAGE", "status": "READY"}
    # Stored explicitly: converted values, the schema's defaults, and our own lasting URL of the image.
    assert started["input"]["duration"] == 3 and started["input"]["prompt"] == "slow zoom"
    assert started["input"][field] == image["url"]

    states = await follow(darkroom, started["id"])
    assert states[-1]["status"] == "SUCCEEDED"
    assert [(m["kind"], m["status"]) for m in states[-1]["media"]] == [("VIDEO", "READY")]

    done = await get_generation(darkroom, started["id"])
    (video,) = done["media"]
    assert video["kind"] == "VIDEO" and video["url"] and video["contentType"].startswith("video/")
    assert done["sourceMedia"]["id"] == image["id"]
    assert await animations_of(darkroom, image["id"]) == [started["id"]]


async def test_without_a_model_the_best_image_to_video_model_is_picked(darkroom: Darkroom) -> None:
    image = await ready_image(darkroom)
    payload = await animate(darkroom, image["id"])
    assert payload["userErrors"] == []
    # The image-to-video collection's most-run model.
    assert payload["generation"]["model"] == STILL_MOTION
    assert payload["generation"]["input"]["image"] == image["url"]
    done = await wait_settled(darkroom, payload["generation"]["id"])
    assert done["status"] == "SUCCEEDED" and done["media"][0]["kind"] == "VIDEO"


async def test_the_default_video_model_setting_comes_first(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(default_video_model=FRAME_FLOW) as darkroom:
        image = await ready_image(darkroom)
        payload = await animate(darkroom, image["id"], input={"prompt": "drift"})
        assert payload["userErrors"] == []
        assert payload["generation"]["model"] == FRAME_FLOW
        assert payload["generation"]["input"]["first_frame_image"] == image["url"]


async def test_a_default_video_model_that_takes_no_image_is_passed_over(
    start_darkroom: Callable[..., Any],
) -> None:
    async with start_darkroom(default_video_model=MOTION_SKETCH) as darkroom:
        image = await ready_image(darkroom)
        payload = await animate(darkroom, image["id"])
        assert payload["userErrors"] == []
        assert payload["generation"]["model"] == STILL_MOTION


async def test_bad_media_are_refused(darkroom: Darkroom) -> None:
    missing = encode_id("Media", uuid.uuid4())
    payload = await animate(darkroom, missing, STILL_MOTION)
    assert payload["generation"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["mediaId"], "NOT_FOUND")]

    clip = await start_payload(darkroom, MOTION_SKETCH, {"prompt": "waves"})
    video = (await wait_settled(darkroom, clip["generation"]["id"]))["media"][0]
    payload = await animate(darkroom, video["id"], STILL_MOTION)
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["mediaId"], "NOT_AN_IMAGE")]

    darkroom.simulator.config.download_failures = 1000
    broken = await start_payload(darkroom, PIXEL_FORGE, {"prompt": "a cat"})
    failed = (await wait_settled(darkroom, broken["generation"]["id"]))["media"][0]
    assert failed["status"] == "FAILED"
    payload = await animate(darkroom, failed["id"], STILL_MOTION)
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["mediaId"], "MEDIA_NOT_READY")]
    assert "READY" in payload["userErrors"][0]["message"]


@pytest.mark.parametrize(
    ("model", "input", "expected"),
    [
        (MOTION_SKETCH, None, [(["model"], "MODEL_TAKES_NO_IMAGE")]),
        (PIXEL_FORGE, None, [(["model"], "NOT_A_VIDEO_MODEL")]),
        ("darkroom-sim/nope", None, [(["model"], "NOT_FOUND")]),
        ("nope", None, [(["model"], "INVALID_MODEL_REF")]),
        (STILL_MOTION, "zoom", [(["input"], "INVALID_INPUT")]),
        (STILL_MOTION, {"image": "https://example.com/x.png"}, [(["input", "image"], "IMAGE_FROM_MEDIA")]),
        (
            STILL_MOTION,
            {"duration": 99, "motion": "spin", "prompt": " ", "fps": 3},
            [
                (["input", "prompt"], "EMPTY_PROMPT"),
                (["input", "motion"], "NOT_IN_ENUM"),
                (["input", "duration"], "OUT_OF_RANGE"),
                (["input", "fps"], "UNKNOWN_FIELD"),
            ],
        ),
    ],
)
async def test_bad_models_and_inputs_are_refused_and_nothing_starts(
    darkroom: Darkroom, model: str, input: Any, expected: list[tuple[list[str], str]]
) -> None:
    image = await ready_image(darkroom)
    before = await generation_count(darkroom)
    created = darkroom.simulator.stats.predictions_created
    payload = await animate(darkroom, image["id"], model, input)
    assert payload["generation"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == expected
    assert all(e["message"] for e in payload["userErrors"])
    assert await generation_count(darkroom) == before
    assert darkroom.simulator.stats.predictions_created == created


async def test_a_missing_media_and_a_bad_model_are_reported_together(darkroom: Darkroom) -> None:
    payload = await animate(darkroom, encode_id("Media", uuid.uuid4()), MOTION_SKETCH)
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["mediaId"], "NOT_FOUND"),
        (["model"], "MODEL_TAKES_NO_IMAGE"),
    ]


# --- real models' required inputs (schemas copied from Replicate: server/simulator/real_schemas) ------------
KLING = f"{SIM}/kling-v1.6-pro"  # requires a prompt; the image goes into start_image
LIVE = f"{SIM}/minimax-video-01-live"  # requires a prompt; the image goes into first_frame_image
SVD = f"{SIM}/stable-video-diffusion"  # requires only its input_image


async def test_a_required_prompt_left_out_is_a_user_error_and_nothing_is_sent(darkroom: Darkroom) -> None:
    image = await ready_image(darkroom)
    before = await generation_count(darkroom)
    created = darkroom.simulator.stats.predictions_created
    for model in (KLING, LIVE):
        payload = await animate(darkroom, image["id"], model, {"duration": 5} if model == KLING else None)
        assert payload["generation"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["input", "prompt"], "REQUIRED")]
        assert "prompt" in payload["userErrors"][0]["message"]
    assert await generation_count(darkroom) == before
    assert darkroom.simulator.stats.predictions_created == created


@pytest.mark.parametrize(("model", "field"), [(KLING, "start_image"), (LIVE, "first_frame_image")])
async def test_a_real_model_animates_once_its_prompt_is_given(darkroom: Darkroom, model: str, field: str) -> None:
    image = await ready_image(darkroom)
    payload = await animate(darkroom, image["id"], model, {"prompt": "she turns and smiles"})
    assert payload["userErrors"] == []
    started = payload["generation"]
    assert started["model"] == model and started["input"][field] == image["url"]
    # Stored with the schema's defaults spelled out, as for any model.
    assert started["input"]["prompt"] == "she turns and smiles"
    assert started["input"]["prompt_optimizer" if model == LIVE else "cfg_scale"] == (True if model == LIVE else 0.5)
    done = await wait_settled(darkroom, started["id"])
    assert done["status"] == "SUCCEEDED" and [m["kind"] for m in done["media"]] == ["VIDEO"]


async def test_the_pick_prefers_models_that_can_run_on_what_was_given(darkroom: Darkroom) -> None:
    catalogue = darkroom.runtime.catalogue
    without = [row.ref for row in await catalogue.image_to_video_models({})]
    with_prompt = [row.ref for row in await catalogue.image_to_video_models({"prompt": "drift"})]
    # Without a prompt, the models requiring one come last; with it, only the collection and runs count.
    runnable = [STILL_MOTION, FRAME_FLOW, SVD]
    assert without[: len(runnable)] == runnable
    assert set(without[len(runnable) :]) == {KLING, LIVE, f"{SIM}/minimax-video-01"}
    assert with_prompt.index(KLING) < with_prompt.index(LIVE) < with_prompt.index(SVD)
    assert with_prompt[-1] == f"{SIM}/minimax-video-01"  # in text-to-video, though it takes a first frame


async def test_a_default_video_model_needing_a_prompt_is_used_once_one_is_given(
    start_darkroom: Callable[..., Any],
) -> None:
    async with start_darkroom(default_video_model=KLING) as darkroom:
        image = await ready_image(darkroom)
        # One click, no prompt: Kling cannot run, so the best model that can is picked.
        payload = await animate(darkroom, image["id"])
        assert payload["userErrors"] == [] and payload["generation"]["model"] == STILL_MOTION
        payload = await animate(darkroom, image["id"], input={"prompt": "slow push in"})
        assert payload["userErrors"] == []
        assert payload["generation"]["model"] == KLING
        assert payload["generation"]["input"]["start_image"] == image["url"]
