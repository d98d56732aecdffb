"""Outgoing webhooks: how many signed deliveries a second one process sends a local receiver, with nothing lost.

A backlog is built first: generations started, then signed progress webhooks applied, while the endpoint is
registered but disabled. Enabling it starts the clock; it stops when the receiver has every event of the
log, each signature verified. The figure is the rate of that catch-up: the deliverer reading the log after
the endpoint's cursor, rendering and signing each event, posting it and moving the cursor, one event at a
time in log order, as it always does. The receiver answers at once; it checks each generation's events
arrive in order, and counts repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from standardwebhooks import Webhook as Verifier

from benchmarks.clients import Webhook, prediction_body, progress_logs, send_webhook
from benchmarks.harness import free_port

if TYPE_CHECKING:
    from benchmarks.scenarios import Bench

CREATE = """mutation($url: String!) {
  createWebhookEndpoint(input: {url: $url}) { endpoint { id } secret userErrors { code message } }
}"""
ENABLE = """mutation($id: ID!, $enabled: Boolean!) {
  updateWebhookEndpoint(input: {id: $id, enabled: $enabled}) { endpoint { enabled } userErrors { code message } }
}"""


@dataclass
class Receiver:
    """Every delivery it was sent, verified: (generation id, sequence) in arrival order, and the repeats."""

    secret: str = ""
    seen: list[tuple[str, int]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    repeats: int = 0
    forged: int = 0
    first_at: float | None = None
    last_at: float | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def take(self, headers: dict[str, str], body: bytes) -> int:
        try:
            payload = Verifier(self.secret).verify(body, headers)
        except Exception:
            self.forged += 1
            return 401
        now = time.perf_counter()
        self.first_at = self.first_at or now
        self.last_at = now
        if headers["webhook-id"] in self.ids:
            self.repeats += 1
            return 204
        self.ids.add(headers["webhook-id"])
        self.seen.append((payload["generation"]["id"], int(payload["sequence"])))
        if self.expected and len(self.seen) >= self.expected:
            self.arrived.set()
        return 204


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[str]:
    """A bare HTTP/1.1 server (keep-alive) handing each POST to `receiver`; its URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = receiver.take(headers, body)
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        server.close()


async def webhooks_out(bench: Bench) -> dict[str, Any]:
    from benchmarks.scenarios import connection, prediction_ids, sql, start_generations

    generations, per_generation = (5, 10) if bench.quick else (50, 40)
    database = await bench.database("webhooks_out")
    extra = {"WEBHOOKS_ALLOW_PRIVATE_URLS": "true", "WEBHOOK_INTERVAL_SECONDS": "0.5"}
    deployment = bench.deployment(database, extra=extra)
    receiver = Receiver()
    try:
        async with serving(receiver) as url:
            server = await deployment.start("webhooks-out")
            conn = connection(server)
            created = (await conn.graphql(CREATE, {"url": url}))["data"]["createWebhookEndpoint"]
            if created["userErrors"]:
                raise RuntimeError(f"createWebhookEndpoint failed: {created['userErrors']}")
            receiver.secret = created["secret"]
            endpoint = created["endpoint"]["id"]
            await conn.graphql(ENABLE, {"id": endpoint, "enabled": False})
            ids = await start_generations(server, generations)
            predictions = await prediction_ids(database, ids)
            for step in range(1, per_generation + 1):
                for generation in ids:
                    body = prediction_body(predictions[generation], "processing", progress_logs(step, per_generation))
                    assert await send_webhook(conn, Webhook.signed(deployment.webhook_secret, body)) == "applied"
            receiver.expected = int((await sql(database, "SELECT count(*) FROM events"))[0][0])
            started = time.perf_counter()
            await conn.graphql(ENABLE, {"id": endpoint, "enabled": True})
            await asyncio.wait_for(receiver.arrived.wait(), timeout=600)
            elapsed = time.perf_counter() - started
            await conn.close()
    finally:
        await deployment.stop()
    in_order = all(sequences == sorted(sequences) for sequences in _by_generation(receiver.seen).values())
    return {
        "database": "postgresql" if database.startswith("postgres") else "sqlite",
        "events": receiver.expected,
        "delivered": len(receiver.seen),
        "lost": receiver.expected - len(set(receiver.seen)),
        "repeats": receiver.repeats,
        "forged": receiver.forged,
        "in_order_per_generation": in_order,
        "seconds": round(elapsed, 3),
        "deliveries_per_second": round(len(receiver.seen) / elapsed, 1),
    }


def _by_generation(seen: list[tuple[str, int]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = {}
    for generation, sequence in seen:
        grouped.setdefault(generation, []).append(sequence)
    return grouped
