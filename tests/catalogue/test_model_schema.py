"""Reading versions' OpenAPI schemas: refs, allOf, nullable, the form fields and the image input."""

from __future__ import annotations

from typing import Any

import pytest

from server.provider.model_schema import (
    field_type,
    find_image_field,
    is_file_input,
    is_nullable,
    list_inputs,
    resolve_refs,
)
from server.provider.replicate.models import describe_openapi
from tests.catalogue.schemas import DIFFUSION, FIRST_FRAME_VIDEO, START_END_VIDEO, openapi


def uri(description: str = "", title: str = "") -> dict[str, Any]:
    return {"type": "string", "format": "uri", "description": description, "title": title}


def schema_of(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "title": "Input", "properties": properties, "required": required or []}


# --- $ref and allOf ----------------------------------------------------------------------------------
def test_allof_ref_enum_is_inlined_and_the_property_keeps_its_own_keys() -> None:
    described = describe_openapi(DIFFUSION)
    assert described.input_schema is not None
    scheduler = described.input_schema["properties"]["scheduler"]
    assert "allOf" not in scheduler and "$ref" not in str(scheduler)
    assert scheduler["enum"][0] == "DDIM"
    assert scheduler["type"] == "string"
    assert scheduler["default"] == "K_EULER"
    assert scheduler["x-order"] == 7
    assert scheduler["description"] == "scheduler"  # the property's own, not the component's


@pytest.mark.parametrize(
    ("schema", "document", "expected"),
    [
        (
            {"$ref": "#/components/schemas/a"},
            {"components": {"schemas": {"a": {"type": "integer"}}}},
            {"type": "integer"},
        ),
        # A bare components.schemas mapping serves as the document too.
        ({"$ref": "#/components/schemas/a"}, {"a": {"type": "integer"}}, {"type": "integer"}),
        # Siblings of a $ref win over the target.
        (
            {"$ref": "#/components/schemas/a", "default": 3},
            {"components": {"schemas": {"a": {"type": "integer", "default": 1}}}},
            {"type": "integer", "default": 3},
        ),
        # Refs inside refs.
        (
            {"$ref": "#/components/schemas/a"},
            {"components": {"schemas": {"a": {"allOf": [{"$ref": "#/components/schemas/b"}]}, "b": {"enum": [1]}}}},
            {"enum": [1]},
        ),
        # Several allOf parts are merged; required lists are joined, properties merged.
        (
            {
                "allOf": [
                    {"properties": {"x": {}}, "required": ["x"]},
                    {"properties": {"y": {}}, "required": ["y"]},
                ]
            },
            {},
            {"properties": {"x": {}, "y": {}}, "required": ["x", "y"]},
        ),
        # A ref to nowhere becomes "anything".
        ({"$ref": "#/components/schemas/missing"}, {}, {}),
        ({"$ref": "https://example.com/schema.json"}, {}, {}),
        # A cycle stops instead of recursing forever.
        (
            {"$ref": "#/components/schemas/node"},
            {
                "components": {
                    "schemas": {
                        "node": {
                            "type": "object",
                            "properties": {"next": {"$ref": "#/components/schemas/node"}},
                        }
                    }
                }
            },
            {"type": "object", "properties": {"next": {}}},
        ),
        # JSON pointer escapes.
        ({"$ref": "#/defs/a~1b"}, {"defs": {"a/b": {"type": "string"}}}, {"type": "string"}),
        # Lists and scalars pass through.
        (
            {"anyOf": [{"$ref": "#/d/x"}, {"type": "null"}]},
            {"d": {"x": {"type": "integer"}}},
            {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        ),
    ],
)
def test_resolve_refs(schema: dict[str, Any], document: dict[str, Any], expected: dict[str, Any]) -> None:
    assert resolve_refs(schema, document) == expected


def test_resolving_does_not_change_the_document() -> None:
    document = openapi(schema_of({"s": {"allOf": [{"$ref": "#/components/schemas/e"}]}}), e={"enum": ["a"]})
    before = repr(document)
    describe_openapi(document)
    assert repr(document) == before


def test_a_document_without_input_describes_nothing() -> None:
    documents: list[dict[str, Any] | None] = [
        None,
        {},
        {"components": {}},
        {"components": {"schemas": {"Output": {"type": "string"}}}},
    ]
    for document in documents:
        described = describe_openapi(document)
        assert described.input_schema is None
        assert described.image_field is None
        assert list_inputs(described.input_schema, None) == []


# --- types ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prop", "expected_type", "nullable"),
    [
        ({"type": "integer"}, "integer", False),
        ({"type": "number", "nullable": True}, "number", True),
        ({"type": ["string", "null"]}, "string", True),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "integer", True),
        ({"oneOf": [{"type": "null"}, {"type": "boolean"}]}, "boolean", True),
        ({"enum": [5, 10]}, "integer", False),
        ({"enum": [0.5, 1]}, "number", False),
        ({"enum": ["a", "b"]}, "string", False),
        ({"enum": [True, False]}, "boolean", False),
        ({"format": "uri"}, "string", False),
        ({}, "any", False),
        ({"type": "array", "items": {"type": "string", "format": "uri"}}, "array", False),
    ],
)
def test_field_type_and_nullable(prop: dict[str, Any], expected_type: str, nullable: bool) -> None:
    assert field_type(prop) == expected_type
    assert is_nullable(prop) is nullable


