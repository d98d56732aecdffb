"""What a simulated model produces for an input: its effective parameters and its rendered files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from server.simulator.catalogue import MOTIONS, CatalogueModel
from server.simulator.media import (
    IMAGE_CONTENT_TYPES,
    ImageFormat,
    Motion,
    aspect_size,
    render_image,
    render_preview,
    render_video,
)

DEFAULT_STEPS = 20
VIDEO_STEPS = 12
# What one `config.run_seconds` of a model whose run time scales with its input renders: one 1 MP picture
# in DEFAULT_STEPS steps, or REFERENCE_FRAMES frames of video (2 s at 8 fps).
MEGAPIXEL = 1024 * 1024
REFERENCE_FRAMES = 16
WEIGHT_PARTS = 3
# Some real schemas leave width and height unbounded; the stand-in picture stays at most this large.
MAX_IMAGE_SIDE = 1024


@dataclass(frozen=True, slots=True)
class OutputFile:
    name: str
    content: bytes
    content_type: str


def effective_input(model: CatalogueModel, given: dict[str, Any]) -> dict[str, Any]:
    """`given` with the schema's defaults filled in for what it leaves out."""
    params = {name: prop["default"] for name, prop in model.properties.items() if "default" in prop}
    params.update(given)
    return params


def step_count(model: CatalogueModel, params: dict[str, Any]) -> int:
    """How many progress lines a run prints."""
    if model.renders == "video":
        return VIDEO_STEPS
    return int(params.get("num_inference_steps", DEFAULT_STEPS))


def run_units(model: CatalogueModel, params: dict[str, Any]) -> float:
    """How many `config.run_seconds` a run of `params` spends in `processing` (before jitter): exactly 1
    unless the model's run time scales with its input; then what drives a real model's run time, relative
    to the reference: pictures x megapixels x steps / DEFAULT_STEPS, or frames / REFERENCE_FRAMES."""
    if not model.scales_with_input:
        return 1.0
    if model.renders == "video":
        return float(params.get("duration", 2)) * int(params.get("fps", 8)) / REFERENCE_FRAMES
    width, height = _image_size(params)
    count = int(params.get("num_outputs", 1)) if model.renders == "images" else 1
    return count * (width * height / MEGAPIXEL) * step_count(model, params) / DEFAULT_STEPS


def boot_lines(model: CatalogueModel) -> list[str]:
    """What a model that boots writes to its logs while `starting`, first to last."""
    return [
        f"Starting a new worker for {model.ref}",
        *(f"Downloading weights ({part}/{WEIGHT_PARTS})" for part in range(1, WEIGHT_PARTS + 1)),
        "Loading the model",
        "Model loaded",
    ]


def preview_steps(model: CatalogueModel, steps: int) -> list[int]:
    """After which of a run's `steps` it yields a preview: `model.previews` of them, evenly spaced (at each
    quarter for 3), fewer when there are fewer steps than that."""
    count = model.previews
    return sorted({max(1, round(steps * index / (count + 1))) for index in range(1, count + 1)}) if count else []


def render_preview_file(params: dict[str, Any], seed: int, index: int, progress: float) -> OutputFile:
    """The `index`-th preview (from 1) of a run's first picture, `progress` (0-1) of the way through
    (blocking: call it in a thread)."""
    width, height = _image_size(params)
    content = render_preview(str(params.get("prompt") or ""), seed, width, height, progress)
    return OutputFile(f"preview-{index}.png", content, IMAGE_CONTENT_TYPES["png"])


def render_outputs(model: CatalogueModel, params: dict[str, Any], seed: int, source: bytes | None) -> list[OutputFile]:
    """The files a run of `model` produces (blocking: call it in a thread).

    Images are named ``out-<n>.<format>`` (image n uses seed + n), videos ``output.<ext>``. Raises
    media.MediaError when `source` is not a usable image.
    """
    prompt = str(params.get("prompt") or "")
    if model.renders == "video":
        motion = params.get("motion") or MOTIONS[seed % len(MOTIONS)]
        content, fmt = render_video(
            prompt=prompt,
            seed=seed,
            seconds=float(params.get("duration", 2)),
            fps=int(params.get("fps", 8)),
            motion=cast(Motion, motion),
            source=source,
        )
        return [OutputFile(f"output.{fmt.extension}", content, fmt.content_type)]

    fmt_name = cast(ImageFormat, params.get("output_format", "webp"))
    quality = int(params.get("output_quality", 80))
    width, height = _image_size(params)
    count = int(params.get("num_outputs", 1)) if model.renders == "images" else 1
    return [
        OutputFile(
            f"out-{index}.{fmt_name}",
            render_image(prompt, seed + index, width, height, fmt_name, quality),
            IMAGE_CONTENT_TYPES[fmt_name],
        )
        for index in range(count)
    ]


def _image_size(params: dict[str, Any]) -> tuple[int, int]:
    """The size of the pictures `params` ask for."""
    if "aspect_ratio" in params:
        return aspect_size(str(params["aspect_ratio"]))
    return _bounded(int(params.get("width", 512)), int(params.get("height", 512)))


def _bounded(width: int, height: int) -> tuple[int, int]:
    """`width` x `height` scaled down to fit MAX_IMAGE_SIDE, at least 16 pixels a side."""
    scale = min(1.0, MAX_IMAGE_SIDE / max(width, height, 1))
    return max(16, round(width * scale)), max(16, round(height * scale))
