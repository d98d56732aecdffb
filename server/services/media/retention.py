"""The retention policy: old media, old failed generations, a storage cap, and files and rows kept in step.

One pass (`darkroom cleanup`, or the periodic task with CLEANUP_ENABLED) does, in order:

1. READY media whose file has gone missing are marked FAILED ("the stored file is missing"), so no row
   points at a file that is not there (retryDownload can fetch it again while the provider still has it);
2. FAILED, CANCELED and TIMED_OUT generations older than FAILED_GENERATION_RETENTION_DAYS are deleted,
   with their media, events and files;
3. media older than MEDIA_RETENTION_DAYS are deleted, rows and files;
4. while the READY media add up to more than STORAGE_CAP_BYTES, the oldest are deleted;
5. files no row names, and incomplete uploads (a partial file, a multipart upload), older than
   DOWNLOAD_LEASE_SECONDS and DOWNLOAD_TIMEOUT_SECONDS (the longest a download attempt runs) are deleted
   or aborted, and scratch files in the temporary directory older than SCRATCH_MAX_AGE_SECONDS (left by a
   killed process) are removed;
6. idempotency keys past IDEMPOTENCY_KEY_TTL_SECONDS are deleted;
7. outgoing webhooks' delivery attempts older than WEBHOOK_DELIVERY_RETENTION_SECONDS are deleted.

Rows go first and their files right after the commit: a crash in between leaves only files no row
names, which step 5 removes on the next pass; a row never outlives its file. Media being downloaded
are left alone. Each media deletion appends a MEDIA_UPDATED event to its generation and publishes it.
`dry_run` counts what would go and changes nothing. Files are reached only through the storage port, so
the pass works alike on the local disk and on object storage; it lists the stored keys rather than
asking about each row's file.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Generation, IdempotencyKey, Media, utcnow
from server.domain import GenerationStatus, MediaStatus
from server.services.event_log.events import Publish, append_media_event
from server.services.media.base import StoredMediaService
from server.services.media.scratch import remove_stale_scratch
from server.services.webhooks_out.deliveries import DeliveryService
from server.settings import Settings
from server.storage.port import MediaStorage

logger = logging.getLogger(__name__)

BATCH = 200
MISSING_FILE_ERROR = "the stored file is missing"
UNSUCCESSFUL = (GenerationStatus.FAILED, GenerationStatus.CANCELED, GenerationStatus.TIMED_OUT)


@dataclass
class CleanupReport:
    dry_run: bool
    missing_files: int = 0
    failed_generations: int = 0
    expired_media: int = 0
    over_cap_media: int = 0
    orphan_files: int = 0
    scratch_files: int = 0
    expired_idempotency_keys: int = 0
    old_webhook_deliveries: int = 0
    bytes_freed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Doomed:
    id: uuid.UUID
    storage_key: str | None
    byte_size: int


class RetentionService(StoredMediaService):
    # Ages stored files and uploads (epoch seconds): the store's clock, not the database's.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        storage: MediaStorage,
        publish: Publish,
        *,
        webhook_deliveries: DeliveryService | None = None,
    ) -> None:
        super().__init__(settings, sessions, storage, publish)
        # The outgoing webhooks' delivery log is aged out by the same pass (WEBHOOK_DELIVERY_RETENTION_SECONDS).
        self._webhook_deliveries = webhook_deliveries

    async def run(self, *, dry_run: bool = False) -> CleanupReport:
        """One pass of the policy; see the module docstring."""
        settings = self._settings
        report = CleanupReport(dry_run=dry_run)
        now = utcnow()
        await self._mark_missing_files(report)
        if settings.media.failed_generation_retention_days is not None:
            cutoff = now - timedelta(days=settings.media.failed_generation_retention_days)
            await self._delete_failed_generations(cutoff, report)
        if settings.media.retention_days is not None:
            cutoff = now - timedelta(days=settings.media.retention_days)
            doomed = await self._select_media(Media.created_at < cutoff)
            report.expired_media, freed = await self._delete_media(doomed, dry_run)
            report.bytes_freed += freed
        if settings.media.storage_cap_bytes is not None:
            report.over_cap_media, freed = await self._enforce_cap(settings.media.storage_cap_bytes, dry_run)
            report.bytes_freed += freed
        report.orphan_files, freed = await self._delete_orphan_files(dry_run)
        report.bytes_freed += freed
        await self._remove_stale_scratch(report)
        report.expired_idempotency_keys = await self._delete_expired_idempotency_keys(now, dry_run)
        if self._webhook_deliveries is not None:
            kept = timedelta(seconds=settings.webhooks_out.delivery_retention_seconds)
            report.old_webhook_deliveries = await self._webhook_deliveries.delete_older_than(
                now - kept, dry_run=dry_run
            )
        logger.info("cleanup finished" if not dry_run else "cleanup planned (dry run)", extra=report.as_dict())
        return report

    async def _delete_expired_idempotency_keys(self, now: datetime, dry_run: bool) -> int:
        """Idempotency keys past their time to live (a claim already treats them as absent)."""
        expired = IdempotencyKey.expires_at <= now
        if dry_run:
            async with self._sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(IdempotencyKey).where(expired)) or 0)
        async with self._sessions.begin() as session:
            deleted = await session.execute(delete(IdempotencyKey).where(expired))
        return int(getattr(deleted, "rowcount", 0) or 0)

    # --- rows pointing at missing files --------------------------------------------------------------
    async def _mark_missing_files(self, report: CleanupReport) -> None:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(Media.id, Media.storage_key).where(
                        Media.status == MediaStatus.READY, Media.storage_key.is_not(None)
                    )
                )
            ).all()
        # Rows are read before the files are listed: a file is always written before its row says READY.
        stored = {entry.key async for entry in self._storage.list_files()}
        missing = [(row.id, row.storage_key) for row in rows if row.storage_key not in stored]
        if report.dry_run:
            report.missing_files = len(missing)
            return
        for media_id, key in missing:
            event_id = None
            async with self._sessions() as session, session.begin():
                changed = await session.execute(
                    update(Media)
                    .where(Media.id == media_id, Media.status == MediaStatus.READY, Media.storage_key == key)
                    .values(
                        status=MediaStatus.FAILED,
                        storage_key=None,
                        download_error=MISSING_FILE_ERROR,
                        next_attempt_at=None,
                        updated_at=utcnow(),
                    )
                    .returning(Media.generation_id)
                    .execution_options(synchronize_session=False)
                )
                generation_id = changed.scalar()
                if generation_id is not None:
                    event_id = await append_media_event(session, generation_id)
            if event_id is not None:
                report.missing_files += 1
                logger.warning("a READY media file was missing", extra={"media_id": str(media_id), "key": key})
                await self._publish(event_id)

    # --- failed generations ----------------------------------------------------------------------------
    async def _delete_failed_generations(self, cutoff: datetime, report: CleanupReport) -> None:
        old = (
            Generation.status.in_(UNSUCCESSFUL),
            func.coalesce(Generation.completed_at, Generation.created_at) < cutoff,
        )
        while True:
            async with self._sessions() as session, session.begin():
                if report.dry_run:
                    count = await session.scalar(select(func.count()).select_from(Generation).where(*old))
                    report.failed_generations = int(count or 0)
                    return
                ids = list(
                    (
                        await session.scalars(
                            select(Generation.id).where(*old).order_by(Generation.created_at).limit(BATCH)
                        )
                    ).all()
                )
                if not ids:
                    return
                files = (
                    await session.execute(
                        select(Media.storage_key, Media.byte_size).where(
                            Media.generation_id.in_(ids), Media.storage_key.is_not(None)
                        )
                    )
                ).all()
                deleted = await session.execute(
                    delete(Generation)
                    .where(Generation.id.in_(ids), *old)
                    .returning(Generation.id)
                    .execution_options(synchronize_session=False)
                )
                report.failed_generations += len(deleted.all())
            report.bytes_freed += await self._delete_files(files)

    # --- media ---------------------------------------------------------------------------------------------
    async def _select_media(self, *conditions: Any, limit: int | None = None) -> list[_Doomed]:
        statement = (
            select(Media.id, Media.storage_key, Media.byte_size)
            .where(Media.status != MediaStatus.DOWNLOADING, *conditions)
            .order_by(func.coalesce(Media.ready_at, Media.created_at), Media.id)
        )
        if limit is not None:
            statement = statement.limit(limit)
        async with self._sessions() as session:
            return [_Doomed(row.id, row.storage_key, row.byte_size or 0) for row in (await session.execute(statement))]

    async def _enforce_cap(self, cap: int, dry_run: bool) -> tuple[int, int]:
        async with self._sessions() as session:
            used = int(
                await session.scalar(
                    select(func.coalesce(func.sum(Media.byte_size), 0)).where(Media.status == MediaStatus.READY)
                )
                or 0
            )
        doomed: list[_Doomed] = []
        for item in await self._select_media(Media.status == MediaStatus.READY):
            if used <= cap:
                break
            doomed.append(item)
            used -= item.byte_size
        return await self._delete_media(doomed, dry_run)

    async def _delete_media(self, doomed: Sequence[_Doomed], dry_run: bool) -> tuple[int, int]:
        """Delete these media rows (unless a download claimed one meanwhile), then their files."""
        if dry_run:
            return len(doomed), sum(item.byte_size for item in doomed if item.storage_key)
        count = freed = 0
        for start in range(0, len(doomed), BATCH):
            ids = [item.id for item in doomed[start : start + BATCH]]
            event_ids = []
            async with self._sessions() as session, session.begin():
                deleted = (
                    await session.execute(
                        delete(Media)
                        .where(Media.id.in_(ids), Media.status != MediaStatus.DOWNLOADING)
                        .returning(Media.storage_key, Media.byte_size, Media.generation_id)
                        .execution_options(synchronize_session=False)
                    )
                ).all()
                for generation_id in sorted({row.generation_id for row in deleted}):
                    event_ids.append(await append_media_event(session, generation_id))
            count += len(deleted)
            freed += await self._delete_files([(row.storage_key, row.byte_size) for row in deleted])
            for event_id in event_ids:
                await self._publish(event_id)
        return count, freed

    # --- files no row names ------------------------------------------------------------------------------
    async def _delete_orphan_files(self, dry_run: bool) -> tuple[int, int]:
        """Files no row names, and stale incomplete uploads."""
        async with self._sessions() as session:
            keys = (await session.scalars(select(Media.storage_key).where(Media.storage_key.is_not(None)))).all()
            shown = (await session.scalars(select(Generation.previews).where(Generation.previews.is_not(None)))).all()
        named = {key for key in keys if key} | {entry["key"] for entries in shown for entry in entries or []}
        # Anything younger than a download attempt may belong to a download that has not recorded it yet.
        downloads = self._settings.downloads
        settled_before = self.clock() - max(downloads.lease_seconds, downloads.timeout_seconds)
        orphans = [
            entry
            async for entry in self._storage.list_files()
            if entry.key not in named and entry.modified <= settled_before
        ]
        count = freed = 0
        for entry in orphans:
            if not dry_run:
                if not await self._storage.delete(entry.key):
                    continue
                logger.info("orphan file removed", extra={"key": entry.key})
            count += 1
            freed += entry.size
        aborted, partial_bytes = await self._storage.abort_stale_uploads(settled_before, dry_run=dry_run)
        return count + aborted, freed + partial_bytes

    async def _remove_stale_scratch(self, report: CleanupReport) -> None:
        """Scratch files of the temporary directory (not the store's: no part of `bytes_freed`). They are
        aged by this machine's clock: every process here shares the directory, whatever the store's says."""
        before = time.time() - self._settings.media.scratch_max_age_seconds
        report.scratch_files, removed_bytes = await asyncio.to_thread(
            remove_stale_scratch, before, dry_run=report.dry_run
        )
        if report.scratch_files and not report.dry_run:
            logger.info("stale scratch files removed", extra={"count": report.scratch_files, "bytes": removed_bytes})

    async def _delete_files(self, files: Sequence[tuple[str | None, int | None]]) -> int:
        """Remove these stored files (key, size); the bytes actually freed."""
        return sum([size or 0 for key, size in files if key and await self._storage.delete(key)])
