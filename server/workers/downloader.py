"""The media downloader: copies each output file off the provider before its link expires.

Workers claim one PENDING media row at a time (a lease, see MediaService.claim_next) and stream the file
into storage as it arrives, hashing it on the way: the first bytes decide its content type and so its key,
the rest follows in chunks (in multipart parts on S3), never the whole file in memory. Once the last byte
is in, the file is probed (image size, video duration) from a local copy, the upload committed and the row
marked READY. Only media is kept: a file whose bytes are not a supported image or video (the file host's
Content-Type and a data: URI's type are never trusted), or an image over MEDIA_MAX_PIXELS, ends FAILED at
once, with nothing stored. A failure aborts the upload, so nothing half-written is left visible, and the
row goes back to PENDING with a backoff, or FAILED past the attempt limit. Only http(s) URLs on the allowed file hosts
are fetched (scheme, host and port must match), with a size cap, so a forged output URL cannot make the
server reach internal addresses, nor another port of the simulator's host.
Workers sleep until an event announces PENDING media.

No claim can stop a worker: whatever goes wrong while handling one (a bad file, a fault of the store or
the database) fails that claim, is logged, and the worker takes the next; a worker that ends anyway is
started again, and /readyz reports a downloader whose `run` ended before its process did. An attempt renews its lease
while it works, has a deadline of DOWNLOAD_TIMEOUT_SECONDS, and is cut off if its lease cannot be
renewed, so it never outlives its claim. Each attempt writes a key of its own, so an attempt that lost
its claim only ever removes its own file, never the one another attempt recorded.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote_to_bytes

import httpx

from server import metrics, telemetry
from server.events import EventHub
from server.log import generation_context
from server.origins import origin_allowed, written_origin
from server.services.media.keys import media_key
from server.services.media.probe import (
    SNIFF_BYTES,
    UNSUPPORTED_MESSAGE,
    NotMedia,
    probe_file,
    sniff_content_type,
)
from server.services.media.scratch import PROBE_SCRATCH_PREFIX
from server.services.media.service import Claim, MediaService, StoredFile
from server.services.operations.alerts import FailureAlerts
from server.settings import Settings
from server.storage.port import MediaStorage, StorageError

logger = logging.getLogger(__name__)

# An attempt is cut off this share of a lease after the lease was last taken or renewed: a little before
# the row's own lease runs out, so another worker never takes over an attempt that is still writing.
LEASE_MARGIN = 0.9


class DownloadError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def decode_data_uri(uri: str) -> tuple[bytes, str]:
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise DownloadError("malformed data: URI", retryable=False)
    content_type = header.split(";")[0] or "application/octet-stream"
    try:
        data = base64.b64decode(payload, validate=True) if header.endswith(";base64") else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise DownloadError("malformed base64 in data: URI", retryable=False) from None
    return data, content_type


class Downloader:
    def __init__(
        self,
        settings: Settings,
        media: MediaService,
        storage: MediaStorage,
        hub: EventHub,
        alerts: FailureAlerts | None = None,
    ) -> None:
        self._settings = settings
        self._alerts = alerts
        self._media = media
        self._storage = storage
        self._hub = hub
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.downloads.timeout_seconds, connect=settings.downloads.connect_timeout_seconds
            ),
            follow_redirects=False,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run the workers until `stop` is set; its task ending earlier means the downloader is down."""
        try:
            async with self._hub.subscribe(self._announces_pending) as announcements:
                waker = asyncio.create_task(self._forward(announcements), name="downloader-waker")
                workers = [
                    asyncio.create_task(self._keep_working(n, stop), name=f"downloader-{n}")
                    for n in range(self._settings.downloads.concurrency)
                ]
                try:
                    await stop.wait()
                finally:
                    waker.cancel()
                    for worker in workers:
                        worker.cancel()
                    await asyncio.gather(waker, *workers, return_exceptions=True)
        except BaseException:
            if not stop.is_set():
                logger.exception("the downloader stopped while its process runs on")
            raise
        finally:
            await self._client.aclose()

    @staticmethod
    def _announces_pending(event: dict[str, Any]) -> bool:
        return any(media["status"] == "PENDING" for media in event.get("media", [])) or bool(
            event.get("mediaTruncated")
        )

    async def _forward(self, announcements: Any) -> None:
        async for _event in announcements:
            self._wake.set()

    async def _keep_working(self, number: int, stop: asyncio.Event) -> None:
        """Run one worker until `stop`, starting it again (after an idle wait) whenever it ends early."""
        while not stop.is_set():
            try:
                await self._work(stop)
            except Exception:
                logger.exception("download worker %d ended unexpectedly; starting it again", number)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._settings.downloads.idle_seconds)

    async def _work(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                claim = await self._media.claim_next()
            except Exception:
                logger.exception("could not claim a download")
                claim = None
            if claim is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._settings.downloads.idle_seconds)
                continue
            try:
                with generation_context(str(claim.generation_id)):
                    await self.download(claim)
            except asyncio.CancelledError:
                # Shutting down mid-download: hand the row back for another process to take.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._media.release(claim))
                raise
            except Exception as exc:
                # A fault of ours (the probe, the store, the database): this claim fails, the worker goes on.
                logger.exception(
                    "download failed unexpectedly",
                    extra={"media_id": str(claim.media_id), "attempt": claim.attempt},
                )
                try:
                    await self._failed(claim, f"internal error ({type(exc).__name__})", retryable=True)
                except Exception as recording:
                    logger.warning(
                        "could not record a failed download",
                        extra={"media_id": str(claim.media_id), "error": repr(recording)},
                    )

    async def download(self, claim: Claim) -> None:
        if not telemetry.enabled():
            await self._download(claim)
            return
        attributes = {
            telemetry.GENERATION_ID: str(claim.generation_id),
            "darkroom.media_id": str(claim.media_id),
            "darkroom.attempt": claim.attempt,
        }
        # Linked to the span that started the generation, through its row (as the updates' spans are).
        started_by = await self._media.trace_context(claim.generation_id)
        with telemetry.span("darkroom.download", attributes, links=telemetry.links_to([started_by]), root=True):
            await self._download(claim)

    async def _download(self, claim: Claim) -> None:
        try:
            result = await self._attempt(claim)
        except DownloadError as exc:
            status = await self._failed(claim, str(exc), retryable=exc.retryable)
            logger.warning(
                "download failed",
                extra={
                    "media_id": str(claim.media_id),
                    "attempt": claim.attempt,
                    "error": str(exc),
                    "status": status,
                },
            )
            return
        if not await self._media.complete(claim, result):
            # Another attempt owns the row now. Its file has a key of its own (one per attempt), so this one
            # names no row; asked anyway, as deleting a file a row names would lose it for good.
            if not await self._media.names_key(result.storage_key):
                await self._storage.delete(result.storage_key)
            return
        metrics.observe_download("ready", claim.attempt)
        logger.info("media downloaded", extra={"media_id": str(claim.media_id), "bytes": result.byte_size})

    async def _failed(self, claim: Claim, error: str, *, retryable: bool) -> str | None:
        """Record a failed attempt (counted, alerted); the row's new status, or None if the claim was lost."""
        status = await self._media.fail(claim, error, retryable=retryable)
        if status is not None:
            metrics.observe_download("failed" if status == "FAILED" else "retry", claim.attempt)
            if self._alerts is not None:
                self._alerts.download_failed(error)
        return status

    async def _attempt(self, claim: Claim) -> StoredFile:
        """Fetch and store the file within the attempt's deadline, renewing the lease meanwhile; cut off
        (a retryable DownloadError) at the deadline, or once the lease was lost or could not be renewed."""
        lease = self._settings.downloads.lease_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.downloads.timeout_seconds
        lost = asyncio.Event()
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + lease * LEASE_MARGIN)) as limit:
                renewer = asyncio.create_task(self._renew(claim, limit, deadline, lost), name="download-lease")
                try:
                    return await self._fetch(claim)
                finally:
                    renewer.cancel()
                    await asyncio.gather(renewer, return_exceptions=True)
        except TimeoutError:
            if lost.is_set():
                raise DownloadError("the download's claim was lost", retryable=True) from None
            if loop.time() < deadline:
                raise DownloadError("the download's lease could not be renewed", retryable=True) from None
            raise DownloadError("the download did not finish within DOWNLOAD_TIMEOUT_SECONDS", retryable=True) from None

    async def _renew(self, claim: Claim, limit: asyncio.Timeout, deadline: float, lost: asyncio.Event) -> None:
        """Every third of a lease, extend it and move the attempt's cut-off to the new lease's end (never
        past its deadline); a lost claim cuts the attempt off at once. A renewal that fails leaves the
        cut-off where it was, before the lease runs out, so no other worker can take over a live attempt."""
        lease = self._settings.downloads.lease_seconds
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(lease / 3, 0.05))
            asked = loop.time()
            try:
                held = await self._media.renew(claim)
            except Exception as exc:
                logger.warning(
                    "could not renew a download's lease", extra={"media_id": str(claim.media_id), "error": repr(exc)}
                )
                continue
            if not held:
                logger.warning("a download's claim was lost", extra={"media_id": str(claim.media_id)})
                lost.set()
                limit.reschedule(loop.time())
                return
            limit.reschedule(min(deadline, asked + lease * LEASE_MARGIN))

    async def _fetch(self, claim: Claim) -> StoredFile:
        url = claim.source_url
        try:
            if url.startswith("data:"):
                data, _declared = decode_data_uri(url)
                if len(data) > self._settings.downloads.max_bytes:
                    raise DownloadError("the file is larger than DOWNLOAD_MAX_BYTES", retryable=False)
                return await self._store(claim, _single(data))
            if not origin_allowed(url, self._settings.allowed_file_hosts()):
                raise DownloadError(
                    f"refusing to download from {written_origin(url)}: not an allowed file host "
                    "(each provider's *_FILE_HOSTS setting names scheme, host and port)",
                    retryable=False,
                )
            return await self._stream(claim, url)
        except StorageError as exc:
            raise DownloadError(f"storage: {exc}", retryable=True) from None

    async def _stream(self, claim: Claim, url: str) -> StoredFile:
        limit = self._settings.downloads.max_bytes
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code in (404, 410):
                    raise DownloadError(
                        f"the provider no longer has the file (HTTP {response.status_code})", retryable=False
                    )
                if response.status_code >= 400:
                    raise DownloadError(f"HTTP {response.status_code} from the file host", retryable=True)
                if response.status_code >= 300:
                    raise DownloadError(f"unexpected redirect (HTTP {response.status_code})", retryable=False)
                declared = int(response.headers.get("content-length") or 0)
                if declared > limit:
                    raise DownloadError(f"the file is {declared} bytes, over DOWNLOAD_MAX_BYTES", retryable=False)
                return await self._store(claim, _capped(response.aiter_bytes(), limit))
        except httpx.HTTPError as exc:
            raise DownloadError(f"{type(exc).__name__}: {exc}", retryable=True) from None

    async def _store(self, claim: Claim, chunks: AsyncIterator[bytes]) -> StoredFile:
        """Write `chunks` to storage under the media's key; aborted, leaving nothing, if anything fails."""
        with telemetry.span("darkroom.storage.write", {"darkroom.media_id": str(claim.media_id)}):
            stored = await self._write(claim, chunks)
            telemetry.set_attributes({"darkroom.bytes": stored.byte_size, "darkroom.content_type": stored.content_type})
            return stored

    async def _write(self, claim: Claim, chunks: AsyncIterator[bytes]) -> StoredFile:
        head, rest = await _head(chunks, SNIFF_BYTES)
        content_type = sniff_content_type(head)
        if content_type is None:  # nothing is written for a file that is no media
            raise DownloadError(f"not kept: {UNSUPPORTED_MESSAGE}", retryable=False)
        key = attempt_key(claim, content_type)
        digest = hashlib.sha256()
        size = 0
        upload = await self._storage.open_upload(key, content_type)
        # The probe reads a local copy: the store's own spool file, or a scratch file beside a remote upload.
        scratch: tuple[BinaryIO, Path] | None = None
        try:
            if upload.spool is None:
                descriptor, name = tempfile.mkstemp(prefix=PROBE_SCRATCH_PREFIX)
                scratch = (os.fdopen(descriptor, "wb"), Path(name))
            async for chunk in _chain(head, rest):
                size += len(chunk)
                digest.update(chunk)
                await upload.write(chunk)
                if scratch is not None:
                    scratch[0].write(chunk)
            if scratch is not None:
                scratch[0].close()
            local = upload.spool if scratch is None else scratch[1]
            assert local is not None
            try:
                probe = await asyncio.to_thread(probe_file, local, self._settings.media.max_pixels, content_type)
            except NotMedia as exc:
                raise DownloadError(f"not kept: {exc.message}", retryable=False) from None
            await upload.commit(digest.hexdigest())
        except BaseException:
            await asyncio.shield(upload.abort())
            raise
        finally:
            if scratch is not None:
                scratch[0].close()
                scratch[1].unlink(missing_ok=True)
        return StoredFile(
            storage_key=key,
            content_type=content_type,
            byte_size=size,
            sha256=digest.hexdigest(),
            width=probe.width,
            height=probe.height,
            duration_seconds=probe.duration_seconds,
        )


def attempt_key(claim: Claim, content_type: str) -> str:
    """The key one attempt writes: the media's, with the claim's own suffix (see media_key)."""
    return media_key(claim.media_id, content_type, claim.token[:12])


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _capped(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise DownloadError("the file is over DOWNLOAD_MAX_BYTES", retryable=False)
        yield chunk


async def _head(chunks: AsyncIterator[bytes], wanted: int) -> tuple[bytes, AsyncIterator[bytes]]:
    """At least `wanted` bytes off the front of `chunks` (fewer if it ends first), and what follows them."""
    iterator = aiter(chunks)
    head = b""
    while len(head) < wanted:
        try:
            head += await anext(iterator)
        except StopAsyncIteration:
            break
    return head, iterator


async def _chain(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if head:
        yield head
    async for chunk in rest:
        yield chunk
