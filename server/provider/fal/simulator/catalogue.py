"""The fal simulator's endpoints: their inputs (as fal's endpoint types list them), their per-endpoint
OpenAPI documents (the 3.0 shape fal serves at ``/api/openapi/queue/openapi.json``) and their entries in
the model listing (``GET /v1/models``).

Each endpoint carries a `server.simulator.catalogue.CatalogueModel` for the shared engine (what it
renders, the picture input it animates, its input properties with their defaults); only the JSON here
is fal's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from server.simulator.catalogue import CatalogueModel, Kind, Renders

IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
OPENAPI_VERSION = "3.0.4"


def _prompt() -> dict[str, Any]:
    return {
        "title": "Prompt",
        "type": "string",
        "description": "The prompt to generate from.",
        "examples": ["a lighthouse at dusk, oil painting"],
    }


def _flux_properties(steps_default: int, steps_max: int) -> dict[str, dict[str, Any]]:
    return {
        "prompt": _prompt(),
        "image_size": {
            "title": "Image Size",
            "description": "The size of the generated image.",
            "default": "landscape_4_3",
            "anyOf": [
                {"$ref": "#/components/schemas/ImageSize"},
                {"type": "string", "enum": list(IMAGE_SIZES)},
            ],
        },
        "num_inference_steps": {
            "title": "Num Inference Steps",
            "type": "integer",
            "minimum": 1,
            "maximum": steps_max,
            "default": steps_default,
            "description": "The number of inference steps to perform.",
        },
        "seed": {"title": "Seed", "type": "integer", "description": "The same seed gives the same image."},
        "num_images": {
            "title": "Num Images",
            "type": "integer",
            "minimum": 1,
            "maximum": 4,
            "default": 1,
            "description": "The number of images to generate.",
        },
        "output_format": {
            "title": "Output Format",
            "type": "string",
            "enum": ["jpeg", "png"],
            "default": "jpeg",
            "description": "The format of the generated image.",
        },
        "sync_mode": {
            "title": "Sync Mode",
            "type": "boolean",
            "default": False,
            "description": "Return the images as data URIs instead of files.",
        },
    }


def _kling_properties(*, with_image: bool) -> dict[str, dict[str, Any]]:
    properties: dict[str, dict[str, Any]] = {"prompt": _prompt()}
    if with_image:
        properties["image_url"] = {
            "title": "Image Url",
            "type": "string",
            "description": "URL of the image to be used for the video.",
        }
    properties["duration"] = {
        "title": "Duration",
        "type": "string",
        "enum": ["5", "10"],
        "default": "5",
        "description": "The duration of the generated video in seconds.",
    }
    if not with_image:
        properties["aspect_ratio"] = {
            "title": "Aspect Ratio",
            "type": "string",
            "enum": ["16:9", "9:16", "1:1"],
            "default": "16:9",
            "description": "The aspect ratio of the generated video frame.",
        }
    properties["negative_prompt"] = {
        "title": "Negative Prompt",
        "type": "string",
        "default": "blur, distort, and low quality",
        "maxLength": 2500,
    }
    properties["cfg_scale"] = {
        "title": "Cfg Scale",
        "type": "number",
        "minimum": 0,
        "maximum": 1,
        "default": 0.5,
        "description": "How close the model sticks to the prompt.",
    }
    return properties


_IMAGE_OUTPUT = {
    "title": "Output",
    "type": "object",
    "required": ["images", "timings", "seed", "has_nsfw_concepts", "prompt"],
    "properties": {
        "images": {"title": "Images", "type": "array", "items": {"$ref": "#/components/schemas/Image"}},
        "timings": {"title": "Timings", "type": "object", "additionalProperties": {"type": "number"}},
        "seed": {"title": "Seed", "type": "integer"},
        "has_nsfw_concepts": {"title": "Has Nsfw Concepts", "type": "array", "items": {"type": "boolean"}},
        "prompt": {"title": "Prompt", "type": "string"},
    },
}
_VIDEO_OUTPUT = {
    "title": "Output",
    "type": "object",
    "required": ["video"],
    "properties": {"video": {"$ref": "#/components/schemas/File"}},
}
_SHARED_SCHEMAS: dict[str, dict[str, Any]] = {
    "ImageSize": {
        "title": "ImageSize",
        "type": "object",
        "properties": {
            "width": {"title": "Width", "type": "integer", "minimum": 1, "maximum": 14142, "default": 512},
            "height": {"title": "Height", "type": "integer", "minimum": 1, "maximum": 14142, "default": 512},
        },
    },
    "Image": {
        "title": "Image",
        "type": "object",
        "required": ["url", "width", "height", "content_type"],
        "properties": {
            "url": {"title": "Url", "type": "string"},
            "width": {"title": "Width", "type": "integer"},
            "height": {"title": "Height", "type": "integer"},
            "content_type": {"title": "Content Type", "type": "string", "default": "image/jpeg"},
        },
    },
    "File": {
        "title": "File",
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"title": "Url", "type": "string"},
            "content_type": {"title": "Content Type", "type": "string"},
            "file_name": {"title": "File Name", "type": "string"},
            "file_size": {"title": "File Size", "type": "integer"},
        },
    },
    "QueueStatus": {
        "type": "object",
        "required": ["status", "request_id"],
        "properties": {
            "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
            "request_id": {"type": "string", "description": "The request id."},
            "response_url": {"type": "string", "description": "The response url."},
            "status_url": {"type": "string", "description": "The status url."},
            "cancel_url": {"type": "string", "description": "The cancel url."},
            "logs": {"type": "object", "description": "The logs.", "additionalProperties": True},
            "metrics": {"type": "object", "description": "The metrics.", "additionalProperties": True},
            "queue_position": {"type": "integer", "description": "The queue position."},
        },
    },
}


@dataclass(frozen=True)
class FalEndpoint:
    """One simulated fal endpoint: its id, category, display name, inputs and output shape."""

    endpoint_id: str
    category: Kind
    display_name: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    output: dict[str, Any]
    tags: tuple[str, ...] = ()

    @property
    def renders(self) -> Renders:
        return "images" if self.category == "text-to-image" else "video"

    @property
    def image_field(self) -> str | None:
        return "image_url" if "image_url" in self.properties else None

    @property
    def pascal(self) -> str:
        """fal's schema name stem: "fal-ai/flux/schnell" → "FluxSchnell"."""
        words = [w for part in self.endpoint_id.split("/")[1:] for w in part.replace(".", "").split("-")]
        return "".join(word[:1].upper() + word[1:] for word in words if word)

    @property
    def app_id(self) -> str:
        """owner/app, where the queue keeps the endpoint's requests."""
        return "/".join(self.endpoint_id.split("/")[:2])

    def input_schema(self) -> dict[str, Any]:
        return {
            "title": f"{self.pascal}Input",
            "type": "object",
            "x-fal-order-properties": list(self.properties),
            "required": list(self.required),
            "properties": copy.deepcopy(self.properties),
        }

    @cached_property
    def engine_model(self) -> CatalogueModel:
        """What the shared engine runs: the renderer's view of this endpoint."""
        return CatalogueModel(
            name=self.endpoint_id,
            kind=self.category,
            renders=self.renders,
            description=self.description,
            run_count=0,
            properties=self.properties,
            required=self.required,
            output=self.output,
            example_input={},
            tags=self.tags,
            image_field=self.image_field,
        )

    def openapi(self, queue_base_url: str, thumbnail_url: str) -> dict[str, Any]:
        """The per-endpoint OpenAPI document, as fal serves it for the queue."""
        schemas = {
            **copy.deepcopy(_SHARED_SCHEMAS),
            f"{self.pascal}Input": self.input_schema(),
            f"{self.pascal}Output": {**copy.deepcopy(self.output), "title": f"{self.pascal}Output"},
        }
        request_id = {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
        json_of = lambda name: {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}  # noqa: E731
        base = f"/{self.endpoint_id}"
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "Queue OpenAPI for " + self.endpoint_id,
                "version": "1.0.0",
                "description": self.description,
                "x-fal-metadata": {
                    "endpointId": self.endpoint_id,
                    "category": self.category,
                    "thumbnailUrl": thumbnail_url,
                    "playgroundUrl": f"https://fal.ai/models/{self.endpoint_id}",
                    "documentationUrl": f"https://fal.ai/models/{self.endpoint_id}/api",
                },
            },
            "components": {
                "securitySchemes": {
                    "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Fal Key"}
                },
                "schemas": schemas,
            },
            "paths": {
                f"{base}/requests/{{request_id}}/status": {
                    "get": {
                        "parameters": [
                            request_id,
                            {
                                "name": "logs",
                                "in": "query",
                                "required": False,
                                "schema": {"type": "number"},
                                "description": "Whether to include logs (`1`) in the response or not (`0`).",
                            },
                        ],
                        "responses": {"200": {"description": "The request status.", "content": json_of("QueueStatus")}},
                    }
                },
                f"{base}/requests/{{request_id}}/cancel": {
                    "put": {
                        "parameters": [request_id],
                        "responses": {
                            "200": {
                                "description": "The request was cancelled.",
                                "content": {
                                    "application/json": {
                                        "schema": {
                                            "type": "object",
                                            "properties": {"success": {"type": "boolean"}},
                                        }
                                    }
                                },
                            }
                        },
                    }
                },
                base: {
                    "post": {
                        "requestBody": {"required": True, "content": json_of(f"{self.pascal}Input")},
                        "responses": {"200": {"description": "The request status.", "content": json_of("QueueStatus")}},
                    }
                },
                f"{base}/requests/{{request_id}}": {
                    "get": {
                        "parameters": [request_id],
                        "responses": {
                            "200": {"description": "Result of the request.", "content": json_of(f"{self.pascal}Output")}
                        },
                    }
                },
            },
            "servers": [{"url": queue_base_url}],
            "security": [{"apiKeyAuth": []}],
        }

    def listing(self, queue_base_url: str, thumbnail_url: str, *, with_openapi: bool) -> dict[str, Any]:
        """The endpoint's entry in ``GET /v1/models``."""
        entry: dict[str, Any] = {
            "endpoint_id": self.endpoint_id,
            "metadata": {
                "display_name": self.display_name,
                "category": self.category,
                "description": self.description,
                "status": "active",
                "tags": list(self.tags),
                "updated_at": "2025-06-01T00:00:00Z",
                "is_favorited": False,
                "thumbnail_url": thumbnail_url,
                "model_url": f"{queue_base_url}/{self.endpoint_id}",
                "date": "2025-06-01T00:00:00Z",
                "highlighted": False,
                "pinned": False,
            },
        }
        if with_openapi:
            entry["openapi"] = self.openapi(queue_base_url, thumbnail_url)
        return entry

    def matches(self, query: str) -> bool:
        """Whether the free-text `query` finds this endpoint: every word in its id, name, description,
        category or tags."""
        haystack = " ".join([self.endpoint_id, self.display_name, self.description, self.category, *self.tags]).lower()
        return all(word in haystack for word in query.lower().split())


