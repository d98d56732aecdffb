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
    render_video,
)

DEFAULT_STEPS = 20
VIDEO_STEPS = 12
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
    if "aspect_ratio" in params:
        width, height = aspect_size(str(params["aspect_ratio"]))
    else:
        width, height = _bounded(int(params.get("width", 512)), int(params.get("height", 512)))
    count = int(params.get("num_outputs", 1)) if model.renders == "images" else 1
    return [
        OutputFile(
            f"out-{index}.{fmt_name}",
            render_image(prompt, seed + index, width, height, fmt_name, quality),
            IMAGE_CONTENT_TYPES[fmt_name],
        )
        for index in range(count)
    ]


def _bounded(width: int, height: int) -> tuple[int, int]:
    """`width` x `height` scaled down to fit MAX_IMAGE_SIDE, at least 16 pixels a side."""
    scale = min(1.0, MAX_IMAGE_SIDE / max(width, height, 1))
    return max(16, round(width * scale)), max(16, round(height * scale))
