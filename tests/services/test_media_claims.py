"""Download claims on a real database: one winner per row, leases that expire, lost claims."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.migrate import upgrade
from server.db.models import Event, Generation, Media, utcnow
from server.db.session import create_engine, create_sessionmaker
from server.services.media.service import MediaService, StoredFile
from server.settings import Settings
from server.storage.local import LocalStorage


class Published(list[int]):
    async def __call__(self, event_id: int) -> None:
        self.append(event_id)


@pytest.fixture
async def sessions(make_settings: Callable[..., Settings]) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    settings = make_settings()
    engine = create_engine(settings)
    await upgrade(engine)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _service(settings: Settings, sessions: async_sessionmaker[AsyncSession], published: Published) -> MediaService:
    return MediaService(settings, sessions, LocalStorage(settings.resolved_media_root), published)


async def _seed(sessions: async_sessionmaker[AsyncSession], count: int) -> uuid.UUID:
    async with sessions.begin() as session:
        generation = Generation(
            provider="replicate", kind="IMAGE", model_ref="a/b", input={}, status="SUCCEEDED", provider_id="p"
        )
        session.add(generation)
        await session.flush()
        for position in range(count):
            session.add(
                Media(
                    generation_id=generation.id,
                    position=position,
                    kind="IMAGE",
                    status="PENDING",
                    source_url=f"https://replicate.delivery/{position}.png",
                )
            )
        return generation.id


async def test_concurrent_claimers_never_take_the_same_row(
    make_settings: Callable[..., Settings], sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings()
    await _seed(sessions, 12)
    published = Published()
    # Separate engines: separate connection pools, as in separate processes.
    engines = [create_engine(settings) for _ in range(3)]
    services = [_service(settings, create_sessionmaker(engine), published) for engine in engines]

    async def drain(service: MediaService) -> list[uuid.UUID]:
        taken = []
        while (claim := await service.claim_next()) is not None:
            taken.append(claim.media_id)
        return taken

    try:
        results = await asyncio.gather(*(drain(service) for service in services for _ in range(2)))
    finally:
        for engine in engines:
            await engine.dispose()
    claimed = [media_id for batch in results for media_id in batch]
    assert len(claimed) == len(set(claimed)) == 12
    async with sessions() as session:
        seqs = (await session.scalars(select(Event.seq).order_by(Event.seq))).all()
    assert list(seqs) == list(range(1, 13)), "one event per claim, numbered without gaps"


async def test_an_expired_lease_is_taken_over_and_the_old_holder_loses(
    make_settings: Callable[..., Settings], sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(download_lease_seconds=60)
    await _seed(sessions, 1)
    service = _service(settings, sessions, Published())
    first = await service.claim_next()
    assert first is not None
    assert await service.claim_next() is None, "a live lease is respected"
    async with sessions.begin() as session:
        await session.execute(update(Media).values(claimed_until=utcnow() - timedelta(seconds=1)))
    second = await service.claim_next()
    assert second is not None and second.media_id == first.media_id and second.attempt == 2
    result = StoredFile(storage_key="aa/x.png", content_type="image/png", byte_size=1, sha256="0" * 64)
    assert await service.complete(first, result) is False
    assert await service.fail(first, "late") is None
    assert await service.complete(second, result) is True
    async with sessions() as session:
        media = (await session.scalars(select(Media))).one()
    assert (media.status, media.download_attempts, media.claim_token) == ("READY", 2, None)


async def test_failures_back_off_then_fail_for_good(
    make_settings: Callable[..., Settings], sessions: async_sessionmaker[AsyncSession]
) -> None:
    settings = make_settings(download_max_attempts=2, download_retry_base_seconds=30)
    await _seed(sessions, 1)
    service = _service(settings, sessions, Published())
    claim = await service.claim_next()
    assert claim is not None
    assert await service.fail(claim, "HTTP 500") == "PENDING"
    assert await service.claim_next() is None, "not due until its backoff passes"
    async with sessions.begin() as session:
        await session.execute(update(Media).values(next_attempt_at=utcnow()))
    claim = await service.claim_next()
    assert claim is not None and claim.attempt == 2
    assert await service.fail(claim, "HTTP 500 again") == "FAILED"
    async with sessions() as session:
        media = (await session.scalars(select(Media))).one()
    assert (media.status, media.download_error) == ("FAILED", "HTTP 500 again")
