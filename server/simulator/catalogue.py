"""The simulated models, their versions and OpenAPI schemas, and the collections they belong to.

Every model is owned by ``darkroom-sim`` so a reference says it is simulated. Each has one version with
a stable 64-hex id and a Cog-shaped ``openapi_schema`` whose ``components.schemas`` hold ``Input`` and
``Output`` (plus old-style ``$ref`` enums). Some models are written here; the others carry the input
definitions of real Replicate models, read from ``real_schemas/*.json`` (each names its source). The
``*_json`` functions render Replicate's bodies; they take the simulator's base URL because cover images
and links point back at the simulator.

Official models (`is_official`) run as Replicate's do: by name, through the models endpoint or with
``version: "owner/name"``, as well as by version id. The others run by version id only.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

OWNER = "darkroom-sim"
COG_VERSION = "0.9.12"
CREATED_AT = "2024-06-01T12:00:00.000000Z"

Kind = Literal["text-to-image", "text-to-video", "image-to-video"]
Renders = Literal["images", "image", "video"]

# The input definitions of real Replicate models; tests read the same files.
REAL_SCHEMAS_DIR = Path(__file__).with_name("real_schemas")


@dataclass(frozen=True)
class CatalogueModel:
    """One simulated model and its single version.

    `renders` says what a prediction produces: "images" (an array of URLs, `num_outputs` of them),
    "image" (a single URL) or "video" (a single URL). `image_field` names the input holding the picture
    an image-to-video model animates (None when the model animates nothing). A model copied from a
    real one names it in `copied_from` and where its schema comes from in `source`.

    How a run behaves: `previews` is how many intermediate images it yields while `processing`, evenly
    spaced over its steps (as Replicate's iterator models do; none for most); a model that `boots` spends
    `config.boot_seconds` in `starting` writing boot log lines, instead of `config.start_seconds`; one
    whose run time `scales_with_input` runs for as many `config.run_seconds` as `outputs.run_units` says
    (else exactly one).
    """

    name: str
    kind: Kind
    renders: Renders
    description: str
    run_count: int
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    output: dict[str, Any]
    example_input: dict[str, Any]
    tags: tuple[str, ...]
    is_official: bool = False
    extra_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    image_field: str | None = None
    copied_from: str | None = None
    source: str | None = None
    previews: int = 0
    boots: bool = False
    scales_with_input: bool = False

    @property
    def owner(self) -> str:
        return OWNER

    @property
    def ref(self) -> str:
        """The reference, "owner/name"."""
        return f"{OWNER}/{self.name}"

    @property
    def version_id(self) -> str:
        """Stable across restarts and releases: derived from the name only."""
        return hashlib.sha256(f"{self.ref}:v1".encode()).hexdigest()

    @property
    def cover_path(self) -> str:
        """Where the simulator serves this model's cover image, relative to its base URL."""
        return f"/files/covers/{self.name}.webp"

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "title": "Input",
            "required": list(self.required),
            "properties": self.properties,
        }

    def openapi_schema(self) -> dict[str, Any]:
        """The version's schema, shaped like the one Cog generates."""
        schemas: dict[str, Any] = {
            "Input": self.input_schema(),
            "Output": self.output,
            "Status": {
                "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
                "type": "string",
                "title": "Status",
                "description": "An enumeration.",
            },
            "PredictionRequest": {
                "type": "object",
                "title": "PredictionRequest",
                "properties": {
                    "id": {"type": "string", "title": "Id"},
                    "input": {"$ref": "#/components/schemas/Input"},
                    "webhook": {"type": "string", "title": "Webhook", "format": "uri"},
                },
            },
            "PredictionResponse": {
                "type": "object",
                "title": "PredictionResponse",
                "properties": {
                    "id": {"type": "string", "title": "Id"},
                    "input": {"$ref": "#/components/schemas/Input"},
                    "output": {"$ref": "#/components/schemas/Output"},
                    "status": {"$ref": "#/components/schemas/Status"},
                    "logs": {"type": "string", "title": "Logs", "default": ""},
                    "error": {"type": "string", "title": "Error"},
                },
            },
            **self.extra_schemas,
        }
        return copy.deepcopy(
            {
                "openapi": "3.0.2",
                "info": {"title": "Cog", "version": "0.1.0"},
                "paths": {
                    "/predictions": {
                        "post": {
                            "summary": "Predict",
                            "operationId": "predict_predictions_post",
                            "requestBody": {
                                "content": {
                                    "application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}
                                }
                            },
                            "responses": {
                                "200": {
                                    "description": "Successful Response",
                                    "content": {
                                        "application/json": {
                                            "schema": {"$ref": "#/components/schemas/PredictionResponse"}
                                        }
                                    },
                                }
                            },
                        }
                    }
                },
                "components": {"schemas": schemas},
            }
        )


