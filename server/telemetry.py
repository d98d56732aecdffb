"""Traces over OTLP/HTTP, when the standard OpenTelemetry variables ask for them; nothing at all otherwise.

`setup()` installs the SDK's tracer provider, a batch span processor with the OTLP/HTTP (protobuf) exporter,
and the httpx and asyncpg instrumentations, but only when OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and OTEL_SDK_DISABLED is not true): every other OTEL_* variable
(service name, resource attributes, headers, timeout, compression, sampler, the batch processor's delays and
sizes) is read by the SDK itself. Unset, nothing is imported beyond the API, nothing is exported, and every
helper below returns at its first line.

A generation's spans carry `darkroom.generation_id`, `darkroom.prediction_id` and `darkroom.model`. The
traceparent of the span that started a job is kept on its row (`generations.trace_context`), so the span
that applies a later update, in whichever process, links to it; an event's payload carries the traceparent
of the span that appended it, so the tailer's read and the fan-out link to that.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import TraceState
    from opentelemetry.util.types import Attributes

logger = logging.getLogger(__name__)

GENERATION_ID = "darkroom.generation_id"
PREDICTION_ID = "darkroom.prediction_id"
MODEL = "darkroom.model"
PROVIDER = "darkroom.provider"

# The most links one span takes from the events it handles (a tailer's batch may hold hundreds).
MAX_LINKS = 32

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer = trace.NoOpTracer()


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set and the SDK is not disabled."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    """Whether this process exports traces (`setup()` installed them)."""
    return _provider is not None


def setup() -> bool:
    """Install tracing if the environment asks for it (once per process); whether it is on."""
    global _provider, _tracer
    if _provider is not None:
        return True
    if not wanted():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, Any] = {}
    # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins; the SDK's default would be
    # "unknown_service".
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes[SERVICE_NAME] = "darkroom"
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.sampler = _quiet_database(provider.sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("darkroom")
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    # Statements only, never their parameters (capture_parameters stays off).
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    logger.info("traces are exported over OTLP/HTTP")
    return True


def flush(timeout_millis: int = 5000) -> None:
    """Export what is buffered (at shutdown: the last spans of a process that stops)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


def shutdown() -> None:
    """Flush and stop the exporter; tracing stays installed but exports nothing more."""
    if _provider is not None:
        _provider.shutdown()


def _quiet_database(inner: Sampler) -> Sampler:
    """`inner`, except that a database statement outside any traced work is dropped: the tailer's, the
    poller's and the pool's periodic queries would otherwise each be a trace of their own."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class QuietDatabase(Sampler):
        def should_sample(
            self,
            parent_context: otel_context.Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            outside = not trace.get_current_span(parent_context).is_recording()
            if attributes and "db.system" in attributes and outside:
                return SamplingResult(Decision.DROP)
            return inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"QuietDatabase{{{inner.get_description()}}}"

    return QuietDatabase()


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    links: Sequence[Link] = (),
    root: bool = False,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span of the global tracer, current inside the block; `root` starts a trace of its own (for work
    of a long-lived task, which would otherwise hang under whatever span created the task). A no-op
    when tracing is off."""
    if _provider is None:
        yield INVALID_SPAN
        return
    parent = otel_context.Context() if root else None
    with _tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=_clean(attributes), links=links
    ) as current:
        yield current


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return {key: value for key, value in attributes.items() if value is not None} if attributes else None


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, or None (tracing off, or no span)."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def current_trace_id() -> str | None:
    """The current trace's id as 32 hex digits, or None."""
    if _provider is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def link_to(traceparent: str | None) -> Link | None:
    """A link to the span a traceparent names, or None when there is none (or it is malformed)."""
    if _provider is None or not traceparent:
        return None
    context = trace.get_current_span(_propagator.extract({"traceparent": traceparent})).get_span_context()
    return Link(context) if context.is_valid else None


def links_to(traceparents: Iterable[str | None]) -> list[Link]:
    """Links to each distinct span named, at most MAX_LINKS."""
    if _provider is None:
        return []
    links: list[Link] = []
    seen: set[str] = set()
    for traceparent in traceparents:
        if traceparent and traceparent not in seen and (link := link_to(traceparent)) is not None:
            seen.add(traceparent)
            links.append(link)
            if len(links) == MAX_LINKS:
                break
    return links


def concerns(generation: Any) -> None:
    """Mark the current span as work on `generation` (its ids and model), linked to the span that started
    it when that was another trace."""
    if _provider is None:
        return
    current = trace.get_current_span()
    if not current.is_recording():
        return
    current.set_attributes(
        _clean(
            {
                GENERATION_ID: str(generation.id),
                PREDICTION_ID: generation.provider_id,
                MODEL: generation.model_ref,
                PROVIDER: generation.provider,
            }
        )
        or {}
    )
    link = link_to(getattr(generation, "trace_context", None))
    if link is not None and link.context.trace_id != current.get_span_context().trace_id:
        current.add_link(link.context)


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the current span (None values left out); a no-op when tracing is off."""
    if _provider is None:
        return
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_clean(attributes) or {})


def litestar_plugins() -> list[Any]:
    """Litestar's OpenTelemetry plugin (a server span per HTTP request) when tracing is on, else nothing.

    WebSockets get no span (a connection lives for hours; the fan-out spans each event instead), nor do
    each request's ASGI send and receive; probes and scrapes are left out."""
    if _provider is None:
        return []
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    config = OpenTelemetryConfig(
        tracer_provider=_provider,
        scopes={"http"},  # type: ignore[arg-type]
        exclude=["^/healthz$", "^/readyz$", "^/metrics$"],
        exclude_spans=["receive", "send"],
    )
    return [OpenTelemetryPlugin(config)]


def clock() -> int:
    """A start time for `record` (0 when tracing is off)."""
    return time.time_ns() if _provider is not None else 0


def record(name: str, started: int, attributes: Mapping[str, Any] | None = None, *, links: Sequence[Link] = ()) -> None:
    """A finished root span, from `started` (see `clock`) to now: for work worth a span only once its
    outcome is known (a read of the log that found events, not the idle ones)."""
    if _provider is None:
        return
    _tracer.start_span(
        name, context=otel_context.Context(), attributes=_clean(attributes), links=links, start_time=started
    ).end()
