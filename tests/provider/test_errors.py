"""Each kind of failure surfaces as its own ProviderError, with the answer's fields read.

The simulator answers the errors it really makes (401, 404, 422); the fault proxy in front of it answers
the ones it never does (429, 5xx, broken or unreadable answers). The header parsers and the status table
are checked without a network.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from server.provider.errors import (
    InvalidField,
    ProviderAuthError,
    ProviderBadResponseError,
    ProviderError,
    ProviderNotFoundError,
    ProviderRateLimitedError,
    ProviderServerError,
    ProviderUnavailableError,
    ProviderValidationError,
    parse_ratelimit_reset,
    parse_retry_after,
)
from server.provider.replicate.client import ReplicateClient
from server.provider.replicate.errors import parse_resets_in
from server.provider.replicate.errors import replicate_error as error_from_answer
from tests.provider.conftest import IMAGES, SMALL, MakeClient, Stack
from tests.provider.fault_proxy import HANG, Answer, ok, problem, throttled
from tests.support.live_server import free_port

SECRET_PATH = "/v1/webhooks/default/secret"


# --- answered by the simulator ---------------------------------------------------------------------


async def test_wrong_token_is_an_auth_error(make_client: MakeClient) -> None:
    with pytest.raises(ProviderAuthError) as caught:
        await make_client(token="wrong").get_model("darkroom-sim", "pixel-forge")
    error = caught.value
    assert (error.status, error.code, error.title) == (401, "PROVIDER_AUTH", "Unauthenticated")
    assert "valid authentication token" in error.detail


async def test_no_token_sends_no_authorization_and_is_an_auth_error(stack: Stack, make_client: MakeClient) -> None:
    with pytest.raises(ProviderAuthError):
        await make_client(token=None).get_webhook_secret()
    assert "authorization" not in stack.proxy.requests[0].headers


async def test_unknown_things_are_not_found(client: ReplicateClient) -> None:
    for call in (
        client.get_prediction("nope"),
        client.cancel_prediction("nope"),
        client.get_model("darkroom-sim", "nope"),
        client.get_model_version("darkroom-sim", "pixel-forge", "0" * 64),
        client.get_collection("nope"),
        client.create_prediction(model="darkroom-sim/nope", input=SMALL),
    ):
        with pytest.raises(ProviderNotFoundError) as caught:
            await call
        error = caught.value
        assert (error.status, error.code, error.detail) == (404, "PROVIDER_NOT_FOUND", "Not found.")


async def test_validation_errors_list_invalid_fields(stack: Stack, client: ReplicateClient) -> None:
    with pytest.raises(ProviderValidationError) as caught:
        await client.create_prediction(model=IMAGES, input={"width": 100})
    error = caught.value
    assert (error.status, error.code, error.title) == (422, "PROVIDER_VALIDATION", "Input validation failed")
    assert InvalidField("required", "input", "prompt is required") in error.invalid_fields
    assert ("number_gte", "input.width") in {(f.type, f.field) for f in error.invalid_fields}
    assert "- input: prompt is required" in error.detail
    with pytest.raises(ProviderValidationError) as caught:
        await client.create_prediction(version="f" * 64, input=SMALL)
    assert [f.field for f in caught.value.invalid_fields] == ["version"]
    assert stack.predictions_created == 0


async def test_malformed_names_are_not_found_without_a_request(stack: Stack, client: ReplicateClient) -> None:
    for call in (
        client.get_prediction(""),
        client.get_prediction("../models"),
        client.get_model("owner", ".."),
        client.get_model("a/b", "c"),
        client.create_prediction(model="no-slash", input={}),
        client.create_prediction(version=" ", input={}),
    ):
        with pytest.raises(ProviderNotFoundError):
            await call
    assert stack.proxy.requests == []


# --- answered by the fault proxy -------------------------------------------------------------------


async def test_rate_limited_carries_the_reset_time(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, throttled(12, {"ratelimit-remaining": "0", "ratelimit-reset": "12"}))
    with pytest.raises(ProviderRateLimitedError) as caught:
        await make_client(max_retries=0).get_webhook_secret()
    error = caught.value
    assert (error.status, error.code, error.retry_after_seconds) == (429, "PROVIDER_RATE_LIMITED", 12.0)
    assert error.detail == "Request was throttled. Your rate limit resets in ~12s."


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors(stack: Stack, make_client: MakeClient, status: int) -> None:
    stack.proxy.script("GET", SECRET_PATH, problem(status, "Internal server error", "Something broke."))
    with pytest.raises(ProviderServerError) as caught:
        await make_client(max_retries=0).get_webhook_secret()
    error = caught.value
    assert (error.status, error.code, error.title, error.detail) == (
        status,
        "PROVIDER_SERVER_ERROR",
        "Internal server error",
        "Something broke.",
    )
    assert str(status) in str(error) and "Something broke." in str(error)


async def test_an_html_error_page_keeps_its_text(stack: Stack, make_client: MakeClient) -> None:
    page = b"<html><body>502 Bad Gateway</body></html>" + b" " * 2000
    stack.proxy.script("GET", SECRET_PATH, Answer(502, page, {"content-type": "text/html"}))
    with pytest.raises(ProviderServerError) as caught:
        await make_client(max_retries=0).get_webhook_secret()
    assert (caught.value.title, caught.value.detail) == ("Bad Gateway", "<html><body>502 Bad Gateway</body></html>")


async def test_connection_refused_is_unavailable(make_client: MakeClient) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}", max_retries=0)
    with pytest.raises(ProviderUnavailableError) as caught:
        await client.get_webhook_secret()
    assert (caught.value.status, caught.value.code) == (None, "PROVIDER_UNAVAILABLE")
    assert "ConnectError" in caught.value.detail


async def test_timeout_is_unavailable(stack: Stack, make_client: MakeClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, HANG)
    with pytest.raises(ProviderUnavailableError) as caught:
        await make_client(timeout_seconds=0.2, max_retries=0).get_webhook_secret()
    assert "ReadTimeout" in caught.value.detail


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, b"not json"),
        ok(["a", "list"]),
        ok({"id": "p1"}),  # no status
        ok({"id": "p1", "status": None}),
        ok({"id": 7, "status": "starting"}),
        Answer(204, None),
        Answer(302, None, {"location": "https://elsewhere.example/"}),
    ],
)
async def test_unreadable_success_is_a_bad_response(stack: Stack, client: ReplicateClient, answer: Answer) -> None:
    stack.proxy.script("GET", "/v1/predictions/p1", answer)
    with pytest.raises(ProviderBadResponseError) as caught:
        await client.get_prediction("p1")
    assert (caught.value.code, caught.value.status) == ("PROVIDER_BAD_RESPONSE", answer.status)
    assert stack.proxy.count("GET", "/v1/predictions/p1") == 1


async def test_a_status_darkroom_does_not_know_reads_as_a_running_prediction(
    stack: Stack, client: ReplicateClient
) -> None:
    stack.proxy.script("GET", "/v1/predictions/p1", ok({"id": "p1", "status": "exploded"}))
    prediction = await client.get_prediction("p1")
    assert (prediction.id, prediction.status, prediction.is_terminal) == ("p1", "exploded", False)


async def test_an_undecodable_body_is_a_bad_response(stack: Stack, client: ReplicateClient) -> None:
    stack.proxy.script("GET", SECRET_PATH, Answer(200, b"not gzip at all", {"content-encoding": "gzip"}))
    with pytest.raises(ProviderBadResponseError) as caught:
        await client.get_webhook_secret()
    assert "could not be decoded" in caught.value.detail
    assert stack.proxy.count("GET", SECRET_PATH) == 1


# --- reading answers, without a network ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (401, ProviderAuthError, "PROVIDER_AUTH"),
        (403, ProviderAuthError, "PROVIDER_AUTH"),
        (404, ProviderNotFoundError, "PROVIDER_NOT_FOUND"),
        (422, ProviderValidationError, "PROVIDER_VALIDATION"),
        (429, ProviderRateLimitedError, "PROVIDER_RATE_LIMITED"),
        (500, ProviderServerError, "PROVIDER_SERVER_ERROR"),
        (599, ProviderServerError, "PROVIDER_SERVER_ERROR"),
        (400, ProviderError, "PROVIDER_ERROR"),
        (409, ProviderError, "PROVIDER_ERROR"),
    ],
)
def test_status_table(status: int, cls: type[ProviderError], code: str) -> None:
    error = error_from_answer(status, {}, b'{"title": "Some title", "detail": "Some detail"}')
    assert type(error) is cls
    assert (error.status, error.title, error.detail, error.code) == (status, "Some title", "Some detail", code)


def test_plain_detail_body_and_malformed_invalid_fields() -> None:
    error = error_from_answer(401, {}, b'{"detail": "Invalid token."}')
    assert (error.title, error.detail) == ("Unauthorized", "Invalid token.")
    body = b'{"title": "t", "invalid_fields": [{"type": "required", "field": "input"}, "not an object"]}'
    error = error_from_answer(422, {}, body)
    assert isinstance(error, ProviderValidationError)
    assert error.invalid_fields == [InvalidField("required", "input", "")]


def test_status_in_the_answer_wins_over_the_body() -> None:
    error = error_from_answer(404, {}, b'{"title": "Not found", "detail": "Not found.", "status": 500}')
    assert isinstance(error, ProviderNotFoundError) and error.status == 404


def test_non_string_detail_is_kept_as_json() -> None:
    error = error_from_answer(400, {}, b'{"detail": [{"loc": ["body"], "msg": "bad"}]}')
    assert (error.title, error.detail) == ("Bad Request", '[{"loc": ["body"], "msg": "bad"}]')


def test_an_error_body_is_kept_only_in_part() -> None:
    """A provider's error text reaches callers and logs: a megabyte of it, or 100,000 invalid fields, is cut."""
    field = {"type": "invalid_type", "field": "input." + "w" * 10_000, "description": "d" * 10_000}
    body = {"title": "T" * 10_000, "detail": "x" * 1_000_000, "invalid_fields": [field] * 100_000}
    error = error_from_answer(422, {}, json.dumps(body).encode())
    assert isinstance(error, ProviderValidationError)
    assert len(error.title) <= 200 and len(error.detail) <= 1_000 and error.detail.endswith("...")
    assert len(error.invalid_fields) == 50
    assert all(len(text) <= 300 for item in error.invalid_fields for text in (item.field, item.description))


NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def test_parse_retry_after() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 2.5 ") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=20), usegmt=True), now=NOW) == 20.0
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=20), usegmt=True), now=NOW) == 0.0
    for unreadable in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(unreadable) is None


def test_parse_ratelimit_reset() -> None:
    assert parse_ratelimit_reset("30") == 30.0
    assert parse_ratelimit_reset(str(int(NOW.timestamp()) + 45), now=NOW) == 45.0
    assert parse_ratelimit_reset("x") is None
    assert parse_ratelimit_reset(None) is None


def test_parse_resets_in() -> None:
    assert parse_resets_in("Request was throttled. Your rate limit resets in ~30s.") == 30.0
    assert parse_resets_in("Your rate limit resets in 1.5 s") == 1.5
    assert parse_resets_in("Request was throttled.") is None


def test_which_rate_limit_hint_wins() -> None:
    throttled_text = b'{"detail": "Request was throttled. Your rate limit resets in ~50s."}'
    both = {"Retry-After": "3", "ratelimit-reset": "40"}
    assert error_from_answer(429, both, throttled_text).retry_after_seconds == 3
    assert error_from_answer(429, {"ratelimit-reset": "40"}, throttled_text).retry_after_seconds == 40
    assert error_from_answer(429, {}, throttled_text).retry_after_seconds == 50
    assert error_from_answer(429, {}, b'{"detail": "Slow down."}').retry_after_seconds is None
    # ratelimit-reset describes the rate window, not a failure of another kind.
    assert error_from_answer(503, {"ratelimit-reset": "40"}, b"{}").retry_after_seconds is None
    assert error_from_answer(503, {"Retry-After": "2"}, b"{}").retry_after_seconds == 2