# --- input properties shared by several models ------------------------------------------------------


def _prompt(order: int, *, required: bool = True) -> dict[str, Any]:
    description = "What to draw." if required else "Optional guidance for the motion."
    return {"type": "string", "title": "Prompt", "x-order": order, "description": description}


def _seed(order: int) -> dict[str, Any]:
    return {
        "type": "integer",
        "title": "Seed",
        "x-order": order,
        "description": "Random seed. Leave blank to randomize the seed.",
    }


def _duration(order: int) -> dict[str, Any]:
    return {
        "type": "integer",
        "title": "Duration",
        "default": 2,
        "minimum": 1,
        "maximum": 5,
        "x-order": order,
        "description": "Length of the video in seconds.",
    }


def _image(order: int, title: str, description: str) -> dict[str, Any]:
    return {"type": "string", "title": title, "format": "uri", "x-order": order, "description": description}


def _side(order: int, title: str) -> dict[str, Any]:
    return {
        "type": "integer",
        "title": title,
        "default": 512,
        "minimum": 128,
        "maximum": 1024,
        "multipleOf": 64,
        "x-order": order,
        "description": f"{title} of the output image in pixels, a multiple of 64.",
    }


SCHEDULERS = [
    "DDIM",
    "DPMSolverMultistep",
    "HeunDiscrete",
    "KarrasDPM",
    "K_EULER_ANCESTRAL",
    "K_EULER",
    "PNDM",
]

ASPECT_RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"]

MOTIONS = ["zoom", "pan", "fade"]

# Stands for a served picture (a cover) in the example inputs of image-to-video models.
EXAMPLE_IMAGE = "{example-image}"

