"""Helpers the operations tests share: row counts, settled flows, seeded media files, stray uploads."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from server.db.models import ApiKey, Event, Generation, Media
from server.domain import GenerationStatus, MediaKind, MediaStatus
from server.storage.local import LocalStorage
from server.storage.port import store_bytes
from tests.support.darkroom import Darkroom
from tests.support.flows import START, get_generation, settled
from tests.support.object_storage import MediaStore
from tests.support.waiting import eventually

VIDEO_MODEL = "darkroom-sim/motion-sketch"


async def row_counts(darkroom: Darkroom) -> dict[str, int]:
    """How many rows each table holds (the models cache is left out: reads may fill it)."""
    counts = {}
    async with darkroom.runtime.sessions() as session:
        for table in (Generation, Media, Event, ApiKey):
            counts[table.__tablename__] = int(await session.scalar(select(func.count()).select_from(table)) or 0)
    return counts


def raw_id(global_id: str) -> uuid.UUID:
    decoded = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
    return uuid.UUID(decoded.split(":", 1)[1])


async def settled_generation(darkroom: Darkroom, model: str, **input_: Any) -> dict[str, Any]:
    """Start a generation over HTTP and wait until it and its media have settled."""
    result = await darkroom.query(START, {"model": model, "input": input_})
    assert "errors" not in result, result
    payload = result["data"]["startGeneration"]
    assert payload["userErrors"] == [], payload
    generation_id = payload["generation"]["id"]

    async def done() -> dict[str, Any] | None:
        current = await get_generation(darkroom, generation_id)
        return current if settled(current) else None

    found: dict[str, Any] = await eventually(done, timeout=30)
    return found


async def seed_media(
    darkroom: Darkroom,
    content: bytes,
    *,
    content_type: str = "image/png",
    extension: str = ".png",
    created_at: datetime | None = None,
    generation_status: str = GenerationStatus.SUCCEEDED,
    kind: str = MediaKind.IMAGE,
) -> Media:
    """A SUCCEEDED generation with one READY media file written to storage."""
    media_id = uuid.uuid4()
    key = f"{media_id.hex[:2]}/{media_id.hex}{extension}"
    await store_bytes(darkroom.runtime.storage, key, content, content_type)
    async with darkroom.runtime.sessions.begin() as session:
        generation = Generation(
            provider="replicate",
            kind=kind,
            model_ref="darkroom-sim/pixel-forge",
            input={"prompt": "seeded"},
            status=generation_status,
            provider_id=f"seed-{uuid.uuid4().hex}",
            **({"created_at": created_at} if created_at else {}),
        )
        session.add(generation)
        await session.flush()
        media = Media(
            id=media_id,
            generation_id=generation.id,
            position=0,
            kind=kind,
            status=MediaStatus.READY,
            source_url="https://replicate.delivery/seeded",
            storage_key=key,
            content_type=content_type,
            byte_size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            **({"created_at": created_at, "ready_at": created_at} if created_at else {}),
        )
        session.add(media)
    return media


async def stored_keys(darkroom: Darkroom) -> set[str]:
    return {entry.key async for entry in darkroom.runtime.storage.list_files()}


async def partial_upload(darkroom: Darkroom, store: MediaStore) -> Callable[[], bool]:
    """An upload a crashed process left unfinished: a partial file, or an S3 multipart upload with a part.
    Returns a check that says whether it is still there."""
    storage = darkroom.runtime.storage
    if isinstance(storage, LocalStorage):
        partial = storage.temp_path()
        partial.write_bytes(b"half a download")
        return partial.exists
    assert store.bucket is not None
    client = store.client()
    key = f"{store.prefix}/yy/{uuid.uuid4().hex}.mp4"
    started = client.create_multipart_upload(Bucket=store.bucket, Key=key)
    client.upload_part(Bucket=store.bucket, Key=key, UploadId=started["UploadId"], PartNumber=1, Body=b"half")
    return lambda: any(upload["UploadId"] == started["UploadId"] for upload in store.multipart_uploads())
