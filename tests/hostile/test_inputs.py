"""Hostile inputs: every input a client sends is read at a bounded cost, and a secret input stays secret.

Each case is sent as an attacker sends it, over real GraphQL (raw JSON bodies where the attack is a JSON
spelling: NaN, a 5,000-digit number, 10,000 brackets), on SQLite and on Postgres. A refused input is a
userError at the offending field path (or a typed 400 when the body itself cannot be read), and then
no generation exists and the provider was asked for nothing.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.quoting import quote_value
from server.services.catalogue.numbers import NumberProblem, NumberRefused, read_integer, read_number
from server.services.catalogue.validation import check_input
from server.services.errors import ServiceError
from server.settings import InputsSettings
from tests.catalogue.flows import (
    ANIMATE,
    MOTION_SKETCH,
    PIXEL_FORGE,
    STILL_MOTION,
    generation_count,
    ready_image,
)
from tests.support.darkroom import Darkroom
from tests.support.flows import START, start_payload, wait_settled
from tests.support.graphql import data, ws_connect

LIMITS = InputsSettings()
SECRET = "sk-live-0123456789abcdefSECRET"
FEED = "subscription($after: String) { generationEvents(after: $after) { type generation { id status input } } }"
CURSOR = "query { feedCursor }"


async def post_raw(darkroom: Darkroom, document: str, variables_json: str) -> Any:
    """POST a GraphQL request whose variables are given as JSON text, exactly as written."""
    body = f'{{"query": {json.dumps(document)}, "variables": {variables_json}}}'
    return await darkroom.http.post("/graphql", content=body, headers={"content-type": "application/json"})


async def start_raw(darkroom: Darkroom, model: str, input_json: str) -> dict[str, Any]:
    response = await post_raw(darkroom, START, f'{{"model": {json.dumps(model)}, "input": {input_json}}}')
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = data(response.json())["startGeneration"]
    return payload


async def assert_nothing_started(darkroom: Darkroom) -> None:
    assert await generation_count(darkroom) == 0
    assert darkroom.simulator.stats.predictions_created == 0


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


OVER_SIZE = "{" + ", ".join(f'"x{index}": "{"y" * 9_000}"' for index in range(60)) + "}"

REFUSED = [
    ('{"prompt": "a", "num_outputs": "1e300000"}', ["input", "num_outputs"], "OUT_OF_RANGE"),
    ('{"prompt": "a", "num_outputs": "-1e300000"}', ["input", "num_outputs"], "OUT_OF_RANGE"),
    ('{"prompt": "a", "guidance_scale": "1e300000"}', ["input", "guidance_scale"], "OUT_OF_RANGE"),
    ('{"prompt": "a", "num_outputs": 1e300000}', ["input", "num_outputs"], "INVALID_TYPE"),
    ('{"prompt": "a", "guidance_scale": 1e300000}', ["input", "guidance_scale"], "INVALID_TYPE"),
    ('{"prompt": "a", "num_outputs": "' + "9" * 5_000 + '"}', ["input", "num_outputs"], "OUT_OF_RANGE"),
    ('{"prompt": "a", "seed": ' + "9" * 4_000 + "}", ["input", "seed"], "OUT_OF_RANGE"),
    ('{"prompt": "a", "guidance_scale": NaN}', ["input", "guidance_scale"], "INVALID_TYPE"),
    ('{"prompt": "a", "guidance_scale": Infinity}', ["input", "guidance_scale"], "INVALID_TYPE"),
    ('{"prompt": "a", "negative_prompt": -Infinity}', ["input", "negative_prompt"], "INVALID_TYPE"),
    ('{"prompt": "a", "guidance_scale": "NaN"}', ["input", "guidance_scale"], "INVALID_TYPE"),
    ('{"prompt": "a", "num_outputs": "Infinity"}', ["input", "num_outputs"], "INVALID_TYPE"),
    ('{"prompt": "' + "a" * 900_000 + '"}', ["input", "prompt"], "INVALID_LENGTH"),
    ('{"prompt": "a", "tags": [' + ",".join(["0"] * 100_000) + "]}", ["input", "tags"], "INVALID_LENGTH"),
    ('{"prompt": "a", "x": ' + nested(500) + "}", ["input", "x", *["0"] * 15], "TOO_DEEP"),
    ('{"prompt": "a\\ud800"}', ["input", "prompt"], "INVALID_VALUE"),
    ('{"prompt": "a", "\\udfff": 1}', ["input", "\udfff"], "INVALID_VALUE"),
    ('{"prompt": "a", "' + "k" * 10_001 + '": 1}', ["input"], "INVALID_LENGTH"),
    (OVER_SIZE, ["input"], "INPUT_TOO_LARGE"),
]


@pytest.mark.parametrize(("input_json", "path", "code"), REFUSED, ids=lambda value: str(value)[:40])
async def test_an_absurd_input_is_a_user_error_and_nothing_starts(
    darkroom: Darkroom, input_json: str, path: list[str], code: str
) -> None:
    payload = await start_raw(darkroom, PIXEL_FORGE, input_json)
    assert payload["generation"] is None
    assert [(error["field"], error["code"]) for error in payload["userErrors"]] == [(path, code)]
    assert len(payload["userErrors"][0]["message"]) < 200
    await assert_nothing_started(darkroom)


async def test_a_message_names_a_long_path_cut_short(darkroom: Darkroom) -> None:
    key = "k" * 9_000
    deep: dict[str, Any] = {key: 1}
    for _ in range(20):
        deep = {key: deep}
    payload = await start_payload(darkroom, PIXEL_FORGE, {"prompt": "a", "x": deep})
    (error,) = payload["userErrors"]
    assert (error["field"][:3], error["code"]) == (["input", "x", key], "TOO_DEEP")
    assert len(error["message"]) < 200
    await assert_nothing_started(darkroom)


@pytest.mark.parametrize(
    "model",
    [
        "o/" + "m" * 100_000,
        "o" * 100_000 + " /m",
        "o/m:" + "v" * 100_000,
        # Past what a column holds (a name or version of 100 characters), or with a NUL PostgreSQL refuses.
        "o/" + "m" * 101,
        PIXEL_FORGE + ":" + "a" * 101,
        "o\x00wner/model",
        PIXEL_FORGE + ":ab\x00cd",
    ],
)
async def test_an_absurd_model_reference_is_refused_without_asking_the_provider(darkroom: Darkroom, model: str) -> None:
    payload = await start_payload(darkroom, model, {"prompt": "a"})
    (error,) = payload["userErrors"]
    assert (error["field"], error["code"]) == (["model"], "INVALID_MODEL_REF")
    assert len(error["message"]) < 200
    await assert_nothing_started(darkroom)


@pytest.mark.parametrize(
    "variables_json",
    [
        # An integer Python will not read (more than 4,300 digits), and a nest deeper than the JSON reader goes.
        '{"model": "' + PIXEL_FORGE + '", "input": {"prompt": "a", "num_outputs": ' + "9" * 5_000 + "}}",
        '{"model": "' + PIXEL_FORGE + '", "input": {"prompt": "a", "x": ' + nested(10_000) + "}}",
    ],
    ids=["5000-digit-number", "10000-deep"],
)
async def test_a_body_python_cannot_read_is_a_bad_request(darkroom: Darkroom, variables_json: str) -> None:
    response = await post_raw(darkroom, START, variables_json)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    await assert_nothing_started(darkroom)


async def test_animate_image_holds_its_input_to_the_same_limits(darkroom: Darkroom) -> None:
    image = await ready_image(darkroom)
    before = darkroom.simulator.stats.predictions_created
    response = await post_raw(
        darkroom,
        ANIMATE,
        json.dumps({"mediaId": image["id"], "model": STILL_MOTION, "input": {"prompt": "a" * 20_000, "duration": 0}}),
    )
    payload = data(response.json())["animateImage"]
    assert payload["generation"] is None
    assert [(error["field"], error["code"]) for error in payload["userErrors"]] == [
        (["input", "prompt"], "INVALID_LENGTH")
    ]
    huge = await post_raw(
        darkroom, ANIMATE, f'{{"mediaId": "{image["id"]}", "input": {{"duration": "{"9" * 5_000}"}}}}'
    )
    assert [error["code"] for error in data(huge.json())["animateImage"]["userErrors"]] == ["OUT_OF_RANGE"]
    assert await generation_count(darkroom) == 1  # the image's own
    assert darkroom.simulator.stats.predictions_created == before


async def test_a_file_input_may_be_a_data_uri_longer_than_any_text(darkroom: Darkroom) -> None:
    picture = base64.b64encode(bytes(range(256)) * 200).decode()  # 68 KB of base64
    payload = await start_payload(darkroom, STILL_MOTION, {"image": f"data:image/png;base64,{picture}"})
    assert len(picture) > LIMITS.max_string_chars
    assert payload["userErrors"] == []


async def test_a_range_header_with_a_huge_position_is_ignored(darkroom: Darkroom) -> None:
    image = await ready_image(darkroom)
    whole = await darkroom.http.get(image["url"])
    for header in (f"bytes={'9' * 5_000}-", f"bytes=0-{'9' * 5_000}", f"bytes=-{'9' * 5_000}"):
        response = await darkroom.http.get(image["url"], headers={"Range": header})
        assert (response.status_code, response.content) == (200, whole.content)


# --- secrets ----------------------------------------------------------------------------------------------


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record: its message and every field given to it."""
    return "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)


