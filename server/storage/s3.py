"""Media files in S3-compatible object storage (AWS S3, Cloudflare R2, Backblaze B2, SeaweedFS, Garage).

Built on aioboto3: it streams objects both ways, and it speaks the whole multipart API, so an upload that
fails is aborted and the incomplete uploads a crashed process left behind can be listed and aborted by
the cleanup pass (obstore cannot list them, and leaves that to bucket lifecycle rules).

A file smaller than one part goes up in a single PUT at commit. A larger one goes up as a multipart
upload, one part while the next is being received, so at most two parts are held in memory; it becomes
visible only when the upload completes. The sha256 is known only once the last byte has arrived, after a
multipart upload's metadata was fixed, so it is set by copying the object onto itself with its metadata
replaced (server-side; S3 copies up to 5 GiB in one request). Objects carry their content type,
``Cache-Control: immutable`` and the sha256 as ``x-amz-meta-sha256``.

Credentials and region come from the usual chain: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
AWS_REGION (or AWS_DEFAULT_REGION), a profile or an instance role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from server.storage.port import CACHE_FOREVER, StorageError, StoredObject, check_key

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
MIN_PART_BYTES = 5 * 1024 * 1024  # S3's smallest part but the last
COPY_MAX_BYTES = 5 * 1024**3  # the largest object one CopyObject request copies
MISSING = ("404", "NoSuchKey", "NotFound")


def key_prefix(prefix: str) -> str:
    """What goes before every media key in the bucket: s3://BUCKET/PREFIX's PREFIX with one trailing slash."""
    return f"{prefix.strip('/')}/" if prefix.strip("/") else ""


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING


class S3Upload:
    spool: Path | None = None

    def __init__(self, storage: S3Storage, key: str, content_type: str) -> None:
        self._storage = storage
        self._key = key
        self._content_type = content_type
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._sending: asyncio.Task[None] | None = None
        self._size = 0
        self._done = False

    async def write(self, chunk: bytes) -> None:
        assert not self._done, "the upload is finished"
        self._buffer += chunk
        self._size += len(chunk)
        if len(self._buffer) >= self._storage.part_bytes:
            await self._send_part()

    async def _send_part(self) -> None:
        """Start sending the buffer as the next part, once the part before it has arrived."""
        async with self._storage.errors():
            if self._sending is not None:
                await self._sending
            client = await self._storage.client()
            if self._upload_id is None:
                started = await client.create_multipart_upload(
                    **self._storage.where(self._key), ContentType=self._content_type, CacheControl=CACHE_FOREVER
                )
                self._upload_id = str(started["UploadId"])
            body, self._buffer = self._buffer, bytearray()
            number = len(self._parts) + 1
            self._parts.append({"PartNumber": number})
            self._sending = asyncio.create_task(self._upload_part(number, body))

    async def _upload_part(self, number: int, body: bytearray) -> None:
        client = await self._storage.client()
        sent = await client.upload_part(
            **self._storage.where(self._key), UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts[number - 1]["ETag"] = sent["ETag"]

    async def commit(self, sha256: str) -> None:
        assert not self._done, "the upload is finished"
        client = await self._storage.client()
        where = self._storage.where(self._key)
        attributes = {"ContentType": self._content_type, "CacheControl": CACHE_FOREVER, "Metadata": {"sha256": sha256}}
        async with self._storage.errors():
            if self._upload_id is None:
                await client.put_object(**where, Body=self._buffer, **attributes)
                self._done = True
                return
            if self._buffer:
                await self._send_part()
            assert self._sending is not None
            await self._sending
            await client.complete_multipart_upload(
                **where, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
            self._done = True
            if self._size <= COPY_MAX_BYTES:
                source = {"Bucket": self._storage.bucket, "Key": where["Key"]}
                try:
                    await client.copy_object(**where, CopySource=source, MetadataDirective="REPLACE", **attributes)
                except BaseException:
                    # Not committed after all: no object without its sha256 stays behind.
                    with contextlib.suppress(BotoCoreError, ClientError):
                        await asyncio.shield(client.delete_object(**where))
                    raise
            else:
                logger.warning("object too large to set its sha256 metadata", extra={"key": self._key})

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer = bytearray()
        if self._sending is not None:
            self._sending.cancel()
            with contextlib.suppress(BaseException):
                await self._sending
        if self._upload_id is not None:
            try:
                client = await self._storage.client()
                await client.abort_multipart_upload(**self._storage.where(self._key), UploadId=self._upload_id)
            except (BotoCoreError, ClientError):
                # Left for the cleanup pass, which aborts stale uploads.
                logger.warning("could not abort a multipart upload", exc_info=True, extra={"key": self._key})


class S3Storage:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        part_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.bucket = bucket
        self.prefix = key_prefix(prefix)
        self.part_bytes = max(part_bytes, MIN_PART_BYTES)
        self._endpoint_url = endpoint_url
        self._session = aioboto3.Session()
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()

    async def client(self) -> Any:
        """One client per process, opened on first use (connections are pooled inside it)."""
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    config = AioConfig(
                        # Servers other than AWS are addressed by path, and many refuse the checksums
                        # newer clients add to every request unless asked.
                        s3={"addressing_style": "path" if self._endpoint_url else "auto"},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        retries={"max_attempts": 3, "mode": "standard"},
                    )
                    self._client = await self._stack.enter_async_context(
                        self._session.client(
                            "s3",
                            endpoint_url=self._endpoint_url,
                            region_name=os.environ.get("AWS_REGION") or None,
                            config=config,
                        )
                    )
        return self._client

    def where(self, key: str) -> dict[str, str]:
        return {"Bucket": self.bucket, "Key": self.prefix + check_key(key)}

    @contextlib.asynccontextmanager
    async def errors(self) -> AsyncIterator[None]:
        """Turn the client's failures into StorageError."""
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3: {exc}") from exc

    # --- the port ----------------------------------------------------------------------------------
    async def open_upload(self, key: str, content_type: str) -> S3Upload:
        self.where(key)
        return S3Upload(self, key, content_type)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end < start:
            return
        client = await self.client()
        extra = {"Range": f"bytes={start}-{'' if end is None else end}"} if start or end is not None else {}
        async with self.errors():
            try:
                response = await client.get_object(**self.where(key), **extra)
            except ClientError as exc:
                if _missing(exc):
                    raise StorageError(f"no stored file {key!r}") from None
                raise
            body = response["Body"]
            try:
                async for chunk in body.iter_chunks(CHUNK):
                    yield chunk
            finally:
                body.close()

    async def stat(self, key: str) -> StoredObject | None:
        client = await self.client()
        async with self.errors():
            try:
                head = await client.head_object(**self.where(key))
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
        return StoredObject(
            key,
            int(head["ContentLength"]),
            head["LastModified"].timestamp(),
            content_type=head.get("ContentType"),
            sha256=(head.get("Metadata") or {}).get("sha256"),
            etag=head.get("ETag"),
        )

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    async def delete(self, key: str) -> bool:
        if not await self.exists(key):
            return False
        client = await self.client()
        async with self.errors():
            await client.delete_object(**self.where(key))
        return True

    async def list_files(self) -> AsyncIterator[StoredObject]:
        client = await self.client()
        async with self.errors():
            async for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    key = str(item["Key"])[len(self.prefix) :]
                    yield StoredObject(key, int(item["Size"]), item["LastModified"].timestamp(), etag=item.get("ETag"))

    async def used_bytes(self) -> int:
        return sum([entry.size async for entry in self.list_files()])

    async def abort_stale_uploads(self, started_before: float, *, dry_run: bool = False) -> tuple[int, int]:
        """Multipart uploads a process began and never finished or aborted (it died mid-download)."""
        client = await self.client()
        count = freed = 0
        async with self.errors():
            paginator = client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() > started_before:
                        continue
                    where = {"Bucket": self.bucket, "Key": upload["Key"], "UploadId": upload["UploadId"]}
                    parts = await client.list_parts(**where)
                    freed += sum(int(part["Size"]) for part in parts.get("Parts", []))
                    if not dry_run:
                        await client.abort_multipart_upload(**where)
                        logger.info("stale multipart upload aborted", extra={"key": upload["Key"]})
                    count += 1
        return count, freed

    async def presigned_url(self, key: str, expires_seconds: float) -> str | None:
        client = await self.client()
        async with self.errors():
            url = await client.generate_presigned_url(
                "get_object", Params=self.where(key), ExpiresIn=max(int(expires_seconds), 1)
            )
        return str(url)

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None