@pytest.mark.parametrize(
    ("prop", "is_file"),
    [
        (uri(), True),
        ({"anyOf": [uri(), {"type": "null"}]}, True),
        ({"type": "array", "items": uri()}, True),
        ({"type": "string"}, False),
        ({"type": "string", "format": "password"}, False),
        ({"type": "array", "items": {"type": "string"}}, False),
    ],
)
def test_file_inputs(prop: dict[str, Any], is_file: bool) -> None:
    assert is_file_input(prop) is is_file


# --- the image to animate ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("properties", "required", "expected"),
    [
        ({"image": uri()}, [], "image"),
        ({"prompt": {"type": "string"}, "first_frame_image": uri("First frame")}, [], "first_frame_image"),
        ({"start_image": uri("First frame of the video"), "end_image": uri("Last frame")}, [], "start_image"),
        ({"end_image": uri("Last frame"), "start_image": uri("First frame")}, [], "start_image"),
        ({"input_image": uri()}, [], "input_image"),
        ({"init_image": uri()}, [], "init_image"),
        ({"startImage": uri()}, [], "startImage"),
        ({"image_url": uri()}, [], "image_url"),
        ({"start_image_url": uri()}, [], "start_image_url"),
        # A name that says nothing, a description that says image.
        ({"input": uri("The picture to animate")}, [], "input"),
        ({"source": uri("Photo to bring to life")}, [], "source"),
        # Not images: masks, last frames, references, control maps, other media, non-URI strings.
        ({"mask": uri("Mask image")}, [], None),
        ({"last_frame_image": uri("Last frame image")}, [], None),
        ({"image_tail": uri("Tail image")}, [], None),
        ({"tail": uri("The end frame of the video")}, [], None),
        ({"subject_reference": uri("A character reference image")}, [], None),
        ({"reference_images": {"type": "array", "items": uri()}}, [], None),
        ({"style_image": uri()}, [], None),
        ({"control_image": uri()}, [], None),
        ({"video": uri("Input video")}, [], None),
        ({"audio": uri("Audio file")}, [], None),
        ({"image": {"type": "string"}}, [], None),
        ({"lora_weights": uri("URL of weights")}, [], None),
        ({}, [], None),
        # Several candidates: a required one beats an optional one, then the image-ish name, then x-order.
        (
            {"image": {**uri(), "x-order": 3}, "first_frame_image": {**uri(), "x-order": 1}},
            ["first_frame_image"],
            "first_frame_image",
        ),
        ({"photo": {**uri(), "x-order": 0}, "image": {**uri(), "x-order": 5}}, [], "image"),
        ({"b_image": {**uri(), "x-order": 2}, "a_image": {**uri(), "x-order": 1}}, [], "a_image"),
        # Nullable image inputs (anyOf with null) still count.
        ({"image": {"anyOf": [uri(), {"type": "null"}]}}, [], "image"),
    ],
)
def test_find_image_field(properties: dict[str, Any], required: list[str], expected: str | None) -> None:
    assert find_image_field(schema_of(properties, required)) == expected


