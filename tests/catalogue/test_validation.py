"""Schema-driven input validation: conversion, defaults, secrets, and every kind of error at once."""

from __future__ import annotations

from typing import Any

import pytest

from server.db.models import CatalogModel
from server.provider.replicate.models import describe_openapi
from server.services.catalogue.validation import SECRET_MASK, check_input, is_fetchable_uri, validate_input
from server.services.errors import FieldError, ServiceError
from tests.catalogue.schemas import DIFFUSION, FIRST_FRAME_VIDEO, START_END_VIDEO

SDXL = describe_openapi(DIFFUSION).input_schema
MINIMAX = describe_openapi(FIRST_FRAME_VIDEO).input_schema
KLING = describe_openapi(START_END_VIDEO).input_schema
URL = "https://example.com/cat.png"


def errors_of(schema: dict[str, Any] | None, raw: Any) -> list[FieldError]:
    with pytest.raises(ServiceError) as caught:
        check_input(schema, raw, model_ref="acme/model")
    return caught.value.errors


# --- conversion driven by the schema ------------------------------------------------------------
@pytest.mark.parametrize(
    ("schema", "given", "expected"),
    [
        (SDXL, {"num_outputs": "4"}, {"num_outputs": 4}),
        (SDXL, {"num_outputs": " 2 "}, {"num_outputs": 2}),
        (SDXL, {"num_outputs": 3.0}, {"num_outputs": 3}),
        (SDXL, {"num_outputs": "2.0"}, {"num_outputs": 2}),
        (SDXL, {"seed": "-7"}, {"seed": -7}),
        (SDXL, {"seed": "1e3"}, {"seed": 1000}),
        (SDXL, {"guidance_scale": "7.5"}, {"guidance_scale": 7.5}),
        (SDXL, {"guidance_scale": "3"}, {"guidance_scale": 3.0}),
        (SDXL, {"guidance_scale": 3}, {"guidance_scale": 3}),
        (SDXL, {"prompt_strength": ".25"}, {"prompt_strength": 0.25}),
        (SDXL, {"apply_watermark": "true"}, {"apply_watermark": True}),
        (SDXL, {"apply_watermark": "False"}, {"apply_watermark": False}),
        (SDXL, {"apply_watermark": "no"}, {"apply_watermark": False}),
        (SDXL, {"apply_watermark": "1"}, {"apply_watermark": True}),
        (SDXL, {"apply_watermark": 0}, {"apply_watermark": False}),
        (SDXL, {"negative_prompt": 42}, {"negative_prompt": "42"}),
        (SDXL, {"negative_prompt": ""}, {"negative_prompt": ""}),
        (SDXL, {"image": f"  {URL} "}, {"image": URL}),
        (
            SDXL,
            {"image": "data:image/png;base64,iVBORw0KGgo="},
            {"image": "data:image/png;base64,iVBORw0KGgo="},
        ),
        (SDXL, {"scheduler": "DDIM"}, {"scheduler": "DDIM"}),
        # A blank number box, a null for a non-nullable input, a blank file box: not given at all.
        (SDXL, {"seed": ""}, {}),
        (SDXL, {"seed": None}, {}),
        (SDXL, {"image": "  "}, {}),
        (SDXL, {"apply_watermark": " "}, {}),
        # Enum values read as text ("10" for 10) and nullable inputs keep their null.
        (KLING, {"duration": "10"}, {"duration": 10}),
        (KLING, {"duration": 10.0}, {"duration": 10}),
        (KLING, {"seed": None}, {"seed": None}),
        (KLING, {"seed": "12"}, {"seed": 12}),
        (KLING, {"negative_prompt": None}, {"negative_prompt": None}),
        (KLING, {"reference_images": [URL, f" {URL}"]}, {"reference_images": [URL, URL]}),
        (KLING, {"cfg_scale": "1"}, {"cfg_scale": 1.0}),
    ],
)
def test_values_are_converted_to_the_schema_type(
    schema: dict[str, Any], given: dict[str, Any], expected: dict[str, Any]
) -> None:
    base = {"prompt": "a cat"} if schema is SDXL else {"prompt": "a cat", "start_image": URL}
    checked = check_input(schema, {**base, **given})
    assert {k: v for k, v in checked.given.items() if k not in base} == expected
    for name, value in expected.items():
        assert type(checked.given[name]) is type(value)


