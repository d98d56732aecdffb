"""The edge of the GraphQL API under attack: crafted cursors and IDs, server faults, revoked streams, costly queries.

Each case is sent as a client would send it, over real HTTP and WebSocket, on SQLite and PostgreSQL:

- a malformed cursor, ID or number is BAD_USER_INPUT, and the answer quotes no SQL and no exception;
- a fault of the server (a table gone) answers INTERNAL_SERVER_ERROR with the request id and no detail,
  on every transport, and is logged at ERROR with its traceback;
- a multipart/mixed subscription ends, with a last part saying why, once its key is revoked elsewhere;
- a query whose nested lists multiply past GRAPHQL_MAX_COST is refused before it runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import DocumentNode, FragmentDefinitionNode, GraphQLError, OperationDefinitionNode, parse
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text, update

from server.db.models import ApiKey
from server.graphql.cost import operation_cost
from server.graphql.pagination import (
    MAX_DATABASE_INTEGER,
    decode_event_cursor,
    decode_text_cursor,
    decode_time_cursor,
)
from server.graphql.schema import build_schema
from server.log import ContextFilter
from server.settings import Settings
from tests.auth.support import bearer, init, new_key, operation_messages, raw_socket
from tests.support.darkroom import Darkroom
from tests.support.graphql import multipart_messages
from tests.support.waiting import eventually
from tests.uploads.support import uploaded

MULTIPART = 'multipart/mixed;subscriptionSpec="1.0", application/json'
FEED = "subscription($after: String) { generationEvents(after: $after) { cursor type } }"
ROOT = Path(__file__).resolve().parents[2]
# What an answer must never quote: SQL, a driver's or Python's own words.
LEAKS = re.compile(
    r"SELECT|FROM\s|WHERE\s|sqlite|asyncpg|psycopg|Traceback|Exception|Error\(|too large to convert|"
    r"Exceeds the limit|OverflowError|does not exist|no such table|_gone",
    re.IGNORECASE,
)


def b64(raw: str | bytes) -> str:
    """What a client crafting a cursor or an ID sends: any bytes, in unpadded URL-safe base64."""
    data = raw.encode() if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


SOME_UUID = str(uuid.uuid4())
CRAFTED_CURSORS = [
    b64(f"0001-01-01T00:00:00+14:00|{SOME_UUID}"),  # before datetime.min once in UTC
    b64(f"9999-12-31T23:59:59-14:00|{SOME_UUID}"),  # after datetime.max once in UTC
    b64(f"2024-01-01T00:00:00+00:00|{'9' * 5000}"),
    b64("2024-01-01T00:00:00+00:00|not-a-uuid"),
    b64(f"2024-01-01T00:00:00+00:00|{SOME_UUID}|extra"),
    b64(f"not a time|{SOME_UUID}"),
    b64(b"\xff\xfe\x00|bytes"),
    "%%% not base64 %%%",
]
CRAFTED_FEED_CURSORS = [
    b64("event|99999999999999999999"),  # past the databases' 64-bit integers
    b64("event|" + "9" * 5000),  # past Python's int() digit limit
    b64("event|-1"),
    b64("event|1e3"),
    b64("event|\u0663"),  # an Arabic-Indic digit: int() takes it, SQL must not see it
    b64("event"),
    "@@@",
]
CRAFTED_IDS = [
    b64("Generation:not-a-uuid"),
    b64("Generation:" + "9" * 5000),
    b64("Generation:"),
    b64(b"\xff\xfe"),
    "!!not base64!!",
]


def assert_refused(answer: dict[str, Any], code: str = "BAD_USER_INPUT") -> None:
    errors = answer.get("errors") or []
    assert errors and {error["extensions"]["code"] for error in errors} == {code}, answer
    assert not LEAKS.search(json.dumps(answer)), answer


async def post(darkroom: Darkroom, query: str, variables: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await darkroom.http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code in (200, 400), response.text
    return dict(response.json())


# --- malformed cursors, IDs and text: BAD_USER_INPUT --------------------------------------------------------


async def test_crafted_cursors_ids_and_text_are_bad_user_input(darkroom: Darkroom) -> None:
    for cursor in CRAFTED_CURSORS:
        for field in ("generations", "media"):
            answer = await post(
                darkroom, f"query($a: String) {{ {field}(after: $a) {{ edges {{ cursor }} }} }}", {"a": cursor}
            )
            assert_refused(answer)
    for cursor in [b64("ok\x00nul|replicate"), b64("a|b|c"), b64("a ref alone"), *CRAFTED_CURSORS[-2:]]:
        assert_refused(
            await post(darkroom, "query($a: String) { models(after: $a) { edges { cursor } } }", {"a": cursor})
        )

    media_id = b64(f"Media:{SOME_UUID}")
    for global_id in [*CRAFTED_IDS, media_id]:  # the last is an ID of another type
        assert_refused(await post(darkroom, "query($id: ID!) { generation(id: $id) { id } }", {"id": global_id}))
        assert_refused(
            await post(
                darkroom,
                "query($id: ID) { media(filter: {generationId: $id}) { edges { cursor } } }",
                {"id": global_id},
            )
        )
    for global_id in [b64("Media:not-a-uuid"), b64("Model:owner/na\x00me"), "%%%"]:
        assert_refused(await post(darkroom, "query($id: ID!) { node(id: $id) { id } }", {"id": global_id}))

    nul = "darkroom-sim/pixel\x00forge"
    assert_refused(
        await post(darkroom, "query($m: String) { generations(filter: {model: $m}) { edges { cursor } } }", {"m": nul})
    )
    assert_refused(await post(darkroom, "query($r: String!) { model(ref: $r) { ref } }", {"r": nul}))
    assert_refused(await post(darkroom, "query($s: String) { models(search: $s) { edges { cursor } } }", {"s": nul}))
    # Out of GraphQL's own ranges: refused while variables coerce.
    assert_refused(await post(darkroom, "query($n: Int) { generations(first: $n) { edges { cursor } } }", {"n": 2**40}))


CURSOR_TEXT = st.one_of(
    st.text(),
    st.builds(lambda time, tail: f"{time}|{tail}", st.datetimes(timezones=st.timezones()).map(str), st.text()),
    st.builds(lambda digits: f"event|{digits}", st.text(alphabet="0123456789-+e_ \u0663", max_size=40)),
)


@given(raw=CURSOR_TEXT)
def test_a_cursor_decodes_to_values_sql_takes_or_is_bad_user_input(raw: str) -> None:
    for cursor in (b64(raw), raw):
        for decode in (decode_time_cursor, decode_event_cursor, decode_text_cursor):
            try:
                value = decode(cursor)
            except GraphQLError as refused:
                assert refused.extensions == {"code": "BAD_USER_INPUT"}
                continue
            if isinstance(value, int):
                assert 0 <= value <= MAX_DATABASE_INTEGER
            elif isinstance(value[0], datetime):
                assert value[0].tzinfo is not None and value[0].utcoffset() == timedelta(0)
            else:
                assert all(isinstance(part, str) and part.isprintable() and "|" not in part for part in value)


async def test_crafted_feed_cursors_are_bad_user_input_on_a_websocket(darkroom: Darkroom) -> None:
    async with raw_socket(darkroom.base_url) as socket:
        assert (await init(socket, {}))["type"] == "connection_ack"
        for number, cursor in enumerate(CRAFTED_FEED_CURSORS):
            messages = await operation_messages(socket, FEED, {"after": cursor}, op_id=str(number))
            errors = [
                error
                for message in messages
                for error in (
                    message["payload"]
                    if message["type"] == "error"
                    else (message.get("payload") or {}).get("errors", [])
                )
            ]
            assert errors and {error["extensions"]["code"] for error in errors} == {"BAD_USER_INPUT"}, messages
            assert not LEAKS.search(json.dumps(messages)), messages


async def test_a_range_of_absurd_numbers_is_ignored_not_a_fault(darkroom: Darkroom) -> None:
    url = (await uploaded(darkroom))["url"]
    for header in ["bytes=" + "9" * 5000 + "-", "bytes=-" + "9" * 5000]:
        response = await darkroom.http.get(url, headers={"Range": header})
        assert response.status_code == 200 and response.content[:4] == b"\x89PNG", (header, response.status_code)
    assert (await darkroom.http.get(url, headers={"Range": "bytes=99999999999999999999-"})).status_code == 200


# --- a fault of the server: INTERNAL_SERVER_ERROR, the request id, no detail --------------------------------


@contextlib.asynccontextmanager
async def table_gone(darkroom: Darkroom, table: str) -> AsyncIterator[None]:
    """A table gone from under the running server (a botched migration, an operator's mistake); put back after."""
    async with darkroom.runtime.sessions.begin() as session:
        await session.execute(text(f"ALTER TABLE {table} RENAME TO {table}_gone"))
    try:
        yield
    finally:
        async with darkroom.runtime.sessions.begin() as session:
            await session.execute(text(f"ALTER TABLE {table}_gone RENAME TO {table}"))


def assert_masked(errors: list[dict[str, Any]], request_id: str) -> None:
    assert errors, errors
    for error in errors:
        assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}, error
    assert not LEAKS.search(json.dumps(errors)), errors