async def test_a_secret_input_is_sent_to_the_provider_only(
    darkroom: Darkroom, caplog: pytest.LogCaptureFixture
) -> None:
    cursor = data(await darkroom.query(CURSOR))["feedCursor"]
    with caplog.at_level(logging.DEBUG):
        payload = await start_payload(darkroom, MOTION_SKETCH, {"prompt": "waves", "api_key": SECRET})
        assert payload["userErrors"] == []
        generation = payload["generation"]
        assert generation["input"]["api_key"] == "**********"
        done = await wait_settled(darkroom, generation["id"])
        assert done["status"] == "SUCCEEDED" and done["input"]["api_key"] == "**********"
        async with ws_connect(darkroom.base_url) as client:
            feed = client.subscribe(FEED, {"after": cursor})
            events = []
            async for message in feed:
                events.append(data(message)["generationEvents"])
                if events[-1]["generation"]["status"] == "SUCCEEDED":
                    break
            await feed.aclose()
    (prediction,) = darkroom.simulator.engine.predictions.values()
    assert prediction.input["api_key"] == SECRET
    assert events and all(event["generation"]["input"]["api_key"] == "**********" for event in events)
    assert SECRET not in json.dumps(events) + json.dumps(done)
    assert SECRET not in logged_text(caplog)


