"""Operational statistics from the database: how models fare, how downloads retry, how much is stored.

Read from the tables rather than from process memory, so every process answers the same and the
numbers survive restarts. Generations and media are counted by `created_at` inside the window; storage
is everything stored now. Each figure is limited to what the viewer may see.

The figures are described here, field by field; the GraphQL `stats` types are built from these models.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, computed_field
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import ApiKey, Generation, Media, utcnow
from server.domain import GenerationStatus, MediaKind, MediaStatus
from server.services.access.viewer import Viewer
from server.services.errors import ServiceError
from server.services.media.uploads import UPLOAD_PROVIDER

# Longer windows gain nothing over counting everything, and much longer ones overflow the date arithmetic.
MAX_WINDOW_HOURS = 24 * 366


class _Figures(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelStats(_Figures):
    model: str
    kind: MediaKind
    total: int = 0
    queued: int = Field(0, description="QUEUED: waiting at Darkroom for a slot.")
    running: int = Field(0, description="STARTING or PROCESSING.")
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    timed_out: int = 0
    predict_time: float = Field(
        0.0, description="Seconds the provider ran these generations (its predict time), summed: what it bills by."
    )
    spend: float = Field(
        0.0,
        description="Their costs by the price table, summed: settled ones and the estimates of those still "
        "running (in the Stats' currency).",
    )

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.canceled + self.timed_out

    @computed_field(description="SUCCEEDED / finished, 0-1; null when none has finished.")  # type: ignore[prop-decorator]
    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.finished if self.finished else None

    @computed_field(description="(FAILED + TIMED_OUT) / finished, 0-1; null when none has finished.")  # type: ignore[prop-decorator]
    @property
    def failure_rate(self) -> float | None:
        """Cancellations are neither a success nor a failure."""
        return (self.failed + self.timed_out) / self.finished if self.finished else None


class DownloadStats(_Figures):
    pending: int = 0
    downloading: int = 0
    ready: int = 0
    failed: int = 0
    retried_media: int = Field(0, description="Files that needed more than one attempt.")
    retry_attempts: int = Field(0, description="Attempts after each file's first, summed.")


class StorageStats(_Figures):
    files: int
    bytes_used: int = Field(description="Bytes of READY media files (a Float: it may exceed Int).")


class KeySpend(_Figures):
    key_id: str | None = Field(description="The API key's id; null for generations without one (an open server).")
    key_name: str | None = Field(description="The key's name, as created.")
    generations: int = Field(description="Generations created inside the window.")
    spend: float = Field(description="Their costs, settled and estimated, summed (in the Stats' currency).")


class Stats(_Figures):
    window_hours: float
    since: datetime
    currency: str = Field(description="The currency spend is summed in: the price table's.")
    models: list[ModelStats]
    keys: list[KeySpend] = Field(description="Spend by API key, highest first.")
    downloads: DownloadStats
    storage: StorageStats


_STATUS_FIELDS = {
    GenerationStatus.QUEUED: "queued",
    GenerationStatus.STARTING: "running",
    GenerationStatus.PROCESSING: "running",
    GenerationStatus.SUCCEEDED: "succeeded",
    GenerationStatus.FAILED: "failed",
    GenerationStatus.CANCELED: "canceled",
    GenerationStatus.TIMED_OUT: "timed_out",
}


class StatsService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], currency: str = "USD") -> None:
        """`currency`: the price table's; costs in another are left out of the spend figures."""
        self._sessions = sessions
        self._currency = currency

    async def collect(self, viewer: Viewer, window_hours: float) -> Stats:
        if not 0 < window_hours <= MAX_WINDOW_HOURS:
            message = f"windowHours must be above 0 and at most {MAX_WINDOW_HOURS}"
            raise ServiceError.single("BAD_USER_INPUT", message, field=["windowHours"])
        since = utcnow() - timedelta(hours=window_hours)
        async with self._sessions() as session:
            models = await self._models(session, viewer, since)
            keys = await self._keys(session, viewer, since)
            downloads = await self._downloads(session, viewer, since)
            storage = await self._storage(session, viewer)
        return Stats(
            window_hours=window_hours,
            since=since,
            currency=self._currency,
            models=models,
            keys=keys,
            downloads=downloads,
            storage=storage,
        )

    def _spend(self) -> ColumnElement[float]:
        """A generation's cost in the table's currency (0 without one), to be summed."""
        return case((Generation.cost_currency == self._currency, Generation.cost_amount), else_=0.0)

    async def _models(self, session: AsyncSession, viewer: Viewer, since: datetime) -> list[ModelStats]:
        statement = (
            select(
                Generation.model_ref,
                Generation.kind,
                Generation.status,
                func.count(),
                func.coalesce(func.sum(Generation.predict_time), 0.0),
                func.coalesce(func.sum(self._spend()), 0.0),
            )
            # An upload is stored as a generation of its own, but no model ran: it is not a model's figure.
            .where(
                Generation.created_at >= since,
                Generation.provider != UPLOAD_PROVIDER,
                viewer.visible(Generation.owner_id),
            )
            .group_by(Generation.model_ref, Generation.kind, Generation.status)
        )
        counts: dict[tuple[str, str], dict[str, float]] = {}
        for model, kind, status, count, predict_time, spend in (await session.execute(statement)).all():
            row = counts.setdefault((model, kind), {"total": 0, "predict_time": 0.0, "spend": 0.0})
            row["total"] += count
            row["predict_time"] += float(predict_time or 0.0)
            row["spend"] += float(spend or 0.0)
            field = _STATUS_FIELDS[GenerationStatus(status)]
            row[field] = row.get(field, 0) + count
        return [ModelStats(model=model, kind=kind, **values) for (model, kind), values in sorted(counts.items())]

    async def _keys(self, session: AsyncSession, viewer: Viewer, since: datetime) -> list[KeySpend]:
        spend = func.coalesce(func.sum(self._spend()), 0.0)
        statement = (
            select(Generation.owner_id, ApiKey.name, func.count(), spend)
            .outerjoin(ApiKey, ApiKey.id == Generation.owner_id)
            .where(
                Generation.created_at >= since,
                Generation.provider != UPLOAD_PROVIDER,
                viewer.visible(Generation.owner_id),
            )
            .group_by(Generation.owner_id, ApiKey.name)
        )
        found = [
            KeySpend(
                key_id=str(owner_id) if owner_id else None, key_name=name, generations=int(count), spend=float(total)
            )
            for owner_id, name, count, total in (await session.execute(statement)).all()
        ]
        return sorted(found, key=lambda key: (-key.spend, key.key_id or ""))

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
            .where(Media.created_at >= since, viewer.visible(Media.owner_id))
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
            Media.status == MediaStatus.READY, viewer.visible(Media.owner_id)
        )
        files, used = (await session.execute(statement)).one()
        return StorageStats(files=int(files or 0), bytes_used=int(used or 0))
