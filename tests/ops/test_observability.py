"""Observability: request ids in logs, Prometheus metrics after a real flow, health checks, alerts."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from server.db.models import Generation
from server.log import configure_logging
from server.provider.replicate.signing import sign_webhook
from server.services.operations.alerts import FailureAlerts
from tests.ops.support import raw_id, settled_generation
from tests.support.darkroom import Darkroom
from tests.support.flows import FOLLOW, IMAGE_MODEL, start_generation
from tests.support.graphql import ws_connect
from tests.support.waiting import eventually

# --- logging ---------------------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Configure JSON logging into a buffer for the test; put the previous handlers back after it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_every_request_gets_an_id_that_reaches_its_log_lines(
    start_darkroom: Callable[..., Any], json_log: io.StringIO
) -> None:
    async with start_darkroom(poller_enabled=False) as darkroom:
        response = await darkroom.http.post(
            "/webhooks/replicate", content=b"{}", headers={"X-Request-ID": "trace-abc.123"}
        )
        assert response.status_code == 401
        assert response.headers["x-request-id"] == "trace-abc.123"

        fresh = await darkroom.http.get("/healthz")
        generated = fresh.headers["x-request-id"]
        assert len(generated) == 32

        hostile = await darkroom.http.get("/healthz", headers={"X-Request-ID": "x" * 500})
        assert hostile.headers["x-request-id"] != "x" * 500

        started = await darkroom.http.post(
            "/graphql",
            json={
                "query": "mutation($m: String!, $i: JSON!) { startGeneration(input: {model: $m, input: $i}) "
                "{ generation { id } userErrors { code } } }",
                "variables": {"m": IMAGE_MODEL, "i": {"prompt": "traced"}},
            },
            headers={"X-Request-ID": "trace-start"},
        )
        generation_id = str(raw_id(started.json()["data"]["startGeneration"]["generation"]["id"]))
        await eventually(lambda: any(line["message"] == "media downloaded" for line in _lines(json_log)))

    lines = _lines(json_log)
    rejected = [line for line in lines if line["message"] == "webhook rejected"]
    assert rejected and rejected[0]["request_id"] == "trace-abc.123"
    assert rejected[0]["level"] == "WARNING" and rejected[0]["logger"] == "server.http.webhooks"
    access = [line for line in lines if line.get("path") == "/webhooks/replicate"]
    assert access and access[0]["request_id"] == "trace-abc.123" and access[0]["status"] == 401
    assert all(line.get("path") != "/healthz" for line in lines)  # probes are logged at DEBUG only
    started_lines = [line for line in lines if line["message"] == "generation started"]
    assert started_lines, lines
    assert started_lines[0]["request_id"] == "trace-start"
    assert started_lines[0]["generation_id"] == generation_id
    # Background work carries the generation it is doing, and no request id.
    downloaded = [line for line in lines if line["message"] == "media downloaded"]
    assert downloaded[0]["generation_id"] == generation_id and downloaded[0]["request_id"] is None


BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    # (name, httpx request options, the code its log line carries)
    ("syntax", {"json": {"query": "{ generations(first: 1) { edges"}}, "GRAPHQL_PARSE_FAILED"),
    ("unknown-field", {"json": {"query": "{ generations { edges { node { nope } } } }"}}, "GRAPHQL_VALIDATION_FAILED"),
    ("too-deep", {"json": {"query": "{ a: __typename " + "b: __typename " * 5000 + "}"}}, "GRAPHQL_PARSE_FAILED"),
    (
        "variable",
        {"json": {"query": "query($n: Int) { generations(first: $n) { edges { cursor } } }", "variables": {"n": "x"}}},
        "BAD_USER_INPUT",
    ),
    (
        "bad-id",
        {"json": {"query": "query($id: ID!) { generation(id: $id) { id } }", "variables": {"id": "not\nan id"}}},
        "BAD_USER_INPUT",
    ),
    ("page-size", {"json": {"query": "{ media(first: 100000) { edges { cursor } } }"}}, "BAD_USER_INPUT"),
    (
        "user-error",
        {
            "json": {
                "query": 'mutation { startGeneration(input: {model: "nobody/none", input: {prompt: "x"}})'
                " { userErrors { code } } }"
            }
        },
        "NOT_FOUND",
    ),
    ("scalar-body", {"content": b"5", "headers": {"content-type": "application/json"}}, "BAD_REQUEST"),
    ("null-body", {"content": b"null", "headers": {"content-type": "application/json"}}, "BAD_REQUEST"),
    ("not-utf8", {"content": b'{"query": "\xff"}', "headers": {"content-type": "application/json"}}, "BAD_REQUEST"),
    ("nested", {"content": b"[" * 5000, "headers": {"content-type": "application/json"}}, "BAD_REQUEST"),
    ("content-type", {"content": b"{ __typename }", "headers": {"content-type": "text/plain"}}, "BAD_REQUEST"),
]


async def test_client_mistakes_are_one_info_line_each_and_never_an_error(
    start_darkroom: Callable[..., Any], json_log: io.StringIO
) -> None:
    async with start_darkroom(poller_enabled=False, downloader_enabled=False) as darkroom:
        for round_ in range(3):
            for name, options, _ in BAD_REQUESTS:
                headers = {**options.get("headers", {}), "X-Request-ID": f"bad-{name}-{round_}"}
                response = await darkroom.http.post("/graphql", **{**options, "headers": headers})
                assert response.status_code < 500, (name, response.status_code, response.text)
                body = response.json()
                errors = body.get("errors") or body["data"]["startGeneration"]["userErrors"]
                assert errors[0].get("extensions", errors[0]).get("code"), (name, body)
            mutation_by_get = await darkroom.http.get(
                "/graphql",
                params={"query": 'mutation { cancelGeneration(input: {id: "x"}) { userErrors { code } } }'},
                headers={"X-Request-ID": f"bad-get-{round_}"},
            )
            assert mutation_by_get.status_code == 405
            assert mutation_by_get.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
        async with ws_connect(darkroom.base_url) as client:
            payloads = [payload async for payload in client.subscribe('subscription { generation(id: "x") { id } }')]
            assert payloads[0]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", payloads

    lines = _lines(json_log)
    assert [line for line in lines if line["level"] in ("ERROR", "CRITICAL")] == []
    assert all("exc_info" not in line for line in lines if line["logger"].startswith(("server.graphql", "strawberry")))
    for round_ in range(3):
        for name, _, code in [*BAD_REQUESTS, ("get", {}, "METHOD_NOT_ALLOWED")]:
            mine = [
                line
                for line in lines
                if line["request_id"] == f"bad-{name}-{round_}"
                and line["logger"].startswith(("server.", "strawberry"))
                and line["logger"] != "server.http"
            ]
            assert len(mine) == 1, (name, mine)
            assert mine[0]["level"] == "INFO", mine
            assert code in mine[0]["message"], (code, mine)
            assert "\n" not in mine[0]["message"], mine


async def test_a_server_fault_is_an_error_with_its_traceback_and_request_id(
    start_darkroom: Callable[..., Any], json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the disk is on fire")

    async with start_darkroom(poller_enabled=False, downloader_enabled=False) as darkroom:
        monkeypatch.setattr("server.graphql.queries.queries.latest_event_id", broken)
        result = await darkroom.http.post("/graphql", json={"query": "{ feedCursor }"}, headers={"X-Request-ID": "f1"})
        assert result.status_code == 200
        assert result.json()["errors"][0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "f1"}
        assert "on fire" not in result.text

        def no_media_type(request: Any) -> str:
            raise RuntimeError("the controller is on fire")

        monkeypatch.setattr("server.graphql.over_http.response_media_type", no_media_type)
        crashed = await darkroom.http.post("/graphql", json={"query": "{ __typename }"}, headers={"X-Request-ID": "f2"})
        assert crashed.status_code == 500
        assert crashed.json()["errors"][0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "f2"}
        assert "on fire" not in crashed.text

    errors = [line for line in _lines(json_log) if line["level"] == "ERROR"]
    assert [line["request_id"] for line in errors] == ["f1", "f2"], errors
    assert "the disk is on fire" in errors[0]["message"] and "RuntimeError" in errors[0]["exc_info"]
    assert "Traceback" in errors[1]["exc_info"] and "the controller is on fire" in errors[1]["exc_info"]


# --- metrics -----------------------------------------------------------------------------------------


async def _scrape(darkroom: Darkroom) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await darkroom.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items() if sample == name and wanted <= found)


async def _signed_post(darkroom: Darkroom, payload: dict[str, Any]) -> str:
    body = json.dumps(payload).encode()
    headers = sign_webhook(await darkroom.replicate.webhook_secret(), f"msg_{uuid.uuid4().hex}", body)
    response = await darkroom.http.post("/webhooks/replicate", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["result"])


async def test_metrics_after_a_flow(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(simulator_download_failures=1) as darkroom:
        before = await _scrape(darkroom)
        generation = await settled_generation(darkroom, IMAGE_MODEL, prompt="metered")
        assert generation["status"] == "SUCCEEDED" and generation["media"][0]["status"] == "READY"
        async with darkroom.runtime.sessions() as session:
            row = await session.get(Generation, raw_id(generation["id"]))
            assert row is not None and row.provider_id
        done = {"id": row.provider_id, "status": "succeeded", "output": [], "logs": ""}
        assert await _signed_post(darkroom, done) == "duplicate"
        assert await _signed_post(darkroom, {**done, "status": "processing"}) == "stale"
        assert (await darkroom.http.post("/webhooks/replicate", content=b"{}")).status_code == 401
        missing = await darkroom.query('{ model(ref: "nobody/no-such-model") { ref } }')
        assert missing["data"]["model"] is None, missing
        await eventually(lambda: _poll_cycles_grew(darkroom, before))

        after = await _scrape(darkroom)

        def grew(name: str, **labels: str) -> float:
            return _total(after, name, **labels) - _total(before, name, **labels)

        image = {"model": IMAGE_MODEL, "kind": "IMAGE"}
        assert grew("darkroom_generations_started_total", **image) == 1
        assert grew("darkroom_generations_finished_total", **image, status="SUCCEEDED") == 1
        assert grew("darkroom_webhooks_total", result="applied") >= 1
        assert grew("darkroom_webhooks_total", result="accepted") == 0  # one word for both doors
        assert grew("darkroom_webhooks_total", result="duplicate") >= 1
        assert grew("darkroom_webhooks_total", result="stale") >= 1
        assert grew("darkroom_webhooks_total", result="bad_signature") == 1
        assert grew("darkroom_poll_cycles_total") >= 1
        assert grew("darkroom_downloads_total", result="retry") >= 1
        assert grew("darkroom_downloads_total", result="ready") >= 1
        assert grew("darkroom_download_retries_total", result="ready") >= 1
        assert grew("darkroom_provider_request_seconds_count", method="POST") >= 1
        assert grew("darkroom_provider_errors_total", reason="404") >= 1
        assert grew("darkroom_webhook_to_publish_seconds_count") >= 1
        assert ("darkroom_open_subscriptions", frozenset()) in after


async def _poll_cycles_grew(darkroom: Darkroom, before: dict[Any, float]) -> bool:
    return _total(await _scrape(darkroom), "darkroom_poll_cycles_total") > _total(before, "darkroom_poll_cycles_total")


async def test_open_subscriptions_gauge_follows_sockets(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(poller_enabled=False, simulator_run_seconds=30) as darkroom:
        generation = await start_generation(darkroom)
        baseline = _total(await _scrape(darkroom), "darkroom_open_subscriptions")
        async with ws_connect(darkroom.base_url) as client:
            stream = cast(AsyncGenerator[dict[str, Any], None], client.subscribe(FOLLOW, {"id": generation["id"]}))
            first = await anext(stream)
            assert first["data"]["generation"]["id"] == generation["id"]

            async def opened() -> bool:
                return _total(await _scrape(darkroom), "darkroom_open_subscriptions") == baseline + 1

            await eventually(opened)
            await stream.aclose()

        async def closed() -> bool:
            return _total(await _scrape(darkroom), "darkroom_open_subscriptions") == baseline

        await eventually(closed)


# --- health --------------------------------------------------------------------------------------------


async def test_healthz_and_readyz_report_database_and_broadcast(
    start_darkroom: Callable[..., Any], redis_url: str
) -> None:
    async with start_darkroom(broadcast_url=redis_url) as darkroom:
        assert (await darkroom.http.get("/healthz")).json() == {"status": "ok"}
        ready = await darkroom.http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ok",
            "checks": {"database": True, "event_log": True, "broadcast": True, "downloader": True},
        }

        await darkroom.runtime.hub.stop()
        no_broadcast = await darkroom.http.get("/readyz")
        assert no_broadcast.status_code == 503
        assert no_broadcast.json()["checks"] == {
            "database": True,
            "event_log": False,
            "broadcast": False,
            "downloader": True,
        }

        working = darkroom.runtime.engine
        darkroom.runtime.engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
        try:
            no_database = await darkroom.http.get("/readyz")
        finally:
            await darkroom.runtime.engine.dispose()
            darkroom.runtime.engine = working
        assert no_database.status_code == 503
        assert no_database.json()["checks"]["database"] is False
        assert (await darkroom.http.get("/healthz")).status_code == 200


# --- stats and alerts -----------------------------------------------------------------------------------


async def test_repeated_generation_failures_log_an_alert(
    start_darkroom: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.alerts")
    async with start_darkroom(simulator_fail_rate=1.0, alert_failure_threshold=2) as darkroom:
        first = await settled_generation(darkroom, IMAGE_MODEL, prompt="doomed 1")
        assert first["status"] == "FAILED"
        assert not [r for r in caplog.records if r.name == "server.alerts"]
        await settled_generation(darkroom, IMAGE_MODEL, prompt="doomed 2")
        alerts = [r for r in caplog.records if r.name == "server.alerts"]
        assert len(alerts) == 1
        alert: Any = alerts[0]
        assert alert.levelno == logging.WARNING
        assert alert.getMessage() == "repeated generation failures"
        assert (alert.alert, alert.model, alert.kind, alert.failures) == (
            "generation_failures",
            IMAGE_MODEL,
            "IMAGE",
            2,
        )

        stats = await darkroom.query(
            "{ stats(windowHours: 1) { models { model kind total failed successRate failureRate } } }"
        )
        assert stats["data"]["stats"]["models"] == [
            {"model": IMAGE_MODEL, "kind": "IMAGE", "total": 2, "failed": 2, "successRate": 0.0, "failureRate": 1.0}
        ]


async def test_repeated_download_failures_log_an_alert(
    start_darkroom: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="server.alerts")
    async with start_darkroom(
        simulator_download_failures=100, download_max_attempts=3, alert_failure_threshold=3
    ) as darkroom:
        generation = await settled_generation(darkroom, IMAGE_MODEL, prompt="unreachable file")
        assert generation["media"][0]["status"] == "FAILED"
        assert generation["media"][0]["downloadAttempts"] == 3
        alerts: list[Any] = [r for r in caplog.records if r.name == "server.alerts"]
        assert [(r.getMessage(), r.alert, r.failures) for r in alerts] == [
            ("repeated download failures", "download_failures", 3)
        ]
        stats = await darkroom.query("{ stats { downloads { failed retriedMedia retryAttempts } } }")
        assert stats["data"]["stats"]["downloads"] == {"failed": 1, "retriedMedia": 1, "retryAttempts": 2}


def test_alerts_count_in_a_sliding_window_and_repeat_once_per_window(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="server.alerts")
    now = [0.0]
    alerts = FailureAlerts(3, 60, clock=lambda: now[0])
    for at in (0, 30, 70):  # the first has left the window when the third comes
        now[0] = at
        alerts.generation_finished("a/b", "IMAGE", "FAILED")
    alerts.generation_finished("a/b", "IMAGE", "SUCCEEDED")
    alerts.generation_finished("a/b", "IMAGE", "CANCELED")
    assert not caplog.records
    now[0] = 80
    alerts.generation_finished("a/b", "IMAGE", "TIMED_OUT")
    now[0] = 90
    alerts.generation_finished("a/b", "IMAGE", "FAILED")
    assert len(caplog.records) == 1
    now[0] = 120
    for _ in range(3):  # still failing, but within a window of the last alert: no repeat yet
        alerts.generation_finished("a/b", "IMAGE", "FAILED")
    assert len(caplog.records) == 1
    now[0] = 150
    alerts.generation_finished("a/b", "IMAGE", "FAILED")
    assert len(caplog.records) == 2
    assert not [r for r in caplog.records if getattr(r, "model", None) != "a/b"]
    FailureAlerts(0, 60).download_failed("off")
    assert len(caplog.records) == 2


async def test_stats_rates_retries_and_storage(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(poller_enabled=False, downloader_enabled=False) as darkroom:
        await _assert_stats(darkroom)


async def _assert_stats(darkroom: Darkroom) -> None:
    from datetime import timedelta

    from server.db.models import Media, utcnow

    now = utcnow()
    async with darkroom.runtime.sessions.begin() as session:
        rows: list[tuple[str, str, str, Any]] = [
            ("a/image", "IMAGE", "SUCCEEDED", now),
            ("a/image", "IMAGE", "SUCCEEDED", now),
            ("a/image", "IMAGE", "SUCCEEDED", now),
            ("a/image", "IMAGE", "FAILED", now),
            ("a/image", "IMAGE", "TIMED_OUT", now),
            ("a/image", "IMAGE", "CANCELED", now),
            ("a/image", "IMAGE", "PROCESSING", now),
            ("a/image", "IMAGE", "FAILED", now - timedelta(hours=30)),
            ("b/video", "VIDEO", "STARTING", now),
        ]
        generations = []
        for model, kind, status, created in rows:
            generation = Generation(
                provider="replicate", kind=kind, model_ref=model, input={}, status=status, created_at=created
            )
            session.add(generation)
            generations.append(generation)
        await session.flush()
        for position, (status, attempts, size) in enumerate(
            [("READY", 1, 1000), ("READY", 3, 2500), ("FAILED", 5, None), ("PENDING", 0, None)]
        ):
            session.add(
                Media(
                    generation_id=generations[0].id,
                    position=position,
                    kind="IMAGE",
                    status=status,
                    download_attempts=attempts,
                    byte_size=size,
                    created_at=now,
                )
            )
    query = """query($w: Float) { stats(windowHours: $w) {
        windowHours since
        models { model kind total running succeeded failed canceled timedOut successRate failureRate }
        downloads { pending downloading ready failed retriedMedia retryAttempts }
        storage { files bytesUsed } } }"""
    result = await darkroom.query(query, {"w": 24})
    assert "errors" not in result, result
    stats = result["data"]["stats"]
    assert stats["windowHours"] == 24
    assert stats["models"] == [
        {
            "model": "a/image",
            "kind": "IMAGE",
            "total": 7,
            "running": 1,
            "succeeded": 3,
            "failed": 1,
            "canceled": 1,
            "timedOut": 1,
            "successRate": 0.5,
            "failureRate": pytest.approx(2 / 6),
        },
        {
            "model": "b/video",
            "kind": "VIDEO",
            "total": 1,
            "running": 1,
            "succeeded": 0,
            "failed": 0,
            "canceled": 0,
            "timedOut": 0,
            "successRate": None,
            "failureRate": None,
        },
    ]
    assert stats["downloads"] == {
        "pending": 1,
        "downloading": 0,
        "ready": 2,
        "failed": 1,
        "retriedMedia": 2,
        "retryAttempts": 6,
    }
    assert stats["storage"] == {"files": 2, "bytesUsed": 3500}
    wider = await darkroom.query(query, {"w": 48})
    assert wider["data"]["stats"]["models"][0]["failed"] == 2
    for bad in (0, -1, 10**6):
        refused = await darkroom.query(query, {"w": bad})
        assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_stats_count_only_what_the_viewer_may_see(darkroom: Darkroom) -> None:
    from server.db.models import ApiKey
    from server.services.access.viewer import Viewer

    async with darkroom.runtime.sessions.begin() as session:
        keys = [ApiKey(name=name, prefix=name, token_hash=name * 8) for name in ("alice", "bob")]
        session.add_all(keys)
        await session.flush()
        for owner, count in ((keys[0].id, 2), (keys[1].id, 1), (None, 4)):
            for _ in range(count):
                session.add(
                    Generation(
                        provider="replicate",
                        kind="IMAGE",
                        model_ref="a/b",
                        input={},
                        status="SUCCEEDED",
                        owner_id=owner,
                    )
                )
    stats = darkroom.runtime.stats

    async def total(viewer: Viewer) -> int:
        return sum(item.total for item in (await stats.collect(viewer, 1)).models)

    assert await total(Viewer.system()) == 7
    assert await total(Viewer.key(keys[0].id)) == 2
    assert await total(Viewer.key(keys[1].id)) == 1
    assert await total(Viewer(owner_id=None, sees_all=False)) == 0