HAND_WRITTEN: tuple[CatalogueModel, ...] = (
    CatalogueModel(
        name="pixel-forge",
        kind="text-to-image",
        renders="images",
        description="Simulated text-to-image diffusion model: one to four pictures drawn from your prompt.",
        run_count=1_204_331,
        tags=("image", "diffusion", "batch"),
        is_official=True,
        properties={
            "prompt": _prompt(0),
            "negative_prompt": {
                "type": "string",
                "title": "Negative Prompt",
                "default": "",
                "x-order": 1,
                "description": "Things to keep out of the image.",
            },
            "width": _side(2, "Width"),
            "height": _side(3, "Height"),
            "num_outputs": {
                "type": "integer",
                "title": "Num Outputs",
                "default": 1,
                "minimum": 1,
                "maximum": 4,
                "x-order": 4,
                "description": "Number of images to output.",
            },
            "seed": _seed(5),
            "scheduler": {
                "allOf": [{"$ref": "#/components/schemas/scheduler"}],
                "default": "K_EULER",
                "x-order": 6,
                "description": "Scheduler (sampler) used for denoising.",
            },
            "guidance_scale": {
                "type": "number",
                "title": "Guidance Scale",
                "default": 7.5,
                "minimum": 1,
                "maximum": 20,
                "x-order": 7,
                "description": "Scale for classifier-free guidance.",
            },
            "num_inference_steps": {
                "type": "integer",
                "title": "Num Inference Steps",
                "default": 20,
                "minimum": 1,
                "maximum": 50,
                "x-order": 8,
                "description": "Number of denoising steps.",
            },
            "output_format": {
                "enum": ["png", "webp", "jpg"],
                "type": "string",
                "title": "Output Format",
                "default": "webp",
                "x-order": 9,
                "description": "Format of the output images.",
            },
        },
        required=("prompt",),
        output={"type": "array", "items": {"type": "string", "format": "uri"}, "title": "Output"},
        extra_schemas={
            "scheduler": {
                "enum": SCHEDULERS,
                "type": "string",
                "title": "scheduler",
                "description": "An enumeration.",
            }
        },
        example_input={"prompt": "a lighthouse at dusk, oil painting", "num_outputs": 1, "seed": 42},
    ),
    CatalogueModel(
        name="snap-still",
        kind="text-to-image",
        renders="image",
        description="Simulated fast text-to-image model that returns a single picture.",
        run_count=5_873_002,
        tags=("image", "fast"),
        is_official=True,
        properties={
            "prompt": _prompt(0),
            "aspect_ratio": {
                "enum": ASPECT_RATIOS,
                "type": "string",
                "title": "Aspect Ratio",
                "default": "1:1",
                "x-order": 1,
                "description": "Aspect ratio of the output image.",
            },
            "output_format": {
                "enum": ["webp", "jpg", "png"],
                "type": "string",
                "title": "Output Format",
                "default": "webp",
                "x-order": 2,
                "description": "Format of the output image.",
            },
            "output_quality": {
                "type": "integer",
                "title": "Output Quality",
                "default": 80,
                "minimum": 0,
                "maximum": 100,
                "x-order": 3,
                "description": "Quality of lossy outputs (webp, jpg), 0-100.",
            },
            "seed": _seed(4),
        },
        required=("prompt",),
        output={"type": "string", "format": "uri", "title": "Output"},
        example_input={"prompt": "a red fox in fresh snow", "aspect_ratio": "16:9", "seed": 7},
    ),
    CatalogueModel(
        name="motion-sketch",
        kind="text-to-video",
        renders="video",
        description="Simulated text-to-video model: a short clip drawn from your prompt.",
        run_count=310_557,
        tags=("video", "text-to-video"),
        is_official=True,
        properties={
            "prompt": _prompt(0),
            "duration": _duration(1),
            "fps": {
                "type": "integer",
                "title": "Fps",
                "default": 8,
                "minimum": 4,
                "maximum": 24,
                "x-order": 2,
                "description": "Frames per second.",
            },
            "seed": _seed(3),
            "api_key": {
                "type": "string",
                "title": "Api Key",
                "format": "password",
                "x-cog-secret": True,
                "x-order": 4,
                "description": "Key for the upstream video service. Kept secret; the simulator ignores it.",
            },
        },
        required=("prompt",),
        output={"type": "string", "format": "uri", "title": "Output"},
        example_input={"prompt": "waves rolling onto a beach", "duration": 2, "seed": 3},
    ),
    CatalogueModel(
        name="still-motion",
        kind="image-to-video",
        renders="video",
        description="Simulated image-to-video model: animates an image with a zoom, a pan or a fade.",
        run_count=98_120,
        tags=("video", "image-to-video", "animation"),
        image_field="image",
        properties={
            "image": _image(0, "Image", "The image to animate; it becomes the first frame."),
            "prompt": _prompt(1, required=False),
            "motion": {
                "enum": MOTIONS,
                "type": "string",
                "title": "Motion",
                "default": "zoom",
                "x-order": 2,
                "description": "Camera motion applied to the image.",
            },
            "duration": _duration(3),
            "seed": _seed(4),
        },
        required=("image",),
        output={"type": "string", "format": "uri", "title": "Output"},
        example_input={"image": EXAMPLE_IMAGE, "motion": "zoom", "seed": 1},
    ),
    CatalogueModel(
        name="frame-flow",
        kind="image-to-video",
        renders="video",
        description="Simulated image-to-video model: brings a first frame to life.",
        run_count=45_902,
        tags=("video", "image-to-video"),
        image_field="first_frame_image",
        properties={
            "first_frame_image": _image(
                0, "First Frame Image", "First frame of the video; the output keeps its aspect ratio."
            ),
            "prompt": _prompt(1, required=False),
            "duration": _duration(2),
            "seed": _seed(3),
        },
        required=("first_frame_image",),
        output={"type": "string", "format": "uri", "title": "Output"},
        example_input={"first_frame_image": EXAMPLE_IMAGE, "seed": 2},
    ),
    CatalogueModel(
        name="preview-image",
        kind="text-to-image",
        renders="images",
        description=(
            "Simulated text-to-image model that yields a blurry preview at each quarter of its steps before "
            "its final pictures; its run time grows with the pictures, their pixels and the steps."
        ),
        run_count=77_310,
        tags=("image", "diffusion", "previews"),
        is_official=True,
        previews=3,
        scales_with_input=True,
        properties={
            "prompt": _prompt(0),
            "width": {**_side(1, "Width"), "default": 1024},
            "height": {**_side(2, "Height"), "default": 1024},
            "num_outputs": {
                "type": "integer",
                "title": "Num Outputs",
                "default": 1,
                "minimum": 1,
                "maximum": 4,
                "x-order": 3,
                "description": "Number of images to output.",
            },
            "num_inference_steps": {
                "type": "integer",
                "title": "Num Inference Steps",
                "default": 20,
                "minimum": 1,
                "maximum": 50,
                "x-order": 4,
                "description": "Number of denoising steps; a preview is yielded at each quarter of them.",
            },
            "seed": _seed(5),
            "output_format": {
                "enum": ["webp", "png", "jpg"],
                "type": "string",
                "title": "Output Format",
                "default": "webp",
                "x-order": 6,
                "description": "Format of the output images (previews are always small PNGs).",
            },
        },
        required=("prompt",),
        output={
            "type": "array",
            "items": {"type": "string", "format": "uri"},
            "title": "Output",
            "x-cog-array-type": "iterator",
        },
        example_input={"prompt": "a greenhouse at night, soft light", "num_outputs": 1, "seed": 5},
    ),
    CatalogueModel(
        name="slow-boot-video",
        kind="text-to-video",
        renders="video",
        description=(
            "Simulated text-to-video model on a cold worker: it boots (downloading its weights) before it "
            "runs, and its run time grows with the length and rate of the clip."
        ),
        run_count=12_408,
        tags=("video", "text-to-video", "cold-boot"),
        is_official=True,
        boots=True,
        scales_with_input=True,
        properties={
            "prompt": _prompt(0),
            "duration": _duration(1),
            "fps": {
                "type": "integer",
                "title": "Fps",
                "default": 8,
                "minimum": 4,
                "maximum": 24,
                "x-order": 2,
                "description": "Frames per second.",
            },
            "seed": _seed(3),
        },
        required=("prompt",),
        output={"type": "string", "format": "uri", "title": "Output"},
        example_input={"prompt": "fog lifting off a lake at dawn", "duration": 2, "seed": 11},
    ),
)


