"""Appending to the event log, inside the caller's transaction.

Event ids are the resumable feed's cursor, so they must become visible in id order. On Postgres two
transactions could commit their ids out of order; a transaction-scoped advisory lock (EVENT_ORDER_LOCK),
taken right before the event's id is drawn and held until commit, makes id order equal commit order
(SQLite has one writer anyway). Every writer takes the generation's row lock first and this lock last,
in the same statement as the event insert and after everything else the transaction writes, so that the
lock is held for as short a time as possible (the insert and the commit) and never while waiting for a
row lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server import telemetry
from server.db.models import AnyGeneration, Event, Generation, Media, utcnow
from server.db.session import is_postgres
from server.domain import GenerationStatus, MediaStatus, phase_of
from server.services.event_log.snapshots import event_record

EVENT_ORDER_LOCK = 7314220002

# Announces that the event with this id committed (the event hub's `publish`): subscribers read it from the log.
Publish = Callable[[int], Awaitable[None]]

# The lock is taken while the one-row CTE is read, that is before the INSERT draws the id from the
# sequence (a MATERIALIZED CTE with a volatile function is evaluated exactly once, first).
_LOCKED_INSERT = text(
    """
    WITH ordered AS MATERIALIZED (SELECT pg_advisory_xact_lock(:lock))
    INSERT INTO events (generation_id, owner_id, seq, type, payload, created_at)
    SELECT CAST(:generation_id AS UUID), CAST(:owner_id AS UUID), CAST(:seq AS INTEGER),
           CAST(:type AS VARCHAR), CAST(:payload AS JSON), CAST(:created_at AS TIMESTAMP WITH TIME ZONE)
    FROM ordered
    RETURNING id
    """
)


class EventType:
    CREATED = "GENERATION_CREATED"
    UPDATED = "GENERATION_UPDATED"
    MEDIA_UPDATED = "MEDIA_UPDATED"


def number_change(generation: AnyGeneration, media: list[Media] | None = None) -> datetime:
    """Give the generation's next change its sequence number and `updated_at`, and its phase as the change
    leaves it (`media`: the generation's media, when the change concerns them); returns that time."""
    now: datetime = utcnow()
    generation.event_seq += 1
    generation.updated_at = now
    generation.phase = phase_of(
        GenerationStatus(generation.status),
        has_logs=bool(generation.logs and generation.logs.strip()),
        media=[MediaStatus(item.status) for item in media] if media else None,
        current=generation.phase,
    )
    return now


def event_for(generation: AnyGeneration, media: list[Media], type_: str, at: datetime) -> tuple[dict[str, Any], str]:
    """The numbered change's payload (without its id) and the same payload as stored JSON."""
    return event_record(event_id=0, seq=generation.event_seq, type_=type_, generation=generation, media=media, at=at)


async def append_event(session: AsyncSession, generation: Generation, media: list[Media], type_: str) -> int:
    """Number the change, log it, and return the event's id, to publish once the transaction commits.

    Everything the session holds is flushed first (so the snapshot shows the rows as stored); on Postgres
    the ordering lock and the event insert are then one statement, the transaction's last before COMMIT."""
    attributes = {telemetry.GENERATION_ID: str(generation.id), "darkroom.event_type": type_}
    with telemetry.span("darkroom.event_log.append", attributes):
        event_id = await _append_event(session, generation, media, type_)
        telemetry.set_attributes({"darkroom.event_id": event_id})
        return event_id


async def _append_event(session: AsyncSession, generation: Generation, media: list[Media], type_: str) -> int:
    now = number_change(generation, media)
    await session.flush()
    payload, encoded = event_for(generation, media, type_, now)
    if not is_postgres(session):
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
        return event.id
    event_id: int = (
        await session.execute(
            _LOCKED_INSERT,
            {
                "lock": EVENT_ORDER_LOCK,
                "generation_id": generation.id,
                "owner_id": generation.owner_id,
                "seq": generation.event_seq,
                "type": type_,
                "payload": encoded,
                "created_at": now,
            },
        )
    ).scalar_one()
    return event_id


def published_form(event: Event) -> dict[str, Any]:
    """An event read back from the log, in the exact form it was published."""
    return {**event.payload, "id": event.id}


async def append_media_event(session: AsyncSession, generation_id: uuid.UUID) -> int:
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
