"""The fallback poller: asks the provider about generations whose webhooks are late or lost.

Each cycle claims a batch of due generations (not terminal, `next_poll_at` passed, no live claim) and
pushes their next poll out with a per-generation backoff, all in one short transaction; on Postgres
`FOR UPDATE SKIP LOCKED` keeps two processes off the same rows. It then asks the provider's port for
each prediction and hands the update to `apply_prediction_update`, the same door webhooks use. A
generation past the maximum run time is marked TIMED_OUT and canceled at the provider. The first cycle
runs at start-up, so jobs that finished while the server was down are settled at once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import metrics
from server.db.models import Generation, utcnow
from server.db.session import is_postgres
from server.domain import GenerationStatus
from server.log import generation_context
from server.provider.errors import ProviderError, ProviderNotFoundError
from server.provider.port import Provider
from server.services.generations.service import GenerationService
from server.settings import Settings

logger = logging.getLogger(__name__)

ACTIVE = (GenerationStatus.STARTING, GenerationStatus.PROCESSING)


@dataclass(frozen=True, slots=True)
class Due:
    generation_id: uuid.UUID
    provider_id: str | None
    overdue: bool


class Poller:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        provider: Provider,
        generations: GenerationService,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._provider = provider
        self._generations = generations

    async def poll_once(self) -> int:
        """Run one cycle; returns how many generations it looked at."""
        metrics.POLL_CYCLES.inc()
        due = await self._claim_due()
        for item in due:
            with generation_context(str(item.generation_id)):
                await self._poll(item)
        return len(due)

    async def _claim_due(self) -> list[Due]:
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
            return [Due(row.id, row.provider_id, row.created_at < deadline) for row in rows]

    async def _poll(self, item: Due) -> None:
        try:
            if item.overdue:
                await self._generations.time_out(item.generation_id)
                metrics.POLLED_PREDICTIONS.labels("timed_out").inc()
                return
            if item.provider_id is None:
                return  # its start is still in flight; the deadline above settles it if it never lands
            update = await self._provider.get(item.provider_id)
            result = await self._generations.apply_prediction_update(update)
            metrics.POLLED_PREDICTIONS.labels(result.outcome.value).inc()
        except ProviderNotFoundError:
            logger.warning("the provider does not know a prediction we track", extra={"prediction": item.provider_id})
            metrics.POLLED_PREDICTIONS.labels("not_found").inc()
        except ProviderError as exc:
            logger.warning("poll failed", extra={"prediction": item.provider_id, "error": str(exc)})
            metrics.POLLED_PREDICTIONS.labels("error").inc()
        finally:
            await self._release(item.generation_id)

    async def _release(self, generation_id: uuid.UUID) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Generation).where(Generation.id == generation_id).values(poll_claimed_until=None)
            )
