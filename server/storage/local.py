"""Where downloaded media files live by default: a directory, written atomically (temp file, then rename).

Keys are relative paths such as ``ab/abcdef....png``; nothing outside the root can be addressed: keys
are checked before use. Partial uploads live in ``.tmp`` under the root, on the same file system, so a
commit is one rename. The content type and sha256 are not kept beside the file: the media row has them.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from server.storage.port import RESERVED_PREFIX, StorageError, StoredObject, check_key
from server.storage.sweep import remove_files_older_than

CHUNK = 256 * 1024


class LocalUpload:
    def __init__(self, storage: LocalStorage, key: str) -> None:
        self._storage = storage
        self._key = key
        self.spool: Path | None = storage.temp_path()
        # Unbuffered: what was written is in the spool file at once, for whoever reads it before commit.
        self._file: BinaryIO | None = self.spool.open("wb", buffering=0)

    async def write(self, chunk: bytes) -> None:
        assert self._file is not None, "the upload is finished"
        self._file.write(chunk)

    async def commit(self, sha256: str) -> None:
        assert self._file is not None and self.spool is not None, "the upload is finished"
        self._file.close()
        self._file = None
        await asyncio.to_thread(self._storage.commit, self.spool, self._key)
        self.spool = None

    async def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.spool is not None:
            self.spool.unlink(missing_ok=True)
            self.spool = None


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / RESERVED_PREFIX).mkdir(exist_ok=True)

    def path(self, key: str) -> Path:
        """The file behind `key`; refuses keys that would leave the root."""
        check_key(key)
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StorageError(f"invalid storage key {key!r}")
        return path

    def temp_path(self) -> Path:
        return self.root / RESERVED_PREFIX / f"{uuid.uuid4().hex}.part"

    def commit(self, temp: Path, key: str) -> Path:
        """Move a finished temp file into place under `key`, atomically."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        return target

    # --- the port ----------------------------------------------------------------------------------
    async def open_upload(self, key: str, content_type: str) -> LocalUpload:
        self.path(key)
        return LocalUpload(self, key)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            source = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise StorageError(f"no stored file {key!r}") from None
        with source:
            source.seek(start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                chunk = await asyncio.to_thread(source.read, CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    async def stat(self, key: str) -> StoredObject | None:
        path = self.path(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        return StoredObject(key, stat.st_size, stat.st_mtime, content_type=mimetypes.guess_type(path.name)[0])

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    async def delete(self, key: str) -> bool:
        try:
            await asyncio.to_thread(self.path(key).unlink)
            return True
        except FileNotFoundError:
            return False

    async def list_files(self) -> AsyncIterator[StoredObject]:
        for entry in await asyncio.to_thread(self._scan):
            yield entry

    def _scan(self) -> list[StoredObject]:
        found = []
        for path in self.root.rglob("*"):
            relative = path.relative_to(self.root)
            if relative.parts[0] == RESERVED_PREFIX:
                continue
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                if path.is_file():
                    found.append(StoredObject(relative.as_posix(), stat.st_size, stat.st_mtime))
        return found

    async def used_bytes(self) -> int:
        return sum([entry.size async for entry in self.list_files()])

    async def abort_stale_uploads(self, started_before: float, *, dry_run: bool = False) -> tuple[int, int]:
        """Partial files left in .tmp by a process that died mid-download."""
        # The glob is lazy: the directory is read in the thread, with the rest.
        paths = (self.root / RESERVED_PREFIX).glob("*")
        return await asyncio.to_thread(remove_files_older_than, paths, started_before, dry_run=dry_run)

    async def presigned_url(self, key: str, expires_seconds: float) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