@pytest.mark.parametrize(
    ("document", "expected"),
    [(DIFFUSION, "image"), (FIRST_FRAME_VIDEO, "first_frame_image"), (START_END_VIDEO, "start_image")],
)
def test_image_field_of_real_shaped_schemas(document: dict[str, Any], expected: str) -> None:
    assert describe_openapi(document).image_field == expected


def test_find_image_field_of_nothing() -> None:
    assert find_image_field(None) is None
    assert find_image_field({"type": "object"}) is None
    assert find_image_field({"properties": {"image": "not a schema"}}) is None


# --- the form --------------------------------------------------------------------------------------
def test_inputs_follow_x_order() -> None:
    described = describe_openapi(DIFFUSION)
    names = [field.name for field in list_inputs(described.input_schema, described.image_field)]
    assert names == [
        "prompt",
        "negative_prompt",
        "image",
        "mask",
        "width",
        "num_outputs",
        "scheduler",
        "guidance_scale",
        "prompt_strength",
        "seed",
        "apply_watermark",
        "replicate_weights",
        "hf_token",
    ]


def test_inputs_without_x_order_come_last_as_listed() -> None:
    schema = schema_of({"z": {"type": "string"}, "b": {"type": "string", "x-order": 1}, "a": {"type": "string"}})
    assert [field.name for field in list_inputs(schema, None)] == ["b", "z", "a"]


def test_input_fields_describe_each_property() -> None:
    described = describe_openapi(DIFFUSION)
    fields = {field.name: field for field in list_inputs(described.input_schema, described.image_field)}

    prompt = fields["prompt"]
    assert (prompt.type, prompt.required, prompt.default, prompt.description) == (
        "string",
        True,
        None,
        "Input prompt",
    )

    outputs = fields["num_outputs"]
    assert (outputs.type, outputs.minimum, outputs.maximum, outputs.default, outputs.required) == (
        "integer",
        1,
        4,
        1,
        False,
    )

    scheduler = fields["scheduler"]
    assert scheduler.options is not None and "K_EULER" in scheduler.options
    assert scheduler.type == "string" and scheduler.default == "K_EULER"

    image, mask = fields["image"], fields["mask"]
    assert image.is_file and image.is_image and image.is_image_input and image.format == "uri"
    assert mask.is_file and mask.is_image and not mask.is_image_input

    assert fields["hf_token"].is_secret and not fields["prompt"].is_secret
    assert fields["apply_watermark"].type == "boolean" and fields["apply_watermark"].default is True
    assert fields["guidance_scale"].type == "number"
    assert not fields["seed"].is_file and fields["seed"].default is None


def test_input_fields_of_optional_and_enum_forms() -> None:
    described = describe_openapi(START_END_VIDEO)
    fields = {field.name: field for field in list_inputs(described.input_schema, described.image_field)}
    assert fields["duration"].type == "integer" and fields["duration"].options == [5, 10]
    assert fields["duration"].description == "Duration of the video in seconds"
    assert fields["cfg_scale"].minimum == 0 and fields["cfg_scale"].exclusive_minimum
    assert not fields["cfg_scale"].exclusive_maximum and fields["cfg_scale"].maximum == 1
    assert fields["negative_prompt"].nullable and fields["negative_prompt"].type == "string"
    assert fields["seed"].nullable and fields["seed"].type == "integer"
    assert fields["reference_images"].type == "array" and fields["reference_images"].item_type == "string"
    assert fields["reference_images"].is_file and not fields["reference_images"].is_image_input
    assert fields["start_image"].is_image_input and fields["start_image"].required
    assert not fields["end_image"].is_image_input and fields["end_image"].is_image


def test_the_cog_enum_placeholder_description_is_dropped() -> None:
    schema = resolve_refs(
        {"properties": {"s": {"allOf": [{"$ref": "#/e"}]}}},
        {"e": {"enum": ["a"], "description": "An enumeration."}},
    )
    (field,) = list_inputs(schema, None)
    assert field.description is None
