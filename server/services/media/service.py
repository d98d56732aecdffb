"""Media rows: download claims (leases), results, retries and deletion.

A claim is one conditional UPDATE ... RETURNING that only matches a row that is PENDING and due, or
DOWNLOADING with an expired lease. Whichever worker's UPDATE matches first owns the download; every
other worker's matches nothing. That holds on Postgres (the second UPDATE re-checks its WHERE after the
first commits) and on SQLite (one writer at a time) alike.

The claim itself counts the attempt, so a row whose download kills its worker (or its whole process)
runs out of attempts like any other: an expired lease at the attempt limit is not taken over but marked
FAILED. A running download renews its lease (`renew`) until it ends.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Update, and_, or_, select, update

from server.db.models import Generation, Media, utcnow
from server.db.session import is_postgres
from server.domain import MediaStatus
from server.services.access.viewer import Viewer
from server.services.errors import ServiceError
from server.services.event_log.events import append_media_event
from server.services.media.base import StoredMediaService, visible_media

logger = logging.getLogger(__name__)

ABANDONED_ERROR = "the download stopped mid-attempt (its worker died) as many times as DOWNLOAD_MAX_ATTEMPTS allows"


@dataclass(frozen=True, slots=True)
class Claim:
    media_id: uuid.UUID
    generation_id: uuid.UUID
    token: str
    source_url: str
    kind: str
    attempt: int


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file in the store, as its media row records it: each field is the row's column of that name."""

    storage_key: str
    content_type: str
    byte_size: int
    sha256: str
    width: int | None = None
    height: int | None = None
    duration_seconds: float | None = None


def _ending(claim: Claim, **values: Any) -> Update:
    """The UPDATE that ends `claim`, writing `values`: it matches nothing once the claim has been lost."""
    return (
        update(Media)
        .where(Media.id == claim.media_id, Media.claim_token == claim.token)
        .values(claim_token=None, claimed_until=None, **values)
        .execution_options(synchronize_session=False)
    )


