"""Media the caller brings: `uploadMedia` stores a file like a downloaded one, or refuses it and keeps nothing.

An upload is checked before anything is kept: its size (UPLOAD_MAX_BYTES, counted while it is copied to a
temp file), what it is (the probe's decision, shared with the downloader: from the bytes, whatever its name
or declared type say, a PNG, JPEG, WebP or GIF image, or an MP4 or WebM video), its pixels (MEDIA_MAX_PIXELS,
from the header, before anything is decoded) and that it decodes (every pixel of an image, so decoding is
bounded by that limit; the first frame of a video, which may last at most UPLOAD_MAX_VIDEO_SECONDS). A
refused file is deleted and no row is written.

The model: each upload is a generation of its own, already SUCCEEDED, with provider and model "upload" and
one READY media, owned by the caller's key. Media rows belong to generations, the event log and its feed are
per generation, and the gallery shows generations as cards; so an upload is published as one
GENERATION_CREATED event, appears in every listing and feed, and can be animated like a generated image, with
no change to any of them and no migration. A nullable `media.generation_id` would instead need events
without a generation, and a second kind of card. The generation's input records the file's name.

Order: the file is moved into storage (the call the downloader stores its files with), then the rows are
written; if they cannot be, the file is deleted again. Cleanup sweeps a file without a row; a row without a
file is never left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from server.db.models import Generation, Media, utcnow
from server.domain import GenerationStatus, MediaKind, MediaStatus
from server.services.access.viewer import Viewer
from server.services.errors import ServiceError
from server.services.event_log.events import EventType, append_event
from server.services.media.base import StoredMediaService, visible_media
from server.services.media.keys import media_key
from server.services.media.probe import IMAGE_TYPES, UNSUPPORTED, NotMedia, Probe, open_image, probe_file
from server.services.media.scratch import UPLOAD_SCRATCH_PREFIX
from server.services.media.service import StoredFile
from server.storage.port import store_file

logger = logging.getLogger(__name__)

# The provider and model names of an upload's generation ("upload" is no "owner/name" ref, so no model's).
UPLOAD_PROVIDER = "upload"
UPLOAD_MODEL = "upload"
CHUNK_BYTES = 256 * 1024
MAX_FILENAME = 200
# userErrors point at the mutation input's `file`.
FILE_FIELD = ["file"]


class UploadedFile(Protocol):
    """What a multipart upload hands the service (Litestar's UploadFile is one)."""

    filename: str

    async def read(self, size: int = -1) -> bytes: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Checked:
    """An upload that passed: what it is, and the facts stored with it."""

    kind: MediaKind
    probe: Probe
    byte_size: int
    sha256: str


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def inspect(path: Path, max_pixels: int, max_video_seconds: float) -> tuple[MediaKind, Probe]:
    """What the file at `path` is, from its bytes alone, once it is known to decode; Refused otherwise.
    Blocking."""
    try:
        probe = probe_file(path, max_pixels)
        if probe.content_type in IMAGE_TYPES:
            # Decoded only once its pixels are known to be within the limit: the memory this takes is bounded.
            with open_image(path, probe.content_type, max_pixels) as image:
                image.load()
            return MediaKind.IMAGE, probe
    except NotMedia as exc:
        raise Refused(exc.code, exc.message) from None
    if not _video_decodes(path):
        raise Refused(UNSUPPORTED, "the file is not an MP4 or WebM video that decodes")
    if probe.duration_seconds is None:
        raise Refused(UNSUPPORTED, "the video's duration cannot be read")
    if probe.duration_seconds > max_video_seconds:
        raise Refused(
            "VIDEO_TOO_LONG",
            f"the video lasts {probe.duration_seconds:g} s; at most {max_video_seconds:g} s "
            "(UPLOAD_MAX_VIDEO_SECONDS) are accepted",
        )
    return MediaKind.VIDEO, probe


def _video_decodes(path: Path) -> bool:
    """A video (the probe confirmed its container) whose first frame decodes."""
    try:
        import av

        with av.open(str(path)) as container:
            next(container.decode(container.streams.video[0]))
    except Exception:  # any demuxer or decoder error, or no frame at all
        return False
    return True


def clean_filename(name: str | None) -> str:
    """The file's own name as recorded: no directories, no control characters, cut short."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    printable = "".join(ch for ch in base if ch.isprintable()).strip()
    return printable[:MAX_FILENAME]


@dataclass(frozen=True, slots=True)
class CheckedUpload:
    """An upload that passed its checks, in a scratch file until it is kept (`UploadService.keep`)."""

    path: Path
    checked: Checked
    filename: str
    # The content type the request declared for the file part (what it is comes from the bytes).
    declared_type: str | None


class UploadService(StoredMediaService):
    @asynccontextmanager
    async def checked(self, file: UploadedFile) -> AsyncIterator[CheckedUpload]:
        """`file`, checked in a local scratch file (removed when the block ends); ServiceError, and nothing
        kept, when refused. Nothing reaches the store before the file has passed; `keep` stores it."""
        descriptor, name = tempfile.mkstemp(prefix=UPLOAD_SCRATCH_PREFIX)
        os.close(descriptor)
        temp = Path(name)
        try:
            try:
                checked = await self._check(file, temp)
            except Refused as exc:
                raise ServiceError.single(exc.code, exc.message, FILE_FIELD) from None
            finally:
                # The request's copy (spooled to disk past a size) is done with: the checked bytes are in `temp`.
                with contextlib.suppress(Exception):
                    await file.close()
            declared = getattr(file, "content_type", None)
            yield CheckedUpload(
                temp, checked, clean_filename(file.filename), declared if isinstance(declared, str) else None
            )
        finally:
            await asyncio.to_thread(temp.unlink, missing_ok=True)

    async def keep(self, viewer: Viewer, upload: CheckedUpload, *, metadata: dict[str, Any] | None = None) -> Media:
        """Store a checked upload and write its rows, with the caller's `metadata` on the media."""
        checked = upload.checked
        media_id = uuid.uuid4()
        key = media_key(media_id, checked.probe.content_type)
        await store_file(self._storage, key, upload.path, checked.probe.content_type, checked.sha256)
        try:
            media, event_id = await self._record(viewer, media_id, key, checked, upload.filename, metadata)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._storage.delete(key)
            raise
        await self._publish(event_id)
        logger.info(
            "media uploaded",
            extra={"media_id": str(media_id), "kind": checked.kind, "bytes": checked.byte_size},
        )
        return media

    async def get(self, media_id: uuid.UUID, viewer: Viewer) -> Media:
        """The media, if `viewer` may see it; else NotFound."""
        async with self._sessions() as session:
            return await visible_media(session, media_id, viewer)

    async def _check(self, file: UploadedFile, temp: Path) -> Checked:
        limit = self._settings.uploads.max_bytes
        digest = hashlib.sha256()
        size = 0
        with temp.open("wb") as sink:
            while chunk := await file.read(CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise Refused("FILE_TOO_LARGE", f"the file is over {limit} bytes (UPLOAD_MAX_BYTES)")
                digest.update(chunk)
                sink.write(chunk)
        if size == 0:
            raise Refused(UNSUPPORTED, "the file is empty")
        kind, probe = await asyncio.to_thread(
            inspect, temp, self._settings.media.max_pixels, self._settings.uploads.max_video_seconds
        )
        return Checked(kind=kind, probe=probe, byte_size=size, sha256=digest.hexdigest())

    async def _record(
        self,
        viewer: Viewer,
        media_id: uuid.UUID,
        key: str,
        checked: Checked,
        filename: str,
        metadata: dict[str, Any] | None,
    ) -> tuple[Media, int]:
        now = utcnow()
        generation = Generation(
            id=uuid.uuid4(),
            owner_id=viewer.owner_id,
            kind=checked.kind,
            model_ref=UPLOAD_MODEL,
            input={"filename": filename} if filename else {},
            status=GenerationStatus.SUCCEEDED,
            provider=UPLOAD_PROVIDER,
            created_at=now,
            updated_at=now,
            started_at=now,
            completed_at=now,
        )
        probe = checked.probe
        media = Media(
            id=media_id,
            generation_id=generation.id,
            owner_id=viewer.owner_id,
            position=0,
            kind=checked.kind,
            status=MediaStatus.READY,
            client_metadata=metadata,
            **asdict(
                StoredFile(
                    key,
                    probe.content_type,
                    checked.byte_size,
                    checked.sha256,
                    probe.width,
                    probe.height,
                    probe.duration_seconds,
                )
            ),
            download_attempts=0,
            created_at=now,
            updated_at=now,
            ready_at=now,
        )
        async with self._sessions() as session, session.begin():
            session.add(generation)
            await session.flush()
            session.add(media)
            event_id = await append_event(session, generation, [media], EventType.CREATED)
        return media, event_id
