"""Only media is media: hostile outputs and uploads are refused, and /media serves nothing a browser would run.

Signed webhooks name outputs that are HTML over http, SVG and HTML as data: URIs, HTML declared as a PNG,
bytes that start like a PNG and are not one, and a decompression-bomb PNG (a tiny file whose header
declares 14000 x 13000 pixels). Each ends FAILED at its first attempt with a downloadError, and nothing is
stored; the downloader goes on to store an ordinary image. An upload of a real 13000 x 13000 RGBA PNG is a
userError, with no row and no file, and so is an animated image whose frames together pass the limit.
Every /media answer says nosniff and sandboxes, and a row stored with a non-media type is not served. With
MEDIA_BASE_URL, Media.url is the bucket's object, prefix included.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from tests.ops.support import row_counts, seed_media
from tests.support.darkroom import Darkroom
from tests.support.file_hosts import allowing, file_host
from tests.support.flows import wait_settled
from tests.support.object_storage import MediaStore, both_stores
from tests.support.webhooks import post_webhook, prediction, signed, stored_prediction
from tests.uploads.support import png, upload

SCRIPT = b"<html><body><script>fetch('/graphql', {headers: {authorization: localStorage.key}})</script></body></html>"
SVG = "<svg xmlns='http://www.w3.org/2000/svg' onload='alert(localStorage.key)'/>"
SAFETY = {"x-content-type-options": "nosniff", "content-security-policy": "default-src 'none'; sandbox"}


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int, rows: bytes) -> bytes:
    """A PNG of 8-bit RGBA pixels whose header says `width` x `height`, with `rows` compressed as its data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def bomb_png() -> bytes:
    """A few hundred bytes declaring 14000 x 13000 pixels (182 million: Pillow's own hard limit is 179 million)."""
    return png_declaring(14000, 13000, zlib.compress(b"\0" * 4096))


@functools.cache
def huge_real_png() -> bytes:
    """A complete, valid 13000 x 13000 RGBA PNG, all transparent: about 660 KB on the wire, 676 MB decoded."""
    width = height = 13000
    row = b"\0" * (1 + 4 * width)  # filter byte, then the pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_declaring(width, height, data)


async def nothing_stored(darkroom: Darkroom) -> None:
    """No stored file, and no partial one (an S3 multipart upload, or a file in the local store's temp area)."""
    storage = darkroom.runtime.storage
    assert [entry.key async for entry in storage.list_files()] == []
    assert await storage.abort_stale_uploads(time.time() + 3600, dry_run=True) == (0, 0), "a partial file is left"


async def succeeded_with(darkroom: Darkroom, outputs: list[str]) -> dict[str, Any]:
    """A generation whose prediction a signed webhook reports succeeded with `outputs`, once settled."""
    known = await stored_prediction(darkroom)
    body, headers = await signed(darkroom, prediction(known["provider_id"], "succeeded", output=outputs))
    response = await post_webhook(darkroom, body, headers)
    assert response.status_code == 200 and response.json() == {"result": "applied"}, response.text
    return await wait_settled(darkroom, known["generation"]["id"])


@both_stores
async def test_hostile_outputs_fail_at_once_store_nothing_and_the_downloader_goes_on(
    start_darkroom: Callable[..., Any],
) -> None:
    hosts = {
        "html": file_host(SCRIPT, content_type="text/html", name="evil.html"),
        "html declared as png": file_host(SCRIPT, content_type="image/png", name="evil.png"),
        "png signature, html after": file_host(
            b"\x89PNG\r\n\x1a\n" + SCRIPT, content_type="image/png", name="fake.png"
        ),
        "bomb": file_host(bomb_png(), content_type="image/png", name="bomb.png"),
    }
    async with contextlib.AsyncExitStack() as stack:
        urls = {name: (await stack.enter_async_context(host)).url for name, host in hosts.items()}
        # One worker: a download that killed it would leave the ordinary image below PENDING.
        darkroom = await stack.enter_async_context(
            start_darkroom(poller_enabled=False, download_concurrency=1, replicate_file_hosts=allowing(*urls.values()))
        )
        outputs = [
            *urls.values(),
            f"data:image/svg+xml,{quote(SVG)}",
            "data:text/html;base64," + base64.b64encode(SCRIPT).decode(),
            "data:image/png;base64," + base64.b64encode(SCRIPT).decode(),
            "data:image/png;base64," + base64.b64encode(bomb_png()).decode(),
        ]
        hostile = await succeeded_with(darkroom, outputs)

        assert len(hostile["media"]) == len(outputs)
        for media, output in zip(hostile["media"], outputs, strict=True):
            assert (media["status"], media["url"], media["contentType"]) == ("FAILED", None, None), output
            assert media["downloadAttempts"] == 1, f"retried: {output}"
            error = media["downloadError"]
            assert error and error.startswith("not kept: "), (output, error)
        bombs = [hostile["media"][3], hostile["media"][-1]]
        assert all("MEDIA_MAX_PIXELS" in media["downloadError"] for media in bombs), bombs
        await nothing_stored(darkroom)

        image = png(32, 24)
        ordinary = await succeeded_with(darkroom, ["data:text/html;base64," + base64.b64encode(image).decode()])
        (media,) = ordinary["media"]
        assert (media["status"], media["contentType"], media["width"]) == ("READY", "image/png", 32), media
        served = await darkroom.http.get(media["url"])
        assert served.status_code == 200 and served.content == image
        assert served.headers["content-type"] == "image/png"


