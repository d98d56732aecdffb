"""The media downloader: copies each output file off the provider before its link expires.

Workers claim one PENDING media row at a time (a lease, see MediaService.claim_next) and stream the file
into storage as it arrives, hashing it on the way: the first bytes decide its content type and so its key,
the rest follows in chunks (in multipart parts on S3), never the whole file in memory. Once the last byte
is in, the file is probed (image size, video duration) from a local copy, the upload committed and the row
marked READY. A failure aborts the upload, so nothing half-written is left visible, and the row goes back
to PENDING with a backoff, or FAILED past the attempt limit. Only http(s) URLs on the allowed file hosts
are fetched (scheme, host and port must match), with a size cap, so a forged output URL cannot make the
server reach internal addresses, nor another port of the simulator's host.
Workers sleep until an event announces PENDING media.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote_to_bytes, urlparse

import httpx

from server import metrics
from server.events import EventHub
from server.log import generation_context
from server.services.media.probe import SNIFF_BYTES, probe_file, sniff_content_type
from server.services.media.service import Claim, MediaService, StoredFile
from server.services.operations.alerts import FailureAlerts
from server.settings import Settings
from server.storage.port import MediaStorage, StorageError

logger = logging.getLogger(__name__)


class DownloadError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_pattern(pattern: str) -> tuple[str, str, int] | None:
    """A REPLICATE_FILE_HOSTS entry, ``[scheme://]host[:port]``, as (scheme, host, port); None if malformed.

    The scheme defaults to https and the port to the scheme's, so a bare host name means what Replicate
    serves: https on 443. `host` may start with ``*.`` (any subdomain)."""
    text = pattern.strip().lower()
    if "://" not in text:
        text = "https://" + text
    parsed = urlparse(text)
    try:
        port = parsed.port
    except ValueError:
        return None
    host = parsed.hostname
    if parsed.scheme not in DEFAULT_PORTS or not host or parsed.path not in ("", "/"):
        return None
    return parsed.scheme, host, port or DEFAULT_PORTS[parsed.scheme]


def host_allowed(url: str, allowed: list[str]) -> bool:
    """Whether `url`'s origin (scheme, host and port) matches one of the `allowed` origin patterns."""
    parsed = urlparse(url)
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname:
        return False
    try:
        port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    except ValueError:
        return False
    host = parsed.hostname.lower()
    for pattern in allowed:
        origin = _origin_pattern(pattern)
        if origin is None or origin[0] != parsed.scheme or origin[2] != port:
            continue
        wanted = origin[1]
        if wanted == host or (wanted.startswith("*.") and host.endswith(wanted[1:])):
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
        try:
            result = await self._fetch(claim)
        except DownloadError as exc:
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
        if not await self._media.complete(claim, result):
            await self._storage.delete(result.storage_key)
            return
        metrics.observe_download("ready", claim.attempt)
        logger.info("media downloaded", extra={"media_id": str(claim.media_id), "bytes": result.byte_size})

    async def _fetch(self, claim: Claim) -> StoredFile:
        url = claim.source_url
        try:
            if url.startswith("data:"):
                data, content_type = decode_data_uri(url)
                if len(data) > self._settings.downloads.max_bytes:
                    raise DownloadError("the file is larger than DOWNLOAD_MAX_BYTES", retryable=False)
                return await self._store(claim, content_type, _single(data))
            if not host_allowed(url, self._settings.allowed_file_hosts()):
                raise DownloadError(
                    f"refusing to download from {_shown_origin(url)}: not an allowed file host "
                    "(REPLICATE_FILE_HOSTS names scheme, host and port)",
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
                content_type = response.headers.get("content-type", "application/octet-stream").split(";")[0]
                return await self._store(claim, content_type, _capped(response.aiter_bytes(), limit))
        except httpx.HTTPError as exc:
            raise DownloadError(f"{type(exc).__name__}: {exc}", retryable=True) from None

    async def _store(self, claim: Claim, declared_type: str, chunks: AsyncIterator[bytes]) -> StoredFile:
        """Write `chunks` to storage under the media's key; aborted, leaving nothing, if anything fails."""
        head, rest = await _head(chunks, SNIFF_BYTES)
        content_type = sniff_content_type(head) or declared_type
        extension = mimetypes.guess_extension(content_type) or ""
        extension = {".jpe": ".jpg", ".jpeg": ".jpg"}.get(extension, extension)
        key = f"{claim.media_id.hex[:2]}/{claim.media_id.hex}{extension}"
        digest = hashlib.sha256()
        size = 0
        upload = await self._storage.open_upload(key, content_type)
        # The probe reads a local copy: the store's own spool file, or a scratch file beside a remote upload.
        scratch: tuple[BinaryIO, Path] | None = None
        try:
            if upload.spool is None:
                descriptor, name = tempfile.mkstemp(prefix="darkroom-probe-")
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
            probe = await asyncio.to_thread(probe_file, local, content_type)
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


def _shown_origin(url: str) -> str:
    """`url` cut to its scheme, host and port, for an error message (no path, query or credentials)."""
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        port = None
    host = parsed.hostname or "?"
    return f"{parsed.scheme or '?'}://{host}" + (f":{port}" if port else "")


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
