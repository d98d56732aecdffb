"""The media store behind the downloader, on the local disk and on S3: large files stream in parts and
carry their sha256, content type and caching; a failed upload leaves nothing; MEDIA_BASE_URL moves
Media.url off this server; animateImage hands the provider a presigned URL of a stored image."""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from server.domain import MediaStatus
from server.storage.local import LocalStorage
from server.storage.port import CACHE_FOREVER
from tests.catalogue.flows import STILL_MOTION, animate, ready_image
from tests.ops.support import stored_keys
from tests.support.darkroom import Darkroom
from tests.support.file_hosts import FileHost, allowing, file_host
from tests.support.flows import wait_settled
from tests.support.object_storage import MediaStore, both_stores
from tests.support.pending_media import pending_media, settled_media
from tests.support.waiting import eventually
from tests.uploads.support import mp4

MIB = 1024 * 1024
# Looks like an MP4 to the content sniffing (a download cut short after it is never probed).
VIDEO_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def large_mp4(size: int) -> bytes:
    """A real MP4 made `size` bytes long by a trailing `free` box, which players skip."""
    clip = mp4()
    padding = size - len(clip) - 8
    return (
        clip + struct.pack(">I", padding + 8) + b"free" + bytes(range(256)) * (padding // 256) + b"\0" * (padding % 256)
    )


def video_host(body: bytes, *, declared: int | None = None) -> contextlib.AbstractAsyncContextManager[FileHost]:
    return file_host(body, content_type="video/mp4", name="output.mp4", declared=declared)


async def _partial_uploads(darkroom: Darkroom, store: MediaStore) -> list[Any]:
    if isinstance(darkroom.runtime.storage, LocalStorage):
        return list((darkroom.runtime.storage.root / ".tmp").iterdir())
    return store.multipart_uploads()


@both_stores
async def test_a_large_file_streams_into_the_store_in_parts(
    start_darkroom: Callable[..., Any], media_store: MediaStore
) -> None:
    body = large_mp4(11 * MIB)
    async with (
        video_host(body) as host,
        start_darkroom(
            poller_enabled=False, s3_part_size_bytes=5 * MIB, replicate_file_hosts=allowing(host.url)
        ) as darkroom,
    ):
        media = await settled_media(darkroom, await pending_media(darkroom, host.url, "VIDEO"))
        assert media.status == MediaStatus.READY, media.download_error
        assert (media.byte_size, media.sha256) == (len(body), hashlib.sha256(body).hexdigest())
        assert media.content_type == "video/mp4" and media.storage_key and media.storage_key.endswith(".mp4")
        stored = await darkroom.runtime.storage.stat(media.storage_key)
        assert stored is not None and stored.size == len(body)
        served = await darkroom.http.get(f"/media/{media.storage_key}")
        assert served.status_code == 200 and served.content == body
        part = await darkroom.http.get(f"/media/{media.storage_key}", headers={"Range": f"bytes={6 * MIB}-"})
        assert part.status_code == 206 and part.content == body[6 * MIB :]
        if media_store.kind == "s3":
            head = media_store.object(media.storage_key)
            assert head["Metadata"] == {"sha256": media.sha256}
            assert head["ContentType"] == "video/mp4" and head["CacheControl"] == CACHE_FOREVER
        assert await _partial_uploads(darkroom, media_store) == []


@both_stores
async def test_a_failed_upload_leaves_nothing_behind(
    start_darkroom: Callable[..., Any], media_store: MediaStore
) -> None:
    body = VIDEO_HEAD + b"\x01" * (6 * MIB)
    async with (
        video_host(body, declared=12 * MIB) as host,
        start_darkroom(
            poller_enabled=False,
            s3_part_size_bytes=5 * MIB,
            download_max_attempts=1,
            replicate_file_hosts=allowing(host.url),
        ) as darkroom,
    ):
        media_id = await pending_media(darkroom, host.url, "VIDEO")

        async def uploading() -> bool:
            return bool(await _partial_uploads(darkroom, media_store))

        await eventually(uploading, timeout=30)  # a part is in the store (S3: a multipart upload is open)
        host.cut.set()
        media = await settled_media(darkroom, media_id)
        assert media.status == MediaStatus.FAILED and media.storage_key is None
        assert await stored_keys(darkroom) == set()
        assert await _partial_uploads(darkroom, media_store) == []


@both_stores
async def test_media_base_url_moves_media_urls_off_this_server(
    start_darkroom: Callable[..., Any], media_store: MediaStore
) -> None:
    async with start_darkroom(poller_enabled=False) as probe:
        port = probe.settings.server.port
    if media_store.kind == "s3":
        media_store.make_public()
        bucket = f"{media_store.endpoint}/{media_store.bucket}"  # the bucket's own address
        base = f"{bucket}/{media_store.prefix}"  # where its objects are: under MEDIA_STORAGE_URL's prefix
    else:
        bucket = base = f"http://127.0.0.1:{port}/media"  # what a CDN in front of this server would be
    async with start_darkroom(poller_enabled=False, port=port, media_base_url=bucket + "/") as darkroom:
        image = await ready_image(darkroom)
        assert image["width"] and image["height"]  # probed from the bytes on their way into the store
        assert image["url"].startswith(base + "/") and not image["url"].startswith(base + "//")
        async with httpx.AsyncClient() as client:
            fetched = await client.get(image["url"])
        assert fetched.status_code == 200
        assert hashlib.sha256(fetched.content).hexdigest() == image["sha256"]
        key = image["url"][len(base) + 1 :]
        # /media still serves the file for whoever holds an old URL.
        assert (await darkroom.http.get(f"/media/{key}")).status_code == 200


@pytest.mark.parametrize("media_store", ["s3"], indirect=True)
async def test_an_image_to_animate_reaches_the_provider_by_a_presigned_url(
    darkroom: Darkroom, media_store: MediaStore
) -> None:
    image = await ready_image(darkroom)
    payload = await animate(darkroom, image["id"], STILL_MOTION, {"prompt": "drift"})
    assert payload["userErrors"] == []
    # What is recorded is the lasting URL; what the provider was sent is a short-lived signed one.
    assert payload["generation"]["input"]["image"] == image["url"]
    (prediction,) = [p for p in darkroom.simulator.engine.predictions.values() if p.model.ref == STILL_MOTION]
    sent = str(prediction.input["image"])
    assert sent.startswith(f"{media_store.endpoint}/{media_store.bucket}/") and "Signature=" in sent
    done = await wait_settled(darkroom, payload["generation"]["id"])
    assert done["status"] == "SUCCEEDED"  # the simulator fetched the image from the bucket