@both_stores
async def test_every_media_answer_says_nosniff_and_sandboxes(darkroom: Darkroom) -> None:
    seeded = await seed_media(darkroom, png(8, 8))
    path = f"/media/{seeded.storage_key}"
    etag = f'"{seeded.sha256}"'
    answers = {
        "GET": await darkroom.http.get(path),
        "HEAD": await darkroom.http.head(path),
        "range": await darkroom.http.get(path, headers={"Range": "bytes=0-3"}),
        "unsatisfiable": await darkroom.http.get(path, headers={"Range": "bytes=999999-"}),
        "not modified": await darkroom.http.get(path, headers={"If-None-Match": etag}),
        "missing": await darkroom.http.get("/media/ab/none.png"),
        "bad key": await darkroom.http.get("/media/.tmp/x"),
    }
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "GET": 200,
        "HEAD": 200,
        "range": 206,
        "unsatisfiable": 416,
        "not modified": 304,
        "missing": 404,
        "bad key": 404,
    }
    for name, answer in answers.items():
        assert {header: answer.headers.get(header) for header in SAFETY} == SAFETY, name
    assert answers["GET"].headers["content-type"] == "image/png"


@both_stores
async def test_a_row_stored_before_with_a_page_type_is_not_served(darkroom: Darkroom) -> None:
    """Rows a version that trusted the file host wrote: a READY media of type text/html or image/svg+xml."""
    for content_type, extension in (("text/html", ".html"), ("image/svg+xml", ".svg")):
        seeded = await seed_media(darkroom, SCRIPT, content_type=content_type, extension=extension)
        for method in ("GET", "HEAD"):
            answer = await darkroom.http.request(method, f"/media/{seeded.storage_key}")
            assert answer.status_code == 404, (content_type, method)
            assert SCRIPT not in answer.content
            assert answer.headers["x-content-type-options"] == "nosniff"


@both_stores
async def test_an_upload_whose_pixels_would_fill_the_memory_is_refused(darkroom: Darkroom) -> None:
    bomb = huge_real_png()
    assert len(bomb) < 1_000_000
    payload = await upload(darkroom, bomb, "huge.png")
    assert payload["media"] is None
    (error,) = payload["userErrors"]
    assert (error["field"], error["code"]) == (["file"], "IMAGE_TOO_LARGE")
    assert "MEDIA_MAX_PIXELS" in error["message"]
    counts = await row_counts(darkroom)
    assert (counts["generations"], counts["media"], counts["events"]) == (0, 0, 0)
    await nothing_stored(darkroom)
    # So does a tiny file declaring more pixels than Pillow itself allows, and HTML however it is named.
    for content, name in ((bomb_png(), "bomb.png"), (SCRIPT, "page.png"), (SVG.encode(), "drawing.svg")):
        refused = await upload(darkroom, content, name)
        assert refused["media"] is None and len(refused["userErrors"]) == 1, name
        assert refused["userErrors"][0]["code"] in ("IMAGE_TOO_LARGE", "UNSUPPORTED_FILE"), name
    await nothing_stored(darkroom)


@pytest.mark.parametrize("media_store", ["s3"], indirect=True)
async def test_media_base_url_names_the_buckets_object_prefix_included(
    start_darkroom: Callable[..., Any], media_store: MediaStore
) -> None:
    media_store.make_public()
    bucket_url = f"{media_store.endpoint}/{media_store.bucket}"  # the bucket's public address, as the README says
    async with start_darkroom(poller_enabled=False, media_base_url=bucket_url) as darkroom:
        image = png(16, 16)
        media = await succeeded_with(darkroom, ["data:image/png;base64," + base64.b64encode(image).decode()])
        (ready,) = media["media"]
        assert ready["status"] == "READY", ready
        listed = media_store.client().list_objects_v2(Bucket=media_store.bucket)["Contents"]
        (stored,) = [entry["Key"] for entry in listed]
        assert stored.startswith(f"{media_store.prefix}/")
        assert ready["url"] == f"{bucket_url}/{stored}"
        async with httpx.AsyncClient() as client:
            fetched = await client.get(ready["url"])
        assert fetched.status_code == 200 and fetched.content == image
        assert fetched.headers["content-type"] == "image/png"


def animated_gif(width: int, height: int, frames: int) -> bytes:
    buffer = io.BytesIO()
    images = [Image.new("RGB", (width, height), (n * 20 % 256, 90, 160)) for n in range(frames)]
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return buffer.getvalue()


@both_stores
async def test_an_animated_image_counts_the_pixels_of_every_frame(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(media_max_pixels=20_000) as darkroom:
        still = await upload(darkroom, animated_gif(64, 48, 1), "still.gif")
        assert still["userErrors"] == [] and still["media"]["contentType"] == "image/gif", still
        refused = await upload(darkroom, animated_gif(64, 48, 10), "long.gif")  # 10 x 3072 pixels
        assert refused["media"] is None
        assert [error["code"] for error in refused["userErrors"]] == ["IMAGE_TOO_LARGE"], refused
