"""Poll claims: which generations the fallback poller asks the provider about next, and who asks.

A cycle claims a batch of due generations (not terminal, `next_poll_at` passed, no live claim) and
pushes their next poll out with a per-generation backoff, all in one short transaction; on Postgres
`FOR UPDATE SKIP LOCKED` keeps two processes off the same rows. A claim only has to outlast its cycle: it
is released when the poll is done, and expires by itself if the process dies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Generation, utcnow
from server.db.session import is_postgres
from server.domain import GenerationStatus
from server.provider.types import JobRef
from server.settings import Settings

ACTIVE = (GenerationStatus.STARTING, GenerationStatus.PROCESSING)


@dataclass(frozen=True, slots=True)
class Due:
    """A claimed generation to poll: the provider that runs it and its job there (None while its start is
    in flight); `overdue` when it has run past GENERATION_TIMEOUT_SECONDS."""

    generation_id: uuid.UUID
    provider: str
    job: JobRef | None
    overdue: bool


class PollClaims:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._settings = settings
        self._sessions = sessions

    async def claim_due(self) -> list[Due]:
        """Claim the next batch of due generations and push their next poll out."""
        settings = self._settings
        now = utcnow()
        deadline = now - timedelta(seconds=settings.poller.generation_timeout_seconds)
        async with self._sessions() as session, session.begin():
            statement = (
                select(Generation)
                .where(
                    Generation.status.in_(ACTIVE),
                    or_(Generation.next_poll_at.is_(None), Generation.next_poll_at <= now),
                    or_(Generation.poll_claimed_until.is_(None), Generation.poll_claimed_until < now),
                )
                .order_by(Generation.next_poll_at)
                .limit(settings.poller.batch_size)
            )
            if is_postgres(session):
                statement = statement.with_for_update(skip_locked=True)
            rows = list((await session.scalars(statement)).all())
            for row in rows:
                row.poll_attempts += 1
                backoff = min(
                    settings.poller.stale_after_seconds * 2 ** (row.poll_attempts - 1),
                    settings.poller.backoff_max_seconds,
                )
                row.next_poll_at = now + timedelta(seconds=backoff)
                # The claim only has to outlast this cycle; it expires by itself if we crash.
                row.poll_claimed_until = now + timedelta(seconds=max(settings.poller.interval_seconds * 5, 30))
            return [
                Due(
                    row.id,
                    row.provider,
                    JobRef(row.provider_id, row.model_ref) if row.provider_id else None,
                    row.created_at < deadline,
                )
                for row in rows
            ]

    async def release(self, generation_id: uuid.UUID) -> None:
        """The poll is done: another cycle may claim the generation when it is due again."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Generation).where(Generation.id == generation_id).values(poll_claimed_until=None)
            )