def real_schema_files() -> list[Path]:
    return sorted(REAL_SCHEMAS_DIR.glob("*.json"))


def load_real_model(path: Path) -> CatalogueModel:
    """A catalogue entry from one of `real_schemas/*.json` (see the README there)."""
    entry = json.loads(path.read_text(encoding="utf-8"))
    schema = entry["input"]
    return CatalogueModel(
        name=entry["name"],
        kind=cast(Kind, entry["kind"]),
        renders=cast(Renders, entry["renders"]),
        description=entry["description"],
        run_count=int(entry["run_count"]),
        properties=schema["properties"],
        required=tuple(schema.get("required") or ()),
        output=entry["output"],
        example_input=entry["example_input"],
        tags=tuple(entry["tags"]),
        is_official=bool(entry["is_official"]),
        extra_schemas=entry.get("enums") or {},
        image_field=entry.get("image_field"),
        copied_from=entry["model"],
        source=entry["source"],
    )


REAL: tuple[CatalogueModel, ...] = tuple(load_real_model(path) for path in real_schema_files())

MODELS: tuple[CatalogueModel, ...] = HAND_WRITTEN + REAL


@dataclass(frozen=True)
class Collection:
    slug: str
    name: str
    description: str
    full_description: str

    @property
    def models(self) -> list[CatalogueModel]:
        return [model for model in MODELS if model.kind == self.slug]