async def test_a_fault_answers_internal_server_error_with_the_request_id_over_http(
    darkroom: Darkroom, caplog: pytest.LogCaptureFixture
) -> None:
    async with table_gone(darkroom, "media"):
        caplog.handler.addFilter(ContextFilter())  # stamps the request id, as the server's own log handler does
        with caplog.at_level(logging.ERROR, logger="server.graphql"):
            response = await darkroom.http.post(
                "/graphql",
                json={"query": "{ media(first: 5) { edges { cursor } } }"},
                headers={"X-Request-ID": "trace-1"},
            )
        assert response.status_code == 200 and response.headers["X-Request-ID"] == "trace-1"
        assert_masked(response.json()["errors"], "trace-1")
        faults = [
            record for record in caplog.records if record.levelno == logging.ERROR and record.name == "server.graphql"
        ]
        assert faults and all(record.exc_info for record in faults), caplog.records
        assert {getattr(record, "request_id", None) for record in faults} == {"trace-1"}

        # A server-chosen request id when the client sends none; application/graphql-response+json alike.
        response = await darkroom.http.post(
            "/graphql",
            json={"query": "{ media(first: 5) { edges { cursor } } }"},
            headers={"accept": "application/graphql-response+json"},
        )
        assert response.status_code == 200
        assert_masked(response.json()["errors"], response.headers["X-Request-ID"])


