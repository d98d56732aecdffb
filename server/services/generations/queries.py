"""Every read the GraphQL layer makes: pages with keyset cursors, and batched lookups for loaders.

Each list is ordered newest first by (created_at, id) and filtered by what the viewer may see; each
batch lookup is one statement however many keys it is given, so a page costs a fixed number of queries.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import CatalogModel, Event, Generation, Media
from server.services.access.viewer import Viewer
from server.services.generations.snapshots import state_snapshot


@dataclass(frozen=True, slots=True)
class GenerationFilter:
    statuses: Sequence[str] = ()
    kind: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class MediaFilter:
    statuses: Sequence[str] = ()
    kind: str | None = None
    generation_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class EventFilter:
    generation_ids: Sequence[uuid.UUID] = ()
    kinds: Sequence[str] = ()
    types: Sequence[str] = ()

    def matches(self, event: dict[str, Any]) -> bool:
        if self.generation_ids and uuid.UUID(event["generationId"]) not in self.generation_ids:
            return False
        if self.kinds and event["generation"]["kind"] not in self.kinds:
            return False
        return not (self.types and event["type"] not in self.types)


T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    has_next: bool = False


def _owned(statement: Select[Any], column: Any, viewer: Viewer) -> Select[Any]:
    if viewer.sees_all:
        return statement
    if viewer.owner_id is None:
        return statement.where(false())
    return statement.where(column == viewer.owner_id)


def _after(statement: Select[Any], created: Any, ident: Any, after: tuple[datetime, uuid.UUID] | None) -> Select[Any]:
    if after is None:
        return statement
    at, last_id = after
    return statement.where(or_(created < at, and_(created == at, ident < last_id)))


async def _page(session: AsyncSession, statement: Select[Any], limit: int) -> Page[Any]:
    rows = list((await session.scalars(statement.limit(limit + 1))).all())
    return Page(items=rows[:limit], has_next=len(rows) > limit)


async def generations_page(
    session: AsyncSession,
    viewer: Viewer,
    flt: GenerationFilter,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Page[Generation]:
    statement = _owned(select(Generation), Generation.owner_id, viewer)
    if flt.statuses:
        statement = statement.where(Generation.status.in_(flt.statuses))
    if flt.kind:
        statement = statement.where(Generation.kind == flt.kind)
    if flt.model:
        statement = statement.where(Generation.model_ref == flt.model)
    statement = _after(statement, Generation.created_at, Generation.id, after)
    return await _page(session, statement.order_by(Generation.created_at.desc(), Generation.id.desc()), limit)


async def media_page(
    session: AsyncSession,
    viewer: Viewer,
    flt: MediaFilter,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Page[Media]:
    statement = _owned(select(Media), Media.owner_id, viewer)
    if flt.statuses:
        statement = statement.where(Media.status.in_(flt.statuses))
    if flt.kind:
        statement = statement.where(Media.kind == flt.kind)
    if flt.generation_id:
        statement = statement.where(Media.generation_id == flt.generation_id)
    statement = _after(statement, Media.created_at, Media.id, after)
    return await _page(session, statement.order_by(Media.created_at.desc(), Media.id.desc()), limit)


async def models_page(
    session: AsyncSession, kind: str | None, search: str | None, after: str | None, limit: int
) -> Page[CatalogModel]:
    statement = select(CatalogModel)
    if kind:
        statement = statement.where(CatalogModel.kind == kind)
    if search:
        pattern = f"%{search.lower()}%"
        statement = statement.where(or_(CatalogModel.ref.ilike(pattern), CatalogModel.description.ilike(pattern)))
    if after:
        statement = statement.where(CatalogModel.ref > after)
    return await _page(session, statement.order_by(CatalogModel.ref), limit)


async def events_after(
    session: AsyncSession, viewer: Viewer, after_id: int, flt: EventFilter, limit: int
) -> list[Event]:
    statement = _owned(select(Event), Event.owner_id, viewer).where(Event.id > after_id)
    if flt.generation_ids:
        statement = statement.where(Event.generation_id.in_(flt.generation_ids))
    return list((await session.scalars(statement.order_by(Event.id).limit(limit))).all())


async def latest_event_id(session: AsyncSession, viewer: Viewer | None = None) -> int:
    """The newest event's id (0 for an empty log); with `viewer`, the newest of those it may see."""
    statement = select(Event.id) if viewer is None else _owned(select(Event.id), Event.owner_id, viewer)
    return int((await session.scalars(statement.order_by(Event.id.desc()).limit(1))).first() or 0)


# --- batch lookups (DataLoaders) -------------------------------------------------------------------
async def generations_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Generation]:
    rows = await session.scalars(select(Generation).where(Generation.id.in_(set(ids))))
    return {row.id: row for row in rows}


async def media_by_id(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Media]:
    rows = await session.scalars(select(Media).where(Media.id.in_(set(ids))))
    return {row.id: row for row in rows}


async def media_by_generation(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Media]]:
    grouped: dict[uuid.UUID, list[Media]] = defaultdict(list)
    rows = await session.scalars(
        select(Media).where(Media.generation_id.in_(set(ids))).order_by(Media.generation_id, Media.position)
    )
    for row in rows:
        grouped[row.generation_id].append(row)
    return grouped


async def generations_by_source(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Generation]]:
    grouped: dict[uuid.UUID, list[Generation]] = defaultdict(list)
    rows = await session.scalars(
        select(Generation).where(Generation.source_media_id.in_(set(ids))).order_by(Generation.created_at)
    )
    for row in rows:
        if row.source_media_id is not None:
            grouped[row.source_media_id].append(row)
    return grouped


async def models_by_ref(session: AsyncSession, refs: Sequence[str]) -> dict[str, CatalogModel]:
    rows = await session.scalars(select(CatalogModel).where(CatalogModel.ref.in_(set(refs))))
    return {row.ref: row for row in rows}


async def current_state(session: AsyncSession, generation_id: uuid.UUID) -> dict[str, Any] | None:
    """A generation and its media as an event-shaped snapshot, or None when it does not exist."""
    generation = await session.get(Generation, generation_id)
    if generation is None:
        return None
    media = (await media_by_generation(session, [generation_id])).get(generation_id, [])
    return state_snapshot(generation, media)
