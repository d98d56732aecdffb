"""GET /media/...: content type, a strong ETag from the sha256, immutable caching, 304 and byte ranges (a
malformed or multi-range header ignored, an unsatisfiable range 416), streamed from the local disk or S3."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from tests.ops.support import VIDEO_MODEL, seed_media, settled_generation
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL
from tests.support.object_storage import both_stores

IMMUTABLE = "public, max-age=31536000, immutable"

pytestmark = both_stores


async def _ready_media(darkroom: Darkroom, model: str, prompt: str) -> dict[str, Any]:
    generation = await settled_generation(darkroom, model, prompt=prompt)
    assert generation["status"] == "SUCCEEDED", generation
    media = generation["media"][0]
    assert media["status"] == "READY", media
    return dict(media)


async def test_a_video_is_served_cacheable_and_seekable(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(poller_enabled=False) as darkroom:
        video = await _ready_media(darkroom, VIDEO_MODEL, "waves rolling in")
        assert video["kind"] == "VIDEO"
        url = video["url"]
        assert url.startswith(darkroom.base_url + "/media/")

        full = await darkroom.http.get(url)
        assert full.status_code == 200
        body = full.content
        size = len(body)
        assert size == video["byteSize"] and size > 200
        assert hashlib.sha256(body).hexdigest() == video["sha256"]
        assert full.headers["content-type"].startswith(video["contentType"])
        assert video["contentType"].startswith("video/")
        assert full.headers["etag"] == f'"{video["sha256"]}"'
        assert full.headers["cache-control"] == IMMUTABLE
        assert full.headers["accept-ranges"] == "bytes"

        etag = full.headers["etag"]
        cached = await darkroom.http.get(url, headers={"If-None-Match": etag})
        assert cached.status_code == 304 and cached.content == b""
        assert cached.headers["etag"] == etag and cached.headers["cache-control"] == IMMUTABLE
        among = await darkroom.http.get(url, headers={"If-None-Match": f'"other", {etag}'})
        assert among.status_code == 304
        changed = await darkroom.http.get(url, headers={"If-None-Match": '"something-else"'})
        assert changed.status_code == 200 and changed.content == body

        for header, start, end in [
            ("bytes=10-99", 10, 99),
            ("bytes=0-0", 0, 0),
            (f"bytes={size - 50}-", size - 50, size - 1),
            ("bytes=-64", size - 64, size - 1),
            (f"bytes=100-{size + 1000}", 100, size - 1),
        ]:
            part = await darkroom.http.get(url, headers={"Range": header})
            assert part.status_code == 206, header
            assert part.content == body[start : end + 1], header
            assert part.headers["content-range"] == f"bytes {start}-{end}/{size}", header
            assert part.headers["content-length"] == str(end - start + 1)
            assert part.headers["content-type"].startswith("video/")
            assert part.headers["etag"] == etag

        for unsatisfiable in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=50-10"):
            refused = await darkroom.http.get(url, headers={"Range": unsatisfiable})
            assert refused.status_code == 416, unsatisfiable
            assert refused.headers["content-range"] == f"bytes */{size}"

        # The unit is case-insensitive.
        shouted = await darkroom.http.get(url, headers={"Range": "BYTES=0-9"})
        assert shouted.status_code == 206 and shouted.content == body[:10]

        # A malformed or multi-range header is ignored (RFC 9110 allows it): the whole file, 200.
        for ignored in (
            "bytes=",
            "bytes=-",
            "bytes=abc",
            "bytes=--5",
            "bytes 0-5",
            "items=0-5",
            "bytes=0-5,10-20",
            "bytes=0-5, 10-20",
            "bytes=1-2-3",
            "bytes=0x10-20",
        ):
            whole = await darkroom.http.get(url, headers={"Range": ignored})
            assert whole.status_code == 200, ignored
            assert whole.content == body, ignored
            assert "content-range" not in whole.headers, ignored
            assert whole.headers["content-length"] == str(size), ignored


async def test_an_image_has_its_content_type(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(poller_enabled=False) as darkroom:
        image = await _ready_media(darkroom, IMAGE_MODEL, "a lighthouse")
        response = await darkroom.http.get(image["url"])
        assert response.status_code == 200
        assert response.headers["content-type"] == image["contentType"]
        assert image["contentType"].startswith("image/")
        assert response.headers["etag"] == f'"{image["sha256"]}"'
        head = await darkroom.http.head(image["url"])
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(image["byteSize"])
        assert head.headers["etag"] == response.headers["etag"]


async def test_unknown_and_escaping_keys_are_404(darkroom: Darkroom) -> None:
    seeded = await seed_media(darkroom, b"\x89PNG seeded")
    assert (await darkroom.http.get(f"/media/{seeded.storage_key}")).status_code == 200
    for key in ("nope/nothing.png", "../darkroom.db", "%2e%2e/%2e%2e/etc/passwd", ".tmp/x.part"):
        assert (await darkroom.http.get(f"/media/{key}")).status_code == 404, key
