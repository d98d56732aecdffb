"""Limits against abuse: over-deep, over-aliased, over-long and over-paged documents are refused before
anything runs, request bodies are capped on /graphql and on the webhook route, and a WebSocket that never
says connection_init is closed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from server.graphql.schema import build_schema
from server.settings import Settings
from tests.auth.support import closed_with, raw_socket
from tests.ops.support import row_counts
from tests.support.darkroom import Darkroom
from tests.support.flows import IMAGE_MODEL

START_SELECTION = "generation { id }"


def _start(selection: str = START_SELECTION, alias: str = "") -> str:
    prefix = f"{alias}: " if alias else ""
    return (
        f'{prefix}startGeneration(input: {{model: "{IMAGE_MODEL}", input: {{prompt: "limit"}}}}) '
        f"{{ {selection} userErrors {{ code }} }}"
    )


def _deep_selection(levels: int) -> str:
    """generation { media { generation { media { ... id } } } }, `levels` pairs deep."""
    selection = "id"
    for _ in range(levels):
        selection = f"generation {{ media {{ {selection} }} }}"
    return selection


async def _refused(darkroom: Darkroom, document: str) -> dict[str, Any]:
    """POST the document; it must answer errors and no data, and have written nothing."""
    before = await row_counts(darkroom)
    predictions_before = len(darkroom.simulator.engine.predictions) if darkroom.simulator else 0
    response = await darkroom.http.post("/graphql", json={"query": document})
    assert response.status_code in (200, 400), response.text
    body = response.json()
    assert body.get("errors"), body
    assert not body.get("data"), body
    assert await row_counts(darkroom) == before
    if darkroom.simulator:
        assert len(darkroom.simulator.engine.predictions) == predictions_before
    return dict(body)


async def test_a_query_within_the_limits_runs(darkroom: Darkroom) -> None:
    result = await darkroom.query("{ generations(first: 1) { edges { node { id media { id } } } } }")
    assert "errors" not in result, result


async def test_an_over_deep_mutation_is_refused_unexecuted(darkroom: Darkroom) -> None:
    depth = darkroom.settings.graphql.max_depth
    body = await _refused(darkroom, f"mutation {{ {_start(_deep_selection(depth))} }}")
    assert "depth" in body["errors"][0]["message"].lower()


async def test_over_many_aliases_are_refused_unexecuted(darkroom: Darkroom) -> None:
    count = darkroom.settings.graphql.max_aliases + 1
    document = "mutation { " + " ".join(_start(alias=f"a{n}") for n in range(count)) + " }"
    body = await _refused(darkroom, document)
    assert "alias" in body["errors"][0]["message"].lower()


async def test_an_over_long_document_is_refused_unexecuted(darkroom: Darkroom) -> None:
    tokens = darkroom.settings.graphql.max_tokens
    filler = ", ".join(["1"] * tokens)
    document = (
        f'mutation {{ startGeneration(input: {{model: "{IMAGE_MODEL}", input: {{prompt: "x", junk: [{filler}]}}}}) '
        "{ generation { id } } }"
    )
    body = await _refused(darkroom, document)
    assert "token" in body["errors"][0]["message"].lower()


async def test_a_page_over_the_cap_is_refused(darkroom: Darkroom) -> None:
    cap = darkroom.settings.graphql.max_page_size
    for field in ("generations", "media", "models"):
        body = await _refused(darkroom, f"{{ {field}(first: {cap + 1}) {{ edges {{ cursor }} }} }}")
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert str(cap) in body["errors"][0]["message"]


async def test_limits_follow_the_settings() -> None:
    settings = Settings(graphql_max_depth=3, graphql_max_aliases=1, graphql_max_tokens=50)
    schema = build_schema(settings)
    deep = await schema.execute("{ generations { edges { node { media { id } } } } }")
    assert deep.errors and "depth" in deep.errors[0].message.lower()
    aliased = await schema.execute("{ a: __typename b: __typename }")
    assert aliased.errors and "alias" in aliased.errors[0].message.lower()
    long = await schema.execute("{ " + " ".join(["__typename"] * 60) + " }")
    assert long.errors and "token" in long.errors[0].message.lower()


async def _chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 1000):
        yield b" " * 1000


async def test_graphql_bodies_over_the_cap_get_413(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(graphql_max_body_bytes=20_000, poller_enabled=False) as darkroom:
        query = "{ generations(first: 1) { edges { cursor } } }"
        small = await darkroom.http.post("/graphql", json={"query": query})
        assert small.status_code == 200
        padded = '{"query": "' + query + '"' + " " * 30_000 + "}"
        big = await darkroom.http.post("/graphql", content=padded, headers={"content-type": "application/json"})
        assert big.status_code == 413
        streamed = await darkroom.http.post(
            "/graphql", content=_chunks(30_000), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert (await row_counts(darkroom))["generations"] == 0


async def test_webhook_bodies_over_the_cap_get_413(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(webhook_max_body_bytes=5_000, poller_enabled=False) as darkroom:
        headers = {"content-type": "application/json"}
        declared = await darkroom.http.post("/webhooks/replicate", content=b"{" + b" " * 10_000 + b"}", headers=headers)
        assert declared.status_code == 413
        streamed = await darkroom.http.post("/webhooks/replicate", content=_chunks(10_000), headers=headers)
        assert streamed.status_code == 413
        under = await darkroom.http.post("/webhooks/replicate", content=b"{}", headers=headers)
        assert under.status_code == 401  # small enough to be read, then refused for its missing signature
        scrape = (await darkroom.http.get("/metrics")).text
        assert 'darkroom_webhooks_total{result="too_large"}' in scrape


async def test_a_socket_that_never_sends_connection_init_is_closed_in_time(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(graphql_connection_init_timeout_seconds=0.5, poller_enabled=False) as darkroom:
        opened = time.monotonic()
        async with raw_socket(darkroom.base_url) as socket:
            code = await closed_with(socket, timeout=10)
        assert code == 4408  # graphql-transport-ws: Connection initialisation timeout
        assert 0.4 < time.monotonic() - opened < 5