@pytest.mark.parametrize(
    "api_key", [[SECRET], {"key": SECRET}, SECRET * 1_000], ids=["a-list", "an-object", "too-long"]
)
async def test_a_refused_secret_is_never_quoted(
    darkroom: Darkroom, caplog: pytest.LogCaptureFixture, api_key: Any
) -> None:
    with caplog.at_level(logging.DEBUG):
        payload = await start_payload(darkroom, MOTION_SKETCH, {"prompt": "waves", "api_key": api_key, "fps": 99})
    assert payload["generation"] is None
    assert ["input", "api_key"] in [error["field"] for error in payload["userErrors"]]
    assert SECRET not in json.dumps(payload)
    assert SECRET not in logged_text(caplog)
    assert "mutation refused" in logged_text(caplog)
    await assert_nothing_started(darkroom)


def test_a_schema_rule_on_a_secret_never_quotes_it() -> None:
    schema = {
        "type": "object",
        "properties": {
            "token": {"type": "string", "format": "password", "pattern": "^r8_", "maxLength": 40},
            "note": {"type": "string", "pattern": "^n"},
        },
    }
    with pytest.raises(ServiceError) as refused:
        check_input(schema, {"token": SECRET, "note": "x" * 1_000})
    messages = [error.message for error in refused.value.errors]
    assert [error.code for error in refused.value.errors] == ["INVALID_FORMAT", "INVALID_FORMAT"]
    assert SECRET not in " ".join(messages)
    assert "xxxx" in messages[1] and len(messages[1]) < 200  # a value that is no secret is quoted, cut short


