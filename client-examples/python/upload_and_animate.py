"""Upload your own image (or short video), then animate the image and download the video.

    python upload_and_animate.py photo.png --prompt "slow zoom" --out downloads
    python upload_and_animate.py clip.mp4 --upload-only

The file goes up as a GraphQL multipart request (gql's file upload, the GraphQL multipart request spec)
with `uploadMedia`; it is then READY media of yours. An image is animated with `animateImage` (--model
picks the image-to-video model, else the server does; --prompt goes into its input), the video
generation is followed over a WebSocket, and the video is downloaded and checked against its sha256.
The server and API key settings are those of follow_generation.py.

Exit status: 0 when the upload (and the video) succeeded, 1 when the video generation ended otherwise,
2 when the server refused the file or the request.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

from follow_generation import GENERATION_FIELDS, auth_headers, describe, download, follow, graphql_url
from gql import Client, FileVar, GraphQLRequest
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from reconnect import add_arguments, from_arguments

MEDIA_FIELDS = "id kind status url contentType byteSize width height durationSeconds sha256"

UPLOAD = f"""
mutation Upload($file: Upload!) {{
  uploadMedia(input: {{file: $file}}) {{
    media {{ {MEDIA_FIELDS} }}
    userErrors {{ field message code }}
  }}
}}
"""

ANIMATE = f"""
mutation Animate($mediaId: ID!, $model: String, $input: JSON) {{
  animateImage(input: {{mediaId: $mediaId, model: $model, input: $input}}) {{
    generation {{ {GENERATION_FIELDS} model }}
    userErrors {{ field message code }}
  }}
}}
"""


def upload_client(base_url: str, api_key: str | None) -> Client:
    # A multipart request must carry a header no plain HTML form can send (Darkroom's CSRF prevention).
    headers = {**auth_headers(api_key), "Apollo-Require-Preflight": "true"}
    return Client(transport=HTTPXAsyncTransport(url=graphql_url(base_url), headers=headers, timeout=120))


def refused(payload: dict[str, Any]) -> bool:
    for error in payload["userErrors"]:
        field = ".".join(error["field"] or [])
        print(f"refused: {error['code']} {field}: {error['message']}", file=sys.stderr)
    return bool(payload["userErrors"])


async def main(args: argparse.Namespace) -> int:
    path = Path(args.file)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    async with upload_client(args.url, args.api_key) as api:
        file = FileVar(str(path), filename=path.name, content_type=content_type)
        request = GraphQLRequest(UPLOAD, variable_values={"file": file})
        uploaded = (await api.execute(request, upload_files=True))["uploadMedia"]
        if refused(uploaded):
            return 2
        media = uploaded["media"]
        size = f"{media['width']}x{media['height']}"
        print(f"uploaded media {media['id']} ({media['kind']} {media['contentType']} {size} {media['byteSize']} bytes)")
        print(f"url {media['url']}", flush=True)
        if args.upload_only or media["kind"] != "IMAGE":
            return 0

        model_input = {"prompt": args.prompt} if args.prompt else None
        request = GraphQLRequest(
            ANIMATE, variable_values={"mediaId": media["id"], "model": args.model, "input": model_input}
        )
        animated = (await api.execute(request))["animateImage"]
    if refused(animated):
        return 2
    generation = animated["generation"]
    print(f"started generation {generation['id']} on {generation['model']}", flush=True)

    final = await follow(args.url, args.api_key, generation["id"], from_arguments(args))
    if final.get("status") != "SUCCEEDED":
        print(f"generation ended {final.get('status')}: {final.get('error')}", file=sys.stderr)
        return 1
    out_dir = Path(args.out)
    for video in final["media"]:
        if video["status"] != "READY":
            print(f"media {video['id']} {video['status']}: {video['downloadError']}", file=sys.stderr)
            return 1
        saved = await download(video, out_dir, args.api_key)
        print(f"downloaded {saved} ({video['contentType']} {video['byteSize']} bytes, sha256 ok)", flush=True)
    print(describe(final))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("file", help="an image (PNG, JPEG, WebP, GIF) or a short video (MP4, WebM)")
    parser.add_argument("--url", default=os.environ.get("DARKROOM_URL", "http://127.0.0.1:8000"), help="server URL")
    parser.add_argument("--api-key", default=os.environ.get("DARKROOM_API_KEY") or None, help="API key, if required")
    parser.add_argument("--model", default=None, help="image-to-video model, 'owner/name' (default: the server's pick)")
    parser.add_argument("--prompt", default=None, help="a prompt for the video model")
    parser.add_argument("--upload-only", action="store_true", help="upload, and do not animate")
    parser.add_argument("--out", default="darkroom-media", help="directory the video is saved in")
    add_arguments(parser)  # --retry-base, --retry-cap, --retry-for: reconnecting after a dropped connection
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    Path(arguments.out).mkdir(parents=True, exist_ok=True)
    try:
        sys.exit(asyncio.run(main(arguments)))
    except TransportQueryError as exc:
        error = (exc.errors or [{}])[0]
        code = (error.get("extensions") or {}).get("code")
        print(f"GraphQL error: {error.get('message', exc)} ({code})", file=sys.stderr)
        sys.exit(2)
    except (TransportError, OSError) as exc:  # unreachable, or the WebSocket refused (a missing or bad key)
        print(f"could not talk to {arguments.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
