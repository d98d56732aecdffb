"""In-memory file storage: prediction outputs, uploads made through ``POST /v1/files``, and covers.

Nothing touches the disk. Outputs are keyed by their path below the simulator's base URL
(``/files/<prediction_id>/<name>``) and remember which prediction they belong to, so that the engine can
expire them with its data.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from server.simulator.clock import iso, utcnow

UPLOAD_TTL = timedelta(hours=24)


def new_id() -> str:
    """A Replicate-style id: 26 lowercase base32 characters (letters and digits 2-7)."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


@dataclass
class StoredFile:
    content: bytes
    content_type: str
    prediction_id: str | None = None
    failures_served: int = 0


@dataclass
class Upload:
    """A file uploaded through ``POST /v1/files``."""

    id: str
    name: str
    content_type: str
    content: bytes
    metadata: dict[str, Any]
    created_at: datetime
    expires_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.expires_at = self.created_at + UPLOAD_TTL

    @property
    def download_path(self) -> str:
        return f"/v1/files/{self.id}/download"

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": len(self.content),
            "etag": hashlib.md5(self.content).hexdigest(),
            "checksums": {
                "sha256": hashlib.sha256(self.content).hexdigest(),
                "md5": hashlib.md5(self.content).hexdigest(),
            },
            "metadata": self.metadata,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "urls": {"get": base_url + self.download_path},
        }


class FileStore:
    """Outputs by path and uploads by id."""

    def __init__(self) -> None:
        self.outputs: dict[str, StoredFile] = {}
        self.uploads: dict[str, Upload] = {}

    def put_output(self, path: str, content: bytes, content_type: str, prediction_id: str | None) -> None:
        self.outputs[path] = StoredFile(content, content_type, prediction_id)

    def remove_outputs(self, paths: list[str]) -> None:
        for path in paths:
            self.outputs.pop(path, None)

    def add_upload(self, name: str, content_type: str, content: bytes, metadata: dict[str, Any]) -> Upload:
        upload = Upload(new_id(), name, content_type, content, metadata, utcnow())
        self.uploads[upload.id] = upload
        return upload

    def upload(self, file_id: str) -> Upload | None:
        """The upload, unless it does not exist or has expired (expired ones are forgotten)."""
        upload = self.uploads.get(file_id)
        if upload is not None and upload.expires_at <= utcnow():
            del self.uploads[file_id]
            return None
        return upload
