"""GraphQL over HTTP (https://graphql.github.io/graphql-over-http/draft/), over real HTTP to a live server.

application/graphql-response+json when the client prefers it, with the spec's status codes; application/json
as it always was; a GraphQL-shaped 4xx for anything that is not a GraphQL request; subscriptions streamed
as multipart/mixed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.auth.support import bearer, new_key
from tests.support.darkroom import Darkroom
from tests.support.flows import FOLLOW, start_generation
from tests.support.graphql import multipart_payloads

GRAPHQL_RESPONSE = "application/graphql-response+json"
PREFERS_GRAPHQL_RESPONSE = {"accept": f"{GRAPHQL_RESPONSE}, application/json;q=0.9"}
MULTIPART = 'multipart/mixed;subscriptionSpec="1.0", application/json'

# Requests whose operation never runs: parse, validation and variable coercion failures.
REQUEST_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"query": "{"}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "{ " + "a: __typename " * 5000 + "}"}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    ({"query": "query($id: ID!) { __typename }"}, "GRAPHQL_VALIDATION_FAILED"),
    ({"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": None}}, "BAD_USER_INPUT"),
    (
        {"query": "query($n: Int) { generations(first: $n) { edges { cursor } } }", "variables": {"n": 1.5}},
        "BAD_USER_INPUT",
    ),
]


async def test_graphql_response_json_is_answered_in_kind(darkroom: Darkroom) -> None:
    response = await darkroom.http.post("/graphql", json={"query": "{ __typename }"}, headers=PREFERS_GRAPHQL_RESPONSE)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert response.json() == {"data": {"__typename": "Query"}}
    by_get = await darkroom.http.get(
        "/graphql", params={"query": "{ __typename }"}, headers={"accept": GRAPHQL_RESPONSE}
    )
    assert by_get.status_code == 200 and by_get.headers["content-type"].startswith(GRAPHQL_RESPONSE)


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("text/html;q=0.9, application/json", "application/json"),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (f"application/json;q=0.5, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),
        (f"{GRAPHQL_RESPONSE};q=0.5, application/json", "application/json"),
    ],
)
async def test_the_media_type_is_the_one_the_client_prefers(
    darkroom: Darkroom, accept: str | None, media_type: str
) -> None:
    headers = {"accept": accept} if accept else {}
    response = await darkroom.http.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type


@pytest.mark.parametrize(("request_body", "code"), REQUEST_ERRORS)
async def test_an_operation_that_never_ran_is_400_without_data(
    darkroom: Darkroom, request_body: dict[str, Any], code: str
) -> None:
    response = await darkroom.http.post("/graphql", json=request_body, headers=PREFERS_GRAPHQL_RESPONSE)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    body = response.json()
    assert "data" not in body, body
    assert body["errors"][0]["extensions"]["code"] == code, body
    # application/json stays as it was: 200, `data: null`, the same errors.
    legacy = await darkroom.http.post("/graphql", json=request_body, headers={"accept": "application/json"})
    assert legacy.status_code == 200 and legacy.headers["content-type"].startswith("application/json")
    assert legacy.json() == {"data": None, **body}


async def test_an_operation_that_ran_is_200_even_with_field_errors(darkroom: Darkroom) -> None:
    response = await darkroom.http.post(
        "/graphql",
        json={"query": 'query { __typename generation(id: "not-an-id") { id } }'},
        headers=PREFERS_GRAPHQL_RESPONSE,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"__typename": "Query", "generation": None}
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["path"] == ["generation"]


@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE])
async def test_what_is_not_a_graphql_request_is_a_4xx_with_a_graphql_error(darkroom: Darkroom, accept: str) -> None:
    json_body = {"content-type": "application/json", "accept": accept}
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("POST", {"content": b"5", "headers": json_body}, 400),
        ("POST", {"content": b'"x"', "headers": json_body}, 400),
        ("POST", {"content": b"null", "headers": json_body}, 400),
        ("POST", {"content": b"true", "headers": json_body}, 400),
        ("POST", {"content": b"[]", "headers": json_body}, 400),
        ("POST", {"content": b'[{"query": "{ __typename }"}]', "headers": json_body}, 400),
        ("POST", {"content": b"[" * 10_000 + b"]" * 10_000, "headers": json_body}, 400),
        ("POST", {"content": b'{"a":' * 10_000 + b"0" + b"}" * 10_000, "headers": json_body}, 400),
        ("POST", {"content": b'{"query": "\xff"}', "headers": json_body}, 400),
        ("POST", {"content": b"", "headers": json_body}, 400),
        ("POST", {"content": b"{", "headers": json_body}, 400),
        ("POST", {"content": b"{}", "headers": json_body}, 400),
        ("POST", {"content": b'{"query": 5}', "headers": json_body}, 400),
        ("POST", {"content": b'{"query": "{ __typename }", "variables": []}', "headers": json_body}, 400),
        ("POST", {"content": b'{"query": "{ __typename }", "operationName": {}}', "headers": json_body}, 400),
        (
            "POST",
            {"content": b"{ __typename }", "headers": {"content-type": "application/graphql", "accept": accept}},
            400,
        ),
        ("POST", {"content": b"query={__typename}", "headers": {"content-type": "text/plain", "accept": accept}}, 400),
        ("POST", {"content": b'{"query": "{ __typename }"}', "headers": {"accept": accept}}, 400),
        ("GET", {"params": {"query": "{ __typename }", "variables": "[1"}, "headers": {"accept": accept}}, 400),
        ("GET", {"headers": {"accept": accept}}, 400),
        ("GET", {"params": {"query": "mutation { __typename }"}, "headers": {"accept": accept}}, 405),
        # A subscription needs a stream: a WebSocket, or multipart/mixed.
        (
            "POST",
            {"json": {"query": 'subscription { generation(id: "x") { id } }'}, "headers": {"accept": accept}},
            400,
        ),
    ]
    for method, options, status in cases:
        response = await darkroom.http.request(method, "/graphql", **options)
        assert response.status_code == status, (options, response.status_code, response.text[:200])
        assert response.headers["content-type"].startswith(accept), (options, response.headers)
        error = response.json()["errors"][0]
        assert error["message"] and error["extensions"]["code"] in ("BAD_REQUEST", "METHOD_NOT_ALLOWED"), error
        if status == 405:
            assert response.headers["allow"] == "POST"


async def test_a_body_past_the_limit_is_a_413_with_a_graphql_error(start_darkroom: Any) -> None:
    async with start_darkroom(graphql_max_body_bytes=2_000, poller_enabled=False) as darkroom:
        padded = b'{"query": "{ __typename }"' + b" " * 5_000 + b"}"
        response = await darkroom.http.post("/graphql", content=padded, headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_request_without_a_key_on_a_closed_server_is_401_in_either_media_type(darkroom: Darkroom) -> None:
    client = await new_key(darkroom, "http")
    query = {"query": "{ __typename }"}
    legacy = await darkroom.http.post("/graphql", json=query)
    assert legacy.status_code == 401 and legacy.json()["data"] is None
    refused = await darkroom.http.post("/graphql", json=query, headers=PREFERS_GRAPHQL_RESPONSE)
    assert refused.status_code == 401 and refused.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert refused.json() == {
        "errors": [{"message": refused.json()["errors"][0]["message"], "extensions": {"code": "UNAUTHENTICATED"}}]
    }
    allowed = await darkroom.http.post(
        "/graphql", json=query, headers={**PREFERS_GRAPHQL_RESPONSE, **bearer(client.token)}
    )
    assert allowed.status_code == 200 and allowed.json() == {"data": {"__typename": "Query"}}


# --- subscriptions over HTTP (multipart/mixed) -------------------------------------------------------


async def _follow_over_http(darkroom: Darkroom, method: str, generation_id: str, **headers: str) -> list[str]:
    """The statuses a generation(id) subscription streams over multipart/mixed, until it completes."""
    request = {"query": FOLLOW, "variables": {"id": generation_id}}
    options: dict[str, Any] = (
        {"json": request}
        if method == "POST"
        else {"params": {**request, "variables": json.dumps(request["variables"])}}
    )
    statuses: list[str] = []
    async with darkroom.http.stream(
        method, "/graphql", headers={"accept": MULTIPART, **headers}, **options
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("multipart/mixed")
        async for payload in multipart_payloads(response):
            assert not payload.get("errors"), payload
            generation = payload["data"]["generation"]
            assert generation["id"] == generation_id
            if not statuses or statuses[-1] != generation["status"]:
                statuses.append(generation["status"])
    return statuses


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_subscription_streams_over_http_as_multipart(start_darkroom: Any, method: str) -> None:
    async with start_darkroom(simulator_run_seconds=1.0) as darkroom:
        generation = await start_generation(darkroom, "streamed over HTTP")
        statuses = await _follow_over_http(darkroom, method, generation["id"])
        assert statuses[-1] == "SUCCEEDED", statuses
        assert "PROCESSING" in statuses or "STARTING" in statuses, statuses


async def test_a_query_sent_with_the_multipart_accept_is_answered_once_as_json(darkroom: Darkroom) -> None:
    response = await darkroom.http.post("/graphql", json={"query": "{ __typename }"}, headers={"accept": MULTIPART})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_a_multipart_subscription_needs_a_key_on_a_closed_server(start_darkroom: Any) -> None:
    async with start_darkroom(simulator_run_seconds=0.5) as darkroom:
        client = await new_key(darkroom, "multipart")
        started = await client.query(
            'mutation { startGeneration(input: {model: "darkroom-sim/pixel-forge", input: {prompt: "keyed"}})'
            " { generation { id } userErrors { code } } }"
        )
        generation_id = started["data"]["startGeneration"]["generation"]["id"]
        refused = await darkroom.http.post(
            "/graphql", json={"query": FOLLOW, "variables": {"id": generation_id}}, headers={"accept": MULTIPART}
        )
        assert refused.status_code == 401
        statuses = await _follow_over_http(darkroom, "POST", generation_id, **bearer(client.token))
        assert statuses[-1] == "SUCCEEDED", statuses
