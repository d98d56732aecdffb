"""A job's spans across two real processes, exported over OTLP/HTTP into a collector the test runs.

Process A takes the mutation and holds the subscriber; process B receives the provider's webhook and
runs the downloader; both share PostgreSQL (and its broadcast) and one `darkroom simulator`. The webhook
is signed and sent by the test, with the prediction as the simulator finished it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from server.graphql.ids import decode_id
from server.provider.replicate.signing import sign_webhook
from tests.support.flows import FOLLOW, IMAGE_MODEL, START, settled
from tests.support.graphql import data, gql, ws_connect
from tests.support.processes import darkroom_process, simulator_process
from tests.support.services import SESSION_CHANNEL, empty_postgres_database
from tests.support.waiting import eventually
from tests.telemetry.collector import CollectedSpan, Collector, otlp_collector
from tests.webhooks_out.support import CREATE, receiver

SECRET = "a-prompt-no-span-may-show-7f3a"


def env(name: str, database: str, simulator: str, tmp_path: Path, collector: Collector) -> dict[str, str]:
    return {
        "DATABASE_URL": database,
        "BROADCAST_URL": database,
        "BROADCAST_CHANNEL": SESSION_CHANNEL,
        "DATA_DIR": str(tmp_path / name),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "REPLICATE_API_TOKEN": "",
        "REPLICATE_API_BASE_URL": simulator,
        "PUBLIC_URL": "",
        "POLLER_ENABLED": "false",
        "DOWNLOADER_ENABLED": "true" if name == "b" else "false",
        "DOWNLOAD_IDLE_SECONDS": "0.2",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": f"darkroom-{name}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "WEBHOOKS_ALLOW_PRIVATE_URLS": "true",  # the test's receiver of outgoing webhooks is on loopback
        "WEBHOOK_INTERVAL_SECONDS": "0.2",
    }


async def prediction_of(database: str) -> tuple[str, str | None]:
    """The (only) generation's prediction id and stored trace context, read from its row."""
    connection = await asyncpg.connect(database)
    try:
        row = await connection.fetchrow(
            "SELECT provider_id, trace_context FROM generations ORDER BY created_at DESC LIMIT 1"
        )
    finally:
        await connection.close()
    assert row is not None
    return row["provider_id"], row["trace_context"]


async def spans_named(collector: Collector, name: str, service: str, **attributes: Any) -> list[CollectedSpan]:
    def found() -> list[CollectedSpan] | None:
        spans = [
            s
            for s in collector.named(name, service)
            if all(s.attributes.get(key) == value for key, value in attributes.items())
        ]
        return spans or None

    result: list[CollectedSpan] = await eventually(found, timeout=20)
    return result


@dataclass
class Job:
    generation_id: str  # the generation's uuid
    prediction_id: str
    trace_id: str  # from the mutation's extensions.traceId
    trace_context: str  # as its row keeps it
    log_a: Path


async def run_job(database: str, tmp_path: Path, collector: Collector) -> Job:
    """One generation started on A, its webhook into B, followed on A until its media are stored."""
    await empty_postgres_database(database)
    (tmp_path / "media").mkdir()
    simulator_env = {"SIMULATOR_RUN_SECONDS": "0.3", "SIMULATOR_WEBHOOK_DROP_RATE": "1.0", "LOG_LEVEL": "WARNING"}
    async with (
        receiver() as hooks,
        simulator_process(simulator_env, tmp_path / "simulator.log") as simulator,
        darkroom_process(env("a", database, simulator, tmp_path, collector), tmp_path / "a.log") as a,
        darkroom_process(env("b", database, simulator, tmp_path, collector), tmp_path / "b.log") as b,
    ):
        async with httpx.AsyncClient(base_url=a, timeout=30) as client:
            # A document refused before it runs is traced too.
            refused = (await client.post("/graphql", json={"query": "{ generation(id: "})).json()
            assert refused["errors"], refused
            # An endpoint for outgoing webhooks: one of the processes delivers the job's events to it.
            created = data(await gql(client, CREATE, {"input": {"url": hooks.url("traced")}}))
            hooks.paths["traced"].secret = created["createWebhookEndpoint"]["secret"]
            response = await gql(client, START, {"model": IMAGE_MODEL, "input": {"prompt": SECRET}})
        started = data(response)["startGeneration"]
        assert started["userErrors"] == [], started
        generation_id = started["generation"]["id"]
        prediction_id, trace_context = await prediction_of(database)
        assert trace_context is not None

        async with ws_connect(a) as ws:
            states: list[dict[str, Any]] = []

            async def follow() -> None:
                async for payload in ws.subscribe(FOLLOW, {"id": generation_id}, timeout=30):
                    states.append(data(payload)["generation"])
                    if settled(states[-1]):
                        return

            following = asyncio.create_task(follow())
            await eventually(lambda: states or None, timeout=10)
            await webhook_into(b, simulator, prediction_id)
            await asyncio.wait_for(following, timeout=30)
        assert states[-1]["status"] == "SUCCEEDED" and states[-1]["media"], states[-1]
        # The spans are awaited while the processes run (each exports every OTEL_BSP_SCHEDULE_DELAY).
        await spans_named(collector, "darkroom.storage.write", "darkroom-b")
        await spans_named(collector, "darkroom.fan_out", "darkroom-a")
        await eventually(lambda: delivered(collector, str(decode_id(generation_id, "Generation"))), timeout=20)
    return Job(
        str(decode_id(generation_id, "Generation")),
        prediction_id,
        response["extensions"]["traceId"],
        trace_context,
        tmp_path / "a.log",
    )