COLLECTIONS: tuple[Collection, ...] = (
    Collection(
        "text-to-image",
        "Text to image",
        "Models that generate images from text prompts.",
        "Simulated models that draw a picture from a prompt. Same prompt and seed, same bytes.",
    ),
    Collection(
        "text-to-video",
        "Text to video",
        "Models that generate videos from text prompts.",
        "Simulated models that render a short MP4 clip from a prompt.",
    ),
    Collection(
        "image-to-video",
        "Image to video",
        "Models that animate an image into a video.",
        "Simulated models that animate an input image. Their image inputs are named differently.",
    ),
)


def find_model(owner: str, name: str) -> CatalogueModel | None:
    return next((m for m in MODELS if m.owner == owner and m.name == name), None)


def find_by_ref(ref: str) -> CatalogueModel | None:
    owner, _, name = ref.partition("/")
    return find_model(owner, name)


def find_by_version(version_id: str) -> CatalogueModel | None:
    return next((m for m in MODELS if m.version_id == version_id), None)


def find_by_cover(path: str) -> CatalogueModel | None:
    return next((m for m in MODELS if m.cover_path == path), None)


def find_collection(slug: str) -> Collection | None:
    return next((c for c in COLLECTIONS if c.slug == slug), None)


# --- response bodies ------------------------------------------------------------------------------


def version_json(model: CatalogueModel) -> dict[str, Any]:
    return {
        "id": model.version_id,
        "created_at": CREATED_AT,
        "cog_version": COG_VERSION,
        "openapi_schema": model.openapi_schema(),
    }


def model_json(model: CatalogueModel, base_url: str) -> dict[str, Any]:
    example_id = hashlib.sha256(f"example:{model.ref}".encode()).hexdigest()[:26]
    cover = base_url + model.cover_path
    example_output: Any = [cover] if model.renders == "images" else cover
    return {
        "url": f"{base_url}/web/{model.ref}",
        "owner": model.owner,
        "name": model.name,
        "description": model.description,
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": "https://opensource.org/license/mit",
        "run_count": model.run_count,
        "cover_image_url": cover,
        "is_official": model.is_official,
        "default_example": {
            "id": example_id,
            "model": model.ref,
            "version": model.version_id,
            "input": {
                key: base_url + MODELS[1].cover_path if value == EXAMPLE_IMAGE else value
                for key, value in model.example_input.items()
            },
            "logs": "",
            "output": example_output,
            "error": None,
            "status": "succeeded",
            "created_at": CREATED_AT,
            "started_at": CREATED_AT,
            "completed_at": CREATED_AT,
            "data_removed": False,
            "source": "web",
            "metrics": {"predict_time": 1.0, "total_time": 1.0},
            "urls": {
                "get": f"{base_url}/v1/predictions/{example_id}",
                "cancel": f"{base_url}/v1/predictions/{example_id}/cancel",
                "web": f"{base_url}/web/p/{example_id}",
            },
        },
        "latest_version": version_json(model),
    }


def collection_summary_json(collection: Collection) -> dict[str, Any]:
    return {"name": collection.name, "slug": collection.slug, "description": collection.description}


def collection_json(collection: Collection, base_url: str) -> dict[str, Any]:
    return {
        **collection_summary_json(collection),
        "full_description": collection.full_description,
        "models": [model_json(model, base_url) for model in collection.models],
    }


def search(query: str, limit: int) -> tuple[list[tuple[CatalogueModel, float]], list[Collection]]:
    """Models and collections whose owner, name, description or tags contain `query` (case-insensitive).

    Models come with a score (1.0 for a name match, less for a description or tag match), best first.
    """
    needle = query.strip().lower()
    scored: list[tuple[CatalogueModel, float]] = []
    for model in MODELS:
        if needle in model.name.lower() or needle in model.ref.lower():
            scored.append((model, 1.0))
        elif needle in model.description.lower() or needle in model.kind:
            scored.append((model, 0.7))
        elif any(needle in tag for tag in model.tags):
            scored.append((model, 0.5))
    scored.sort(key=lambda pair: (-pair[1], -pair[0].run_count))
    collections = [
        c for c in COLLECTIONS if needle in c.slug or needle in c.name.lower() or needle in c.description.lower()
    ]
    return scored[:limit], collections[:limit]
