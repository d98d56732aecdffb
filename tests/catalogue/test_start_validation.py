"""startGeneration checks its input against the model's schema before anything is created or sent."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from server.db.models import CatalogModel
from tests.catalogue.flows import FRAME_FLOW, MOTION_SKETCH, PIXEL_FORGE, SNAP_STILL, STILL_MOTION, generation_count
from tests.support.darkroom import Darkroom
from tests.support.flows import start_payload, wait_settled


@pytest.mark.parametrize(
    ("model", "input", "expected"),
    [
        (SNAP_STILL, {"prompt": ""}, [(["input", "prompt"], "EMPTY_PROMPT")]),
        (SNAP_STILL, {"prompt": "   "}, [(["input", "prompt"], "EMPTY_PROMPT")]),
        (SNAP_STILL, {}, [(["input", "prompt"], "REQUIRED")]),
        (SNAP_STILL, {"prompt": "a", "aspect": "1:1"}, [(["input", "aspect"], "UNKNOWN_FIELD")]),
        (SNAP_STILL, {"prompt": "a", "aspect_ratio": "5:4"}, [(["input", "aspect_ratio"], "NOT_IN_ENUM")]),
        (SNAP_STILL, {"prompt": "a", "output_quality": 101}, [(["input", "output_quality"], "OUT_OF_RANGE")]),
        (SNAP_STILL, {"prompt": "a", "seed": "lucky"}, [(["input", "seed"], "INVALID_TYPE")]),
        (PIXEL_FORGE, {"prompt": "a", "width": 500}, [(["input", "width"], "INVALID_VALUE")]),
        (PIXEL_FORGE, {"prompt": "a", "scheduler": "euler"}, [(["input", "scheduler"], "NOT_IN_ENUM")]),
        (SNAP_STILL, ["a cat"], [(["input"], "INVALID_INPUT")]),
        (STILL_MOTION, {"image": "cat.png"}, [(["input", "image"], "INVALID_URI")]),
        (STILL_MOTION, {"image": "ftp://example.com/cat.png"}, [(["input", "image"], "INVALID_URI")]),
        (FRAME_FLOW, {"prompt": "drift"}, [(["input", "first_frame_image"], "REQUIRED")]),
        (
            FRAME_FLOW,
            {"first_frame_image": "https://example.com/a.png", "duration": "6"},
            [(["input", "duration"], "OUT_OF_RANGE")],
        ),
        (
            PIXEL_FORGE,
            {"prompt": "\t", "num_outputs": 8, "guidance_scale": "high", "output_format": "gif", "steps": 3},
            [
                (["input", "prompt"], "EMPTY_PROMPT"),
                (["input", "num_outputs"], "OUT_OF_RANGE"),
                (["input", "guidance_scale"], "INVALID_TYPE"),
                (["input", "output_format"], "NOT_IN_ENUM"),
                (["input", "steps"], "UNKNOWN_FIELD"),
            ],
        ),
        ("darkroom-sim/missing", {"prompt": "a"}, [(["model"], "NOT_FOUND")]),
    ],
)
async def test_invalid_input_is_refused_with_every_problem_and_nothing_is_created(
    darkroom: Darkroom, model: str, input: Any, expected: list[tuple[list[str], str]]
) -> None:
    payload = await start_payload(darkroom, model, input)
    assert payload["generation"] is None
    assert [(error["field"], error["code"]) for error in payload["userErrors"]] == expected
    assert all(len(error["message"]) > 10 for error in payload["userErrors"])
    assert await generation_count(darkroom) == 0
    assert darkroom.simulator.stats.predictions_created == 0


async def test_values_are_converted_and_defaults_stored_but_only_the_callers_values_are_sent(
    darkroom: Darkroom,
) -> None:
    given = {"prompt": "a fox", "num_outputs": "2", "guidance_scale": "7.5", "seed": " 42 ", "width": 640.0}
    payload = await start_payload(darkroom, PIXEL_FORGE, given)
    assert payload["userErrors"] == []
    assert payload["generation"]["input"] == {
        "prompt": "a fox",
        "negative_prompt": "",
        "width": 640,
        "height": 512,
        "num_outputs": 2,
        "seed": 42,
        "scheduler": "K_EULER",
        "guidance_scale": 7.5,
        "num_inference_steps": 20,
        "output_format": "webp",
    }
    (prediction,) = darkroom.simulator.engine.predictions.values()
    sent = prediction.input
    assert sent == {"prompt": "a fox", "num_outputs": 2, "guidance_scale": 7.5, "seed": 42, "width": 640}
    assert type(sent["guidance_scale"]) is float and type(sent["width"]) is int
    done = await wait_settled(darkroom, payload["generation"]["id"])
    assert done["status"] == "SUCCEEDED" and len(done["media"]) == 2


async def test_input_is_converted_stored_explicitly_and_secrets_are_not_stored(darkroom: Darkroom) -> None:
    payload = await start_payload(darkroom, MOTION_SKETCH, {"prompt": "waves", "duration": "3", "api_key": "sk-secret"})
    assert payload["userErrors"] == []
    stored = payload["generation"]["input"]
    assert stored == {"prompt": "waves", "duration": 3, "fps": 8, "api_key": "**********"}
    done = await wait_settled(darkroom, payload["generation"]["id"])
    assert done["status"] == "SUCCEEDED"
    assert "sk-secret" not in str(done["input"])


async def test_a_provider_validation_error_comes_back_as_user_errors_and_no_row_remains(
    darkroom: Darkroom,
) -> None:
    # Our cached schema lost its bounds (an older version, say); the provider still enforces them.
    await start_payload(darkroom, SNAP_STILL, {"prompt": "warm the cache"})
    before = await generation_count(darkroom)
    async with darkroom.runtime.sessions.begin() as session:
        row = await session.get(CatalogModel, ("replicate", SNAP_STILL))
        assert row is not None and row.input_schema is not None
        schema = row.input_schema
        schema["properties"]["output_quality"] = {"type": "integer"}
        await session.execute(update(CatalogModel).where(CatalogModel.ref == SNAP_STILL).values(input_schema=schema))

    payload = await start_payload(darkroom, SNAP_STILL, {"prompt": "a fox", "output_quality": 500})
    assert payload["generation"] is None
    assert [(error["field"], error["code"]) for error in payload["userErrors"]] == [
        (["input", "output_quality"], "OUT_OF_RANGE")
    ]
    assert "100" in payload["userErrors"][0]["message"]
    assert await generation_count(darkroom) == before