def delivered(collector: Collector, generation_id: str) -> list[CollectedSpan] | None:
    """The outgoing webhook attempts of the generation's events, by either process (whichever held the
    endpoint)."""
    spans = [
        s
        for s in collector.snapshot()
        if s.name == "darkroom.webhook_out.deliver" and s.attributes.get("darkroom.generation_id") == generation_id
    ]
    return spans or None


def links(span: CollectedSpan) -> set[tuple[str, str]]:
    return {(link.trace_id, link.span_id) for link in span.links}


async def test_a_jobs_spans_form_linked_traces_across_two_processes(postgres_database: str, tmp_path: Path) -> None:
    with otlp_collector() as collector:
        job = await run_job(postgres_database, tmp_path, collector)
    one_generation = {"darkroom.generation_id": job.generation_id}

    # The mutation, on A: the operation (under Litestar's HTTP server span), the provider call (named, and
    # httpx's), the event; the row keeps the operation's span context.
    operation = (await spans_named(collector, "GraphQL mutation: Start", "darkroom-a"))[0]
    assert operation.trace_id == job.trace_id and len(job.trace_id) == 32
    assert operation.attributes["darkroom.generation_id"] == job.generation_id
    assert operation.attributes["graphql.operation.name"] == "Start"
    assert job.trace_context.split("-")[1:3] == [operation.trace_id, operation.span_id]
    spans = collector.snapshot()
    assert any(s.span_id == operation.parent_span_id and s.service == "darkroom-a" for s in spans)
    create = (await spans_named(collector, "darkroom.provider.create", "darkroom-a"))[0]
    assert create.trace_id == job.trace_id and create.parent_span_id == operation.span_id
    assert create.attributes["darkroom.prediction_id"] == job.prediction_id
    assert create.attributes["darkroom.generation_id"] == job.generation_id
    assert any(s.name == "POST" and s.parent_span_id == create.span_id for s in spans), "httpx's client span"
    appends_a = await spans_named(collector, "darkroom.event_log.append", "darkroom-a", **one_generation)
    assert any(s.trace_id == job.trace_id for s in appends_a)

    assert await spans_named(collector, "GraphQL operation", "darkroom-a"), "the refused document's span"

    # The webhook, on B: the update it applied links to the mutation's span, from another trace.
    update = (await spans_named(collector, "darkroom.generation.update", "darkroom-b", **one_generation))[0]
    assert update.attributes["darkroom.outcome"] == "applied"
    assert update.attributes["darkroom.prediction_id"] == job.prediction_id
    assert update.trace_id != job.trace_id
    assert (operation.trace_id, operation.span_id) in links(update)
    webhook = (await spans_named(collector, "darkroom.webhook", "darkroom-b"))[0]
    assert update.parent_span_id == webhook.span_id
    appends_b = [s for s in collector.named("darkroom.event_log.append", "darkroom-b") if s.trace_id == update.trace_id]
    assert appends_b

    # A's tailer read it and its fan-out (one span for its one group) rendered it: both link to B's append.
    fan_outs = collector.named("darkroom.fan_out", "darkroom-a")
    b_appends = {(s.trace_id, s.span_id) for s in appends_b}
    assert any(
        b_appends & links(s) for s in fan_outs if s.attributes.get("darkroom.generation_id") == job.generation_id
    )
    assert all(s.attributes["darkroom.subscribers"] == 1 for s in fan_outs)
    assert any(b_appends & links(s) for s in collector.named("darkroom.event_log.read", "darkroom-a"))

    # The download on B links to the mutation, with its storage write inside.
    download = (await spans_named(collector, "darkroom.download", "darkroom-b", **one_generation))[0]
    assert (operation.trace_id, operation.span_id) in links(download)
    assert any(s.trace_id == download.trace_id for s in collector.named("darkroom.storage.write", "darkroom-b"))

    # Each outgoing webhook of its events: a span of its own with the POST inside, linked to the append.
    sent = delivered(collector, job.generation_id) or []
    appends = {(s.trace_id, s.span_id) for s in collector.snapshot() if s.name == "darkroom.event_log.append"}
    assert sent and all(s.attributes["http.response.status_code"] == 200 for s in sent)
    assert all(links(s) & appends for s in sent)
    assert all(any(p.name == "POST" and p.parent_span_id == s.span_id for p in spans) for s in sent)

    # No variable's value in any span of either process.
    for span in spans:
        assert SECRET not in json.dumps(span.attributes, default=str), span
    # A's log lines of the mutation carry its trace id.
    lines = [json.loads(line) for line in job.log_a.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("trace_id") == job.trace_id and line["message"] == "generation started" for line in lines)


async def webhook_into(process: str, simulator: str, prediction_id: str) -> None:
    """Send `process` the prediction's final state as Replicate would: signed, once it has finished."""
    async with httpx.AsyncClient(base_url=simulator, timeout=10, headers={"Authorization": "Bearer any"}) as client:
        secret = (await client.get("/v1/webhooks/default/secret")).json()["key"]

        async def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = (await client.get(f"/v1/predictions/{prediction_id}")).json()
            return body if body.get("status") == "succeeded" else None

        prediction = await eventually(finished, timeout=15, interval=0.1)
    body = json.dumps(prediction).encode()
    headers = sign_webhook(secret, f"msg_{uuid.uuid4().hex}", body, None)
    async with httpx.AsyncClient(base_url=process, timeout=10) as client:
        response = await client.post(
            "/webhooks/replicate", content=body, headers={"content-type": "application/json", **headers}
        )
    assert response.status_code == 200 and response.json()["result"] == "applied", response.text