class MediaService(StoredMediaService):
    # --- claims ------------------------------------------------------------------------------------
    async def claim_next(self) -> Claim | None:
        """Take the oldest due download, or None when there is none."""
        await self._fail_abandoned()
        now = utcnow()
        claimable = or_(
            and_(
                Media.status == MediaStatus.PENDING,
                or_(Media.next_attempt_at.is_(None), Media.next_attempt_at <= now),
            ),
            and_(
                Media.status == MediaStatus.DOWNLOADING,
                Media.claimed_until < now,
                Media.download_attempts < self._settings.downloads.max_attempts,
            ),
        )
        token = uuid.uuid4().hex
        async with self._sessions() as session, session.begin():
            candidate = select(Media.id).where(claimable).order_by(Media.created_at, Media.position).limit(1)
            if is_postgres(session):
                candidate = candidate.with_for_update(skip_locked=True)
            claimed = (
                await session.execute(
                    update(Media)
                    .where(Media.id == candidate.scalar_subquery(), claimable)
                    .values(
                        status=MediaStatus.DOWNLOADING,
                        claim_token=token,
                        claimed_until=now + timedelta(seconds=self._settings.downloads.lease_seconds),
                        download_attempts=Media.download_attempts + 1,
                        updated_at=now,
                    )
                    .returning(
                        Media.id,
                        Media.generation_id,
                        Media.source_url,
                        Media.kind,
                        Media.download_attempts,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).first()
            if claimed is None:
                return None
            event_id = await append_media_event(session, claimed.generation_id)
        await self._publish(event_id)
        return Claim(
            media_id=claimed.id,
            generation_id=claimed.generation_id,
            token=token,
            source_url=claimed.source_url or "",
            kind=claimed.kind,
            attempt=claimed.download_attempts,
        )

    async def _fail_abandoned(self) -> None:
        """Mark FAILED the downloads whose lease ran out on their last allowed attempt: each time, the worker
        holding it stopped mid-download (a crash, a killed process), so the file is not tried again."""
        now = utcnow()
        spent = (
            Media.status == MediaStatus.DOWNLOADING,
            Media.claimed_until < now,
            Media.download_attempts >= self._settings.downloads.max_attempts,
        )
        # A read first: the write (a lock on SQLite) only when there is something to mark.
        async with self._sessions() as session:
            if await session.scalar(select(Media.id).where(*spent).limit(1)) is None:
                return
        async with self._sessions() as session, session.begin():
            abandoned = (
                await session.execute(
                    update(Media)
                    .where(*spent)
                    .values(
                        status=MediaStatus.FAILED,
                        claim_token=None,
                        claimed_until=None,
                        next_attempt_at=None,
                        download_error=ABANDONED_ERROR,
                        updated_at=now,
                    )
                    .returning(Media.id, Media.generation_id)
                    .execution_options(synchronize_session=False)
                )
            ).all()
            event_ids = [
                await append_media_event(session, generation_id)
                for generation_id in sorted({row.generation_id for row in abandoned})
            ]
        for row in abandoned:
            logger.warning("a download was abandoned at its attempt limit", extra={"media_id": str(row.id)})
        for event_id in event_ids:
            await self._publish(event_id)

    async def renew(self, claim: Claim) -> bool:
        """Extend a running download's lease by DOWNLOAD_LEASE_SECONDS from now; False once it was lost."""
        now = utcnow()
        async with self._sessions.begin() as session:
            renewed = await session.execute(
                update(Media)
                .where(Media.id == claim.media_id, Media.claim_token == claim.token)
                .values(claimed_until=now + timedelta(seconds=self._settings.downloads.lease_seconds))
                .execution_options(synchronize_session=False)
            )
        return bool(renewed.rowcount)  # type: ignore[attr-defined]

    async def names_key(self, storage_key: str) -> bool:
        """Whether any media row names this stored file."""
        async with self._sessions() as session:
            found = await session.scalar(select(Media.id).where(Media.storage_key == storage_key).limit(1))
        return found is not None

    async def trace_context(self, generation_id: uuid.UUID) -> str | None:
        """The traceparent of the span that started `generation_id` (asked only while tracing is on)."""
        async with self._sessions() as session:
            found: str | None = await session.scalar(
                select(Generation.trace_context).where(Generation.id == generation_id)
            )
        return found

    async def complete(self, claim: Claim, result: StoredFile) -> bool:
        """Record a finished download. False when the claim was lost meanwhile (the caller removes its file)."""
        now = utcnow()
        async with self._sessions() as session, session.begin():
            done = await session.execute(
                _ending(
                    claim,
                    status=MediaStatus.READY,
                    **asdict(result),
                    download_error=None,
                    next_attempt_at=None,
                    ready_at=now,
                    updated_at=now,
                )
            )
            if done.rowcount == 0:  # type: ignore[attr-defined]
                lost = True
            else:
                lost = False
                event_id = await append_media_event(session, claim.generation_id)
        if lost:
            logger.warning("download finished after its claim was lost", extra={"media_id": str(claim.media_id)})
            return False
        await self._publish(event_id)
        return True

    async def fail(self, claim: Claim, error: str, *, retryable: bool = True) -> MediaStatus | None:
        """Record a failed attempt: back to PENDING with a backoff, or FAILED past the attempt limit."""
        now = utcnow()
        final = not retryable or claim.attempt >= self._settings.downloads.max_attempts
        delay = min(
            self._settings.downloads.retry_base_seconds * 2 ** max(claim.attempt - 1, 0),
            self._settings.downloads.retry_max_seconds,
        )
        status = MediaStatus.FAILED if final else MediaStatus.PENDING
        async with self._sessions() as session, session.begin():
            done = await session.execute(
                _ending(
                    claim,
                    status=status,
                    download_error=error[:2000],
                    next_attempt_at=None if final else now + timedelta(seconds=delay),
                    updated_at=now,
                )
            )
            if done.rowcount == 0:  # type: ignore[attr-defined]
                return None
            event_id = await append_media_event(session, claim.generation_id)
        await self._publish(event_id)
        return status

    async def release(self, claim: Claim) -> None:
        """Give a claim back untouched (shutdown): the attempt is not counted against the row."""
        async with self._sessions.begin() as session:
            await session.execute(
                _ending(claim, status=MediaStatus.PENDING, download_attempts=Media.download_attempts - 1)
            )

    # --- serving -----------------------------------------------------------------------------------
    async def ready_by_key(self, storage_key: str) -> Media | None:
        """The READY media stored under this key, or None: what GET /media may serve."""
        async with self._sessions() as session:
            statement = select(Media).where(Media.storage_key == storage_key, Media.status == MediaStatus.READY)
            return (await session.scalars(statement)).first()

    # --- client actions ----------------------------------------------------------------------------
    async def retry(self, media_id: uuid.UUID, viewer: Viewer) -> Media:
        async with self._sessions() as session, session.begin():
            media = await visible_media(session, media_id, viewer, lock=True)
            if media.status != MediaStatus.FAILED:
                raise ServiceError.single(
                    "NOT_FAILED",
                    f"only a FAILED download can be retried; this one is {media.status}",
                    ["mediaId"],
                )
            media.status = MediaStatus.PENDING
            media.download_attempts = 0
            media.download_error = None
            media.next_attempt_at = None
            media.updated_at = utcnow()
            await session.flush()
            event_id = await append_media_event(session, media.generation_id)
        await self._publish(event_id)
        return media

    async def delete(self, media_id: uuid.UUID, viewer: Viewer) -> uuid.UUID:
        async with self._sessions() as session, session.begin():
            media = await visible_media(session, media_id, viewer, lock=True)
            if media.status == MediaStatus.DOWNLOADING:
                raise ServiceError.single(
                    "DOWNLOADING", "the media is being downloaded; try again shortly", ["mediaId"]
                )
            storage_key, generation_id = media.storage_key, media.generation_id
            await session.delete(media)
            await session.flush()
            event_id = await append_media_event(session, generation_id)
        # The row is gone first: a file without a row is swept by cleanup, a row without a file is not.
        if storage_key:
            await self._storage.delete(storage_key)
        await self._publish(event_id)
        return media_id
