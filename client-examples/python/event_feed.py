"""Follow the live `generationEvents` feed, and resume it from a cursor after a dropped connection.

    python event_feed.py                          # live events from now on
    python event_feed.py --after <cursor>         # what happened after that event first, then live
    python event_feed.py --cursor-file feed.cursor  # remembers where it stopped, picks up there next time

Every event carries a `cursor`. When the connection drops (the server restarts, the network blips) or
the server reports that this subscriber fell behind (SUBSCRIBER_OVERFLOW), the script subscribes again
with the last cursor it saw as `after`: the server replays what was missed, once, then goes live again.
Between attempts it waits a random time of up to --retry-base seconds, doubling that bound after each
failed attempt up to --retry-cap, and back to --retry-base once a connection has delivered an event; it
gives up after --retry-for seconds without one (exit status 1). A socket closed as refused (4403: the
API key is missing or was revoked; other 44xx protocol errors) is not retried (exit status 2). See
reconnect.py.

The server URL comes from --url or DARKROOM_URL (default http://127.0.0.1:8000); an API key from
--api-key or DARKROOM_API_KEY is sent as `Authorization: Bearer <key>` in the WebSocket's headers and
connection_init payload.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportClosed, TransportError, TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from reconnect import add_arguments, close_code, describe_close, from_arguments, is_fatal, refused_message

FEED = """
subscription Feed($after: String, $filter: GenerationEventFilter) {
  generationEvents(after: $after, filter: $filter) {
    cursor sequence type
    generation { id status progress error media { id status url } }
  }
}
"""


class Idle(Exception):
    """No event arrived within --idle-timeout."""


class Feed:
    """Where the feed stands: the last cursor seen, how many events were printed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cursor_file = Path(args.cursor_file) if args.cursor_file else None
        self.cursor: str | None = args.after
        if self.cursor is None and self.cursor_file and self.cursor_file.exists():
            self.cursor = self.cursor_file.read_text().strip() or None
        self.received = 0

    def client(self) -> Client:
        base = self.args.url.rstrip("/") + "/graphql"
        headers = {"Authorization": f"Bearer {self.args.api_key}"} if self.args.api_key else {}
        transport = WebsocketsTransport(
            url="ws" + base.removeprefix("http"),  # http -> ws, https -> wss
            headers=headers,
            init_payload=headers,
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],  # graphql-transport-ws
        )
        return Client(transport=transport)

    def record(self, event: dict[str, Any]) -> None:
        self.cursor = event["cursor"]
        self.received += 1
        if self.cursor_file:
            self.cursor_file.write_text(event["cursor"] + "\n")
        if self.args.json:
            print(json.dumps(event), flush=True)
            return
        generation = event["generation"]
        progress = f" {generation['progress']:.0%}" if generation["progress"] is not None else ""
        media = " ".join(media["status"] for media in generation["media"])
        print(
            f"{event['type']:<18} #{event['sequence']:<3} {generation['id']} {generation['status']}{progress}"
            + (f"  media: {media}" if media else "")
            + f"  cursor={event['cursor']}",
            flush=True,
        )

    @property
    def done(self) -> bool:
        return bool(self.args.count) and self.received >= self.args.count

    async def run_once(self) -> None:
        """One connection: subscribe after the last cursor and print until done, idle or disconnected."""
        variables: dict[str, Any] = {"after": self.cursor}
        if self.args.generation:
            variables["filter"] = {"generationIds": self.args.generation}
        idle = self.args.idle_timeout or None
        async with self.client() as api:
            status("subscribed" + (f" after {self.cursor}" if self.cursor else ", live from now"))
            events = api.subscribe(GraphQLRequest(FEED, variable_values=variables))
            try:
                while not self.done:
                    try:
                        result = await asyncio.wait_for(anext(events), idle)
                    except StopAsyncIteration:
                        raise TransportClosed("the server completed the subscription") from None
                    except TimeoutError:
                        raise Idle from None
                    self.record(result["generationEvents"])
            finally:
                await events.aclose()

    async def run(self) -> int:
        retry = from_arguments(self.args)
        while True:
            received = self.received
            try:
                await self.run_once()
                return 0
            except Idle:
                status(f"no event for {self.args.idle_timeout} s, stopping")
                return 0
            except TransportQueryError as exc:
                error = (exc.errors or [{}])[0]
                code = (error.get("extensions") or {}).get("code")
                if code != "SUBSCRIBER_OVERFLOW":
                    print(f"GraphQL error: {error.get('message', exc)} ({code})", file=sys.stderr)
                    return 2
                status("fell behind the live feed; resubscribing from the last cursor")
            except (TransportError, OSError) as exc:
                code = close_code(exc)
                if is_fatal(code):
                    print(refused_message(code), file=sys.stderr)
                    return 2
                status(f"connection lost ({describe_close(exc)}); resuming after {self.cursor}")
            if self.received > received:
                retry.delivered()
            delay = retry.next_delay()
            if delay is None:
                print(f"could not reconnect within {self.args.retry_for} s", file=sys.stderr)
                return 1
            status(f"reconnecting in {delay:.2f} s (attempt {retry.attempt})")
            await asyncio.sleep(delay)


def status(message: str) -> None:
    print(f"-- {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("DARKROOM_URL", "http://127.0.0.1:8000"), help="server URL")
    parser.add_argument("--api-key", default=os.environ.get("DARKROOM_API_KEY") or None, help="API key, if required")
    parser.add_argument("--after", default=None, help="cursor of the last event already seen")
    parser.add_argument("--cursor-file", default=None, help="file the last cursor is read from and saved to")
    parser.add_argument("--generation", action="append", help="only this generation (ID; may repeat)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
    parser.add_argument("--idle-timeout", type=float, default=0, help="stop after this many quiet seconds (0: never)")
    add_arguments(parser)  # --retry-base, --retry-cap, --retry-for
    parser.add_argument("--json", action="store_true", help="print each event as one JSON line")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(Feed(parse_args()).run()))
    except KeyboardInterrupt:
        sys.exit(130)