# --- reading numbers and quoting values -----------------------------------------------------------------

DIGITS = LIMITS.max_number_digits
FUZZ = settings(derandomize=True, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    st.text(alphabet="0123456789+-.eE _xInfNa", max_size=60)
    | st.from_regex(r"[+-]?\d{0,80}(\.\d{0,80})?([eE][+-]?\d{1,9})?")
)
def test_reading_any_text_gives_a_bounded_number_or_a_refusal(text: str) -> None:
    try:
        whole = read_integer(text, DIGITS)
    except NumberRefused:
        pass
    else:
        assert type(whole) is int and abs(whole) < 10**DIGITS
    try:
        number = read_number(text, DIGITS)
    except NumberRefused:
        pass
    else:
        assert type(number) is float and math.isfinite(number)


@FUZZ
@given(st.integers(min_value=-(10**DIGITS) + 1, max_value=10**DIGITS - 1))
def test_a_whole_number_within_the_limit_reads_back_in_every_spelling(value: int) -> None:
    assert read_integer(value, DIGITS) == value
    assert read_integer(f" {value} ", DIGITS) == value
    if abs(value) < 2**53:  # a float holds it exactly
        assert read_integer(float(value), DIGITS) == value
    assert read_number(value, DIGITS) == value


@FUZZ
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_finite_float_reads_back_from_its_text(value: float) -> None:
    assert read_number(repr(value), DIGITS) == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1e300000", NumberProblem.TOO_LARGE),
        ("1e99999999999999999999", NumberProblem.TOO_LARGE),
        ("9" * 5_000, NumberProblem.TOO_LARGE),
        (10**60, NumberProblem.TOO_LARGE),
        (1e300, NumberProblem.TOO_LARGE),
        (math.nan, NumberProblem.NOT_FINITE),
        (math.inf, NumberProblem.NOT_FINITE),
        ("NaN", NumberProblem.NOT_A_NUMBER),
        ("-Infinity", NumberProblem.NOT_A_NUMBER),
        ("1_000", NumberProblem.NOT_A_NUMBER),
        ("١٢", NumberProblem.NOT_A_NUMBER),
        ("1.5", NumberProblem.NOT_WHOLE),
        ("1e-300000", NumberProblem.TOO_LARGE),
        (True, NumberProblem.NOT_A_NUMBER),
    ],
)
def test_absurd_whole_numbers_are_refused_before_they_are_converted(value: Any, problem: NumberProblem) -> None:
    with pytest.raises(NumberRefused) as refused:
        read_integer(value, DIGITS)
    assert refused.value.problem is problem


@pytest.mark.parametrize(
    "value",
    ["a" * 900_000, list(range(100_000)), 10**5_000, {"k" * 1_000: [[[[[1]]]]]}, json.loads(nested(900)), math.nan],
    ids=["long-text", "long-list", "huge-int", "nested-object", "deep-list", "nan"],
)
def test_a_quoted_value_is_cut_short(value: Any) -> None:
    assert len(quote_value(value)) <= 80
    assert len(quote_value(value, limit=20)) <= 20