async def test_a_fault_is_masked_on_a_websocket_and_a_multipart_stream(start_darkroom: Any) -> None:
    # No events kept in memory: the feed reads the stored events first, from a table that is gone.
    async with start_darkroom(event_replay_buffer_events=0) as darkroom, table_gone(darkroom, "events"):
        replay = {"after": b64("event|0")}
        async with raw_socket(darkroom.base_url) as socket:
            assert socket.response is not None
            request_id = socket.response.headers["X-Request-ID"]
            assert (await init(socket, {}))["type"] == "connection_ack"
            messages = await operation_messages(socket, FEED, replay)
            errors = [error for message in messages for error in (message.get("payload") or {}).get("errors", [])]
            assert_masked(errors, request_id)

        async with darkroom.http.stream(
            "POST", "/graphql", json={"query": FEED, "variables": replay}, headers={"accept": MULTIPART}
        ) as response:
            assert response.status_code == 200
            parts = [message async for message in multipart_messages(response)]
        errors = [error for part in parts for error in (part.get("payload") or {}).get("errors", [])]
        assert_masked(errors, response.headers["X-Request-ID"])


# --- revocation ends a multipart/mixed stream --------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_revoked_keys_multipart_stream_ends(start_darkroom: Any, method: str) -> None:
    async with start_darkroom(auth_refresh_seconds=0.5) as darkroom:
        client = await new_key(darkroom, "streamer")
        request = {"query": FEED, "variables": json.dumps({})}
        options: dict[str, Any] = {"json": {"query": FEED}} if method == "POST" else {"params": request}
        async with darkroom.http.stream(
            method, "/graphql", headers={"accept": MULTIPART, **bearer(client.token)}, **options
        ) as response:
            assert response.status_code == 200, await response.aread()
            assert await eventually(lambda: darkroom.runtime.api_keys.open_sockets == 1)
            # Revoked elsewhere (another process, the CLI): this server learns of it from the database alone.
            async with darkroom.runtime.sessions.begin() as session:
                await session.execute(update(ApiKey).values(revoked_at=ApiKey.created_at))
            async with asyncio.timeout(20):  # ends within AUTH_REFRESH_SECONDS; the bound only stops a hang
                parts = [message async for message in multipart_messages(response)]
        assert parts[-1] == {
            "payload": None,
            "errors": [{"message": "API key revoked", "extensions": {"code": "FORBIDDEN"}}],
        }
        assert await eventually(lambda: darkroom.runtime.api_keys.open_sockets == 0)


