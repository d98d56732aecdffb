"""What a stored file is (downloaded or uploaded): its real content type, and its pixel size or duration.

The content type is sniffed from the bytes rather than trusted from the file host's header: from the
first bytes (`sniff_content_type`, so a file can be written to storage under its key as it arrives), then
confirmed with its size or duration by Pillow for images and PyAV for videos (`probe_file`, blocking: run
it in a thread).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
VIDEO_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/mp4",
    "webm": "video/webm",
    "matroska": "video/webm",
    "gif": "image/gif",
}


# Enough of a file's start to tell every type below apart.
SNIFF_BYTES = 16


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


def probe_file(path: Path, declared_type: str) -> Probe:
    with path.open("rb") as head:
        magic = head.read(16)
    if magic[4:8] == b"ftyp" or magic.startswith(b"\x1a\x45\xdf\xa3"):
        video = _probe_video(path)
        if video is not None:
            return video
    try:
        with Image.open(path) as image:
            fmt = image.format or ""
            frames = getattr(image, "n_frames", 1)
            duration = None
            if frames > 1:
                duration = round(sum(_frame_durations(image)) / 1000, 3) or None
            return Probe(IMAGE_TYPES.get(fmt, declared_type), image.width, image.height, duration)
    except (UnidentifiedImageError, OSError):
        pass
    video = _probe_video(path)
    return video if video is not None else Probe(declared_type)


def _frame_durations(image: Image.Image) -> list[int]:
    durations = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        durations.append(int(image.info.get("duration", 0)))
    return durations


def _probe_video(path: Path) -> Probe | None:
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            duration = None
            if container.duration:
                duration = container.duration / 1_000_000
            elif stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            fmt = container.format.name.split(",")[0]
            return Probe(
                VIDEO_TYPES.get(fmt, "video/mp4"),
                stream.codec_context.width,
                stream.codec_context.height,
                round(duration, 3) if duration else None,
            )
    except Exception:  # not a video PyAV can read
        return None
