"""The provider's refusals at creation, turned into userErrors with the codes input validation uses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.provider.errors import (
    InvalidField,
    ProviderError,
    ProviderRateLimitedError,
    ProviderServerError,
    ProviderUnavailableError,
    ProviderValidationError,
    error_from_answer,
)
from server.provider.replicate.refusals import refusals_for
from tests.catalogue.flows import SNAP_STILL, STILL_MOTION, animate, generation_count, ready_image
from tests.support.darkroom import Darkroom
from tests.support.flows import start_payload


@pytest.mark.parametrize(
    ("invalid", "field", "code"),
    [
        (InvalidField("required", "input", "prompt is required"), ["input", "prompt"], "REQUIRED"),
        (
            InvalidField("additional_property_not_allowed", "input", "Additional property promt is not allowed"),
            ["input", "promt"],
            "UNKNOWN_FIELD",
        ),
        (
            InvalidField("number_lte", "input.num_outputs", "Must be less than or equal to 4"),
            ["input", "num_outputs"],
            "OUT_OF_RANGE",
        ),
        (
            InvalidField("number_gte", "input.steps", "Must be greater than or equal to 1"),
            ["input", "steps"],
            "OUT_OF_RANGE",
        ),
        (
            InvalidField("enum", "input.scheduler", "input.scheduler must be one of ..."),
            ["input", "scheduler"],
            "NOT_IN_ENUM",
        ),
        (
            InvalidField("invalid_type", "input.seed", "Invalid type. Expected: integer, given: string"),
            ["input", "seed"],
            "INVALID_TYPE",
        ),
        (
            InvalidField("format", "input.image", "Does not match format 'uri'"),
            ["input", "image"],
            "INVALID_URI",
        ),
        (
            InvalidField("multiple_of", "input.width", "Must be a multiple of 64"),
            ["input", "width"],
            "INVALID_VALUE",
        ),
        (
            InvalidField("string_gte", "input.prompt", "String length must be ..."),
            ["input", "prompt"],
            "INVALID_LENGTH",
        ),
        (
            InvalidField("invalid_version", "version", "Invalid version or not permitted"),
            ["model"],
            "INVALID_VERSION",
        ),
        (InvalidField("something_new", "input.x", "Odd"), ["input", "x"], "PROVIDER_VALIDATION"),
        (InvalidField("required", "(root)", "version is required"), None, "REQUIRED"),
    ],
)
def test_each_invalid_field_becomes_a_user_error(invalid: InvalidField, field: list[str] | None, code: str) -> None:
    error = ProviderValidationError("Input validation failed", "...", invalid_fields=[invalid])
    (converted,) = refusals_for(error)
    assert (converted.field, converted.code) == (field, code)
    assert invalid.description in converted.message and converted.message.startswith("the provider refused")


def test_every_invalid_field_is_kept() -> None:
    error = ProviderValidationError(
        "Input validation failed",
        invalid_fields=[
            InvalidField("required", "input", "prompt is required"),
            InvalidField("number_lte", "input.num_outputs", "Must be less than or equal to 4"),
        ],
    )
    assert [e.field for e in refusals_for(error)] == [
        ["input", "prompt"],
        ["input", "num_outputs"],
    ]


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (
            ProviderRateLimitedError("Too Many Requests", "throttled", status=429, retry_after_seconds=30),
            "RATE_LIMITED",
            "30 s",
        ),
        (
            ProviderServerError("Internal Server Error", "boom", status=503),
            "PROVIDER_SERVER_ERROR",
            "try again later",
        ),
        (
            ProviderUnavailableError("Provider unavailable", "ConnectError"),
            "PROVIDER_UNAVAILABLE",
            "try again later",
        ),
        (
            ProviderValidationError("Input validation failed", "- input: bad"),
            "PROVIDER_VALIDATION",
            "- input: bad",
        ),
        (ProviderError("Payment Required", "add a card", status=402), "PROVIDER_ERROR", "add a card"),
    ],
)
def test_other_refusals_are_one_user_error(error: ProviderError, code: str, words: str) -> None:
    (converted,) = refusals_for(error)
    assert converted.code == code and words in converted.message and converted.field is None
    assert converted.retry_after_seconds == (30 if code == "RATE_LIMITED" else None)


# A 429 is no refusal of a start: the generation waits QUEUED (tests/pipeline/test_queue.py).
REFUSALS = [
    pytest.param(
        503,
        {},
        {"title": "Service Unavailable", "detail": "the service is overloaded", "status": 503},
        "PROVIDER_SERVER_ERROR",
        id="503",
    ),
]


def refuse_creation(
    darkroom: Darkroom, monkeypatch: pytest.MonkeyPatch, status: int, headers: dict[str, str], body: dict[str, Any]
) -> None:
    """Make the provider answer every prediction creation with `status` (what the client raises after retries)."""

    async def refused(**_: Any) -> Any:
        raise error_from_answer(status, headers, json.dumps(body).encode())

    monkeypatch.setattr(darkroom.replicate.client, "create_prediction", refused)


@pytest.mark.parametrize(("status", "headers", "body", "code"), REFUSALS)
async def test_a_refused_start_is_a_user_error_and_leaves_no_generation(
    darkroom: Darkroom,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    headers: dict[str, str],
    body: dict[str, Any],
    code: str,
) -> None:
    refuse_creation(darkroom, monkeypatch, status, headers, body)
    payload = await start_payload(darkroom, SNAP_STILL, {"prompt": "a fox"})
    assert payload["generation"] is None
    assert [(error["field"], error["code"]) for error in payload["userErrors"]] == [(None, code)]
    assert payload["userErrors"][0]["retryAfterSeconds"] is None
    assert await generation_count(darkroom) == 0


@pytest.mark.parametrize(("status", "headers", "body", "code"), REFUSALS)
async def test_a_refused_animation_is_a_user_error_and_leaves_no_generation(
    darkroom: Darkroom,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    headers: dict[str, str],
    body: dict[str, Any],
    code: str,
) -> None:
    image = await ready_image(darkroom)
    before = await generation_count(darkroom)
    refuse_creation(darkroom, monkeypatch, status, headers, body)
    payload = await animate(darkroom, image["id"], STILL_MOTION, {"prompt": "drift"})
    assert payload["generation"] is None
    assert [(error["field"], error["code"]) for error in payload["userErrors"]] == [(None, code)]
    assert await generation_count(darkroom) == before