# --- one error of each kind ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "path", "code", "words"),
    [
        ({"prompt": ""}, ["input", "prompt"], "EMPTY_PROMPT", "empty"),
        ({"prompt": "  \n\t "}, ["input", "prompt"], "EMPTY_PROMPT", "empty"),
        ({"prompt": "a cat", "promt": "x"}, ["input", "promt"], "UNKNOWN_FIELD", "did you mean 'prompt'"),
        (
            {"prompt": "a cat", "colour": "red"},
            ["input", "colour"],
            "UNKNOWN_FIELD",
            "no input named 'colour'",
        ),
        ({}, ["input", "prompt"], "REQUIRED", "prompt is required"),
        ({"prompt": None}, ["input", "prompt"], "REQUIRED", "prompt is required"),
        (
            {"prompt": "a", "num_outputs": 5},
            ["input", "num_outputs"],
            "OUT_OF_RANGE",
            "between 1 and 4; got 5",
        ),
        (
            {"prompt": "a", "num_outputs": "0"},
            ["input", "num_outputs"],
            "OUT_OF_RANGE",
            "between 1 and 4; got 0",
        ),
        (
            {"prompt": "a", "guidance_scale": 0.5},
            ["input", "guidance_scale"],
            "OUT_OF_RANGE",
            "between 1 and 50",
        ),
        (
            {"prompt": "a", "prompt_strength": "1.5"},
            ["input", "prompt_strength"],
            "OUT_OF_RANGE",
            "between 0 and 1",
        ),
        ({"prompt": "a", "scheduler": "euler"}, ["input", "scheduler"], "NOT_IN_ENUM", '"DDIM"'),
        ({"prompt": "a", "num_outputs": "four"}, ["input", "num_outputs"], "INVALID_TYPE", "a whole number"),
        (
            {"prompt": "a", "num_outputs": 2.5},
            ["input", "num_outputs"],
            "INVALID_TYPE",
            "a whole number; got 2.5",
        ),
        ({"prompt": "a", "num_outputs": True}, ["input", "num_outputs"], "INVALID_TYPE", "a whole number"),
        ({"prompt": "a", "guidance_scale": "lots"}, ["input", "guidance_scale"], "INVALID_TYPE", "a number"),
        ({"prompt": "a", "guidance_scale": "nan"}, ["input", "guidance_scale"], "INVALID_TYPE", "a number"),
        (
            {"prompt": "a", "apply_watermark": "maybe"},
            ["input", "apply_watermark"],
            "INVALID_TYPE",
            "true or false",
        ),
        (
            {"prompt": "a", "apply_watermark": 2},
            ["input", "apply_watermark"],
            "INVALID_TYPE",
            "true or false",
        ),
        ({"prompt": ["a"]}, ["input", "prompt"], "INVALID_TYPE", "text"),
        ({"prompt": "a", "image": "cat.png"}, ["input", "image"], "INVALID_URI", "URL"),
        ({"prompt": "a", "image": "ftp://example.com/x.png"}, ["input", "image"], "INVALID_URI", "http"),
        ({"prompt": "a", "image": "file:///etc/passwd"}, ["input", "image"], "INVALID_URI", "URL"),
        ({"prompt": "a", "image": "https://"}, ["input", "image"], "INVALID_URI", "URL"),
        ({"prompt": "a", "image": "data:nonsense"}, ["input", "image"], "INVALID_URI", "URL"),
        ({"prompt": "a", "image": 5}, ["input", "image"], "INVALID_TYPE", "text"),
    ],
)
def test_each_problem_has_its_path_code_and_sentence(
    given: dict[str, Any], path: list[str], code: str, words: str
) -> None:
    errors = errors_of(SDXL, given)
    assert [(e.field, e.code) for e in errors] == [(path, code)]
    assert words in errors[0].message


