"""Where a media file is stored: its key in the media store, named for the media and its content type."""

from __future__ import annotations

import mimetypes
import uuid

# mimetypes' first guess for image/jpeg is ".jpe"; every viewer knows ".jpg".
_PREFERRED_EXTENSIONS = {".jpe": ".jpg", ".jpeg": ".jpg"}


def extension_for(content_type: str) -> str:
    """The file extension of `content_type` (".png", ".jpg", ".mp4"), or "" when it has none."""
    extension = mimetypes.guess_extension(content_type) or ""
    return _PREFERRED_EXTENSIONS.get(extension, extension)


def media_key(media_id: uuid.UUID, content_type: str, suffix: str | None = None) -> str:
    """`ab/<media id>[-<suffix>].<ext>`, in a folder named by the id's first two hex digits.

    An upload is written once, under the bare id; each download attempt adds its claim's token, so two
    attempts at one file (one that lost its claim, one that took it over) never share a key."""
    name = media_id.hex if suffix is None else f"{media_id.hex}-{suffix}"
    return f"{media_id.hex[:2]}/{name}{extension_for(content_type)}"
