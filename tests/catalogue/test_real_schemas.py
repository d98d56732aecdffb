"""The input definitions of seven real Replicate models, as Darkroom reads them.

The schemas are the simulator's copies (server/simulator/real_schemas/*.json, each naming its source:
a Cog predict.py or the version's published schema). On them: the form fields (`Model.inputs`),
validation with conversion, the image input animateImage fills, and which required inputs a caller
leaves out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.provider.model_schema import list_inputs, unmet_requirements
from server.provider.replicate.models import describe_openapi
from server.services.catalogue.validation import check_input
from server.services.errors import FieldError, ServiceError
from server.simulator import catalogue
from tests.catalogue.flows import MODEL
from tests.support.darkroom import Darkroom
from tests.support.graphql import data

URL = "https://example.com/cat.png"
FILES = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in catalogue.real_schema_files()}
SCHEMAS = {
    name: describe_openapi(catalogue.load_real_model(catalogue.REAL_SCHEMAS_DIR / f"{name}.json").openapi_schema())
    for name in FILES
}

# name -> (model on Replicate, collection, image input animateImage fills)
MODELS = {
    "flux-schnell": ("black-forest-labs/flux-schnell", "text-to-image", None),
    "sdxl": ("stability-ai/sdxl", "text-to-image", "image"),
    "wan-2.1-1.3b": ("wan-video/wan-2.1-1.3b", "text-to-video", None),
    "minimax-video-01": ("minimax/video-01", "text-to-video", "first_frame_image"),
    "kling-v1.6-pro": ("kwaivgi/kling-v1.6-pro", "image-to-video", "start_image"),
    "minimax-video-01-live": ("minimax/video-01-live", "image-to-video", "first_frame_image"),
    "stable-video-diffusion": ("stability-ai/stable-video-diffusion", "image-to-video", "input_image"),
}


def test_every_collection_has_two_real_models_and_each_names_its_source() -> None:
    assert set(FILES) == set(MODELS)
    for name, entry in FILES.items():
        ref, kind, _ = MODELS[name]
        assert (entry["model"], entry["kind"], entry["name"]) == (ref, kind, name)
        assert entry["source"].startswith(("https://github.com/replicate/", "https://replicate.com/")), name
    kinds = [kind for _, kind, _ in MODELS.values()]
    assert all(kinds.count(kind) >= 2 for kind in ("text-to-image", "text-to-video", "image-to-video"))
    assert {m.name for m in catalogue.REAL} == set(MODELS)


def _expected_field(entry: dict[str, Any], name: str) -> dict[str, Any]:
    """A form field worked out from the fixture by hand: an allOf $ref names an enum component."""
    prop = entry["input"]["properties"][name]
    refs = [part["$ref"].rsplit("/", 1)[-1] for part in prop.get("allOf", [])]
    enum = entry["enums"][refs[0]] if refs else prop
    return {
        "name": name,
        "type": enum.get("type"),
        "default": prop.get("default"),
        "options": enum.get("enum"),
        "required": name in (entry["input"].get("required") or []),
        "order": prop["x-order"],
    }


@pytest.mark.parametrize("name", sorted(MODELS))
def test_form_fields_follow_the_schema(name: str) -> None:
    entry = FILES[name]
    described = SCHEMAS[name]
    fields = list_inputs(described.input_schema, described.image_field)
    by_order = sorted(entry["input"]["properties"], key=lambda n: entry["input"]["properties"][n]["x-order"])
    assert [f.name for f in fields] == by_order
    for field in fields:
        shown = {k: field.as_dict()[k] for k in ("name", "type", "default", "options", "required", "order")}
        assert shown == _expected_field(entry, field.name)
    assert [f.name for f in fields if f.is_image_input] == ([MODELS[name][2]] if MODELS[name][2] else [])


def test_some_fields_by_hand() -> None:
    flux = {f.name: f for f in list_inputs(SCHEMAS["flux-schnell"].input_schema, None)}
    assert flux["aspect_ratio"].options == [
        "1:1",
        "16:9",
        "21:9",
        "3:2",
        "2:3",
        "4:5",
        "5:4",
        "3:4",
        "4:3",
        "9:16",
        "9:21",
    ]
    assert (flux["num_inference_steps"].minimum, flux["num_inference_steps"].maximum) == (1, 4)
    assert flux["go_fast"].type == "boolean" and flux["go_fast"].default is True
    assert flux["megapixels"].options == ["1", "0.25"]

    sdxl = {f.name: f for f in list_inputs(SCHEMAS["sdxl"].input_schema, "image")}
    assert not sdxl["prompt"].required and sdxl["prompt"].default == "An astronaut riding a rainbow unicorn"
    assert sdxl["scheduler"].default == "K_EULER" and (sdxl["scheduler"].options or [])[0] == "DDIM"
    assert sdxl["mask"].is_file and sdxl["mask"].is_image and not sdxl["mask"].is_image_input

    wan = {f.name: f for f in list_inputs(SCHEMAS["wan-2.1-1.3b"].input_schema, None)}
    assert (wan["frame_num"].type, wan["frame_num"].options, wan["frame_num"].default) == (
        "integer",
        [17, 33, 49, 65, 81],
        81,
    )

    kling = {f.name: f for f in list_inputs(SCHEMAS["kling-v1.6-pro"].input_schema, "start_image")}
    assert kling["reference_images"].type == "array" and kling["reference_images"].item_type == "string"
    assert kling["reference_images"].is_file and not kling["reference_images"].is_image_input
    assert (kling["duration"].type, kling["duration"].options) == ("integer", [5, 10])
    assert (kling["cfg_scale"].minimum, kling["cfg_scale"].maximum, kling["cfg_scale"].default) == (0, 1, 0.5)
    # The last frame is an image too, but not the one to animate.
    assert kling["end_image"].is_image and not kling["end_image"].is_image_input


@pytest.mark.parametrize(("name", "field"), [(name, field) for name, (_, _, field) in MODELS.items()])
def test_the_image_input_animate_fills(name: str, field: str | None) -> None:
    assert SCHEMAS[name].image_field == field


# --- validation with conversion ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "raw", "sent"),
    [
        (
            "flux-schnell",
            {"prompt": "cat", "num_outputs": "4", "go_fast": "false", "output_quality": "90", "seed": "12"},
            {"prompt": "cat", "num_outputs": 4, "go_fast": False, "output_quality": 90, "seed": 12},
        ),
        ("flux-schnell", {"prompt": "cat", "megapixels": 0.25}, {"prompt": "cat", "megapixels": "0.25"}),
        (
            "sdxl",
            {"guidance_scale": "7", "num_inference_steps": "25", "apply_watermark": "no", "width": "768"},
            {"guidance_scale": 7.0, "num_inference_steps": 25, "apply_watermark": False, "width": 768},
        ),
        (
            "wan-2.1-1.3b",
            {"prompt": "x", "frame_num": "49", "sample_shift": "10"},
            {"prompt": "x", "frame_num": 49, "sample_shift": 10.0},
        ),
        ("minimax-video-01", {"prompt": "x", "prompt_optimizer": "false"}, {"prompt": "x", "prompt_optimizer": False}),
        (
            "kling-v1.6-pro",
            {"prompt": "x", "start_image": URL, "duration": "10", "cfg_scale": "0.7", "reference_images": [URL]},
            {"prompt": "x", "start_image": URL, "duration": 10, "cfg_scale": 0.7, "reference_images": [URL]},
        ),
        (
            "minimax-video-01-live",
            {"prompt": "x", "first_frame_image": URL, "prompt_optimizer": "yes"},
            {"prompt": "x", "first_frame_image": URL, "prompt_optimizer": True},
        ),
        (
            "stable-video-diffusion",
            {"input_image": URL, "frames_per_second": "12", "motion_bucket_id": "200", "cond_aug": "0.05"},
            {"input_image": URL, "frames_per_second": 12, "motion_bucket_id": 200, "cond_aug": 0.05},
        ),
    ],
)
def test_values_are_converted_as_the_schema_asks(name: str, raw: dict[str, Any], sent: dict[str, Any]) -> None:
    checked = check_input(SCHEMAS[name].input_schema, raw, model_ref=MODELS[name][0])
    assert checked.given == sent
    assert all(type(checked.given[k]) is type(v) for k, v in sent.items())
    # The stored input spells out every default too.
    defaults = {n: p["default"] for n, p in FILES[name]["input"]["properties"].items() if "default" in p}
    assert checked.stored() == {**defaults, **sent}


def errors_of(name: str, raw: Any) -> list[tuple[list[str] | None, str]]:
    with pytest.raises(ServiceError) as caught:
        check_input(SCHEMAS[name].input_schema, raw, model_ref=MODELS[name][0])
    errors: list[FieldError] = caught.value.errors
    assert all(error.message for error in errors)
    return [(error.field, error.code) for error in errors]


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("flux-schnell", {}, [(["input", "prompt"], "REQUIRED")]),
        (
            "flux-schnell",
            {"prompt": "cat", "num_outputs": 5, "aspect_ratio": "7:5", "num_inference_steps": "8"},
            [
                (["input", "aspect_ratio"], "NOT_IN_ENUM"),
                (["input", "num_outputs"], "OUT_OF_RANGE"),
                (["input", "num_inference_steps"], "OUT_OF_RANGE"),
            ],
        ),
        ("sdxl", {"scheduler": "ddim"}, [(["input", "scheduler"], "NOT_IN_ENUM")]),
        (
            "sdxl",
            {"refine": "nope", "lora_scale": "2", "image": "nope"},
            [
                (["input", "image"], "INVALID_URI"),
                (["input", "refine"], "NOT_IN_ENUM"),
                (["input", "lora_scale"], "OUT_OF_RANGE"),
            ],
        ),
        ("wan-2.1-1.3b", {"prompt": "x", "frame_num": 50}, [(["input", "frame_num"], "NOT_IN_ENUM")]),
        (
            "minimax-video-01",
            {"prompt": "x", "prompt_optimizer": "maybe"},
            [(["input", "prompt_optimizer"], "INVALID_TYPE")],
        ),
        (
            "kling-v1.6-pro",
            {"duration": 7, "cfg_scale": 2},
            [
                (["input", "prompt"], "REQUIRED"),
                (["input", "cfg_scale"], "OUT_OF_RANGE"),
                (["input", "duration"], "NOT_IN_ENUM"),
            ],
        ),
        (
            "minimax-video-01-live",
            {"prompt_optimizer": True},
            [(["input", "prompt"], "REQUIRED"), (["input", "first_frame_image"], "REQUIRED")],
        ),
        (
            "stable-video-diffusion",
            {"input_image": "not a url", "frames_per_second": 60},
            [(["input", "input_image"], "INVALID_URI"), (["input", "frames_per_second"], "OUT_OF_RANGE")],
        ),
    ],
)
def test_bad_inputs_are_reported_field_by_field(name: str, raw: Any, expected: list[tuple[list[str], str]]) -> None:
    assert errors_of(name, raw) == expected


# --- required inputs besides the image -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "given", "unmet"),
    [
        ("kling-v1.6-pro", {}, ["prompt"]),
        ("kling-v1.6-pro", {"prompt": "  "}, ["prompt"]),
        ("kling-v1.6-pro", {"prompt": None}, ["prompt"]),
        ("kling-v1.6-pro", {"prompt": "drift"}, []),
        ("minimax-video-01-live", {}, ["prompt"]),
        ("minimax-video-01", {}, ["prompt"]),
        ("stable-video-diffusion", {}, []),
        ("sdxl", {}, []),  # its prompt has a default
    ],
)
def test_required_inputs_the_caller_leaves_out(name: str, given: dict[str, Any], unmet: list[str]) -> None:
    described = SCHEMAS[name]
    assert unmet_requirements(described.input_schema, given, filled=[described.image_field]) == unmet


def test_without_the_image_filled_it_counts_as_unmet() -> None:
    live = SCHEMAS["minimax-video-01-live"].input_schema
    assert unmet_requirements(live, {}) == ["prompt", "first_frame_image"]


# --- the same over GraphQL, from the simulator's catalogue ---------------------------------------------------
async def test_model_inputs_over_graphql(darkroom: Darkroom) -> None:
    for name, (_, kind, image_field) in MODELS.items():
        found = data(await darkroom.query(MODEL, {"ref": f"darkroom-sim/{name}"}))["model"]
        assert found["kind"] == ("IMAGE" if kind == "text-to-image" else "VIDEO"), name
        assert found["imageInputField"] == image_field, name
        assert found["acceptsImage"] is (image_field is not None), name
        entry = FILES[name]
        assert [field["name"] for field in found["inputs"]] == [
            field.name for field in list_inputs(SCHEMAS[name].input_schema, image_field)
        ]
        for field in found["inputs"]:
            expected = _expected_field(entry, field["name"])
            assert {k: field[k] for k in ("name", "type", "default", "options", "required", "order")} == expected
