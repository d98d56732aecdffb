"""Start a generation, watch it live over a GraphQL subscription, then download its media.

    python follow_generation.py --prompt "a lighthouse at dusk" --num-outputs 2 --out downloads

The start is sent with an idempotency key (--idempotency-key, else a new random one, printed): a run
repeated with the same key and the same request follows the generation the first one started instead of
starting another, so a start whose answer was lost can be sent again safely.

The mutation goes over HTTP and the subscription over a WebSocket (graphql-transport-ws), both with
gql. The server URL comes from --url or DARKROOM_URL (default http://127.0.0.1:8000); an API key from
--api-key or DARKROOM_API_KEY is sent as `Authorization: Bearer <key>` in the HTTP headers and in the
WebSocket's connection_init payload.

When the WebSocket drops (the server restarts, the network blips) the script subscribes to the
generation again: the subscription's first answer is the generation's current state, so nothing is
lost, and a state may show twice. The waits between attempts are those of event_feed.py (--retry-base,
--retry-cap, --retry-for; see reconnect.py); a socket the server closed as refused (4403, a revoked key)
is not retried.

Exit status: 0 when the generation SUCCEEDED and every file was downloaded and matched its sha256,
1 when it ended otherwise or the connection could not be restored within --retry-for, 2 when the server
refused the request.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport
from reconnect import Reconnect, add_arguments, close_code, describe_close, from_arguments, is_fatal, refused_message

GENERATION_FIELDS = """
  id status phase progress step totalSteps etaSeconds error queuePosition queueReason
  media { id kind status url contentType byteSize width height durationSeconds sha256 downloadError }
"""

START = f"""
mutation Start($model: String!, $input: JSON!, $idempotencyKey: String) {{
  startGeneration(input: {{model: $model, input: $input, idempotencyKey: $idempotencyKey}}) {{
    generation {{ {GENERATION_FIELDS} }}
    userErrors {{ field message code }}
  }}
}}
"""

FOLLOW = f"subscription Follow($id: ID!) {{ generation(id: $id) {{ {GENERATION_FIELDS} }} }}"


def graphql_url(base_url: str, scheme: str = "http") -> str:
    """http://host:port -> http://host:port/graphql (or ws://... for the WebSocket)."""
    url = base_url.rstrip("/") + "/graphql"
    if scheme == "ws":
        url = "ws" + url.removeprefix("http")  # http -> ws, https -> wss
    return url


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def http_client(base_url: str, api_key: str | None) -> Client:
    transport = HTTPXAsyncTransport(url=graphql_url(base_url), headers=auth_headers(api_key), timeout=30)
    return Client(transport=transport)


def ws_client(base_url: str, api_key: str | None) -> Client:
    transport = WebsocketsTransport(
        url=graphql_url(base_url, "ws"),
        headers=auth_headers(api_key),
        init_payload=auth_headers(api_key),
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],  # graphql-transport-ws
    )
    return Client(transport=transport)


def describe(generation: dict[str, Any]) -> str:
    # The status, then what the job is doing in words (waiting, booting, running, saving...).
    line = f"{generation['status']:<10} {generation['phase'].lower():<8}"
    if generation["status"] == "QUEUED":  # waiting for a slot at Darkroom (the key's or the server's limit)
        line += f" #{generation['queuePosition']} in line: {generation['queueReason']}"
    if generation["progress"] is not None:
        line += f" {generation['progress']:>4.0%}"
    if generation["step"] is not None:
        line += f" step {generation['step']}/{generation['totalSteps']}"
    if generation["etaSeconds"] is not None:  # null when the server has no basis for an estimate
        line += f" ~{generation['etaSeconds']:.0f} s left"
    if generation["error"]:
        line += f" error: {generation['error']}"
    if generation["media"]:
        line += "  media: " + ", ".join(media["status"] for media in generation["media"])
    return line.rstrip()


async def start(
    base_url: str, api_key: str | None, model: str, model_input: dict[str, Any], idempotency_key: str
) -> dict[str, Any]:
    async with http_client(base_url, api_key) as api:
        variables = {"model": model, "input": model_input, "idempotencyKey": idempotency_key}
        request = GraphQLRequest(START, variable_values=variables)
        result = await api.execute(request)
    payload = result["startGeneration"]
    if payload["userErrors"]:
        for error in payload["userErrors"]:
            field = ".".join(error["field"] or [])
            print(f"refused: {error['code']} {field}: {error['message']}", file=sys.stderr)
        raise SystemExit(2)
    return dict(payload["generation"])


