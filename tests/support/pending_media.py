"""Media rows waiting for the downloader, made straight in the database: what a provider's SUCCEEDED
webhook leaves behind, without the provider, so a test chooses the file host and what it serves."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy import select

from server.db.models import Generation, Media
from server.domain import GenerationStatus, MediaStatus
from tests.support.waiting import eventually

MODELS = {"IMAGE": "darkroom-sim/pixel-forge", "VIDEO": "darkroom-sim/motion-sketch"}


async def pending_media(darkroom: Any, url: str, kind: Literal["IMAGE", "VIDEO"] = "IMAGE") -> uuid.UUID:
    """The id of a SUCCEEDED generation's one media file, PENDING download from `url`."""
    async with darkroom.runtime.sessions.begin() as session:
        generation = Generation(
            provider="replicate",
            kind=kind,
            model_ref=MODELS[kind],
            input={},
            status=GenerationStatus.SUCCEEDED,
            provider_id=f"pending-{uuid.uuid4().hex}",
        )
        session.add(generation)
        await session.flush()
        media = Media(generation_id=generation.id, position=0, kind=kind, status=MediaStatus.PENDING, source_url=url)
        session.add(media)
    return media.id


async def media_row(darkroom: Any, media_id: uuid.UUID) -> Media:
    async with darkroom.runtime.sessions() as session:
        return (await session.scalars(select(Media).where(Media.id == media_id))).one()


async def settled_media(darkroom: Any, media_id: uuid.UUID, *, timeout: float = 60) -> Media:
    """The row once its download has ended, READY or FAILED."""

    async def done() -> Media | None:
        row = await media_row(darkroom, media_id)
        return row if row.status in (MediaStatus.READY, MediaStatus.FAILED) else None

    found: Media = await eventually(done, timeout=timeout)
    return found
