"""The media store a process uses, picked by MEDIA_STORAGE_URL: file:///path or s3://BUCKET/PREFIX."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from server.settings import Settings
from server.storage.local import LocalStorage
from server.storage.port import MediaStorage
from server.storage.s3 import S3Storage, key_prefix


def storage_from_settings(settings: Settings) -> MediaStorage:
    url = settings.resolved_media_storage_url
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"MEDIA_STORAGE_URL {url!r}: a file URL names a local path, file:///path")
        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"MEDIA_STORAGE_URL {url!r}: s3://BUCKET/PREFIX needs a bucket")
        return S3Storage(
            parsed.netloc,
            unquote(parsed.path),
            endpoint_url=settings.media.s3_endpoint_url or None,
            part_bytes=settings.media.s3_part_size_bytes,
        )
    raise ValueError(f"MEDIA_STORAGE_URL {url!r}: expected file:///path or s3://BUCKET/PREFIX")


def object_key(settings: Settings, key: str) -> str:
    """The whole name of a media file where MEDIA_STORAGE_URL keeps it: in a bucket, after its PREFIX."""
    parsed = urlparse(settings.resolved_media_storage_url)
    return key_prefix(unquote(parsed.path)) + key if parsed.scheme == "s3" else key
