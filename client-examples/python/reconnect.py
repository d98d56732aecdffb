"""Reconnecting after a dropped WebSocket: which closes to retry, how long to wait, and when to give up.

Shared by event_feed.py and follow_generation.py (and so upload_and_animate.py). A connection that ends with
a restart (close code 1012, what Darkroom sends every socket when it shuts down), a going-away (1001), an
abnormal close (no close frame: the process died, the network dropped) or a refused TCP connect (the server
is not back yet) is tried again, after a jittered exponential backoff. One the server closed with a
graphql-transport-ws refusal (4400 bad request, 4401 unauthorized, 4403 forbidden: a missing or revoked
API key, ...) is not: the same request would be refused again, so the script says why and exits non-zero.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

RETRY_BASE = 0.5  # seconds: the first wait is up to this long
RETRY_CAP = 30.0  # seconds: no wait is longer
RETRY_FOR = 60.0  # seconds: give up when no connection has delivered anything for this long

# 4400-4499 are graphql-transport-ws's refusals; these two are not about the request, so a retry may succeed.
RETRYABLE_PROTOCOL_CLOSES = {
    4408,  # connection initialisation timeout: the connection_init arrived late (a slow network)
    4499,  # terminated by the client itself
}


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first): full jitter, that is a uniform pick
    in [0, min(cap, base * 2**attempt)].

    Why the randomness: after a deploy the server drops every client at the same moment, and clients that
    all waited the same time would all come back at the same moment too; picking the wait at random
    spreads them over the window instead.
    """
    ceiling = min(cap, base * 2 ** min(attempt, 64))  # (the exponent is bounded so the float cannot overflow)
    return (rng or random).uniform(0, ceiling)


def close_code(exc: BaseException) -> int | None:
    """The WebSocket close code behind a transport error, if the server closed the socket with one."""
    cause: BaseException | None = exc
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        received = getattr(cause, "rcvd", None)  # websockets' ConnectionClosed: the close frame received
        if received is not None:
            return int(received.code)
        cause = cause.__cause__ or cause.__context__
    return None


def is_fatal(code: int | None) -> bool:
    """Whether a socket closed with `code` must not be reconnected (None: no close frame, an abnormal close)."""
    return code is not None and 4400 <= code <= 4499 and code not in RETRYABLE_PROTOCOL_CLOSES


def describe_close(exc: BaseException) -> str:
    """The error, what caused it (a refused connect, say) and the close code, if there was one."""
    text = f"{type(exc).__name__}: {exc}"
    code = close_code(exc)
    if code is not None:
        meaning = {1001: "going away", 1012: "service restart"}.get(code)
        return text + f"; close code {code}" + (f", {meaning}" if meaning else "")
    cause = exc.__cause__
    if cause is not None and str(cause):
        text += f" ({type(cause).__name__}: {cause})"
    return text


def refused_message(code: int | None) -> str:
    hint = "; check the API key" if code in (4401, 4403) else ""
    return f"the server refused the connection (close code {code}){hint}"


class Reconnect:
    """The retry state of one script: how many attempts since a connection last delivered something, and
    since when nothing has been delivered."""

    def __init__(
        self,
        base: float = RETRY_BASE,
        cap: float = RETRY_CAP,
        give_up_after: float = RETRY_FOR,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base, self.cap, self.give_up_after = base, cap, give_up_after
        self.rng = rng
        self.clock = clock
        self.attempt = 0
        self.failing_since: float | None = None

    def delivered(self) -> None:
        """A connection delivered something: it worked, so the next failure starts over from a short wait."""
        self.attempt = 0
        self.failing_since = None

    def next_delay(self) -> float | None:
        """How long to wait before connecting again, or None when it is time to give up."""
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now
        if now - self.failing_since > self.give_up_after:
            return None
        delay = backoff_delay(self.attempt, self.base, self.cap, self.rng)
        self.attempt += 1
        return delay


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-base", type=float, default=RETRY_BASE, help="longest first wait before reconnecting (seconds)"
    )
    parser.add_argument(
        "--retry-cap", type=float, default=RETRY_CAP, help="longest wait between reconnection attempts (seconds)"
    )
    parser.add_argument(
        "--retry-for", type=float, default=RETRY_FOR, help="give up reconnecting after this many seconds"
    )


def from_arguments(args: argparse.Namespace) -> Reconnect:
    return Reconnect(args.retry_base, args.retry_cap, args.retry_for)
