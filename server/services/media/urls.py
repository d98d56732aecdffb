"""Where a stored media file is fetched from: `Media.url`, and the lasting URL animateImage records."""

from __future__ import annotations

from urllib.parse import quote

from server.settings import Settings
from server.storage.compose import object_key


def media_url(settings: Settings, storage_key: str) -> str:
    """MEDIA_BASE_URL/<object key> when the files are served from elsewhere (a CDN, the bucket: the key as the
    bucket names it, s3://BUCKET/PREFIX's PREFIX included), else our /media."""
    if settings.media.base_url:
        return f"{settings.media.base_url.rstrip('/')}/{quote(object_key(settings, storage_key))}"
    return f"{settings.base_url()}/media/{storage_key}"
