"""Files to upload, made in the test (Pillow, PyAV), and `uploadMedia` as a multipart request over real HTTP."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from typing import Any

from PIL import Image

from tests.support.darkroom import Darkroom

MEDIA_FIELDS = """
  id kind status url contentType byteSize width height durationSeconds sha256
  generation { id model status kind input media { id } }
"""

UPLOAD = f"""
mutation Upload($file: Upload!) {{
  uploadMedia(input: {{file: $file}}) {{
    media {{ {MEDIA_FIELDS} }}
    userErrors {{ field message code }}
  }}
}}
"""


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def mp4(seconds: float = 1.0, fps: int = 8, width: int = 64, height: int = 48) -> bytes:
    """A short H.264 clip (a colour sweep), written with PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index in range(round(seconds * fps)):
            image = Image.new("RGB", (width, height), (index * 20 % 256, 120, 200))
            frame = av.VideoFrame.from_image(image)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


async def upload_response(
    darkroom: Darkroom,
    content: bytes,
    filename: str = "picture.png",
    content_type: str = "image/png",
    *,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST `content` as the GraphQL multipart request spec says: operations, map, then the file."""
    operations = {"query": UPLOAD, "variables": {"file": None}}
    return await darkroom.http.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.file"]})},
        files={"0": (filename, content, content_type)},
        headers={"Apollo-Require-Preflight": "true"} if headers is None else headers,
    )


async def upload(
    darkroom: Darkroom, content: bytes, filename: str = "picture.png", content_type: str = "image/png"
) -> dict[str, Any]:
    """The uploadMedia payload (media and userErrors)."""
    response = await upload_response(darkroom, content, filename, content_type)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    payload: dict[str, Any] = body["data"]["uploadMedia"]
    return payload


async def uploaded(darkroom: Darkroom, content: bytes | None = None, filename: str = "picture.png") -> dict[str, Any]:
    """A READY media made by uploading `content` (a small PNG by default)."""
    payload = await upload(darkroom, png() if content is None else content, filename)
    assert payload["userErrors"] == [], payload
    return dict(payload["media"])
