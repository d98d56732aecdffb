"""Every read the GraphQL layer makes: pages with keyset cursors, and batched lookups for loaders.

Each list is ordered newest first by (created_at, id) and filtered by what the viewer may see; each
batch lookup is one statement however many keys it is given, so a page costs a fixed number of queries.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from server.db.models import CatalogModel, Event, Generation, Media
from server.services.access.viewer import Viewer

# A metadata filter: top-level keys and the scalar each must equal.
MetadataMatch = Mapping[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class GenerationFilter:
    statuses: Sequence[str] = ()
    kind: str | None = None
    model: str | None = None
    metadata: MetadataMatch | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found = _conditions(
            Generation.status, self.statuses, (Generation.kind, self.kind), (Generation.model_ref, self.model)
        )
        return found + metadata_conditions(Generation.client_metadata, self.metadata)


@dataclass(frozen=True, slots=True)
class MediaFilter:
    statuses: Sequence[str] = ()
    kind: str | None = None
    generation_id: uuid.UUID | None = None
    metadata: MetadataMatch | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found = _conditions(
            Media.status, self.statuses, (Media.kind, self.kind), (Media.generation_id, self.generation_id)
        )
        return found + metadata_conditions(Media.client_metadata, self.metadata)


class _JsonMember(FunctionElement[str]):
    """Something about what a top-level key of a JSON object column holds (NULL when the key is absent),
    compiled for each database below.

    SQLite looks the key up with json_each, which decodes the stored keys: a JSON path would not match a
    key stored with \\u escapes, as Python's json writes every non-ASCII character."""

    type = String()
    inherit_cache = True

    def __init__(self, column: InstrumentedAttribute[Any], key: str) -> None:
        super().__init__(column, literal(key, String()))


class JsonKind(_JsonMember):
    """The value's kind in one vocabulary on both databases: "string", "number", "true", "false", "null",
    "object" or "array"."""

    name = "json_kind"
    inherit_cache = True


class JsonText(_JsonMember):
    """The value as text: a string as itself, a number as its digits."""

    name = "json_text"
    inherit_cache = True


@compiles(JsonKind, "postgresql")
@compiles(JsonText, "postgresql")
def _json_member_postgresql(element: _JsonMember, compiler: SQLCompiler, **kw: Any) -> str:
    column, key = list(element.clauses)
    if isinstance(element, JsonText):
        return compiler.process(column.op("->>")(key), **kw)
    typed = func.json_typeof(column.op("->")(key))
    return compiler.process(case((typed == "boolean", column.op("->>")(key)), else_=typed), **kw)


@compiles(JsonKind, "sqlite")
@compiles(JsonText, "sqlite")
def _json_member_sqlite(element: _JsonMember, compiler: SQLCompiler, **kw: Any) -> str:
    column, key = list(element.clauses)
    members = func.json_each(column).table_valued("key", "type", "atom")
    picked: Any = members.c.atom
    if isinstance(element, JsonKind):
        typed = members.c.type
        picked = case((typed == "text", "string"), (typed.in_(["integer", "real"]), "number"), else_=typed)
    return compiler.process(select(picked).where(members.c.key == key).scalar_subquery(), **kw)


def metadata_conditions(column: InstrumentedAttribute[Any], match: MetadataMatch | None) -> list[ColumnElement[bool]]:
    """`column`'s object holds each key of `match` with an equal value: text equal to text, a number to a number
    (1 and 1.0 alike), a boolean to a boolean; never a value of another type."""
    found: list[ColumnElement[bool]] = []
    for key, wanted in (match or {}).items():
        kind, text = JsonKind(column, key), JsonText(column, key)
        if isinstance(wanted, bool):
            found.append(kind == ("true" if wanted else "false"))
        elif isinstance(wanted, str):
            found.append(and_(kind == "string", text == wanted))
        else:
            # Read as a number only once it is one: PostgreSQL would fail on casting other text.
            found.append(case((kind == "number", cast(text, Float))) == float(wanted))
    return found


def _conditions(
    status: InstrumentedAttribute[str], statuses: Sequence[str], *equal: tuple[InstrumentedAttribute[Any], object]
) -> list[ColumnElement[bool]]:
    """`status` among `statuses` and each column equal to its value, leaving out what was not asked for."""
    found: list[ColumnElement[bool]] = [status.in_(statuses)] if statuses else []
    return found + [column == value for column, value in equal if value]


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
Row = TypeVar("Row", Generation, Media)
TimeCursor = tuple[datetime, uuid.UUID]


@dataclass
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    has_next: bool = False


async def _page(session: AsyncSession, statement: Select[Any], limit: int) -> Page[Any]:
    rows = list((await session.scalars(statement.limit(limit + 1))).all())
    return Page(items=rows[:limit], has_next=len(rows) > limit)


async def generations_page(
    session: AsyncSession, viewer: Viewer, flt: GenerationFilter, after: TimeCursor | None, limit: int
) -> Page[Generation]:
    return await _newest_first(session, Generation, viewer, flt.conditions(), after, limit)


async def media_page(
    session: AsyncSession, viewer: Viewer, flt: MediaFilter, after: TimeCursor | None, limit: int
) -> Page[Media]:
    return await _newest_first(session, Media, viewer, flt.conditions(), after, limit)


async def _newest_first(
    session: AsyncSession,
    entity: type[Row],
    viewer: Viewer,
    conditions: list[ColumnElement[bool]],
    after: TimeCursor | None,
    limit: int,
) -> Page[Row]:
    """The rows the viewer may see that meet `conditions`, newest first, after the `after` cursor."""
    statement = select(entity).where(viewer.visible(entity.owner_id), *conditions)
    if after is not None:
        at, last_id = after
        statement = statement.where(or_(entity.created_at < at, and_(entity.created_at == at, entity.id < last_id)))
    return await _page(session, statement.order_by(entity.created_at.desc(), entity.id.desc()), limit)


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


async def latest_event_id(session: AsyncSession, viewer: Viewer | None = None) -> int:
    """The newest event's id (0 for an empty log); with `viewer`, the newest of those it may see."""
    statement = select(Event.id).where((viewer or Viewer.system()).visible(Event.owner_id))
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
