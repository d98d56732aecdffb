"""Operational statistics from the database: how models fare, how downloads retry, how much is stored.

Read from the tables rather than from process memory, so every process answers the same and the
numbers survive restarts. Generations and media are counted by `created_at` inside the window; storage
is everything stored now. Each figure is limited to what the viewer may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, false, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Generation, Media, utcnow
from server.domain import GenerationStatus, MediaStatus
from server.services.access.viewer import Viewer


@dataclass(frozen=True, slots=True)
class ModelStats:
    model: str
    kind: str
    total: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    timed_out: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.canceled + self.timed_out

    @property
    def success_rate(self) -> float | None:
        """Share of finished generations that succeeded; None when none finished."""
        return self.succeeded / self.finished if self.finished else None

    @property
    def failure_rate(self) -> float | None:
        """Share of finished generations that FAILED or TIMED_OUT (cancellations are neither)."""
        return (self.failed + self.timed_out) / self.finished if self.finished else None


@dataclass(frozen=True, slots=True)
class DownloadStats:
    pending: int = 0
    downloading: int = 0
    ready: int = 0
    failed: int = 0
    retried_media: int = 0
    retry_attempts: int = 0


@dataclass(frozen=True, slots=True)
class StorageStats:
    files: int
    bytes_used: int


@dataclass(frozen=True, slots=True)
class Stats:
    window_hours: float
    since: datetime
    models: list[ModelStats]
    downloads: DownloadStats
    storage: StorageStats


_STATUS_FIELDS = {
    GenerationStatus.STARTING: "running",
    GenerationStatus.PROCESSING: "running",
    GenerationStatus.SUCCEEDED: "succeeded",
    GenerationStatus.FAILED: "failed",
    GenerationStatus.CANCELED: "canceled",
    GenerationStatus.TIMED_OUT: "timed_out",
}


def _visible(owner_column: Any, viewer: Viewer) -> ColumnElement[bool]:
    """The rows the viewer may count: all for the open server, its own for a key, none without a key."""
    if viewer.sees_all:
        return true()
    if viewer.owner_id is None:
        return false()
    return owner_column == viewer.owner_id  # type: ignore[no-any-return]


class StatsService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def collect(self, viewer: Viewer, window_hours: float) -> Stats:
        if window_hours <= 0:
            raise ValueError("the window must be a positive number of hours")
        since = utcnow() - timedelta(hours=window_hours)
        async with self._sessions() as session:
            models = await self._models(session, viewer, since)
            downloads = await self._downloads(session, viewer, since)
            storage = await self._storage(session, viewer)
        return Stats(window_hours, since, models, downloads, storage)

    @staticmethod
    async def _models(session: AsyncSession, viewer: Viewer, since: datetime) -> list[ModelStats]:
        statement = (
            select(Generation.model_ref, Generation.kind, Generation.status, func.count())
            .where(Generation.created_at >= since, _visible(Generation.owner_id, viewer))
            .group_by(Generation.model_ref, Generation.kind, Generation.status)
        )
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for model, kind, status, count in (await session.execute(statement)).all():
            row = counts.setdefault((model, kind), {"total": 0})
            row["total"] += count
            field = _STATUS_FIELDS[GenerationStatus(status)]
            row[field] = row.get(field, 0) + count
        return [ModelStats(model, kind, **values) for (model, kind), values in sorted(counts.items())]

    @staticmethod
    async def _downloads(session: AsyncSession, viewer: Viewer, since: datetime) -> DownloadStats:
        retried = Media.download_attempts > 1
        statement = (
            select(
                Media.status,
                func.count(),
                func.coalesce(func.sum(case((retried, 1), else_=0)), 0),
                func.coalesce(func.sum(case((retried, Media.download_attempts - 1), else_=0)), 0),
            )
            .where(Media.created_at >= since, _visible(Media.owner_id, viewer))
            .group_by(Media.status)
        )
        by_status: dict[str, int] = {}
        retried_media = retry_attempts = 0
        for status, count, retried_count, retries in (await session.execute(statement)).all():
            by_status[status] = int(count)
            retried_media += int(retried_count)
            retry_attempts += int(retries)
        return DownloadStats(
            pending=by_status.get(MediaStatus.PENDING, 0),
            downloading=by_status.get(MediaStatus.DOWNLOADING, 0),
            ready=by_status.get(MediaStatus.READY, 0),
            failed=by_status.get(MediaStatus.FAILED, 0),
            retried_media=retried_media,
            retry_attempts=retry_attempts,
        )

    @staticmethod
    async def _storage(session: AsyncSession, viewer: Viewer) -> StorageStats:
        statement = select(func.count(), func.coalesce(func.sum(Media.byte_size), 0)).where(
            Media.status == MediaStatus.READY, _visible(Media.owner_id, viewer)
        )
        files, used = (await session.execute(statement)).one()
        return StorageStats(files=int(files or 0), bytes_used=int(used or 0))
