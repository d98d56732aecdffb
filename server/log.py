"""Structured logging through the standard `logging` module.

Readable text by default, one JSON object a line with LOG_FORMAT=json. The request id and generation id
in flight are carried in context variables and stamped on every record, so a line can always be traced
back to the request or job that caused it; with tracing on (server.telemetry), so is the trace id. Pass
further fields with ``extra={...}``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from server.telemetry import current_trace_id

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
generation_id_var: ContextVar[str | None] = ContextVar("generation_id", default=None)


class ContextFilter(logging.Filter):
    """Stamp the ids of the current request and generation, and the trace when tracing is on, on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # An id passed explicitly with `extra=` wins over the one in context.
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "generation_id", None) is None:
            record.generation_id = generation_id_var.get()
        if getattr(record, "trace_id", None) is None:
            record.trace_id = current_trace_id()
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [
            f"{key}={value}"
            for key in ("request_id", "generation_id", "trace_id")
            if (value := getattr(record, key, None))
        ]
        return f"{line} [{' '.join(context)}]" if context else line


@contextmanager
def generation_context(generation_id: str) -> Iterator[None]:
    token = generation_id_var.set(generation_id)
    try:
        yield
    finally:
        generation_id_var.reset(token)


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every record to `stream` (default stderr), as text or JSON lines, stamped with the context ids."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(generation_id)s %(trace_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates what our request logging says; keep its errors.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
