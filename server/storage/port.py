"""The storage port: what Darkroom needs from wherever media files live, and nothing more.

Keys are relative paths such as ``ab/abcdef....png``. A file is written through an `Upload`: chunks as
they arrive, then `commit` makes the whole file visible under its key at once (with its sha256, content
type and immutable caching where the store keeps such things), or `abort` leaves nothing behind. Readers
never see a half-written file. Stale incomplete uploads (a process that died mid-write) are found and
removed by the cleanup pass through `abort_stale_uploads`.

Two implementations: the local file system (`server.storage.local`, the default) and S3-compatible
object storage (`server.storage.s3`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CACHE_FOREVER = "public, max-age=31536000, immutable"
# Names under this first segment belong to the store itself (partial uploads), never to a media file.
RESERVED_PREFIX = ".tmp"
FILE_CHUNK_BYTES = 1024 * 1024


class StorageError(Exception):
    """An invalid key, or a store that could not do what was asked (unreachable, refused)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    modified: float  # seconds since the epoch
    content_type: str | None = None
    sha256: str | None = None
    etag: str | None = None


class Upload(Protocol):
    # A local file holding the bytes written so far, when the store keeps one (it can be read, e.g. to
    # probe the file, until commit or abort); None when the bytes go straight to a remote store.
    spool: Path | None

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self, sha256: str) -> None:
        """Make the file visible under its key, whole, with this sha256."""

    async def abort(self) -> None:
        """Drop what was written; nothing becomes visible. Safe to call more than once."""


class MediaStorage(Protocol):
    async def open_upload(self, key: str, content_type: str) -> Upload: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes from `start` to `end` (inclusive; None: to the end of the file), in chunks."""
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """The stored file under `key`, or None when there is none."""

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> bool:
        """Remove the file; False when there was none."""

    def list_files(self) -> AsyncIterator[StoredObject]:
        """Every stored file (not partial uploads): for the consistency pass and the orphan sweep."""
        ...

    async def used_bytes(self) -> int: ...

    async def abort_stale_uploads(self, started_before: float, *, dry_run: bool = False) -> tuple[int, int]:
        """Remove incomplete uploads begun before `started_before` (epoch seconds): (count, bytes)."""

    async def presigned_url(self, key: str, expires_seconds: float) -> str | None:
        """A short-lived URL anyone can GET the file from, or None when the store has no such thing."""

    async def aclose(self) -> None: ...


def check_key(key: str) -> str:
    """`key` if it names a media file: relative, no empty, `.` or `..` segment, not in the reserved area."""
    parts = key.split("/")
    if (
        not key
        or "\\" in key
        or "\x00" in key
        or any(part in ("", ".", "..") for part in parts)
        or parts[0] == RESERVED_PREFIX
    ):
        raise StorageError(f"invalid storage key {key!r}")
    return key


async def read_all(storage: MediaStorage, key: str) -> bytes:
    """The whole file in memory: only for small ones (an image sent inline)."""
    return b"".join([chunk async for chunk in storage.read(key)])


async def store_bytes(storage: MediaStorage, key: str, data: bytes, content_type: str) -> None:
    """Write a whole file held in memory."""
    upload = await storage.open_upload(key, content_type)
    try:
        await upload.write(data)
        await upload.commit(hashlib.sha256(data).hexdigest())
    except BaseException:
        await upload.abort()
        raise


async def store_file(storage: MediaStorage, key: str, path: Path, content_type: str, sha256: str) -> None:
    """Write a local file, streamed in parts; nothing is visible under `key` unless all of it arrived."""
    upload = await storage.open_upload(key, content_type)
    try:
        with path.open("rb") as source:
            while chunk := await asyncio.to_thread(source.read, FILE_CHUNK_BYTES):
                await upload.write(chunk)
        await upload.commit(sha256)
    except BaseException:
        await asyncio.shield(upload.abort())
        raise
