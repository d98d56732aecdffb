"""GET /media/{key}: the downloaded files (and the previews of running generations), cacheable forever and
seekable.

Keys embed the media id (a random UUID), so a URL is a capability: whoever was given it can fetch the
file, as with a CDN. Files never change once written, hence a strong ETag (the file's sha256),
`immutable` caching, 304 on If-None-Match and single byte ranges (206) for video seeking. A Range header
that is malformed, or asks for several ranges, is ignored and the whole file sent (RFC 9110 allows a
server to ignore Range); a single range that cannot be satisfied is 416.

This is the origin of the gallery and GraphiQL, which keep the API key in the browser, so only media is
served: the content type the probe confirmed when the file was stored, and only a supported image or video
type (a row stored with any other type, before the probe decided, is 404: its bytes are not served at all,
not even as an attachment). Every answer says `nosniff` and carries a sandboxing CSP, so no browser renders
a file as a page or runs script in it.
"""

from __future__ import annotations

import re
from typing import Literal

from litestar import HttpMethod, Request, Response, route
from litestar.datastructures import State
from litestar.response import Stream

from server.runtime import Runtime
from server.services.generations.previews import generation_of_key
from server.services.media.probe import MEDIA_TYPES
from server.storage.port import CACHE_FOREVER, StorageError, check_key

# ASCII digits, at most 18 (an exabyte): a longer run is no range of a stored file, and is ignored before
# int() sees it.
RANGE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$", re.IGNORECASE)
# On every answer: no type sniffing, and no document from here may run script or load anything.
SAFETY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"}


def byte_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The first and last byte a Range header asks for; None to send the whole file (no header, or one that
    is malformed or asks for several ranges: ignored), "unsatisfiable" for a single range outside the file."""
    match = RANGE.match(header.strip()) if header else None
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:  # a suffix: the last N bytes
        start, end = max(size - int(last), 0), size - 1
        if int(last) == 0:
            return "unsatisfiable"
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end


def _not_found() -> Response[bytes]:
    return Response(b"not found", status_code=404, media_type="text/plain", headers=SAFETY_HEADERS)


async def _served_file(runtime: Runtime, key: str) -> tuple[str, str] | None:
    """The content type and ETag of the file served under `key`: a ready media file's, or a preview's (its
    key is random and written once, so it is its own tag); None when none is."""
    if generation_of_key(key) is not None:
        content_type = await runtime.previews.content_type_of(key)
        return (content_type, f'"{key.rsplit("/", 1)[-1]}"') if content_type in MEDIA_TYPES else None
    media = await runtime.media.ready_by_key(key)
    if media is None or media.content_type not in MEDIA_TYPES:
        return None
    return media.content_type, f'"{media.sha256}"'


@route("/media/{key:path}", http_method=[HttpMethod.GET, HttpMethod.HEAD])
async def serve_media(key: str, request: Request[object, object, State], state: State) -> Response[bytes] | Stream:
    runtime: Runtime = state.runtime
    key = key.lstrip("/")
    try:
        check_key(key)
    except StorageError:
        return _not_found()
    served = await _served_file(runtime, key)
    stored = await runtime.storage.stat(key) if served is not None else None
    if served is None or stored is None:
        return _not_found()
    size = stored.size
    content_type, etag = served
    headers = {"ETag": etag, "Cache-Control": CACHE_FOREVER, "Accept-Ranges": "bytes", **SAFETY_HEADERS}
    if etag in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(b"", status_code=304, headers=headers)
    start, end, status = 0, size - 1, 200
    requested = byte_range(request.headers.get("range"), size)
    if requested == "unsatisfiable":
        return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{size}", **SAFETY_HEADERS})
    if requested is not None:
        start, end = requested
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD":
        return Response(b"", status_code=status, headers=headers, media_type=content_type)
    return Stream(runtime.storage.read(key, start, end), status_code=status, headers=headers, media_type=content_type)