# --- the query cost limit ----------------------------------------------------------------------------------

NESTED = "media { id generation { media { id generation { media { id generation { id } } } } } }"
COSTLY = (
    "{ " + " ".join(f"a{i}: generations(first: 100) {{ edges {{ node {{ {NESTED} }} }} }}" for i in range(30)) + " }"
)


async def test_a_costly_query_is_refused_before_it_runs(darkroom: Darkroom) -> None:
    response = await darkroom.http.post(
        "/graphql", json={"query": COSTLY}, headers={"accept": "application/graphql-response+json"}
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    limit = darkroom.settings.graphql.max_cost
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY" and error["extensions"]["maxCost"] == limit
    assert error["extensions"]["cost"] > limit and str(limit) in error["message"] and "data" not in response.json()

    # The same through variables, and as a subscription over a WebSocket.
    paged = (
        "query($n: Int) { "
        + " ".join(f"a{i}: generations(first: $n) {{ edges {{ node {{ {NESTED} }} }} }}" for i in range(3))
        + " }"
    )
    assert_refused(await post(darkroom, paged, {"n": 100}), "QUERY_TOO_COSTLY")
    assert not (await post(darkroom, paged.replace(NESTED, "id"), {"n": 100})).get("errors")
    deep = (
        "subscription { generationEvents { generation { "
        + NESTED.replace("{ id }", "{ media { id generation { media { id } } } }")
        + " } } }"
    )
    async with raw_socket(darkroom.base_url) as socket:
        assert (await init(socket, {}))["type"] == "connection_ack"
        [refusal] = await operation_messages(socket, deep)
        assert refusal["type"] == "error" and refusal["payload"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


def _documented_operations() -> list[tuple[str, DocumentNode]]:
    """Every GraphQL block of the README, and every document of the client examples written out whole (those
    put together from pieces at run time do not parse here, and are left out)."""
    found: list[tuple[str, str]] = []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found += [("README.md", block) for block in re.findall(r"```graphql\n(.*?)```", readme, re.S)]
    for path in sorted((ROOT / "client-examples").rglob("*")):
        if path.suffix in (".py", ".mjs", ".sh") and "node_modules" not in path.parts:
            source = path.read_text(encoding="utf-8")
            found += [
                (path.name, doc)
                for doc in re.findall(r"((?:query|subscription|mutation)\b[^`\"']*?\})\s*[`\"']", source, re.S)
            ]
    documents: list[tuple[str, DocumentNode]] = []
    for source, block in found:
        with contextlib.suppress(GraphQLError):
            documents.append((source, parse(block)))
    return documents


def test_every_documented_operation_is_within_the_cost_limit() -> None:
    settings = Settings()
    schema = build_schema(settings)._schema
    operations = _documented_operations()
    assert len(operations) >= 10, operations
    for source, document in operations:
        definitions = document.definitions
        fragments = [definition for definition in definitions if isinstance(definition, FragmentDefinitionNode)]
        for operation in (definition for definition in definitions if isinstance(definition, OperationDefinitionNode)):
            cost = operation_cost(
                schema,
                DocumentNode(definitions=(operation, *fragments)),
                None,
                {"first": settings.graphql.max_page_size},
                default_page=settings.graphql.default_page_size,
                max_page=settings.graphql.max_page_size,
                limit=settings.graphql.max_cost,
            )
            assert 0 < cost <= settings.graphql.max_cost, (source, operation, cost)