@pytest.mark.parametrize(
    ("given", "path", "code", "words"),
    [
        (
            {"prompt": "a", "start_image": URL, "duration": 7},
            ["input", "duration"],
            "NOT_IN_ENUM",
            "5, 10; got 7",
        ),
        (
            {"prompt": "a", "start_image": URL, "cfg_scale": 0},
            ["input", "cfg_scale"],
            "OUT_OF_RANGE",
            "greater than 0",
        ),
        (
            {"prompt": "a", "start_image": URL, "seed": "x"},
            ["input", "seed"],
            "INVALID_TYPE",
            "a whole number",
        ),
        (
            {"prompt": "a", "start_image": URL, "reference_images": [URL, "nope"]},
            ["input", "reference_images", "1"],
            "INVALID_URI",
            "URL",
        ),
        (
            {"prompt": "a", "start_image": URL, "reference_images": URL},
            ["input", "reference_images"],
            "INVALID_TYPE",
            "a list",
        ),
        ({"prompt": "a"}, ["input", "start_image"], "REQUIRED", "start_image is required"),
    ],
)
def test_problems_with_enums_exclusive_bounds_nullables_and_lists(
    given: dict[str, Any], path: list[str], code: str, words: str
) -> None:
    errors = errors_of(KLING, given)
    assert [(e.field, e.code) for e in errors] == [(path, code)]
    assert words in errors[0].message


def test_every_problem_is_reported_at_once_in_form_order() -> None:
    errors = errors_of(
        SDXL,
        {
            "prompt": " ",
            "image": "not a url",
            "num_outputs": 9,
            "scheduler": "nope",
            "guidance_scale": "x",
            "apply_watermark": "perhaps",
            "promt": "typo",
        },
    )
    assert [(e.field, e.code) for e in errors] == [
        (["input", "prompt"], "EMPTY_PROMPT"),
        (["input", "image"], "INVALID_URI"),
        (["input", "num_outputs"], "OUT_OF_RANGE"),
        (["input", "scheduler"], "NOT_IN_ENUM"),
        (["input", "guidance_scale"], "INVALID_TYPE"),
        (["input", "apply_watermark"], "INVALID_TYPE"),
        (["input", "promt"], "UNKNOWN_FIELD"),
    ]
    assert len({e.code for e in errors}) == 6


@pytest.mark.parametrize("raw", [None, [], "prompt", 5, True])
def test_input_must_be_an_object(raw: Any) -> None:
    errors = errors_of(SDXL, raw)
    assert [(e.field, e.code) for e in errors] == [(["input"], "INVALID_INPUT")]


# --- defaults, secrets and what is sent -------------------------------------------------------
def test_defaults_are_stored_but_not_sent() -> None:
    checked = check_input(SDXL, {"prompt": "a cat", "num_outputs": "2"})
    assert checked.given == {"prompt": "a cat", "num_outputs": 2}
    assert checked.explicit == {
        "prompt": "a cat",
        "negative_prompt": "",
        "width": 1024,
        "num_outputs": 2,
        "scheduler": "K_EULER",
        "guidance_scale": 7.5,
        "prompt_strength": 0.8,
        "apply_watermark": True,
    }
    # Stored in form order, so a generation's input reads like the model's form.
    assert list(checked.explicit)[:4] == ["prompt", "negative_prompt", "width", "num_outputs"]


def test_a_required_input_with_a_default_is_not_missing() -> None:
    schema = {
        "type": "object",
        "required": ["steps"],
        "properties": {"steps": {"type": "integer", "default": 4, "minimum": 1}},
    }
    assert check_input(schema, {}).explicit == {"steps": 4}


def test_secrets_are_sent_but_never_stored() -> None:
    checked = check_input(SDXL, {"prompt": "a cat", "hf_token": "hf_abc"})
    assert checked.given["hf_token"] == "hf_abc"
    assert checked.explicit["hf_token"] == "hf_abc"
    assert checked.stored()["hf_token"] == SECRET_MASK
    assert "hf_token" not in check_input(SDXL, {"prompt": "a cat"}).stored()


def test_a_schema_that_allows_more_keeps_unknown_fields() -> None:
    schema = {"type": "object", "additionalProperties": True, "properties": {"prompt": {"type": "string"}}}
    assert check_input(schema, {"prompt": "x", "extra": 1}).given == {"prompt": "x", "extra": 1}


