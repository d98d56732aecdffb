"""Fuzzing the two doors strangers can knock on, over real HTTP to a live server.

POST /webhooks/replicate gets malformed bodies, headers and signatures (some validly signed); /graphql
gets malformed documents, variables and requests. Every answer must be a 4xx or a GraphQL error, never
a 5xx, no row may change, and nothing may be logged at ERROR: every one of these is the client's mistake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from server.db.models import Generation, Media
from server.domain import GenerationStatus
from server.provider.replicate.signing import sign_webhook
from tests.ops.support import row_counts, seed_media
from tests.support.darkroom import Darkroom
from tests.support.flows import GENERATION_FIELDS, START

# Derandomized by the profile tests/conftest.py loads: every run tries the same examples.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
VALID_STATUSES = ("starting", "processing", "succeeded", "failed", "canceled", "aborted")
RUNNING_ID = "fuzz-running-prediction"

# Header values: printable ASCII without surrounding blanks (what an HTTP client can send at all).
printable = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)
# Only what JSON can carry: no NaN or infinities (json.dumps would write them, and no parser takes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


async def _snapshot(darkroom: Darkroom) -> tuple[dict[str, int], list[tuple[Any, ...]]]:
    """Row counts, and what each generation and media row says (so an update is caught too)."""
    async with darkroom.runtime.sessions() as session:
        generations = (
            await session.execute(
                select(Generation.id, Generation.status, Generation.event_seq, Generation.logs).order_by(Generation.id)
            )
        ).all()
        media = (await session.execute(select(Media.id, Media.status, Media.storage_key).order_by(Media.id))).all()
    return await row_counts(darkroom), [tuple(row) for row in [*generations, *media]]


async def _seed(darkroom: Darkroom) -> None:
    await seed_media(darkroom, b"\x89PNG fuzz")
    async with darkroom.runtime.sessions.begin() as session:
        session.add(
            Generation(
                provider="replicate",
                kind="IMAGE",
                model_ref="darkroom-sim/pixel-forge",
                input={"prompt": "running"},
                status=GenerationStatus.PROCESSING,
                provider_id=RUNNING_ID,
                next_poll_at=None,
            )
        )


def _assert_nothing_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    errors = [f"{record.name}: {record.getMessage()}" for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [], errors[:5]


def _in_thread(darkroom: Darkroom, fuzz: Callable[[httpx.Client], None]) -> Callable[[], None]:
    """Run `fuzz` with a blocking client, so hypothesis drives it while the server runs on this loop."""

    def run() -> None:
        with httpx.Client(base_url=darkroom.base_url, timeout=30) as client:
            fuzz(client)

    return run


# --- webhooks ---------------------------------------------------------------------------------------


@st.composite
def prediction_bodies(draw: st.DrawFn) -> Any:
    """Prediction-shaped objects with wrong or missing fields. Any word is a status (one Darkroom does not
    know leaves the generation running, and more logs are news), so one naming the running generation
    never has a status at all: that would be a real, signed update."""
    prediction_id = draw(st.sampled_from([RUNNING_ID, "seed-unknown"]) | st.text(max_size=30) | json_values)
    if prediction_id == RUNNING_ID:
        statuses = json_values.filter(lambda value: not isinstance(value, str)) | st.sampled_from(["", "x" * 65])
    else:
        statuses = st.text(max_size=12) | json_values | st.sampled_from(VALID_STATUSES)
    body = {"id": prediction_id, "status": draw(statuses)}
    for field in ("output", "logs", "error", "input", "created_at", "started_at", "completed_at", "metrics", "urls"):
        if draw(st.booleans()):
            body[field] = draw(json_values)
    return body


@st.composite
def webhook_requests(draw: st.DrawFn, secret: str) -> tuple[bytes, dict[str, str], str]:
    kind = draw(st.sampled_from(["bytes", "json", "prediction"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=300))
    else:
        value = draw(json_values if kind == "json" else prediction_bodies())
        body = json.dumps(value).encode()
    now = int(time.time())
    signing = draw(st.sampled_from(["valid", "none", "garbage", "wrong-secret", "stale", "tampered", "partial"]))
    headers: dict[str, str] = {}
    if signing in ("valid", "stale", "tampered", "partial"):
        try:
            at = now - 10_000 if signing == "stale" else now
            headers = sign_webhook(secret, f"msg_{uuid.uuid4().hex}", body, at)
        except UnicodeDecodeError:
            headers = {"webhook-id": "x", "webhook-timestamp": str(now), "webhook-signature": "v1,AAAA"}
        if signing == "tampered":
            body = body + b" "
        if signing == "partial":
            headers.pop(draw(st.sampled_from(sorted(headers))))
    elif signing == "wrong-secret":
        headers = sign_webhook("whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldCE=", "msg_x", b"", now)
    elif signing == "garbage":
        headers = {
            "webhook-id": draw(printable),
            "webhook-timestamp": draw(printable | st.integers().map(str)),
            "webhook-signature": draw(
                printable | st.lists(printable, max_size=3).map(lambda parts: " ".join(parts).strip())
            ),
        }
    headers["content-type"] = draw(st.sampled_from(["application/json", "text/plain", "", "application/x-junk"]))
    query = draw(st.sampled_from(["", "?generation=", "?generation=not-a-uuid", f"?generation={uuid.uuid4()}"]))
    return body, headers, query


async def test_webhook_fuzz_never_errors_and_changes_nothing(
    darkroom: Darkroom, caplog: pytest.LogCaptureFixture
) -> None:
    await _seed(darkroom)
    secret = await darkroom.replicate.webhook_secret()
    before = await _snapshot(darkroom)
    seen: set[int] = set()

    @FUZZ
    @given(request=webhook_requests(secret))
    def fuzz(client: httpx.Client, request: tuple[bytes, dict[str, str], str]) -> None:
        body, headers, query = request
        response = client.post(f"/webhooks/replicate{query}", content=body, headers=headers)
        seen.add(response.status_code)
        assert response.status_code < 500, (response.status_code, response.text, request)
        if response.status_code == 200:
            assert response.json()["result"] in ("unknown", "duplicate", "stale"), (response.text, request)
        else:
            assert 400 <= response.status_code < 500, (response.status_code, request)

    await asyncio.to_thread(_in_thread(darkroom, lambda client: fuzz(client)))
    assert await _snapshot(darkroom) == before
    _assert_nothing_logged_as_an_error(caplog)
    assert {400, 401} <= seen, seen


# --- GraphQL ------------------------------------------------------------------------------------------

DOCUMENTS = [
    START,
    f"query Get($id: ID!) {{ generation(id: $id) {{ {GENERATION_FIELDS} }} }}",
    "query($id: ID!) { node(id: $id) { id } }",
    "query($n: Int, $a: String) { generations(first: $n, after: $a) { edges { node { id } } } }",
    "query($f: MediaFilter, $n: Int) { media(filter: $f, first: $n) { edges { cursor } } }",
    "mutation($id: ID!) { cancelGeneration(input: {id: $id}) { userErrors { code } } }",
    "mutation($id: ID!) { retryDownload(input: {mediaId: $id}) { userErrors { code } } }",
    "mutation($id: ID!) { deleteMedia(input: {mediaId: $id}) { deletedMediaId userErrors { code } } }",
    "mutation($m: ID!, $i: JSON) { animateImage(input: {mediaId: $m, input: $i}) { userErrors { code } } }",
    "query($w: Float) { stats(windowHours: $w) { models { model } storage { bytesUsed } } }",
]


@st.composite
def mangled_documents(draw: st.DrawFn) -> str:
    """A real document with a slice cut out, or random text spliced in."""
    document = draw(st.sampled_from(DOCUMENTS))
    start = draw(st.integers(0, len(document)))
    end = draw(st.integers(start, min(len(document), start + 20)))
    return (
        document[:start]
        + draw(st.text(max_size=10) | st.sampled_from(["{", "}", "(", "$", "...", "@", '"']))
        + (document[end:])
    )


variables = (
    st.none()
    | st.dictionaries(
        st.sampled_from(["id", "m", "i", "n", "a", "f", "w", "model", "input", "x"]) | st.text(max_size=5),
        json_values,
        max_size=4,
    )
    | json_values
)


@st.composite
def graphql_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    shape = draw(st.sampled_from(["json", "raw-body", "get", "form"]))
    document = draw(mangled_documents() | st.sampled_from(DOCUMENTS) | st.text(max_size=80))
    if shape == "json":
        payload = {"query": draw(st.sampled_from([document, None, 5, []])), "variables": draw(variables)}
        if draw(st.booleans()):
            payload["operationName"] = draw(st.none() | st.text(max_size=10) | st.integers())
        accept = draw(st.sampled_from(["application/json", "application/graphql-response+json", "*/*"]) | printable)
        return "POST", {
            "content": json.dumps(payload),
            "headers": {"content-type": "application/json", "accept": accept},
        }
    if shape == "raw-body":
        content_type = draw(st.sampled_from(["application/json", "application/graphql", "text/plain", "x/y"]))
        return "POST", {"content": draw(st.binary(max_size=200)), "headers": {"content-type": content_type}}
    if shape == "get":
        return "GET", {"params": {"query": document, "variables": draw(st.text(max_size=40))}}
    return "POST", {"data": {"query": document, "variables": draw(st.text(max_size=40))}}


async def test_graphql_fuzz_never_errors_and_changes_nothing(
    darkroom: Darkroom, caplog: pytest.LogCaptureFixture
) -> None:
    await _seed(darkroom)
    before = await _snapshot(darkroom)

    @FUZZ
    @given(request=graphql_requests())
    def fuzz(client: httpx.Client, request: tuple[str, dict[str, Any]]) -> None:
        method, options = request
        response = client.request(method, "/graphql", **options)
        assert response.status_code < 500, (response.status_code, response.text, request)
        if response.status_code == 200 and "json" in response.headers.get("content-type", ""):
            body = response.json()
            assert "errors" in body or "data" in body, body

    await asyncio.to_thread(_in_thread(darkroom, lambda client: fuzz(client)))
    assert await _snapshot(darkroom) == before
    _assert_nothing_logged_as_an_error(caplog)


async def test_the_start_mutation_with_fuzzed_variables_starts_nothing(
    darkroom: Darkroom, caplog: pytest.LogCaptureFixture
) -> None:
    before = await _snapshot(darkroom)

    @FUZZ
    @given(model=st.text(max_size=40) | json_values, input_=json_values)
    def fuzz(client: httpx.Client, model: Any, input_: Any) -> None:
        response = client.post("/graphql", json={"query": START, "variables": {"model": model, "input": input_}})
        assert response.status_code < 500, (response.status_code, response.text)
        body = response.json()
        if response.status_code == 200 and not body.get("errors"):
            assert body["data"]["startGeneration"]["userErrors"], body

    await asyncio.to_thread(_in_thread(darkroom, lambda client: fuzz(client)))
    assert await _snapshot(darkroom) == before
    _assert_nothing_logged_as_an_error(caplog)


# --- bodies that are not a GraphQL request ------------------------------------------------------------

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/graphql-response+json",
    "application/graphql",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
    "",
]


@st.composite
def non_request_bodies(draw: st.DrawFn) -> bytes:
    """Bodies no GraphQL request is made of: JSON scalars and arrays, deep nesting, bytes, broken UTF-8."""
    kind = draw(st.sampled_from(["scalar", "array", "nested", "bytes", "not-utf8", "empty"]))
    if kind == "scalar":
        scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
        return json.dumps(draw(scalar | st.text(max_size=30))).encode()
    if kind == "array":
        return json.dumps(draw(st.lists(json_values, max_size=5))).encode()
    if kind == "nested":
        depth = draw(st.integers(1, 20_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"query":', "}"), ('{"variables":', "}")]))
        closed = draw(st.booleans())
        return (opener * depth + ("0" + closer * depth if closed else "")).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "not-utf8":
        return (
            b'{"query": "{ __typename }", "x": "'
            + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]))
            + b'"}'
        )
    return b""


@st.composite
def shaped_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    headers = {"content-type": draw(st.sampled_from(CONTENT_TYPES))}
    accept = draw(st.sampled_from([None, "application/json", "application/graphql-response+json", "*/*"]))
    if accept:
        headers["accept"] = accept
    return draw(non_request_bodies()), headers


async def test_a_body_that_is_not_a_graphql_request_gets_a_400_with_a_graphql_error(
    darkroom: Darkroom, caplog: pytest.LogCaptureFixture
) -> None:
    await _seed(darkroom)
    before = await _snapshot(darkroom)
    secret = await darkroom.replicate.webhook_secret()

    @FUZZ
    @given(request=shaped_requests(), signed=st.booleans())
    def fuzz(client: httpx.Client, request: tuple[bytes, dict[str, str]], signed: bool) -> None:
        body, headers = request
        response = client.post("/graphql", content=body, headers=headers)
        assert response.status_code == 400, (response.status_code, response.text[:300], body[:100], headers)
        wanted = "application/graphql-response+json" if "graphql-response" in headers.get("accept", "") else "json"
        assert wanted in response.headers["content-type"], (response.headers, headers)
        error = response.json()["errors"][0]
        assert isinstance(error["message"], str) and error["extensions"]["code"] == "BAD_REQUEST", error
        # The webhook route too: unsigned it is 401, signed it is no prediction, 400 (only text can be signed).
        signature: dict[str, str] = {}
        if signed:
            try:
                signature = sign_webhook(secret, f"msg_{uuid.uuid4().hex}", body)
            except UnicodeDecodeError:
                signed = False
        hook = client.post("/webhooks/replicate", content=body, headers={**headers, **signature})
        assert hook.status_code == (400 if signed else 401), (hook.status_code, hook.text[:300], body[:100])

    await asyncio.to_thread(_in_thread(darkroom, lambda client: fuzz(client)))
    assert await _snapshot(darkroom) == before
    _assert_nothing_logged_as_an_error(caplog)


def test_property_tests_draw_the_same_examples_on_every_run() -> None:
    """A fresh clone tries what CI tried: no random seed, no example database carried between runs."""
    if os.environ.get("HYPOTHESIS_PROFILE", "deterministic") != "deterministic":
        pytest.skip("another Hypothesis profile was asked for")
    assert FUZZ.derandomize and FUZZ.database is None
