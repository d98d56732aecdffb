"""Rendering the simulated outputs: pictures drawn from a prompt and a seed, and short videos.

Everything here is synchronous and CPU-bound; callers run it in a thread. The same arguments always
give the same bytes: the drawing is derived from a hash of prompt and seed, and video is encoded
single-threaded with bit-exact flags and no timestamps in the container.

Video is H.264 in MP4 (libx264, which PyAV's wheels ship). Where that encoder is missing the fallbacks
are VP9 in WebM, then an animated WebP; `video_format()` says which one this process uses.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import random
import textwrap
from dataclasses import dataclass
from typing import Literal

import av
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

ImageFormat = Literal["png", "webp", "jpg"]
Motion = Literal["zoom", "pan", "fade"]

IMAGE_CONTENT_TYPES: dict[str, str] = {"png": "image/png", "webp": "image/webp", "jpg": "image/jpeg"}
_PILLOW_FORMATS: dict[str, str] = {"png": "PNG", "webp": "WEBP", "jpg": "JPEG"}

VIDEO_LONGEST_SIDE = 256
# Previews are thumbnails: small, and a few KB as a palette PNG.
PREVIEW_LONGEST_SIDE = 128
PREVIEW_COLORS = 64
MAX_SOURCE_PIXELS = 40_000_000


class MediaError(Exception):
    """An input could not be used (for instance, bytes that are not an image)."""


@dataclass(frozen=True, slots=True)
class VideoFormat:
    codec: str  # PyAV encoder name, or "webp" for the animated-image fallback
    container: str
    extension: str
    content_type: str


@functools.cache
def video_format() -> VideoFormat:
    """The best video encoding this PyAV build offers, in the order browsers play them."""
    for fmt in (
        VideoFormat("libx264", "mp4", "mp4", "video/mp4"),
        VideoFormat("libvpx-vp9", "webm", "webm", "video/webm"),
    ):
        try:
            av.codec.Codec(fmt.codec, "w")
        except Exception:  # UnknownCodecError and friends: this build lacks the encoder
            continue
        return fmt
    logger.warning("no MP4 or WebM encoder in this PyAV build; simulated videos are animated WebP")
    return VideoFormat("webp", "webp", "webp", "image/webp")


def aspect_size(aspect_ratio: str, longest: int = 512) -> tuple[int, int]:
    """Width and height for "W:H" with the longer side `longest`, both multiples of 16."""
    w_part, _, h_part = aspect_ratio.partition(":")
    try:
        ratio = float(w_part) / float(h_part)
    except (ValueError, ZeroDivisionError):
        ratio = 1.0
    width, height = (float(longest), longest / ratio) if ratio >= 1 else (longest * ratio, float(longest))
    return max(16, round(width / 16) * 16), max(16, round(height / 16) * 16)


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _color(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_scene(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """A picture for `prompt` and `seed`: a gradient, translucent shapes, and the prompt written on it."""
    rng = _rng(prompt, seed)
    gradient = Image.linear_gradient("L").rotate(rng.uniform(0, 360), resample=Image.Resampling.BILINEAR)
    gradient = ImageOps.autocontrast(gradient.crop((48, 48, 208, 208))).resize((width, height))
    image = ImageOps.colorize(gradient, _color(rng), _color(rng)).convert("RGBA")

    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for _ in range(rng.randint(3, 7)):
        x, y = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height
        size = rng.uniform(0.1, 0.5) * min(width, height)
        box = (x, y, x + size, y + size * rng.uniform(0.5, 1.5))
        fill = (*_color(rng), rng.randint(90, 180))
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "ellipse":
            draw.ellipse(box, fill=fill)
        elif shape == "rectangle":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], fill=fill)
    image = Image.alpha_composite(image, overlay)
    _caption(image, prompt, f"darkroom-sim · seed {seed}")
    return image.convert("RGB")


def _caption(image: Image.Image, text: str, footer: str) -> None:
    """Write `text` (wrapped, at most three lines) and a small `footer` on a dark band at the bottom."""
    width, height = image.size
    size = max(10, min(width, height) // 22)
    font, small = _font(size), _font(max(8, size * 2 // 3))
    per_line = max(8, int(width / (size * 0.55)))
    lines = textwrap.wrap(text, per_line)[:3] if text else []
    if len(textwrap.wrap(text, per_line)) > 3:
        lines[-1] = lines[-1][: per_line - 1] + "…"
    band = int(size * 1.3 * len(lines) + size * 1.6)
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((0, height - band, width, height), fill=(0, 0, 0, 140))
    y = height - band + size * 0.3
    for line in lines:
        draw.text((size * 0.5, y), line, font=font, fill=(255, 255, 255, 255))
        y += size * 1.3
    draw.text((size * 0.5, y), footer, font=small, fill=(220, 220, 220, 255))
    image.alpha_composite(overlay)


def encode_image(image: Image.Image, fmt: ImageFormat, quality: int = 80) -> bytes:
    """PNG, WebP or JPEG bytes with no metadata that could vary between runs."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", optimize=False)
    else:
        image.save(buffer, format=_PILLOW_FORMATS[fmt], quality=max(1, min(100, quality)))
    return buffer.getvalue()


def render_image(prompt: str, seed: int, width: int, height: int, fmt: ImageFormat, quality: int = 80) -> bytes:
    """The encoded picture for `prompt` and `seed`."""
    return encode_image(draw_scene(prompt, seed, width, height), fmt, quality)


