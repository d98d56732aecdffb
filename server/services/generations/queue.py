"""Darkroom's own queue: how many generations run at once, which waits, and in what order they start.

A generation takes one of the queue's slots from the moment it is sent to its provider (STARTING) until
it ends. Each key runs at most its own limit at once (`api_keys.max_running`, else MAX_RUNNING_PER_KEY;
on an open server the anonymous caller is one key), and all of Darkroom at most MAX_RUNNING_TOTAL. A start
past either limit waits QUEUED. Queued generations start first in, first out within a key, and keys take
turns: each round gives the first queued job of every key with a free slot before the second of any, and
among those, the key served longest ago (or never) goes first.

Every decision about slots is made under one lock (`QUEUE_LOCK`, an advisory lock on Postgres; SQLite has
one writer), so two processes never hand out the same slot. Claiming a queued generation is setting it
STARTING under that lock and the row's own lock, so a cancel and a claim never both win.

A queued generation's `queue_position` is its place in its key's line: 1 starts next. It is exact up to
EXACT_POSITIONS; further back it is rounded up to the next step of 20, 50, 100, 200, 500... Each change
of the shown position is an event, so a job waiting behind n others gets O(EXACT_POSITIONS + log n) events
rather than n, and a queue of n drains in O(n log n) events, not O(n²).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import ApiKey, Generation
from server.db.session import is_postgres
from server.domain import RUNNING_GENERATION_STATUSES, GenerationStatus
from server.settings import Settings

QUEUE_LOCK = 7314220003

EXACT_POSITIONS = 10

# An owner: an API key's id, or None for the anonymous caller of an open server.
Owner = uuid.UUID | None


def shown_position(exact: int) -> int:
    """The position a queued generation shows: `exact` up to EXACT_POSITIONS, else the next step above it."""
    if exact <= EXACT_POSITIONS:
        return exact
    for magnitude in itertools.count(1):
        for lead in (2, 5, 10):
            step = lead * 10**magnitude
            if exact <= step:
                return step
    raise AssertionError("unreachable")


def _owned_by(owner: Owner) -> ColumnElement[bool]:
    return Generation.owner_id.is_(None) if owner is None else Generation.owner_id == owner


def _due(now: datetime) -> ColumnElement[bool]:
    return (Generation.queue_not_before.is_(None)) | (Generation.queue_not_before <= now)


class GenerationQueue:
    """The queue's rules, each run inside the caller's transaction (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def total_limit(self) -> int:
        return self._settings.queue.max_running_total

    async def lock(self, session: AsyncSession) -> None:
        """Take the queue's lock until the transaction ends (SQLite: its BEGIN IMMEDIATE already did)."""
        if is_postgres(session):
            await session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": QUEUE_LOCK})

    async def limit_of(self, session: AsyncSession, owner: Owner) -> int:
        """How many generations `owner` may run at once."""
        own = await session.scalar(select(ApiKey.max_running).where(ApiKey.id == owner)) if owner else None
        return own if own is not None else self._settings.queue.max_running_per_key

    async def wait_reason(self, session: AsyncSession, owner: Owner) -> str | None:
        """Why a new generation of `owner`'s must wait, or None when it may start now. Under `lock`."""
        waiting = await session.scalar(
            select(Generation.id).where(Generation.status == GenerationStatus.QUEUED, _owned_by(owner)).limit(1)
        )
        if waiting is not None:
            return "waiting behind this key's generations queued before it"
        running = await self._running(session)
        limit = await self.limit_of(session, owner)
        if running.get(owner, 0) >= limit:
            return f"this key runs at most {limit} generation{'s' if limit != 1 else ''} at once"
        if sum(running.values()) >= self.total_limit:
            return f"Darkroom runs at most {self.total_limit} generations at once"
        return None

    async def claim(self, session: AsyncSession, now: datetime) -> list[Generation]:
        """Claim the queued generations that free slots allow, in turn between keys; each is set STARTING
        (the caller then sends it). Under `lock`."""
        running = await self._running(session)
        free_total = self.total_limit - sum(running.values())
        if free_total <= 0:
            return []
        owners = (
            await session.scalars(
                select(Generation.owner_id)
                .where(Generation.status == GenerationStatus.QUEUED, _due(now))
                .group_by(Generation.owner_id)
            )
        ).all()
        served = await self._last_served(session, owners)
        never = datetime.min.replace(tzinfo=now.tzinfo)
        candidates: list[tuple[int, datetime, datetime, uuid.UUID, Generation]] = []
        for owner in owners:
            free = min(await self.limit_of(session, owner) - running.get(owner, 0), free_total)
            if free <= 0:
                continue
            statement = (
                select(Generation)
                .where(Generation.status == GenerationStatus.QUEUED, _owned_by(owner), _due(now))
                .order_by(Generation.created_at, Generation.id)
                .limit(free)
            )
            if is_postgres(session):
                statement = statement.with_for_update()
            rows = (await session.scalars(statement)).all()
            last = served.get(owner) or never
            candidates.extend((turn, last, row.created_at, row.id, row) for turn, row in enumerate(rows))
        candidates.sort(key=lambda candidate: candidate[:4])
        claimed = [candidate[4] for candidate in candidates[:free_total]]
        for row in claimed:
            row.dispatched_at = now
            row.status = GenerationStatus.STARTING
            row.queue_position = None
            row.queue_reason = None
            row.queue_not_before = None
        return claimed

    async def overdue(self, session: AsyncSession, created_before: datetime) -> list[Generation]:
        """Queued generations created before `created_before`, locked: they can no longer start in time."""
        statement = select(Generation).where(
            Generation.status == GenerationStatus.QUEUED, Generation.created_at < created_before
        )
        if is_postgres(session):
            statement = statement.with_for_update()
        return list((await session.scalars(statement)).all())

    async def position_of(self, session: AsyncSession, generation: Generation) -> int:
        """The shown position of a generation about to join the end of its owner's line."""
        ahead = await session.scalar(
            select(func.count())
            .select_from(Generation)
            .where(
                Generation.status == GenerationStatus.QUEUED,
                _owned_by(generation.owner_id),
                Generation.id != generation.id,
            )
        )
        return shown_position((ahead or 0) + 1)

    async def moved(self, session: AsyncSession, owners: Iterable[Owner]) -> list[Generation]:
        """The queued generations of `owners` whose shown position changed, set to the new one and locked;
        the caller logs an event for each."""
        changed: dict[uuid.UUID, int] = {}
        for owner in set(owners):
            line = (
                await session.execute(
                    select(Generation.id, Generation.queue_position)
                    .where(Generation.status == GenerationStatus.QUEUED, _owned_by(owner))
                    .order_by(Generation.created_at, Generation.id)
                )
            ).all()
            for exact, (generation_id, stored) in enumerate(line, start=1):
                if shown_position(exact) != stored:
                    changed[generation_id] = shown_position(exact)
        if not changed:
            return []
        statement = (
            select(Generation)
            .where(Generation.id.in_(changed), Generation.status == GenerationStatus.QUEUED)
            .order_by(Generation.created_at, Generation.id)
        )
        if is_postgres(session):
            statement = statement.with_for_update()
        rows = list((await session.scalars(statement)).all())
        for row in rows:
            row.queue_position = changed[row.id]
        return rows

    @staticmethod
    async def _last_served(session: AsyncSession, owners: Iterable[Owner]) -> dict[Owner, datetime]:
        """When each of `owners` last had a generation sent."""
        wanted = list(owners)
        keys = [owner for owner in wanted if owner is not None]
        served = select(Generation.owner_id, func.max(Generation.dispatched_at)).group_by(Generation.owner_id)
        condition: ColumnElement[bool] = Generation.owner_id.in_(keys)
        if None in wanted:
            condition = condition | Generation.owner_id.is_(None)
        return {owner: last for owner, last in (await session.execute(served.where(condition))).all() if last}

    @staticmethod
    async def _running(session: AsyncSession) -> dict[Owner, int]:
        """How many generations each owner runs now."""
        counted = await session.execute(
            select(Generation.owner_id, func.count())
            .where(Generation.status.in_(RUNNING_GENERATION_STATUSES))
            .group_by(Generation.owner_id)
        )
        return {owner: count for owner, count in counted.all()}
