"""Typed errors of a provider's client, how an HTTP error answer is read into them (each adapter adds how
its provider words a refusal's reasons), and what a failure tells a caller when the provider says
nothing more specific (`general_refusal`).

Every failure of a call to the provider surfaces as a `ProviderError` subclass, never as an httpx
exception, so callers handle one hierarchy. Each error has a stable machine `code`; `status` is the
HTTP status (None when no answer came back); `title` and `detail` come from the problem+json body
(``{"title", "detail", "status"}``) or a plain ``{"detail": ...}`` body, falling back to the reason
phrase and the raw text.

| status          | class                       | code                    |
|-----------------|-----------------------------|-------------------------|
| 401, 403        | ProviderAuthError           | PROVIDER_AUTH           |
| 404             | ProviderNotFoundError       | PROVIDER_NOT_FOUND      |
| 422             | ProviderValidationError     | PROVIDER_VALIDATION     |
| 429             | ProviderRateLimitedError    | PROVIDER_RATE_LIMITED   |
| 5xx             | ProviderServerError         | PROVIDER_SERVER_ERROR   |
| no answer       | ProviderUnavailableError    | PROVIDER_UNAVAILABLE    |
| unreadable 2xx  | ProviderBadResponseError    | PROVIDER_BAD_RESPONSE   |
| any other 4xx   | ProviderError (the base)    | PROVIDER_ERROR          |
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from server.provider.types import Refusal
from server.quoting import cut_text

# Longest raw (non-JSON) error body kept as `detail`: enough to recognise an HTML error page.
_MAX_RAW_DETAIL = 300
# What is kept of an error body's own words: a provider's answer is quoted to callers and logs, so its
# size is the provider's choice only up to these.
_MAX_TITLE = 200
_MAX_DETAIL = 1_000
_MAX_FIELD_TEXT = 300
MAX_INVALID_FIELDS = 50
# A ratelimit-reset above this is a unix time, not a number of seconds (some gateways send those).
_EPOCH_THRESHOLD = 1_000_000_000


@dataclass(frozen=True, slots=True)
class InvalidField:
    """One reason a provider rejected a request, in its own words.

    `type` is the provider's kind of fault (Replicate's gojsonschema "required", fal's pydantic
    "missing"...), `field` the dotted path of the offending value ("input.width", "version"),
    `description` the human sentence.
    """

    type: str
    field: str
    description: str

    @classmethod
    def of(cls, type: Any, field: Any, description: Any) -> InvalidField:
        """One from a provider's values, whatever they are, each cut to a length fit for callers and logs."""
        return cls(*(cut_text(_text(value), _MAX_FIELD_TEXT) for value in (type, field, description)))


# How a provider words the reasons of a refusal (a 422's body, as JSON) and the wait a 429's text names.
ReasonsReader = Callable[[Any], list[InvalidField]]
WaitReader = Callable[[str], float | None]


