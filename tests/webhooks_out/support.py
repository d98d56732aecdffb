"""A real webhook receiver for the outgoing webhook tests, and the GraphQL documents they share.

The receiver is a small ASGI app served by uvicorn on a free port. Each endpoint is a path of it; it
verifies every delivery's signature with `standardwebhooks` (a bad one is answered 401 and counted),
records what it accepted, counts requests in flight per path (and the most at once), and can be told
to fail with 500, to answer 410, or to be slow.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import standardwebhooks

from tests.support.flows import IMAGE_MODEL, start_generation
from tests.support.graphql import data
from tests.support.live_server import live_server, read_body
from tests.support.waiting import eventually

ENDPOINT_FIELDS = "id url description eventTypes enabled disabledReason disabledAt cursor failedAttempts nextAttemptAt"

CREATE = f"""
mutation Create($input: CreateWebhookEndpointInput!) {{
  createWebhookEndpoint(input: $input) {{ endpoint {{ {ENDPOINT_FIELDS} }} secret userErrors {{ field message code }} }}
}}
"""
UPDATE = f"""
mutation Update($input: UpdateWebhookEndpointInput!) {{
  updateWebhookEndpoint(input: $input) {{ endpoint {{ {ENDPOINT_FIELDS} }} userErrors {{ field message code }} }}
}}
"""
ROTATE = f"""
mutation Rotate($id: ID!) {{
  rotateWebhookEndpointSecret(input: {{id: $id}}) {{ endpoint {{ {ENDPOINT_FIELDS} }} secret userErrors {{ code }} }}
}}
"""
DELETE = """
mutation Delete($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) { deletedEndpointId userErrors { code } } }
"""
REPLAY = f"""
mutation Replay($id: ID!, $after: String) {{
  replayWebhookEndpoint(input: {{id: $id, after: $after}}) {{
    endpoint {{ {ENDPOINT_FIELDS} }} userErrors {{ field message code }}
  }}
}}
"""
ENDPOINTS = f"query {{ webhookEndpoints {{ {ENDPOINT_FIELDS} }} }}"
DELIVERIES = """
query Deliveries($id: ID!, $first: Int, $after: String) {
  webhookDeliveries(endpointId: $id, first: $first, after: $after) {
    edges { cursor node { cursor messageId attempt statusCode responseExcerpt durationMs error nextRetryAt createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
# A short schedule, so that retries happen within a test.
FAST = {
    "webhooks_allow_private_urls": True,
    "webhook_retry_schedule_seconds": "0.3,0.5",
    "webhook_interval_seconds": 0.2,
    "webhook_timeout_seconds": 3.0,
}


@dataclass
class Path:
    """One endpoint's path on the receiver: its secret, its behaviour, and what it accepted."""

    secret: str | None = None
    fail: bool = False  # answer 500
    gone: bool = False  # answer 410
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)  # the bodies, in arrival order
    message_ids: list[str] = field(default_factory=list)
    requests: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    bad_signatures: int = 0

    def unique(self) -> list[dict[str, Any]]:
        """What was accepted, each message once (a receiver drops repeats by `webhook-id`)."""
        seen: set[str] = set()
        bodies = []
        for message_id, body in zip(self.message_ids, self.received, strict=True):
            if message_id not in seen:
                seen.add(message_id)
                bodies.append(body)
        return bodies


class Receiver:
    def __init__(self) -> None:
        self.paths: dict[str, Path] = defaultdict(Path)
        self.base_url = ""

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = self.paths[scope["path"].rsplit("/", 1)[-1]]
        body = await read_body(receive)
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        path.requests += 1
        path.in_flight += 1
        path.most_in_flight = max(path.most_in_flight, path.in_flight)
        try:
            status = await self._answer(path, body, headers)
        finally:
            path.in_flight -= 1
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": f"answered {status}".encode()})

    async def _answer(self, path: Path, body: bytes, headers: dict[str, str]) -> int:
        if path.delay:
            await asyncio.sleep(path.delay)
        if path.gone:
            return 410
        if path.fail:
            return 500
        try:
            assert path.secret is not None
            payload = standardwebhooks.Webhook(path.secret).verify(body, headers)
        except Exception:
            path.bad_signatures += 1
            return 401
        path.received.append(payload)
        path.message_ids.append(headers["webhook-id"])
        return 200


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    app = Receiver()
    async with live_server(app) as base_url:
        app.base_url = base_url
        yield app


async def register(client: Any, hooks: Receiver, name: str, **extra: Any) -> dict[str, Any]:
    """Register the receiver's path `name` as an endpoint; the endpoint, its secret given to the receiver."""
    created = data(await client.query(CREATE, {"input": {"url": hooks.url(name), **extra}}))["createWebhookEndpoint"]
    assert created["userErrors"] == [], created
    hooks.paths[name].secret = created["secret"]
    return dict(created["endpoint"])


async def generations(client: Any, count: int, prompt: str = "webhooks") -> list[str]:
    """Start `count` generations at once; their ids."""
    started = await asyncio.gather(
        *(start_generation(client, f"{prompt} {n}", model=IMAGE_MODEL) for n in range(count))
    )
    return [generation["id"] for generation in started]


def by_generation(bodies: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The sequences received of each generation, in arrival order."""
    sequences: dict[str, list[int]] = defaultdict(list)
    for body in bodies:
        sequences[body["generation"]["id"]].append(body["sequence"])
    return dict(sequences)


async def received_all(path: Path, client: Any, ids: list[str], timeout: float = 30.0) -> dict[str, list[int]]:
    """Wait until `path` has every event of the generations `ids` once they settled (1 up to each one's
    final sequence, in order); their sequences as received."""
    from tests.support.flows import get_generation, wait_settled

    for gid in ids:
        await wait_settled(client, gid)
    # Read again once settled: the state that showed it settled may have read the generation's sequence a
    # moment before its last media event (the row and its media are loaded apart).
    finals = {gid: (await get_generation(client, gid))["sequence"] for gid in ids}

    def complete() -> dict[str, list[int]] | None:
        got = by_generation(path.unique())
        return got if all(len(got.get(gid, [])) >= final for gid, final in finals.items()) else None

    got = await eventually(complete, timeout=timeout, interval=0.1)
    for gid in finals:
        # Every event once, in order, with no gap.
        assert got[gid] == list(range(1, len(got[gid]) + 1)), (gid, got[gid])
    return dict(got)


def json_of(body: bytes) -> Any:
    return json.loads(body)
