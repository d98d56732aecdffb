"""OpenAPI documents shaped like the ones Cog writes, for the pure schema and validation tests."""

from __future__ import annotations

import copy
from typing import Any


def openapi(input_schema: dict[str, Any], **extra_schemas: Any) -> dict[str, Any]:
    """A version's `openapi_schema` around an Input (and any enum components it refers to)."""
    return copy.deepcopy(
        {
            "openapi": "3.0.2",
            "info": {"title": "Cog", "version": "0.1.0"},
            "components": {
                "schemas": {
                    "Input": input_schema,
                    "Output": {
                        "type": "array",
                        "items": {"type": "string", "format": "uri"},
                        "title": "Output",
                    },
                    **extra_schemas,
                }
            },
        }
    )


# An SDXL-like text-to-image model: a $ref enum, numbers with bounds, a mask, a boolean, a secret.
DIFFUSION = openapi(
    {
        "type": "object",
        "title": "Input",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "title": "Prompt", "x-order": 0, "description": "Input prompt"},
            "image": {
                "type": "string",
                "format": "uri",
                "title": "Image",
                "x-order": 2,
                "description": "Input image for img2img or inpaint mode",
            },
            "mask": {
                "type": "string",
                "format": "uri",
                "title": "Mask",
                "x-order": 3,
                "description": "Input mask for inpaint mode. Black areas will be preserved.",
            },
            "width": {"type": "integer", "title": "Width", "default": 1024, "x-order": 4},
            "num_outputs": {
                "type": "integer",
                "title": "Num Outputs",
                "default": 1,
                "minimum": 1,
                "maximum": 4,
                "x-order": 6,
                "description": "Number of images to output.",
            },
            "scheduler": {
                "allOf": [{"$ref": "#/components/schemas/scheduler"}],
                "default": "K_EULER",
                "x-order": 7,
                "description": "scheduler",
            },
            "guidance_scale": {
                "type": "number",
                "title": "Guidance Scale",
                "default": 7.5,
                "minimum": 1,
                "maximum": 50,
                "x-order": 9,
            },
            "prompt_strength": {
                "type": "number",
                "title": "Prompt Strength",
                "default": 0.8,
                "minimum": 0,
                "maximum": 1,
                "x-order": 10,
            },
            "seed": {"type": "integer", "title": "Seed", "x-order": 11},
            "apply_watermark": {
                "type": "boolean",
                "title": "Apply Watermark",
                "default": True,
                "x-order": 13,
            },
            "negative_prompt": {"type": "string", "title": "Negative Prompt", "default": "", "x-order": 1},
            "replicate_weights": {"type": "string", "title": "Replicate Weights", "x-order": 16},
            "hf_token": {
                "type": "string",
                "title": "Hf Token",
                "format": "password",
                "x-cog-secret": True,
                "x-order": 17,
            },
        },
    },
    scheduler={
        "enum": ["DDIM", "DPMSolverMultistep", "HeunDiscrete", "KarrasDPM", "K_EULER_ANCESTRAL", "K_EULER"],
        "type": "string",
        "title": "scheduler",
        "description": "An enumeration.",
    },
)

# A Minimax-like image-to-video model: the image to animate is `first_frame_image`, with a subject reference.
FIRST_FRAME_VIDEO = openapi(
    {
        "type": "object",
        "title": "Input",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "title": "Prompt", "x-order": 0, "description": "Text prompt"},
            "prompt_optimizer": {
                "type": "boolean",
                "title": "Prompt Optimizer",
                "default": True,
                "x-order": 1,
            },
            "first_frame_image": {
                "type": "string",
                "format": "uri",
                "title": "First Frame Image",
                "x-order": 2,
                "description": "First frame image for video generation",
            },
            "subject_reference": {
                "type": "string",
                "format": "uri",
                "title": "Subject Reference",
                "x-order": 3,
                "description": "An optional character reference image to use as the subject",
            },
        },
    }
)

# A Kling-like model: start and end images, an integer enum, nullable and anyOf-optional values.
START_END_VIDEO = openapi(
    {
        "type": "object",
        "title": "Input",
        "required": ["prompt", "start_image"],
        "properties": {
            "prompt": {"type": "string", "title": "Prompt", "x-order": 0},
            "end_image": {
                "type": "string",
                "format": "uri",
                "title": "End Image",
                "x-order": 1,
                "description": "Last frame of the video",
            },
            "start_image": {
                "type": "string",
                "format": "uri",
                "title": "Start Image",
                "x-order": 2,
                "description": "First frame of the video",
            },
            "duration": {
                "allOf": [{"$ref": "#/components/schemas/duration"}],
                "default": 5,
                "x-order": 3,
                "description": "Duration of the video in seconds",
            },
            "cfg_scale": {
                "type": "number",
                "title": "Cfg Scale",
                "default": 0.5,
                "exclusiveMinimum": 0,
                "maximum": 1,
                "x-order": 4,
            },
            "negative_prompt": {"type": "string", "nullable": True, "title": "Negative Prompt", "x-order": 5},
            "seed": {"anyOf": [{"type": "integer"}, {"type": "null"}], "title": "Seed", "x-order": 6},
            "reference_images": {
                "type": "array",
                "items": {"type": "string", "format": "uri"},
                "title": "Reference Images",
                "x-order": 7,
                "description": "Reference images for the subject",
            },
        },
    },
    duration={"enum": [5, 10], "type": "integer", "title": "duration", "description": "An enumeration."},
)
