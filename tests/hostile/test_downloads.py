"""Downloads that cannot kill their workers or lose their files: a claim whose handling fails is failed
and the worker goes on; a row that keeps killing its workers stops being claimed; a download slower than
its lease keeps its claim and its file; /readyz tells when the downloader is down; cleanup removes what a
killed process left in the temporary directory and the store's partial area."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from server.db.models import Media
from server.domain import MediaStatus
from server.services.media.scratch import PROBE_SCRATCH_PREFIX, UPLOAD_SCRATCH_PREFIX
from server.services.media.service import ABANDONED_ERROR
from server.storage.local import LocalStorage
from server.storage.sweep import remove_files_older_than
from server.workers import downloader
from tests.ops.support import stored_keys
from tests.support.file_hosts import allowing, file_host
from tests.support.object_storage import MediaStore, both_stores
from tests.support.pending_media import media_row, pending_media, settled_media
from tests.support.waiting import eventually


def png(seed: int, size: int = 48) -> bytes:
    """A real PNG whose pixels depend on `seed` (so two files differ), of a few kilobytes."""
    image = Image.frombytes("RGB", (size, size), bytes((seed * 7 + n * 13) % 256 for n in range(size * size * 3)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@both_stores
async def test_a_download_slower_than_its_lease_keeps_its_claim_and_its_file(
    start_darkroom: Callable[..., Any], media_store: MediaStore
) -> None:
    body = png(1)
    timings = {"download_lease_seconds": 1.5, "download_timeout_seconds": 30, "download_concurrency": 2}
    # The file takes about three leases to arrive; the workers of two servers on one database wait for
    # any lease that runs out.
    async with (
        file_host(body, content_type="image/png", name="slow.png", trickle_seconds=4.5) as host,
        start_darkroom(poller_enabled=False, replicate_file_hosts=allowing(host.url), **timings) as darkroom,
        start_darkroom(poller_enabled=False, replicate_file_hosts=allowing(host.url), **timings),
    ):
        media_id = await pending_media(darkroom, host.url)
        media = await settled_media(darkroom, media_id)
        assert media.status == MediaStatus.READY, media.download_error
        assert media.download_attempts == 1 and host.requests == 1, "no other worker took the live claim over"
        key = media.storage_key
        assert key is not None and key.startswith(f"{media_id.hex[:2]}/{media_id.hex}") and key.endswith(".png")
        served = await darkroom.http.get(f"/media/{key}")
        assert served.status_code == 200 and served.content == body
        assert await stored_keys(darkroom) == {key}


async def test_a_trickling_file_is_cut_off_at_the_attempt_deadline(start_darkroom: Callable[..., Any]) -> None:
    async with (
        file_host(png(2), content_type="image/png", name="trickle.png", trickle_seconds=60) as host,
        start_darkroom(
            poller_enabled=False,
            download_lease_seconds=3,
            download_timeout_seconds=1.5,
            download_max_attempts=1,
            replicate_file_hosts=allowing(host.url),
        ) as darkroom,
    ):
        media = await settled_media(darkroom, await pending_media(darkroom, host.url))
        assert media.status == MediaStatus.FAILED
        assert media.download_error == "the download did not finish within DOWNLOAD_TIMEOUT_SECONDS"
        assert media.storage_key is None and await stored_keys(darkroom) == set()


async def test_an_unexpected_error_fails_that_claim_and_the_worker_goes_on(
    start_darkroom: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    poison, ordinary = png(3), png(4)
    real_probe = downloader.probe_file

    def probe_that_breaks_on_poison(path: Path, max_pixels: int, expected: str | None = None) -> Any:
        if path.read_bytes() == poison:
            raise RuntimeError("the probe broke")
        return real_probe(path, max_pixels, expected)

    # Fault injection: once the probe refuses bombs cleanly, no real file makes it raise.
    monkeypatch.setattr(downloader, "probe_file", probe_that_breaks_on_poison)
    caplog.set_level(logging.ERROR, logger="server.workers.downloader")
    async with (
        file_host(poison, content_type="image/png", name="poison.png") as poison_host,
        file_host(ordinary, content_type="image/png", name="ordinary.png") as ordinary_host,
        start_darkroom(
            poller_enabled=False,
            download_concurrency=1,
            download_max_attempts=2,
            replicate_file_hosts=allowing(poison_host.url, ordinary_host.url),
        ) as darkroom,
    ):
        poisoned = await pending_media(darkroom, poison_host.url)
        failed = await settled_media(darkroom, poisoned)
        assert (failed.status, failed.download_attempts) == (MediaStatus.FAILED, 2), "retried, then failed"
        assert failed.download_error == "internal error (RuntimeError)" and failed.storage_key is None
        logged = [getattr(r, "media_id", None) for r in caplog.records if r.levelno == logging.ERROR]
        assert [media_id for media_id in logged if media_id] == [str(poisoned)] * 2
        # The one worker is still there: the next ordinary media is downloaded.
        fine = await settled_media(darkroom, await pending_media(darkroom, ordinary_host.url))
        assert fine.status == MediaStatus.READY, fine.download_error
        assert (await darkroom.http.get(f"/media/{fine.storage_key}")).content == ordinary
        assert (await darkroom.http.get("/readyz")).status_code == 200


async def test_a_worker_that_ends_is_started_again(
    start_darkroom: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_work = downloader.Downloader._work
    ended: list[int] = []

    async def work_that_ends_once(self: downloader.Downloader, stop: asyncio.Event) -> None:
        if not ended:
            ended.append(1)
            raise RuntimeError("a worker's loop broke")
        await real_work(self, stop)

    # Fault injection: nothing a claim brings escapes the loop any more, so a broken loop is made here.
    monkeypatch.setattr(downloader.Downloader, "_work", work_that_ends_once)
    caplog.set_level(logging.ERROR, logger="server.workers.downloader")
    body = png(5)
    async with (
        file_host(body, content_type="image/png", name="after.png") as host,
        start_darkroom(
            poller_enabled=False, download_concurrency=1, replicate_file_hosts=allowing(host.url)
        ) as darkroom,
    ):
        media = await settled_media(darkroom, await pending_media(darkroom, host.url))
        assert media.status == MediaStatus.READY, media.download_error
        assert ended == [1]
        assert any("ended unexpectedly" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
        assert (await darkroom.http.get("/readyz")).status_code == 200


async def test_a_row_that_keeps_killing_its_worker_stops_being_claimed(start_darkroom: Callable[..., Any]) -> None:
    # No downloader runs here: each claim below is a worker that took the row and died mid-download.
    async with start_darkroom(
        poller_enabled=False, downloader_enabled=False, download_lease_seconds=0.3, download_max_attempts=2
    ) as darkroom:
        media_id = await pending_media(darkroom, "https://replicate.delivery/kills-its-worker.png")
        media = darkroom.runtime.media
        first = await media.claim_next()
        assert first is not None and first.attempt == 1
        second = await eventually(media.claim_next)  # once the first lease ran out
        assert second.media_id == media_id and second.attempt == 2

        async def failed() -> Media | None:
            assert await media.claim_next() is None, "a row at its attempt limit is never claimed again"
            row = await media_row(darkroom, media_id)
            return row if row.status == MediaStatus.FAILED else None

        row = await eventually(failed)
        assert (row.download_attempts, row.download_error, row.claim_token) == (2, ABANDONED_ERROR, None)
        assert await media.claim_next() is None


async def test_readyz_reports_a_downloader_that_stopped(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(poller_enabled=False) as darkroom:
        ready = await darkroom.http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["downloader"] is True
        task = next(task for task in asyncio.all_tasks() if task.get_name() == "downloader")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stopped = await darkroom.http.get("/readyz")
        assert stopped.status_code == 503
        assert stopped.json()["checks"]["downloader"] is False
        assert stopped.json()["reason"] == "not running: downloader"


async def test_readyz_does_not_ask_for_a_downloader_a_process_does_not_run(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(poller_enabled=False, downloader_enabled=False) as darkroom:
        ready = await darkroom.http.get("/readyz")
        assert ready.status_code == 200 and "downloader" not in ready.json()["checks"]


def _aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def _scratch(prefix: str) -> Path:
    descriptor, name = tempfile.mkstemp(prefix=prefix)
    os.write(descriptor, b"left by a killed process")
    os.close(descriptor)
    return Path(name)


async def test_cleanup_removes_stale_partial_and_scratch_files_and_keeps_fresh_ones(
    start_darkroom: Callable[..., Any],
) -> None:
    async with start_darkroom(
        poller_enabled=False, downloader_enabled=False, download_lease_seconds=60, scratch_max_age_seconds=600
    ) as darkroom:
        storage = darkroom.runtime.storage
        assert isinstance(storage, LocalStorage)
        stale_part = storage.temp_path()
        stale_part.write_bytes(b"half a download")
        _aged(stale_part, 3600)
        fresh_part = storage.temp_path()
        fresh_part.write_bytes(b"a download under way")
        stale = [_aged(_scratch(prefix), 3600) for prefix in (PROBE_SCRATCH_PREFIX, UPLOAD_SCRATCH_PREFIX)]
        fresh = [_scratch(prefix) for prefix in (PROBE_SCRATCH_PREFIX, UPLOAD_SCRATCH_PREFIX)]
        try:
            plan = await darkroom.runtime.retention.run(dry_run=True)
            assert plan.scratch_files >= 2 and all(path.exists() for path in stale)
            report = await darkroom.runtime.retention.run()
            assert report.orphan_files == 1 and report.scratch_files >= 2
            assert not stale_part.exists() and fresh_part.exists()
            assert not any(path.exists() for path in stale)
            assert all(path.exists() for path in fresh)
        finally:
            for path in [*fresh, fresh_part]:
                path.unlink(missing_ok=True)


def test_a_stale_file_the_sweep_may_not_remove_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a shared temporary directory a file of the same name may be another user's: the sweep goes on."""
    theirs, ours = tmp_path / "darkroom-probe-theirs", tmp_path / "darkroom-probe-ours"
    for path in (theirs, ours):
        path.write_bytes(b"left behind")
        _aged(path, 3600)
    (tmp_path / "darkroom-probe-link").symlink_to(ours)
    unlink = Path.unlink

    def refuse_theirs(path: Path, missing_ok: bool = False) -> None:
        if path == theirs:
            raise PermissionError(1, "Operation not permitted", str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse_theirs)
    assert remove_files_older_than(sorted(tmp_path.glob("darkroom-probe-*")), time.time() - 60) == (1, 11)
    assert theirs.exists() and not ours.exists()
