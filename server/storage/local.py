"""Where downloaded media files live: a directory, written atomically (temp file, then rename).

Keys are relative paths such as ``ab/abcdef....png``; the media route serves them and `Media.url` names
them. Nothing outside MEDIA_ROOT can be addressed: keys are checked before use.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


class StorageError(Exception):
    pass


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".tmp").mkdir(exist_ok=True)

    def path(self, key: str) -> Path:
        """The file behind `key`; refuses keys that would leave the root."""
        path = (self.root / key).resolve()
        if self.root not in path.parents or key.startswith(".tmp"):
            raise StorageError(f"invalid storage key {key!r}")
        return path

    def temp_path(self) -> Path:
        return self.root / ".tmp" / f"{uuid.uuid4().hex}.part"

    def commit(self, temp: Path, key: str) -> Path:
        """Move a finished temp file into place under `key`, atomically."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        return target

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def keys(self) -> set[str]:
        """Every stored key (for consistency checks and cleanup of orphans)."""
        return {
            str(path.relative_to(self.root))
            for path in self.root.rglob("*")
            if path.is_file() and ".tmp" not in path.relative_to(self.root).parts
        }

    def used_bytes(self) -> int:
        return sum(self.path(key).stat().st_size for key in self.keys())
