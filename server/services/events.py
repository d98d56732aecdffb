"""Appending to the event log, inside the caller's transaction.

Event ids are the resumable feed's cursor, so they must become visible in id order. On Postgres two
transactions could commit their ids out of order; a transaction-scoped advisory lock taken just before
the insert, and held until commit, makes id order equal commit order (SQLite has one writer anyway).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Event, Generation, Media, utcnow
from server.db.session import is_postgres
from server.services.snapshots import event_payload

EVENT_ORDER_LOCK = 7314220002


class EventType:
    CREATED = "GENERATION_CREATED"
    UPDATED = "GENERATION_UPDATED"
    MEDIA_UPDATED = "MEDIA_UPDATED"


async def append_event(session: AsyncSession, generation: Generation, media: list[Media], type_: str) -> dict[str, Any]:
    """Number the change, log it, and return the payload to publish once the transaction commits."""
    if is_postgres(session):
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_ORDER_LOCK})
    now: datetime = utcnow()
    generation.event_seq += 1
    generation.updated_at = now
    payload = event_payload(
        event_id=0, seq=generation.event_seq, type_=type_, generation=generation, media=media, at=now
    )
    event = Event(
        generation_id=generation.id,
        owner_id=generation.owner_id,
        seq=generation.event_seq,
        type=type_,
        payload=payload,
        created_at=now,
    )
    session.add(event)
    await session.flush()
    return {**payload, "id": event.id}


def published_form(event: Event) -> dict[str, Any]:
    """An event read back from the log, in the exact form it was published."""
    return {**event.payload, "id": event.id}


async def append_media_event(session: AsyncSession, generation_id: uuid.UUID) -> dict[str, Any]:
    """Log that one of the generation's media changed: lock the generation, snapshot it with all its media."""
    generation = (
        await session.scalars(select(Generation).where(Generation.id == generation_id).with_for_update())
    ).one()
    media = list(
        (
            await session.scalars(select(Media).where(Media.generation_id == generation_id).order_by(Media.position))
        ).all()
    )
    return await append_event(session, generation, media, EventType.MEDIA_UPDATED)
