"""Where a stored media file is fetched from: `Media.url`, and the lasting URL animateImage records."""

from __future__ import annotations

from server.settings import Settings


def media_url(settings: Settings, storage_key: str) -> str:
    """MEDIA_BASE_URL/<key> when the files are served from elsewhere (a CDN, the bucket), else our /media."""
    if settings.media.base_url:
        return f"{settings.media.base_url.rstrip('/')}/{storage_key}"
    return f"{settings.base_url()}/media/{storage_key}"
