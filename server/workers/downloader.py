"""The media downloader: copies each output file off the provider before its link expires.

Workers claim one PENDING media row at a time (a lease, see MediaService.claim_next), stream the file
to a temp file while hashing it, probe it (image size, video duration), move it into storage and mark
the row READY. A failure goes back to PENDING with a backoff, or FAILED past the attempt limit. Only
http(s) URLs on the allowed file hosts are fetched, with a size cap, so a forged output URL cannot make
the server reach internal addresses. Workers sleep until an event announces PENDING media.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

import httpx

from server import metrics
from server.events import EventHub
from server.log import generation_context
from server.services.media.service import Claim, DownloadResult, MediaService
from server.services.operations.alerts import FailureAlerts
from server.settings import Settings
from server.storage.local import LocalStorage
from server.workers.probe import probe_file

logger = logging.getLogger(__name__)


class DownloadError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def host_allowed(url: str, allowed: list[str]) -> bool:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False
    host = parsed.hostname.lower()
    for pattern in allowed:
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


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
        storage: LocalStorage,
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
                settings.downloads.timeout_seconds, connect=settings.replicate.connect_timeout_seconds
            ),
            follow_redirects=False,
        )

    async def run(self, stop: asyncio.Event) -> None:
        async with self._hub.subscribe(self._announces_pending) as announcements:
            waker = asyncio.create_task(self._forward(announcements), name="downloader-waker")
            workers = [
                asyncio.create_task(self._work(stop), name=f"downloader-{n}")
                for n in range(self._settings.downloads.concurrency)
            ]
            try:
                await stop.wait()
            finally:
                waker.cancel()
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(waker, *workers, return_exceptions=True)
                await self._client.aclose()

    @staticmethod
    def _announces_pending(event: dict[str, Any]) -> bool:
        return any(media["status"] == "PENDING" for media in event.get("media", [])) or bool(
            event.get("mediaTruncated")
        )

    async def _forward(self, announcements: Any) -> None:
        async for _event in announcements:
            self._wake.set()

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

    async def download(self, claim: Claim) -> None:
        temp = self._storage.temp_path()
        try:
            result = await self._fetch(claim, temp)
        except DownloadError as exc:
            temp.unlink(missing_ok=True)
            status = await self._media.fail(claim, str(exc), retryable=exc.retryable)
            if status is not None:
                metrics.observe_download("failed" if status == "FAILED" else "retry", claim.attempt)
                if self._alerts is not None:
                    self._alerts.download_failed(str(exc))
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
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if not await self._media.complete(claim, result):
            self._storage.delete(result.storage_key)
            return
        metrics.observe_download("ready", claim.attempt)
        logger.info("media downloaded", extra={"media_id": str(claim.media_id), "bytes": result.byte_size})

    async def _fetch(self, claim: Claim, temp: Path) -> DownloadResult:
        url = claim.source_url
        digest = hashlib.sha256()
        if url.startswith("data:"):
            data, content_type = decode_data_uri(url)
            if len(data) > self._settings.downloads.max_bytes:
                raise DownloadError("the file is larger than DOWNLOAD_MAX_BYTES", retryable=False)
            await asyncio.to_thread(temp.write_bytes, data)
            digest.update(data)
            size = len(data)
        else:
            if not host_allowed(url, self._settings.allowed_file_hosts()):
                raise DownloadError(
                    f"refusing to download from {urlparse(url).hostname!r}: not an allowed file host",
                    retryable=False,
                )
            content_type, size = await self._stream(url, temp, digest)
        probe = await asyncio.to_thread(probe_file, temp, content_type)
        extension = mimetypes.guess_extension(probe.content_type) or ""
        extension = {".jpe": ".jpg", ".jpeg": ".jpg"}.get(extension, extension)
        key = f"{claim.media_id.hex[:2]}/{claim.media_id.hex}{extension}"
        await asyncio.to_thread(self._storage.commit, temp, key)
        return DownloadResult(
            storage_key=key,
            content_type=probe.content_type,
            byte_size=size,
            sha256=digest.hexdigest(),
            width=probe.width,
            height=probe.height,
            duration_seconds=probe.duration_seconds,
        )

    async def _stream(self, url: str, temp: Path, digest: Any) -> tuple[str, int]:
        limit = self._settings.downloads.max_bytes
        size = 0
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
                content_type = response.headers.get("content-type", "application/octet-stream").split(";")[0]
                with temp.open("wb") as sink:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise DownloadError("the file is over DOWNLOAD_MAX_BYTES", retryable=False)
                        digest.update(chunk)
                        sink.write(chunk)
        except httpx.HTTPError as exc:
            raise DownloadError(f"{type(exc).__name__}: {exc}", retryable=True) from None
        return content_type, size
