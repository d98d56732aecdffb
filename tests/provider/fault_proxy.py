"""A recording, fault-injecting HTTP gateway in front of the simulator, for the provider client's tests.

The client under test talks to `FaultProxy` over real HTTP (it is a raw ASGI app served by uvicorn, see
`tests.support.live_server`). By default every request is forwarded to `upstream` (a live simulator) and
its answer passed back unchanged, so the client runs against the simulator. A test injects faults per route
with `script(method, path, *answers)`: each request to that route takes the next answer; once they are used
up, requests are forwarded again (with ``forever=True`` the last answer repeats instead).

Every request is recorded (method, path, query, headers, body) before it is answered, so tests count at the
server side what the client sent and how often.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx

from tests.support.live_server import read_body

logger = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Action = Literal["respond", "forward", "drop", "hang"]

# Longest a "hang" waits for the client to give up before the proxy gives up itself.
HANG_LIMIT_SECONDS = 60.0
# Hop-by-hop and length headers that must not be copied between the two connections.
_REQUEST_HEADERS_DROPPED = {"host", "content-length", "connection", "accept-encoding", "transfer-encoding"}
_RESPONSE_HEADERS_DROPPED = {"content-length", "connection", "transfer-encoding", "content-encoding"}


@dataclass(frozen=True)
class Answer:
    """One scripted answer.

    `action`: "respond" sends `status`/`body`/`headers`; "forward" passes the request to the upstream and
    its answer back; "drop" starts a 200 answer and breaks the connection halfway through the body (the
    client sees a protocol error); "hang" never answers, until the client gives up.

    With `upstream_first` the request is forwarded to the upstream first, where it takes effect (a
    prediction is created, a file stored), and its answer is thrown away: a gateway failing after the
    provider did the work.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    action: Action = "respond"
    upstream_first: bool = False

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("content-type", "application/octet-stream")
        if self.body is None:
            return b"", "application/json"
        kind = "application/problem+json" if self.status >= 400 else "application/json"
        return json.dumps(self.body).encode(), kind


def ok(body: Any, status: int = 200, **headers: str) -> Answer:
    """A JSON answer."""
    return Answer(status, body, dict(headers))


def problem(status: int, title: str, detail: str, **headers: str) -> Answer:
    """A problem+json answer, as Replicate sends its errors."""
    return Answer(status, {"title": title, "detail": detail, "status": status}, dict(headers))


def throttled(resets_in: float = 0, headers: dict[str, str] | None = None) -> Answer:
    """Replicate's 429, whose text says when the limit resets."""
    detail = f"Request was throttled. Your rate limit resets in ~{resets_in:g}s."
    return Answer(429, {"detail": detail}, dict(headers or {}))


def after_upstream(answer: Answer) -> Answer:
    """`answer`, sent after the request took effect upstream."""
    return dataclasses.replace(answer, upstream_first=True)


FORWARD = Answer(action="forward")
DROP = Answer(action="drop")
HANG = Answer(action="hang")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FaultProxy:
    """The ASGI app. `url` (its own) and `upstream` (the simulator's) are set once both are served."""

    url: str = ""
    upstream: str = ""
    requests: list[Recorded] = field(default_factory=list)
    _scripts: dict[tuple[str, str], tuple[list[Answer], bool]] = field(default_factory=dict)
    _http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=httpx.Timeout(120.0)))

    def script(self, method: str, path: str, *answers: Answer, forever: bool = False) -> None:
        """Answer the next requests to `method path` with `answers`, in order (see the module docstring)."""
        self._scripts[(method.upper(), path)] = (list(answers), forever)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def count(self, method: str, path: str) -> int:
        return len(self.calls(method, path))

    async def aclose(self) -> None:
        await self._http.aclose()

    def _next_answer(self, method: str, path: str) -> Answer:
        answers, forever = self._scripts.get((method, path), ([], False))
        if not answers:
            return FORWARD
        if forever and len(answers) == 1:
            return answers[0]
        return answers.pop(0)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        recorded = Recorded(
            scope["method"],
            scope["path"],
            parse_qs(scope["query_string"].decode()),
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body,
        )
        self.requests.append(recorded)
        answer = self._next_answer(recorded.method, recorded.path)
        if answer.action == "forward" or answer.upstream_first:
            status, headers, body = await self._forward(scope, recorded)
            if answer.action == "forward":
                await _respond(send, status, headers, body)
                return
        if answer.action == "hang":
            # Only the client's disconnect (or the limit) ends the wait; nothing is ever sent.
            try:
                while (await asyncio.wait_for(receive(), HANG_LIMIT_SECONDS))["type"] != "http.disconnect":
                    pass
            except TimeoutError:
                logger.warning("a hanging request was never given up by its client")
            return
        if answer.action == "drop":
            headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"id":', "more_body": True})
            return  # uvicorn closes a connection whose answer was left unfinished
        body, kind = answer.encoded()
        headers = [(b"content-type", kind.encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in answer.headers.items() if k.lower() != "content-type"]
        await _respond(send, answer.status, headers, body)

    async def _forward(self, scope: dict[str, Any], recorded: Recorded) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        target = self.upstream + raw_path.decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in recorded.headers.items() if k not in _REQUEST_HEADERS_DROPPED]
        response = await self._http.request(recorded.method, target, headers=headers, content=recorded.body)
        kept = [
            (k.encode(), v.encode())
            for k, v in response.headers.multi_items()
            if k.lower() not in _RESPONSE_HEADERS_DROPPED
        ]
        return response.status_code, kept, response.content


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