def test_without_a_schema_only_the_prompt_is_checked() -> None:
    assert check_input(None, {"prompt": "x", "anything": [1]}).given == {"prompt": "x", "anything": [1]}
    assert [e.code for e in errors_of(None, {"prompt": "  "})] == ["EMPTY_PROMPT"]
    assert [e.code for e in errors_of({"type": "object"}, "text")] == ["INVALID_INPUT"]


def test_image_to_video_inputs() -> None:
    assert check_input(MINIMAX, {"prompt": "waves", "first_frame_image": URL}).given["first_frame_image"] == URL
    errors = errors_of(MINIMAX, {"prompt": "waves", "first_frame_image": "/media/x.png"})
    assert [(e.field, e.code) for e in errors] == [(["input", "first_frame_image"], "INVALID_URI")]


def test_validate_input_reads_the_models_schema() -> None:
    model = CatalogModel(ref="acme/sdxl", owner="acme", name="sdxl", kind="IMAGE", input_schema=SDXL)
    assert validate_input(model, {"prompt": "a cat"})["scheduler"] == "K_EULER"
    with pytest.raises(ServiceError) as caught:
        validate_input(model, {"prompt": "a cat", "sheduler": "DDIM"})
    assert caught.value.errors[0].message == "acme/sdxl has no input named 'sheduler'; did you mean 'scheduler'?"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://example.com/a.png", True),
        ("http://127.0.0.1:8000/media/ab/cd.png", True),
        ("HTTPS://EXAMPLE.COM/A.PNG", True),
        ("data:image/png;base64,AAAA", True),
        ("data:image/jpeg,abc", True),
        ("data:,abc", False),
        ("https://exa mple.com/a.png", False),
        ("example.com/a.png", False),
        ("mailto:someone@example.com", False),
        ("", False),
    ],
)
def test_fetchable_uris(value: str, ok: bool) -> None:
    assert is_fetchable_uri(value) is ok


@pytest.mark.parametrize(
    ("prop", "value", "code", "message"),
    [
        (
            {"type": "integer", "multipleOf": 64},
            500,
            "INVALID_VALUE",
            "side must be a multiple of 64; got 500",
        ),
        ({"type": "string", "minLength": 3}, "ab", "INVALID_LENGTH", "side must have at least 3 characters"),
        (
            {"type": "string", "pattern": "^[a-z]+$"},
            "AB",
            "INVALID_FORMAT",
            "side does not have the expected format",
        ),
        ({"type": "array", "maxItems": 1}, [1, 2], "INVALID_LENGTH", "side must have at most 1 items"),
        ({"type": "integer", "minimum": 0}, -1, "OUT_OF_RANGE", "side must be at least 0; got -1"),
        ({"type": "integer", "maximum": 9}, 10, "OUT_OF_RANGE", "side must be at most 9; got 10"),
        ({"type": "number", "exclusiveMaximum": 1}, 1, "OUT_OF_RANGE", "side must be less than 1; got 1"),
        # OpenAPI 3.0's boolean exclusives.
        ({"type": "number", "minimum": 0, "exclusiveMinimum": True}, 0, "OUT_OF_RANGE", "greater than 0"),
        ({"type": "number", "maximum": 1, "exclusiveMaximum": False}, 1, None, None),
        ({"type": "string", "const": "x"}, "y", "NOT_IN_ENUM", 'side must be one of "x"; got "y"'),
        ({"type": "object"}, "x", "INVALID_TYPE", "side must be a JSON object"),
        ({"type": "object"}, {"a": 1}, None, None),
        ({}, [1, {"a": None}], None, None),
    ],
)
def test_other_schema_keywords(prop: dict[str, Any], value: Any, code: str | None, message: str | None) -> None:
    schema = {"type": "object", "properties": {"side": prop}}
    if code is None:
        assert check_input(schema, {"side": value}).given == {"side": value}
        return
    (error,) = errors_of(schema, {"side": value})
    assert (error.field, error.code) == (["input", "side"], code)
    assert message is not None and message in error.message
