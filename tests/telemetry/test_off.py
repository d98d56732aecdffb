"""With no OTEL_* variables, tracing costs nothing: no provider, no exporter thread, no instrumentation."""

from __future__ import annotations

import threading

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from server import telemetry
from tests.support.darkroom import Darkroom
from tests.support.flows import START, start_generation, wait_settled


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "darkroom"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_traces_are_wanted_only_with_an_endpoint_and_not_disabled(environ: dict[str, str], wanted: bool) -> None:
    assert telemetry.wanted(environ) is wanted


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_without_otel_variables_nothing_is_installed_or_exported(darkroom: Darkroom) -> None:
    assert not telemetry.wanted()
    generation = await start_generation(darkroom)
    await wait_settled(darkroom, generation["id"])
    response = await darkroom.query(START, {"model": "darkroom-sim/pixel-forge", "input": {"prompt": "p"}})

    assert "traceId" not in (response.get("extensions") or {})
    assert not telemetry.enabled()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not HTTPXClientInstrumentor().is_instrumented_by_opentelemetry
    assert not AsyncPGInstrumentor().is_instrumented_by_opentelemetry
    assert not [t for t in threading.enumerate() if "span" in t.name.lower() or "otel" in t.name.lower()]
    assert telemetry.current_traceparent() is None and telemetry.current_trace_id() is None
    with telemetry.span("nothing") as span:
        assert not span.is_recording()