ENDPOINTS: tuple[FalEndpoint, ...] = (
    FalEndpoint(
        "fal-ai/flux/schnell",
        "text-to-image",
        "FLUX.1 [schnell]",
        "Fast text-to-image generation in 1 to 4 steps.",
        _flux_properties(4, 12),
        ("prompt",),
        _IMAGE_OUTPUT,
        ("fast", "flux"),
    ),
    FalEndpoint(
        "fal-ai/flux/dev",
        "text-to-image",
        "FLUX.1 [dev]",
        "High-quality text-to-image generation.",
        {
            **_flux_properties(28, 50),
            "guidance_scale": {
                "title": "Guidance scale (CFG)",
                "type": "number",
                "minimum": 1,
                "maximum": 20,
                "default": 3.5,
            },
        },
        ("prompt",),
        _IMAGE_OUTPUT,
        ("flux",),
    ),
    FalEndpoint(
        "fal-ai/kling-video/v2.1/master/text-to-video",
        "text-to-video",
        "Kling 2.1 Master",
        "Text-to-video with fluid motion and cinematic visuals.",
        _kling_properties(with_image=False),
        ("prompt",),
        _VIDEO_OUTPUT,
        ("motion",),
    ),
    FalEndpoint(
        "fal-ai/kling-video/v2.1/standard/image-to-video",
        "image-to-video",
        "Kling 2.1 Standard (image to video)",
        "Image-to-video: animates a still picture.",
        _kling_properties(with_image=True),
        ("prompt", "image_url"),
        _VIDEO_OUTPUT,
        ("motion", "animation"),
    ),
)
_BY_ID = {endpoint.endpoint_id: endpoint for endpoint in ENDPOINTS}


def find_endpoint(endpoint_id: str) -> FalEndpoint | None:
    return _BY_ID.get(endpoint_id)


def endpoint_for_path(parts: list[str]) -> FalEndpoint | None:
    """The endpoint a submit path names (the whole id)."""
    return _BY_ID.get("/".join(parts))
