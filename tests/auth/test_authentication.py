"""API keys over real HTTP and WebSockets: open with no key, closed as soon as one exists."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select

from server.db.models import Generation
from tests.auth.support import bearer, closed_with, init, new_key, operation_messages, post, raw_socket
from tests.support.darkroom import Darkroom

QUERY = "{ generations(first: 1) { edges { cursor } } }"
EMPTY: dict[str, object] = {"data": {"generations": {"edges": []}}}


async def test_with_no_key_the_server_is_open_and_says_so(start_darkroom, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="server.services.access.api_keys"):
        async with start_darkroom() as darkroom:
            response = await post(darkroom, QUERY)
            assert response.status_code == 200 and response.json() == EMPTY
            # A proxy's own Basic auth passes through; a Bearer token that is no key is refused even now.
            assert (await post(darkroom, QUERY, {"Authorization": "Basic dXNlcjpwdw=="})).status_code == 200
            assert (await post(darkroom, QUERY, bearer("drk_made-up"))).status_code == 401
            async with raw_socket(darkroom.base_url) as socket:
                assert (await init(socket, {}))["type"] == "connection_ack"
    assert any("open to anyone" in record.getMessage() for record in caplog.records)


async def test_once_a_key_exists_http_needs_it(darkroom: Darkroom) -> None:
    client = await new_key(darkroom, "alice")

    for headers in ({}, bearer("drk_not-a-real-key"), {"Authorization": f"Basic {client.token}"}):
        refused = await post(darkroom, QUERY, headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"].startswith("Bearer")
        body = refused.json()
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    by_get = await darkroom.http.get("/graphql", params={"query": QUERY})
    assert by_get.status_code == 401
    assert await client.query(QUERY) == EMPTY
    by_get = await darkroom.http.get("/graphql", params={"query": QUERY}, headers=bearer(client.token))
    assert by_get.status_code == 200 and by_get.json() == EMPTY
    # GraphiQL's page still loads: its headers tab is where the key goes.
    page = await darkroom.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_a_refused_mutation_changes_nothing(darkroom: Darkroom) -> None:
    await new_key(darkroom, "alice")
    response = await post(
        darkroom,
        'mutation { startGeneration(input: {model: "darkroom-sim/pixel-forge", input: {prompt: "x"}}) { '
        "userErrors { code } } }",
    )
    assert response.status_code == 401
    assert darkroom.simulator.stats.predictions_created == 0
    async with darkroom.runtime.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Generation)) == 0


async def test_auth_required_refuses_everything_before_any_key_exists(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(auth_required=True) as darkroom:
        assert (await post(darkroom, QUERY)).status_code == 401
        async with raw_socket(darkroom.base_url) as socket:
            await socket.send('{"type": "connection_init", "payload": {}}')
            assert await closed_with(socket) == 4403


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda token: {"Authorization": f"Bearer {token}"}, id="Authorization"),
        pytest.param(lambda token: {"authorization": f"Bearer {token}"}, id="authorization"),
        pytest.param(lambda token: {"token": token}, id="token"),
    ],
)
async def test_a_socket_authenticates_in_connection_init(darkroom: Darkroom, payload) -> None:  # type: ignore[no-untyped-def]
    client = await new_key(darkroom, "alice")
    async with raw_socket(darkroom.base_url) as socket:
        assert (await init(socket, payload(client.token)))["type"] == "connection_ack"
        messages = await operation_messages(socket, QUERY)
    assert messages[0] == {"id": "1", "type": "next", "payload": EMPTY}


async def test_a_socket_without_a_valid_key_is_refused_on_both_protocols(darkroom: Darkroom) -> None:
    client = await new_key(darkroom, "alice")
    for payload in ({}, {"Authorization": "Bearer drk_wrong"}):
        async with raw_socket(darkroom.base_url) as socket:
            await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
            assert await closed_with(socket) == 4403

    # graphql-ws (the legacy protocol) answers connection_error, then closes.
    async with raw_socket(darkroom.base_url, protocol="graphql-ws") as socket:
        answer = await init(socket, {})
        assert answer["type"] == "connection_error"
        assert answer["payload"]["code"] == "UNAUTHENTICATED"
        assert await closed_with(socket) is not None
    async with raw_socket(darkroom.base_url, protocol="graphql-ws") as socket:
        assert (await init(socket, {"Authorization": f"Bearer {client.token}"}))["type"] == "connection_ack"

    # The handshake's own Authorization header is accepted too, for clients that can set one.
    async with raw_socket(darkroom.base_url, headers=bearer(client.token)) as socket:
        assert (await init(socket, {}))["type"] == "connection_ack"


async def test_an_open_socket_is_closed_once_the_server_requires_keys(start_darkroom) -> None:  # type: ignore[no-untyped-def]
    async with start_darkroom(auth_refresh_seconds=0.3) as darkroom, raw_socket(darkroom.base_url) as socket:
        assert (await init(socket, {}))["type"] == "connection_ack"
        await darkroom.runtime.api_keys.create("first key")
        assert await closed_with(socket) == 4403