async def follow(
    base_url: str, api_key: str | None, generation_id: str, retry: Reconnect | None = None
) -> dict[str, Any]:
    """Every state until the server completes the subscription (the generation and its media settled),
    subscribing again after a dropped connection."""
    retry = retry or Reconnect()
    last: dict[str, Any] = {}
    request = GraphQLRequest(FOLLOW, variable_values={"id": generation_id})
    while True:
        try:
            async with ws_client(base_url, api_key) as api:
                async for result in api.subscribe(request):
                    last = result["generation"]
                    retry.delivered()
                    print(describe(last), flush=True)
            return last
        except TransportQueryError:
            raise  # a GraphQL error (an unknown ID, say): the same subscription would get it again
        except (TransportError, OSError) as exc:
            code = close_code(exc)
            if is_fatal(code):
                print(refused_message(code), file=sys.stderr)
                raise SystemExit(2) from None
            delay = retry.next_delay()
            if delay is None:
                print(f"could not reconnect within {retry.give_up_after} s ({describe_close(exc)})", file=sys.stderr)
                raise SystemExit(1) from None
            print(
                f"-- connection lost ({describe_close(exc)}); subscribing again in {delay:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            await asyncio.sleep(delay)


async def download(media: dict[str, Any], out_dir: Path, api_key: str | None) -> Path:
    """Stream one READY file to `out_dir` and check it against the sha256 the server recorded."""
    extension = (media["contentType"] or "application/octet-stream").split("/")[-1]
    target = out_dir / f"{(media['sha256'] or media['id'])[:16]}.{extension}"
    digest = hashlib.sha256()
    async with (
        httpx.AsyncClient(headers=auth_headers(api_key), timeout=60) as http,
        http.stream("GET", media["url"]) as response,
    ):
        response.raise_for_status()
        with target.open("wb") as file:
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
                file.write(chunk)
    if media["sha256"] and digest.hexdigest() != media["sha256"]:
        raise RuntimeError(f"{target}: sha256 {digest.hexdigest()} does not match {media['sha256']}")
    return target


async def main(args: argparse.Namespace) -> int:
    model_input: dict[str, Any] = {"prompt": args.prompt}
    if args.num_outputs:
        model_input["num_outputs"] = args.num_outputs
    idempotency_key = args.idempotency_key or str(uuid.uuid4())
    generation = await start(args.url, args.api_key, args.model, model_input, idempotency_key)
    print(f"started generation {generation['id']} on {args.model} (idempotency key {idempotency_key})", flush=True)

    final = await follow(args.url, args.api_key, generation["id"], from_arguments(args))
    if final.get("status") != "SUCCEEDED":
        print(f"generation ended {final.get('status')}: {final.get('error')}", file=sys.stderr)
        return 1

    out_dir = Path(args.out)
    failed = 0
    for media in final["media"]:
        if media["status"] != "READY":
            print(f"media {media['id']} {media['status']}: {media['downloadError']}", file=sys.stderr)
            failed += 1
            continue
        path = await download(media, out_dir, args.api_key)
        size = f"{media['width']}x{media['height']}" if media["width"] else ""
        print(f"downloaded {path} ({media['contentType']} {size} {media['byteSize']} bytes, sha256 ok)", flush=True)
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("DARKROOM_URL", "http://127.0.0.1:8000"), help="server URL")
    parser.add_argument("--api-key", default=os.environ.get("DARKROOM_API_KEY") or None, help="API key, if required")
    parser.add_argument("--model", default="darkroom-sim/pixel-forge", help='model to run, "owner/name"')
    parser.add_argument("--prompt", default="a lighthouse at dusk")
    parser.add_argument("--num-outputs", type=int, default=None, help="how many images to ask for")
    parser.add_argument("--out", default="darkroom-media", help="directory the files are saved in")
    parser.add_argument(
        "--idempotency-key", default=None, help="the start's idempotency key (default: a new random one)"
    )
    add_arguments(parser)  # --retry-base, --retry-cap, --retry-for
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
