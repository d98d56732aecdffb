"""Retention: `darkroom cleanup` and the periodic task remove old media, old failed generations and what
exceeds the storage cap, files and rows together, and leave the store and the database agreeing. Every
test runs on the local disk and on S3; stored files are aged by running the pass's clock ahead."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from server.db.models import Generation, Media, utcnow
from server.domain import GenerationStatus, MediaStatus
from server.services.media.retention import MISSING_FILE_ERROR
from server.storage.port import store_bytes
from tests.ops.support import partial_upload, raw_id, seed_media, settled_generation, stored_keys
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL
from tests.support.object_storage import MediaStore, both_stores
from tests.support.waiting import eventually

pytestmark = both_stores

RETENTION = {"media_retention_days": 7, "failed_generation_retention_days": 3, "download_lease_seconds": 30}


async def _consistency(darkroom: Darkroom) -> tuple[set[str], set[str]]:
    """The stored files, and the storage keys the media rows name (READY rows must name one)."""
    async with darkroom.runtime.sessions() as session:
        rows = (await session.execute(select(Media.status, Media.storage_key))).all()
    assert all(key for status, key in rows if status == MediaStatus.READY)
    return await stored_keys(darkroom), {key for _, key in rows if key}


async def _state(darkroom: Darkroom) -> tuple[set[str], list[tuple[Any, ...]]]:
    async with darkroom.runtime.sessions() as session:
        generations = (await session.execute(select(Generation.id, Generation.status))).all()
        media = (await session.execute(select(Media.id, Media.status, Media.storage_key))).all()
    return await stored_keys(darkroom), sorted(map(tuple, [*generations, *media]), key=str)


def _run_clock_ahead(darkroom: Darkroom, seconds: float) -> None:
    """Age every stored file and upload by `seconds`, as the cleanup pass sees them."""
    darkroom.runtime.retention.clock = lambda: time.time() + seconds


async def _failed_generation(darkroom: Darkroom, days_ago: float) -> uuid.UUID:
    at = utcnow() - timedelta(days=days_ago)
    async with darkroom.runtime.sessions.begin() as session:
        generation = Generation(
            provider="replicate",
            kind="IMAGE",
            model_ref=IMAGE_MODEL,
            input={},
            status=GenerationStatus.FAILED,
            error="boom",
            created_at=at,
            completed_at=at,
        )
        session.add(generation)
    return generation.id


async def _build_scene(darkroom: Darkroom, store: MediaStore) -> dict[str, Any]:
    """Real downloads, seeded rows and stray files of every kind the policy deals with."""
    old = utcnow() - timedelta(days=10)
    real_old = await settled_generation(darkroom, IMAGE_MODEL, prompt="old")
    real_new = await settled_generation(darkroom, IMAGE_MODEL, prompt="new")
    old_media_id = raw_id(real_old["media"][0]["id"])
    async with darkroom.runtime.sessions.begin() as session:
        await session.execute(update(Media).where(Media.id == old_media_id).values(created_at=old, ready_at=old))
    seeded_old = await seed_media(darkroom, b"old bytes" * 100, created_at=old)
    lost = await seed_media(darkroom, b"lost bytes")
    await darkroom.runtime.storage.delete(lost.storage_key or "")
    in_flight = await seed_media(darkroom, b"claimed", created_at=old)
    async with darkroom.runtime.sessions.begin() as session:
        await session.execute(
            update(Media)
            .where(Media.id == in_flight.id)
            .values(status=MediaStatus.DOWNLOADING, claim_token="x", claimed_until=utcnow() + timedelta(minutes=5))
        )
    orphan = "zz/orphan.png"
    await store_bytes(darkroom.runtime.storage, orphan, b"nobody's", "image/png")
    partial = await partial_upload(darkroom, store)
    return {
        "expired": {old_media_id, seeded_old.id},
        "kept": {raw_id(real_new["media"][0]["id"]), in_flight.id},
        "lost": lost.id,
        "old_failed": await _failed_generation(darkroom, days_ago=5),
        "new_failed": await _failed_generation(darkroom, days_ago=1),
        "orphan": orphan,
        "partial": partial,
        "old_generation": raw_id(real_old["id"]),
    }


async def test_cleanup_removes_files_and_rows_together(
    start_darkroom: Callable[..., Any], media_store: MediaStore
) -> None:
    async with start_darkroom(**RETENTION) as darkroom:
        scene = await _build_scene(darkroom, media_store)
        _run_clock_ahead(darkroom, 86400)
        files, named = await _consistency(darkroom)
        assert files != named  # the scene starts inconsistent: an orphan file and a row without its file

        before = await _state(darkroom)
        plan = await darkroom.runtime.retention.run(dry_run=True)
        assert await _state(darkroom) == before and scene["partial"]()
        assert (plan.expired_media, plan.failed_generations, plan.missing_files) == (2, 1, 1)
        assert plan.orphan_files == 2  # the stray file and the stale partial upload

        report = await darkroom.runtime.retention.run()
        assert (report.expired_media, report.failed_generations, report.missing_files, report.orphan_files) == (
            2,
            1,
            1,
            2,
        )
        assert report.bytes_freed > 0
        files, named = await _consistency(darkroom)
        assert files == named
        assert scene["orphan"] not in files and not scene["partial"]()

        async with darkroom.runtime.sessions() as session:
            media = {row.id: row for row in (await session.scalars(select(Media))).all()}
            generations = set((await session.scalars(select(Generation.id))).all())
            old_generation = await session.get(Generation, scene["old_generation"])
        assert not scene["expired"] & set(media)
        assert scene["kept"] <= set(media)
        assert media[scene["lost"]].status == MediaStatus.FAILED
        assert media[scene["lost"]].download_error == MISSING_FILE_ERROR
        assert scene["old_failed"] not in generations and scene["new_failed"] in generations
        # The generation whose media expired stays, and its subscribers heard of the change.
        assert old_generation is not None and old_generation.event_seq > 0
        last = await darkroom.query(
            "query($id: ID!) { generation(id: $id) { media { id } } }",
            {"id": (await _global_generation_id(darkroom, scene["old_generation"]))},
        )
        assert last["data"]["generation"]["media"] == []

        again = await darkroom.runtime.retention.run()
        assert (again.expired_media, again.failed_generations, again.missing_files, again.orphan_files) == (0, 0, 0, 0)


async def _global_generation_id(darkroom: Darkroom, generation_id: uuid.UUID) -> str:
    from server.graphql.ids import encode_id

    return str(encode_id("Generation", generation_id))


async def test_fresh_stray_files_are_left_for_a_download_to_claim(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(poller_enabled=False, downloader_enabled=False, download_lease_seconds=60) as darkroom:
        stray = "ab/in-flight.png"
        await store_bytes(darkroom.runtime.storage, stray, b"being recorded", "image/png")
        assert (await darkroom.runtime.retention.run()).orphan_files == 0
        assert await darkroom.runtime.storage.exists(stray)
        _run_clock_ahead(darkroom, 900)  # 15 minutes: older than the lease
        assert (await darkroom.runtime.retention.run()).orphan_files == 1
        assert not await darkroom.runtime.storage.exists(stray)


async def test_the_storage_cap_removes_the_oldest_first(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(poller_enabled=False, downloader_enabled=False, storage_cap_bytes=2500) as darkroom:
        now = utcnow()
        seeded = [
            await seed_media(darkroom, bytes([n]) * 1000, created_at=now - timedelta(hours=10 - n)) for n in range(4)
        ]
        plan = await darkroom.runtime.retention.run(dry_run=True)
        assert (plan.over_cap_media, plan.bytes_freed) == (2, 2000)
        report = await darkroom.runtime.retention.run()
        assert (report.over_cap_media, report.bytes_freed) == (2, 2000)
        async with darkroom.runtime.sessions() as session:
            left = set((await session.scalars(select(Media.id))).all())
        assert left == {seeded[2].id, seeded[3].id}
        files, named = await _consistency(darkroom)
        assert files == named and len(files) == 2


async def test_the_cleanup_command(start_darkroom: Callable[..., Any], media_store: MediaStore) -> None:
    async with start_darkroom(**RETENTION) as darkroom:
        scene = await _build_scene(darkroom, media_store)
        settings = darkroom.settings
        env = {
            **os.environ,
            "DATABASE_URL": settings.database.url or "",
            "DATA_DIR": str(settings.server.data_dir),
            "MEDIA_STORAGE_URL": settings.resolved_media_storage_url,
            "S3_ENDPOINT_URL": settings.media.s3_endpoint_url or "",
            "MEDIA_RETENTION_DAYS": "7",
            "FAILED_GENERATION_RETENTION_DAYS": "3",
            # The command's clock cannot be run ahead: with a lease and an attempt deadline of a millisecond
            # the scene's strays count as settled.
            "DOWNLOAD_LEASE_SECONDS": "0.001",
            "DOWNLOAD_TIMEOUT_SECONDS": "0.001",
            "BROADCAST_URL": "memory://",
            "LOG_LEVEL": "WARNING",
        }

        async def cleanup(*args: str) -> dict[str, Any]:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "server.cli",
                "cleanup",
                *args,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), timeout=60)
            assert process.returncode == 0, err.decode()
            return dict(json.loads(out))

        before = await _state(darkroom)
        dry = await cleanup("--dry-run")
        assert dry["dry_run"] is True and dry["expired_media"] == 2 and dry["failed_generations"] == 1
        assert await _state(darkroom) == before

        done = await cleanup()
        assert (done["dry_run"], done["expired_media"], done["failed_generations"]) == (False, 2, 1)
        files, named = await _consistency(darkroom)
        assert files == named
        assert scene["orphan"] not in files and not scene["partial"]()


async def test_the_periodic_cleanup_is_off_by_default_and_runs_when_enabled(
    start_darkroom: Callable[..., Any],
) -> None:
    old = utcnow() - timedelta(days=10)
    async with start_darkroom(poller_enabled=False, media_retention_days=7) as darkroom:
        kept = await seed_media(darkroom, b"kept: no periodic task", created_at=old)
        await asyncio.sleep(0.5)
        async with darkroom.runtime.sessions() as session:
            assert await session.get(Media, kept.id) is not None
    async with start_darkroom(
        poller_enabled=False, media_retention_days=7, cleanup_enabled=True, cleanup_interval_seconds=0.2
    ) as darkroom:
        doomed = await seed_media(darkroom, b"swept by the periodic task", created_at=old)

        async def gone() -> bool:
            # The row goes first and its file right after: done when both are gone.
            async with darkroom.runtime.sessions() as session:
                if await session.get(Media, doomed.id) is not None:
                    return False
            files, named = await _consistency(darkroom)
            return files == named

        await eventually(gone)
