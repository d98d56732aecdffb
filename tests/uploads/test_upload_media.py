"""uploadMedia over real HTTP: a multipart request (the GraphQL multipart request spec) with an image or a
short video is stored like downloaded media and published on the feed; a forged, oversized or unreadable
file is refused with userErrors, and leaves no row and no file behind."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from tests.auth.support import bearer, new_key
from tests.ops.support import row_counts
from tests.support.darkroom import Darkroom
from tests.support.graphql import data, ws_connect
from tests.support.object_storage import both_stores
from tests.uploads.support import UPLOAD, mp4, png, upload, upload_response, uploaded

pytestmark = both_stores

FEED = """
subscription Feed($after: String) {
  generationEvents(after: $after) {
    type generation { id model status kind media { id kind status url width height sha256 } }
  }
}
"""


async def nothing_stored(darkroom: Darkroom) -> None:
    """No row in any table, no stored file and no partial file."""
    counts = await row_counts(darkroom)
    assert (counts["generations"], counts["media"], counts["events"]) == (0, 0, 0), counts
    storage = darkroom.runtime.storage
    assert [entry.key async for entry in storage.list_files()] == []
    assert await storage.abort_stale_uploads(time.time() + 3600, dry_run=True) == (0, 0), "a partial upload is left"


async def test_an_image_is_stored_like_downloaded_media_and_published(darkroom: Darkroom) -> None:
    cursor = data(await darkroom.query("{ feedCursor }"))["feedCursor"]
    content = png(64, 48)
    media = await uploaded(darkroom, content, "../holiday/beach.png")

    assert (media["kind"], media["status"], media["contentType"]) == ("IMAGE", "READY", "image/png")
    assert (media["width"], media["height"], media["durationSeconds"]) == (64, 48, None)
    assert media["byteSize"] == len(content)
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    served = await darkroom.http.get(media["url"])
    assert served.status_code == 200 and served.content == content
    generation = media["generation"]
    assert (generation["model"], generation["status"], generation["kind"]) == ("upload", "SUCCEEDED", "IMAGE")
    assert generation["input"] == {"filename": "beach.png"}
    assert generation["media"] == [{"id": media["id"]}]

    async with ws_connect(darkroom.base_url) as client:
        async for payload in client.subscribe(FEED, {"after": cursor}):
            event = data(payload)["generationEvents"]
            break
    assert event["type"] == "GENERATION_CREATED"
    assert event["generation"]["id"] == generation["id"]
    (published,) = event["generation"]["media"]
    assert published == {
        "id": media["id"],
        "kind": "IMAGE",
        "status": "READY",
        "url": media["url"],
        "width": 64,
        "height": 48,
        "sha256": media["sha256"],
    }


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_the_type_comes_from_the_bytes_not_the_name(darkroom: Darkroom) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 20), (1, 2, 3)).save(buffer, format="JPEG")
    payload = await upload(darkroom, buffer.getvalue(), "named-wrongly.png", "image/png")
    assert payload["userErrors"] == []
    media = payload["media"]
    assert (media["contentType"], media["width"], media["height"]) == ("image/jpeg", 10, 20)
    assert media["url"].endswith(".jpg")


async def test_a_short_video_is_stored_with_its_duration(darkroom: Darkroom) -> None:
    content = mp4(seconds=1.0)
    payload = await upload(darkroom, content, "clip.mp4", "video/mp4")
    assert payload["userErrors"] == [], payload
    media = payload["media"]
    assert (media["kind"], media["status"], media["contentType"]) == ("VIDEO", "READY", "video/mp4")
    assert (media["width"], media["height"]) == (64, 48)
    assert media["durationSeconds"] == pytest.approx(1.0, abs=0.2)
    assert media["sha256"] == hashlib.sha256(content).hexdigest()
    assert media["generation"]["kind"] == "VIDEO"
    served = await darkroom.http.get(media["url"])
    assert served.status_code == 200 and served.content == content


def _truncated_png() -> bytes:
    content = png(256, 256)
    return content[: len(content) // 2]


def _bmp() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="BMP")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "filename", "content_type"),
    [
        (b"just some text, honestly\n" * 40, "cat.png", "image/png"),
        (_truncated_png(), "half.png", "image/png"),
        (_bmp(), "bitmap.png", "image/png"),
        (b"", "empty.png", "image/png"),
        (b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000), "fake.mp4", "video/mp4"),
    ],
    ids=["text-named-png", "truncated-png", "bmp-named-png", "empty", "forged-mp4"],
)
async def test_a_forged_file_is_refused_and_nothing_is_stored(
    darkroom: Darkroom, content: bytes, filename: str, content_type: str
) -> None:
    payload = await upload(darkroom, content, filename, content_type)
    assert payload["media"] is None
    assert [(error["field"], error["code"]) for error in payload["userErrors"]] == [(["file"], "UNSUPPORTED_FILE")]
    await nothing_stored(darkroom)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_limits_are_refused_and_nothing_is_stored(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(
        upload_max_bytes=20_000, upload_max_video_seconds=0.5, graphql_max_body_bytes=50_000
    ) as darkroom:
        noise = Image.frombytes("RGB", (100, 100), os.urandom(30_000))
        buffer = io.BytesIO()
        noise.save(buffer, format="PNG")
        assert len(buffer.getvalue()) > 20_000
        too_large = await upload(darkroom, buffer.getvalue())
        assert [(e["field"], e["code"]) for e in too_large["userErrors"]] == [(["file"], "FILE_TOO_LARGE")]
        assert "UPLOAD_MAX_BYTES" in too_large["userErrors"][0]["message"]

        too_long = await upload(darkroom, mp4(seconds=1.0), "clip.mp4", "video/mp4")
        assert [(e["field"], e["code"]) for e in too_long["userErrors"]] == [(["file"], "VIDEO_TOO_LONG")]

        # Past even the request's own limit (GRAPHQL_MAX_BODY_BYTES + UPLOAD_MAX_BYTES): refused before it is read.
        huge = await upload_response(darkroom, os.urandom(200_000))
        assert huge.status_code == 413
        assert huge.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

        # A JSON body is still held to GRAPHQL_MAX_BODY_BYTES alone.
        padded = '{"query": "{ feedCursor }"' + " " * 60_000 + "}"
        json_body = await darkroom.http.post("/graphql", content=padded, headers={"content-type": "application/json"})
        assert json_body.status_code == 413
        await nothing_stored(darkroom)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_multipart_request_must_force_a_preflight(darkroom: Darkroom) -> None:
    # A page of another site can post a form without asking first; it cannot add these headers.
    refused = await upload_response(darkroom, png(), headers={})
    assert refused.status_code == 400
    assert "CSRF" in refused.json()["errors"][0]["message"]
    accepted = await upload_response(darkroom, png(), headers={"X-Apollo-Operation-Name": "Upload"})
    assert accepted.json()["data"]["uploadMedia"]["userErrors"] == []


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_file_given_as_json_is_a_user_error(darkroom: Darkroom) -> None:
    payload = data(await darkroom.query(UPLOAD, {"file": "aGVsbG8="}))["uploadMedia"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["file"], "NOT_A_FILE")]
    await nothing_stored(darkroom)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_an_upload_belongs_to_the_key_that_sent_it(darkroom: Darkroom) -> None:
    alice, bob = await new_key(darkroom, "alice"), await new_key(darkroom, "bob")
    response = await upload_response(darkroom, png(), headers=bearer(alice.token))
    media = response.json()["data"]["uploadMedia"]["media"]
    node = "query($id: ID!) { node(id: $id) { id } }"
    assert data(await alice.query(node, {"id": media["id"]}))["node"] == {"id": media["id"]}
    assert data(await bob.query(node, {"id": media["id"]}))["node"] is None
    anonymous = await upload_response(darkroom, png(), headers={})
    assert anonymous.status_code == 401


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_uploads_count_as_stored_media_but_as_no_model_run(darkroom: Darkroom) -> None:
    await uploaded(darkroom, png(), "counted.png")
    stats = data(await darkroom.query("{ stats { models { model } storage { files } } }"))["stats"]
    assert stats["models"] == []
    assert stats["storage"]["files"] == 1