def render_preview(prompt: str, seed: int, width: int, height: int, progress: float) -> bytes:
    """A small PNG of the picture `render_image` draws for `prompt` and `seed`, as a diffusion model shows
    it `progress` (0-1) of the way through: blurred and grainy at first, sharper as it goes."""
    scale = PREVIEW_LONGEST_SIDE / max(width, height, 1)
    size = (max(16, round(width * scale)), max(16, round(height * scale)))
    rest = 1.0 - max(0.0, min(1.0, progress))
    image = draw_scene(prompt, seed, *size).filter(ImageFilter.GaussianBlur(radius=rest * PREVIEW_LONGEST_SIDE / 16))
    # Coarse grain, seeded like the picture so the same run yields the same bytes.
    rng = _rng("preview", prompt, seed, round(progress, 3))
    cells = (max(1, size[0] // 8), max(1, size[1] // 8))
    grain = Image.frombytes("L", cells, rng.randbytes(cells[0] * cells[1]))
    grain = grain.resize(size, Image.Resampling.BILINEAR).convert("RGB")
    return encode_image(Image.blend(image, grain, rest * 0.6).quantize(PREVIEW_COLORS), "png")


def open_source_image(data: bytes) -> Image.Image:
    """Decode an input image, or raise MediaError saying why it cannot be used."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_SOURCE_PIXELS:
            raise MediaError(f"the image is too large ({image.width}x{image.height})")
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise MediaError(f"the input is not a readable image ({type(exc).__name__})") from None
    return ImageOps.exif_transpose(image).convert("RGB")


def _even_fit(width: int, height: int, longest: int) -> tuple[int, int]:
    scale = longest / max(width, height)
    return max(16, round(width * scale / 2) * 2), max(16, round(height * scale / 2) * 2)


def _frames(base: Image.Image, size: tuple[int, int], count: int, motion: Motion, seed: int) -> list[Image.Image]:
    """`count` frames of `base` moved by `motion`, each `size`, with a small marker orbiting on top."""
    width, height = size
    rng = _rng("motion", seed)
    # Work on a picture 1.4 times the frame so a pan or zoom never runs out of pixels.
    big = base.resize((int(width * 1.4), int(height * 1.4)), Image.Resampling.BILINEAR)
    cx, cy = rng.uniform(0.35, 0.65) * big.width, rng.uniform(0.35, 0.65) * big.height
    marker = _color(rng)
    frames: list[Image.Image] = []
    for index in range(count):
        t = index / max(1, count - 1)
        if motion == "pan":
            left = t * (big.width - width)
            box = (left, (big.height - height) / 2, left + width, (big.height + height) / 2)
        else:
            zoom = 1.35 - 0.35 * t if motion == "zoom" else 1.2 - 0.1 * t
            half_w, half_h = width * zoom / 2, height * zoom / 2
            x = min(max(cx, half_w), big.width - half_w)
            y = min(max(cy, half_h), big.height - half_h)
            box = (
                max(0.0, x - half_w),
                max(0.0, y - half_h),
                min(big.width, x + half_w),
                min(big.height, y + half_h),
            )
        frame = big.resize(size, Image.Resampling.BILINEAR, box=box)
        if motion == "fade":
            frame = Image.blend(Image.new("RGB", size, (0, 0, 0)), frame, min(1.0, 0.15 + t))
        draw = ImageDraw.Draw(frame)
        radius = max(3, min(size) // 24)
        mx = width / 2 + width * 0.35 * math.cos(2 * math.pi * t)
        my = height / 2 + height * 0.35 * math.sin(2 * math.pi * t)
        draw.ellipse((mx - radius, my - radius, mx + radius, my + radius), fill=marker, outline=(255, 255, 255))
        frames.append(frame)
    return frames


def render_video(
    *,
    prompt: str,
    seed: int,
    seconds: float,
    fps: int,
    motion: Motion,
    source: bytes | None = None,
) -> tuple[bytes, VideoFormat]:
    """A clip of `seconds` at `fps`: `source` (an encoded image) animated, or a scene drawn from `prompt`.

    The longer side is VIDEO_LONGEST_SIDE; an image keeps its aspect ratio. Raises MediaError when
    `source` is not an image.
    """
    if source is not None:
        picture = open_source_image(source)
        size = _even_fit(picture.width, picture.height, VIDEO_LONGEST_SIDE)
        base = ImageOps.fit(picture, size, Image.Resampling.BILINEAR)
        if prompt:
            base = base.convert("RGBA")
            _caption(base, prompt, f"seed {seed}")
            base = base.convert("RGB")
    else:
        size = (VIDEO_LONGEST_SIDE, VIDEO_LONGEST_SIDE)
        base = draw_scene(prompt, seed, *size)
    count = max(2, round(seconds * fps))
    frames = _frames(base, size, count, motion, seed)
    fmt = video_format()
    if fmt.codec == "webp":
        return _encode_webp(frames, fps), fmt
    return _encode_av(frames, fps, fmt), fmt


def _encode_av(frames: list[Image.Image], fps: int, fmt: VideoFormat) -> bytes:
    buffer = io.BytesIO()
    # No +faststart: it rewrites the file by name, which an in-memory buffer does not have.
    with av.open(buffer, mode="w", format=fmt.container, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(fmt.codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if fmt.codec == "libx264":
            stream.codec_context.options = {"preset": "veryfast", "crf": "26", "threads": "1"}
        else:
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8", "threads": "1"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _encode_webp(frames: list[Image.Image], fps: int) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
    return buffer.getvalue()