class ProviderError(Exception):
    """A call to the provider failed. Subclasses say how; `code` is stable for machines.

    `retry_after_seconds` is the provider's own hint of when to try again (Retry-After and, for 429,
    ratelimit-reset or the "resets in ~Ns" text); None when it gave none.
    """

    code: ClassVar[str] = "PROVIDER_ERROR"

    def __init__(
        self,
        title: str,
        detail: str = "",
        *,
        status: int | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        self.title = title
        self.detail = detail
        self.status = status
        self.retry_after_seconds = retry_after_seconds
        super().__init__(self._message())

    def _message(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        return f"{prefix}{self.title}: {self.detail}" if self.detail else f"{prefix}{self.title}"


class ProviderAuthError(ProviderError):
    """401 or 403: the token is missing, wrong, or not allowed to do this."""

    code = "PROVIDER_AUTH"


class ProviderNotFoundError(ProviderError):
    """404: no such prediction, model, version, collection or file (or a name that cannot be one)."""

    code = "PROVIDER_NOT_FOUND"


class ProviderValidationError(ProviderError):
    """422: the request was refused; `invalid_fields` lists each reason (possibly empty)."""

    code = "PROVIDER_VALIDATION"

    def __init__(
        self,
        title: str,
        detail: str = "",
        *,
        status: int | None = 422,
        retry_after_seconds: float | None = None,
        invalid_fields: list[InvalidField] | None = None,
    ) -> None:
        self.invalid_fields: list[InvalidField] = list(invalid_fields or [])
        super().__init__(title, detail, status=status, retry_after_seconds=retry_after_seconds)


class ProviderRateLimitedError(ProviderError):
    """429: too many requests; `retry_after_seconds` says when the limit resets, when known."""

    code = "PROVIDER_RATE_LIMITED"


class ProviderServerError(ProviderError):
    """5xx: the provider failed. For a create, the prediction may nevertheless exist."""

    code = "PROVIDER_SERVER_ERROR"


class ProviderUnavailableError(ProviderError):
    """No answer: the connection failed, broke, or timed out. `status` is None.

    For a create whose request may have been sent, the prediction may nevertheless exist. `sent` is False
    when the request is known never to have left this process (the connection could not be opened).
    """

    code = "PROVIDER_UNAVAILABLE"

    def __init__(self, title: str, detail: str = "", *, sent: bool = True) -> None:
        self.sent = sent
        super().__init__(title, detail)


def never_reached(error: ProviderError) -> bool:
    """Whether a failed create is known to have started nothing: the provider refused it for its rate limit
    (a 429 promises nothing was done), or the request never left this process. Only such a create may be
    sent again: providers take no idempotency key, so a resent create that had arrived would run twice."""
    if isinstance(error, ProviderRateLimitedError):
        return True
    return isinstance(error, ProviderUnavailableError) and not error.sent


class ProviderBadResponseError(ProviderError):
    """A successful status with a body that is not the JSON shape the endpoint promises."""

    code = "PROVIDER_BAD_RESPONSE"


# --- reading error answers ------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delta-seconds or an HTTP date; None if unreadable.

    Dates in the past give 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def parse_ratelimit_reset(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds until a ``ratelimit-reset`` header's window resets; None if unreadable.

    The header is delta-seconds (IETF RateLimit fields); values that can only be unix times are read
    as such.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    if seconds > _EPOCH_THRESHOLD:
        seconds -= (now or datetime.now(UTC)).timestamp()
    return max(0.0, seconds)


def rate_limit_wait(status: int, headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The provider's hint of when to retry: Retry-After on any answer; for a 429 also ratelimit-reset.
    None without a hint.

    ratelimit-reset is ignored on other statuses: there it describes the rate window, not the failure.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    wait = parse_retry_after(lowered.get("retry-after"), now=now)
    if wait is None and status == 429:
        wait = parse_ratelimit_reset(lowered.get("ratelimit-reset"), now=now)
    return wait


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return ""


def _error_class(status: int) -> type[ProviderError]:
    if status in (401, 403):
        return ProviderAuthError
    if status == 404:
        return ProviderNotFoundError
    if status == 422:
        return ProviderValidationError
    if status == 429:
        return ProviderRateLimitedError
    if status >= 500:
        return ProviderServerError
    return ProviderError


def error_from_answer(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    now: datetime | None = None,
    read_reasons: ReasonsReader | None = None,
    read_wait: WaitReader | None = None,
) -> ProviderError:
    """The error an unsuccessful answer (status >= 400) stands for.

    Reads problem+json and plain ``{"detail": ...}`` bodies; any other body (an HTML page from a proxy)
    becomes `detail`, shortened. The HTTP status wins over a ``status`` field in the body. A provider's
    `read_reasons` reads a 422's reasons from the JSON body (at most MAX_INVALID_FIELDS are kept), and
    its `read_wait` a 429's wait from its detail when no header gives one.
    """
    reason = httpx.codes.get_reason_phrase(status) or "Error"
    title, detail = reason, ""
    fields: list[InvalidField] = []
    try:
        body: Any = json.loads(content) if content.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
        detail = content.decode("utf-8", "replace").strip()[:_MAX_RAW_DETAIL]
    if isinstance(body, dict):
        title = cut_text(_text(body.get("title")), _MAX_TITLE) or reason
        detail = cut_text(_text(body.get("detail")), _MAX_DETAIL)
    elif body is not None:
        detail = _text(body)[:_MAX_RAW_DETAIL]
    if status == 422 and read_reasons is not None and body is not None:
        fields = read_reasons(body)[:MAX_INVALID_FIELDS]
    wait = rate_limit_wait(status, headers, now=now)
    if wait is None and status == 429 and read_wait is not None:
        wait = read_wait(detail)
    cls = _error_class(status)
    if cls is ProviderValidationError:
        return ProviderValidationError(title, detail, status=status, retry_after_seconds=wait, invalid_fields=fields)
    return cls(title, detail, status=status, retry_after_seconds=wait)


def refusals_by_field(exc: ProviderError, refusal_of: Callable[[InvalidField], Refusal]) -> list[Refusal]:
    """Each reason of a 422 as its own Refusal (`refusal_of`, the provider's reading), else the one general
    reading of `exc`."""
    if isinstance(exc, ProviderValidationError) and exc.invalid_fields:
        return [refusal_of(item) for item in exc.invalid_fields]
    return [general_refusal(exc)]


def general_refusal(exc: ProviderError) -> Refusal:
    """What any provider's failure tells a caller, when nothing more specific is known: a rate limit
    (with its wait), a fault on the provider's side, or a refusal in the provider's own words."""
    if isinstance(exc, ProviderRateLimitedError):
        wait = f"; try again in {exc.retry_after_seconds:.0f} s" if exc.retry_after_seconds else ""
        return Refusal(None, f"the provider is rate limiting requests{wait}", "RATE_LIMITED", exc.retry_after_seconds)
    if exc.status is None or exc.status >= 500:
        return Refusal(None, f"the provider failed; try again later ({exc.detail or exc.title})", exc.code)
    return Refusal(None, f"the provider refused the request: {exc.detail or exc.title}", exc.code)
