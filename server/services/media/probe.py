"""What a stored file is (downloaded or uploaded): the one decision of which files Darkroom keeps and serves.

Only media is media: a PNG, JPEG, WebP or GIF image, or an MP4 or WebM video, confirmed from the bytes. A
file host's Content-Type, a data: URI's type and a file's name are never asked: served from Darkroom's own
origin, HTML or SVG would run script next to the gallery and its API key. The first bytes name the type
(`sniff_content_type`, so a file can be written to storage under its key as it arrives); `probe_file` then
confirms it (Pillow for images, told which single format to expect; PyAV for videos, whose container must
be the one the bytes named) and reads its size or duration, or raises NotMedia. An image's pixels (all its
frames counted) are checked against MEDIA_MAX_PIXELS from its header, before anything is decoded; Pillow's
own decompression-bomb error and warning are turned into the same refusal. Blocking: run it in a thread.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)

# Pillow's format names of the images Darkroom keeps, and their content types.
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
IMAGE_TYPES = frozenset(IMAGE_FORMATS.values())
VIDEO_TYPES = frozenset({"video/mp4", "video/webm"})
# Every type stored and served: what uploadMedia accepts and the downloader keeps.
MEDIA_TYPES = IMAGE_TYPES | VIDEO_TYPES
# PyAV's demuxer names (the first of "mov,mp4,m4a,3gp,3g2,mj2" and of "matroska,webm") and their types.
VIDEO_CONTAINERS = {"mov": "video/mp4", "mp4": "video/mp4", "matroska": "video/webm", "webm": "video/webm"}

UNSUPPORTED = "UNSUPPORTED_FILE"
TOO_LARGE = "IMAGE_TOO_LARGE"
UNSUPPORTED_MESSAGE = "the file is not an image (PNG, JPEG, WebP, GIF) or a video (MP4, WebM)"

# Enough of a file's start to tell every type below apart.
SNIFF_BYTES = 16


class NotMedia(Exception):
    """A file Darkroom does not keep: `code` is UNSUPPORTED_FILE or IMAGE_TOO_LARGE."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sniff_content_type(head: bytes) -> str | None:
    """The content type the first bytes of a file announce, or None when they announce none we keep."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] not in (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1"):
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


@dataclass(frozen=True, slots=True)
class Probe:
    content_type: str
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None


def probe_file(path: Path, max_pixels: int, expected: str | None = None) -> Probe:
    """The file's confirmed content type and its size or duration; NotMedia unless it is an image or video
    Darkroom keeps, of `expected` type when one is given, within `max_pixels`."""
    with path.open("rb") as file:
        sniffed = sniff_content_type(file.read(SNIFF_BYTES))
    if sniffed is None or (expected is not None and sniffed != expected):
        raise NotMedia(UNSUPPORTED, UNSUPPORTED_MESSAGE)
    if sniffed in VIDEO_TYPES:
        return _probe_video(path, sniffed, max_pixels)
    with open_image(path, sniffed, max_pixels) as image:
        duration = None
        if getattr(image, "n_frames", 1) > 1:
            duration = round(sum(_frame_durations(image, max_pixels)) / 1000, 3) or None
        return Probe(sniffed, image.width, image.height, duration)


@contextlib.contextmanager
def open_image(path: Path, content_type: str, max_pixels: int) -> Iterator[Image.Image]:
    """The image at `path`, opened lazily (its header read, no pixel decoded) as the one format of
    `content_type`, once its pixels, all frames counted, are known to be within `max_pixels`. Decoding it
    inside the block is bounded by that limit. NotMedia otherwise."""
    formats = [name for name, kind in IMAGE_FORMATS.items() if kind == content_type]
    # Pillow's own bomb guard warns, then raises, past its fixed limits (at or above MEDIA_MAX_PIXELS's
    # maximum): both become our refusal. The filters are process-wide, so two probes at once may leave this
    # one in place: that only makes the same warning an error elsewhere too.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=formats) as image:
                # n_frames reads the frames' headers only (GIF) or the container's count (PNG, WebP).
                _check_pixels("image", image.width * image.height * getattr(image, "n_frames", 1), max_pixels)
                yield image
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise NotMedia(TOO_LARGE, f"the image has more than {max_pixels} pixels (MEDIA_MAX_PIXELS)") from None
        except (OSError, SyntaxError, ValueError, EOFError):
            # UnidentifiedImageError is an OSError: bytes that start like the format and are not.
            raise NotMedia(UNSUPPORTED, UNSUPPORTED_MESSAGE) from None


def _check_pixels(what: str, pixels: int, max_pixels: int) -> None:
    if pixels > max_pixels:
        raise NotMedia(TOO_LARGE, f"the {what} has {pixels} pixels; at most {max_pixels} (MEDIA_MAX_PIXELS)")


def _frame_durations(image: Image.Image, max_pixels: int) -> list[int]:
    durations = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        # A GIF frame may reach past the canvas, which then grows.
        _check_pixels("image", image.width * image.height, max_pixels)
        durations.append(int(image.info.get("duration", 0)))
    return durations


def _probe_video(path: Path, content_type: str, max_pixels: int) -> Probe:
    try:
        import av

        with av.open(str(path)) as container:
            fmt = container.format.name.split(",")[0]
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            duration = None
            if container.duration:
                duration = container.duration / 1_000_000
            elif stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
    except Exception:  # not a video PyAV can read
        raise NotMedia(UNSUPPORTED, UNSUPPORTED_MESSAGE) from None
    if VIDEO_CONTAINERS.get(fmt) != content_type:
        raise NotMedia(UNSUPPORTED, UNSUPPORTED_MESSAGE)
    _check_pixels("video's frame", width * height, max_pixels)
    return Probe(content_type, width, height, round(duration, 3) if duration else None)
