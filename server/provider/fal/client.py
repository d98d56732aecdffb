"""`FalClient`: Darkroom's async client of fal's HTTP APIs (or the fal simulator standing in).

fal speaks from several hosts, each configured (never taken from fal's answers, which are untrusted):
the queue (``https://queue.fal.run``: submit, status, result, cancel), REST (``https://rest.fal.ai``:
storage tokens), the CDN (``https://v3.fal.media``: uploads), the model pages (``https://fal.ai``:
per-endpoint OpenAPI documents) and the platform API (``https://api.fal.ai``: the model listing). Calls
to fal's own APIs carry ``Authorization: Key <key>``; the CDN gets the storage token instead, and the
JWKS and the OpenAPI documents, which are public, get no credentials at all.

Failures are raised as `server.provider.errors.ProviderError` subclasses only. Retries (with the
backoff of `server.provider.retry`) are for idempotent
calls only (status, result, cancel, reads, the JWKS) on 429, 502, 503, 504 and transport failures. A
submit has no idempotency key: it is tried again only when it provably never left (the connection could
not be opened); anything else is raised, and the request may exist anyway. A result that fal answers
with an error status *and* its ``x-fal-request-id`` header is the stored outcome of a failed request,
not a failed call, and is never retried (fal's own client reads the header the same way).

Every body read from fal is capped (`max_response_bytes`): an answer is hostile until checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from server import __version__
from server.provider.errors import (
    ProviderBadResponseError,
    ProviderError,
    ProviderNotFoundError,
    ProviderUnavailableError,
    error_from_answer,
    rate_limit_wait,
)
from server.provider.fal.refusals import validation_error
from server.provider.retry import RetryPolicy, RetryRules, never_sent
from server.provider.types import RequestHook

logger = logging.getLogger(__name__)

USER_AGENT = f"darkroom/{__version__}"
# Endpoint ids whose first segment is a namespace carry one segment more before owner/app (fal_client's
# APP_NAMESPACES; fal-js utils.ts).
APP_NAMESPACES = frozenset({"workflows", "comfy"})
# fal's queue answers these (and transport failures) when a retry may help; a submit it may have taken
# is never sent again.
RETRY_RULES = RetryRules(frozenset({429, 502, 503, 504}))
# fal's single-request upload takes files up to this size; larger ones go through its multipart
# upload, which Darkroom does not implement (fal_client MULTIPART_THRESHOLD).
MAX_SINGLE_UPLOAD_BYTES = 100 * 1024 * 1024
# fal sends this on every answer its queue produced (not on a proxy's own error page).
REQUEST_ID_HEADER = "x-fal-request-id"
# fal's X-Fal-Request-Timeout must be more than this many seconds (fal_client _headers.py).
MIN_REQUEST_TIMEOUT_SECONDS = 1


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or len(value) > 200:
        raise ProviderNotFoundError("Not found", f"{value!r} is not a valid {what}")
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class EndpointId:
    """An endpoint id read as fal reads it: [namespace/]owner/app[/path]."""

    namespace: str | None
    owner: str
    app: str
    path: str | None

    @classmethod
    def parse(cls, endpoint_id: str) -> EndpointId:
        """ProviderNotFoundError for an id that cannot be one (fewer than two segments, empty ones)."""
        if not isinstance(endpoint_id, str) or len(endpoint_id) > 500:
            raise ProviderNotFoundError("Not found", "not an endpoint id")
        parts = endpoint_id.split("/")
        namespace = parts[0] if parts[0] in APP_NAMESPACES else None
        rest = parts[1:] if namespace else parts
        if len(rest) < 2:
            raise ProviderNotFoundError("Not found", f"{endpoint_id!r} is not an endpoint id (owner/app[/path])")
        for part in parts:
            _segment(part, "endpoint id segment")
        return cls(namespace, rest[0], rest[1], "/".join(rest[2:]) or None)

    @property
    def app_path(self) -> str:
        """The quoted owner/app (with the namespace): where a request's status, result and cancel live."""
        prefix = f"{quote(self.namespace, safe='')}/" if self.namespace else ""
        return f"{prefix}{quote(self.owner, safe='')}/{quote(self.app, safe='')}"

    @property
    def full_path(self) -> str:
        """The quoted whole id: where a request is submitted."""
        suffix = "/" + "/".join(quote(part, safe="") for part in self.path.split("/")) if self.path else ""
        return self.app_path + suffix


@dataclass(frozen=True, slots=True)
class Answer:
    """A read answer: status, headers and the (capped) body."""

    status: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ProviderBadResponseError(
                "Bad response from provider", "the body is not JSON", status=self.status
            ) from None

    def object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise ProviderBadResponseError(
                "Bad response from provider", "the body is not a JSON object", status=self.status
            )
        return body


def error_of(answer: Answer) -> ProviderError:
    """The ProviderError of an unsuccessful answer; a 422 with fal's ``{"detail": [...]}`` keeps each item."""
    if answer.status == 422:
        try:
            body = json.loads(answer.content)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("detail"), list):
            return validation_error(body["detail"], retry_after_seconds=None)
    return error_from_answer(answer.status, answer.headers, answer.content)


class FalClient:
    """Async client of fal's APIs. Use as ``async with`` or call `aclose()` when done.

    A None `key` sends no Authorization (fal then answers 401, raised as ProviderAuthError). Timeouts are
    per HTTP attempt.
    """

    def __init__(
        self,
        key: str | None,
        *,
        queue_base_url: str = "https://queue.fal.run",
        rest_base_url: str = "https://rest.fal.ai",
        cdn_base_url: str = "https://v3.fal.media",
        openapi_base_url: str = "https://fal.ai",
        api_base_url: str = "https://api.fal.ai",
        timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
        upload_timeout_seconds: float = 300.0,
        max_retries: int = 4,
        retry_base_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        max_response_bytes: int = 5_000_000,
        on_request: RequestHook | None = None,
    ) -> None:
        self.queue_base_url = queue_base_url.rstrip("/")
        self.rest_base_url = rest_base_url.rstrip("/")
        self.cdn_base_url = cdn_base_url.rstrip("/")
        self.openapi_base_url = openapi_base_url.rstrip("/")
        self.api_base_url = api_base_url.rstrip("/")
        self.retry_policy = RetryPolicy(max_retries, retry_base_seconds, retry_max_seconds)
        self.max_response_bytes = max_response_bytes
        self._upload_timeout = httpx.Timeout(upload_timeout_seconds, connect=connect_timeout_seconds)
        self._auth = {"Authorization": f"Key {key}"} if key else {}
        self._on_request = on_request
        self._http = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            # fal's APIs do not redirect; following one could carry the key elsewhere.
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    # --- queue ------------------------------------------------------------------------------------

    async def submit(
        self,
        endpoint_id: str,
        input: dict[str, Any],
        *,
        webhook_url: str | None = None,
        start_timeout_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Queue a request: ``{request_id, status, queue_position?, ...}``. Never resent once it may have
        arrived (see the module docstring)."""
        endpoint = EndpointId.parse(endpoint_id)
        params = {"fal_webhook": webhook_url} if webhook_url is not None else None
        headers = dict(self._auth)
        if start_timeout_seconds is not None:
            headers["X-Fal-Request-Timeout"] = _timeout_header(start_timeout_seconds)
        answer = await self._call(
            "POST",
            f"{self.queue_base_url}/{endpoint.full_path}",
            "{queue}/{endpoint_id}",
            idempotent=False,
            json_body=input,
            params=params,
            headers=headers,
        )
        body = answer.object()
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 200 or "/" in request_id:
            raise ProviderBadResponseError("Bad response from provider", "the submit answer has no usable request_id")
        return body

    async def status(self, endpoint_id: str, request_id: str, *, logs: bool = True) -> dict[str, Any]:
        """``GET …/requests/{id}/status?logs=1``: the request's queue status."""
        url = f"{self._request_url(endpoint_id, request_id)}/status"
        answer = await self._call(
            "GET", url, "{queue}/{app}/requests/{id}/status", params={"logs": "1" if logs else "0"}, headers=self._auth
        )
        return answer.object()

    async def result(self, endpoint_id: str, request_id: str) -> Answer:
        """``GET …/requests/{id}``: the answer as it came, a success or the stored error of a failed request.

        A call failure (no such request, no access, an ingress error that outlived the retries) is raised;
        an error status that fal's queue stored for the request (it carries ``x-fal-request-id``) is returned.
        """
        url = self._request_url(endpoint_id, request_id)
        return await self._call("GET", url, "{queue}/{app}/requests/{id}", headers=self._auth, returned=_stored)

    async def cancel(self, endpoint_id: str, request_id: str) -> dict[str, Any]:
        """``PUT …/requests/{id}/cancel``: ``{"status": "OK" | "CANCELLATION_REQUESTED" | "ALREADY_COMPLETED" |
        "NOT_FOUND"}``. Cancelling twice cancels the same request, so it is retried like a GET."""
        url = f"{self._request_url(endpoint_id, request_id)}/cancel"
        answer = await self._call(
            "PUT", url, "{queue}/{app}/requests/{id}/cancel", headers=self._auth, returned=_already_completed
        )
        return answer.object()

    # --- files ------------------------------------------------------------------------------------

    async def upload(self, content: bytes, *, filename: str, content_type: str) -> str:
        """Store a file on fal's CDN (a storage token, then one upload): its ``access_url``."""
        if len(content) > MAX_SINGLE_UPLOAD_BYTES:
            raise ProviderError(
                "File too large",
                f"fal takes files up to {MAX_SINGLE_UPLOAD_BYTES} bytes in one request; this one has {len(content)}",
            )
        token = (
            await self._call(
                "POST",
                f"{self.rest_base_url}/storage/auth/token",
                "{rest}/storage/auth/token",
                idempotent=False,
                params={"storage_type": "fal-cdn-v3"},
                json_body={},
                headers=self._auth,
            )
        ).object()
        value, kind = token.get("token"), token.get("token_type")
        if not isinstance(value, str) or not value or not isinstance(kind, str) or not kind:
            raise ProviderBadResponseError("Bad response from provider", "the storage token answer has no token")
        if any(ch in value + kind for ch in "\r\n"):
            raise ProviderBadResponseError("Bad response from provider", "the storage token is malformed")
        # The upload goes to the configured CDN, as fal's own client posts it, not to the `base_url` the
        # token answer names: a URL in an answer is not trusted with the file.
        headers = {
            "Authorization": f"{kind} {value}",
            "Content-Type": content_type,
            "X-Fal-File-Name": _header_safe(filename),
        }
        answer = await self._call(
            "POST",
            f"{self.cdn_base_url}/files/upload",
            "{cdn}/files/upload",
            idempotent=False,
            content=content,
            headers=headers,
            request_timeout=self._upload_timeout,
        )
        url = answer.object().get("access_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > 2_000:
            raise ProviderBadResponseError("Bad response from provider", "the upload answer has no access_url")
        return url

    # --- models -----------------------------------------------------------------------------------

    async def openapi(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint's OpenAPI document (public: sent without the key)."""
        EndpointId.parse(endpoint_id)
        answer = await self._call(
            "GET",
            f"{self.openapi_base_url}/api/openapi/queue/openapi.json",
            "{openapi}/api/openapi/queue/openapi.json",
            params={"endpoint_id": endpoint_id},
        )
        return answer.object()

    async def list_models(self, params: Mapping[str, str | list[str]]) -> dict[str, Any]:
        """One page of ``GET /v1/models``: ``{models: [...], next_cursor, has_more}``."""
        answer = await self._call(
            "GET", f"{self.api_base_url}/v1/models", "{api}/v1/models", params=params, headers=self._auth
        )
        return answer.object()

    async def fetch_public(self, url: str, template: str) -> bytes:
        """A public document at a configured URL (the JWKS), without credentials."""
        return (await self._call("GET", url, template)).content

    # --- plumbing ---------------------------------------------------------------------------------

    def _request_url(self, endpoint_id: str, request_id: str) -> str:
        endpoint = EndpointId.parse(endpoint_id)
        return f"{self.queue_base_url}/{endpoint.app_path}/requests/{_segment(request_id, 'request id')}"

    async def _call(
        self,
        method: str,
        url: str,
        template: str,
        *,
        idempotent: bool = True,
        returned: Callable[[Answer], bool] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        request_timeout: httpx.Timeout | None = None,
    ) -> Answer:
        """Send one call, retrying as the module docstring says; the answer, or a ProviderError.

        An error answer that `returned` accepts is returned, not raised (it is an answer about the request,
        not a failure of the call)."""
        retry = 0
        while True:
            started = time.perf_counter()
            status: int | None = None
            try:
                answer = await self._send(method, url, json_body, content, params, headers, request_timeout)
                status = answer.status
            except httpx.HTTPError as exc:
                self._report(method, template, None, started)
                if not RETRY_RULES.allow(idempotent=idempotent, error=exc):
                    raise ProviderUnavailableError(
                        "Provider unavailable",
                        f"{method} {template}: {type(exc).__name__}: {exc}",
                        sent=not never_sent(exc),
                    ) from None
                delay = self.retry_policy.delay(retry)
                if delay is None:
                    raise ProviderUnavailableError(
                        "Provider unavailable",
                        f"{method} {template}: {type(exc).__name__}: {exc}",
                        sent=not never_sent(exc),
                    ) from None
            except ProviderError:
                self._report(method, template, None, started)
                raise
            else:
                self._report(method, template, status, started)
                if answer.status < 400:
                    return answer
                if returned is not None and returned(answer):
                    return answer
                if not RETRY_RULES.allow(idempotent=idempotent, status=answer.status):
                    raise error_of(answer)
                hint = rate_limit_wait(answer.status, answer.headers)
                delay = self.retry_policy.delay(retry, hint)
                if delay is None:
                    raise error_of(answer)
            logger.debug("retrying fal call", extra={"call": template, "status": status, "delay": delay})
            await asyncio.sleep(delay)
            retry += 1

    async def _send(
        self,
        method: str,
        url: str,
        json_body: Any,
        content: bytes | None,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        request_timeout: httpx.Timeout | None,
    ) -> Answer:
        request = self._http.build_request(
            method,
            url,
            json=json_body,
            content=content,
            params=params,
            headers=headers,
            timeout=request_timeout if request_timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        response = await self._http.send(request, stream=True)
        try:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_response_bytes:
                raise _too_large(response.status_code, self.max_response_bytes)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_response_bytes:
                    raise _too_large(response.status_code, self.max_response_bytes)
        finally:
            await response.aclose()
        return Answer(response.status_code, response.headers, bytes(body))

    def _report(self, method: str, template: str, status: int | None, started: float) -> None:
        if self._on_request is not None:
            try:
                self._on_request(method, template, status, time.perf_counter() - started)
            except Exception:
                logger.warning("the request hook failed", exc_info=True)


def _too_large(status: int, limit: int) -> ProviderBadResponseError:
    return ProviderBadResponseError("Bad response from provider", f"the answer is over {limit} bytes", status=status)


def _stored(answer: Answer) -> bool:
    """A result's error status that fal's queue produced: the outcome of a failed request."""
    return REQUEST_ID_HEADER in answer.headers


def _already_completed(answer: Answer) -> bool:
    """fal's answer to cancelling a finished request (400 ``{"status": "ALREADY_COMPLETED"}``, a status
    fal does not document; the simulator answers it so, and the adapter accepts it on 200 too: docs/fal.md)."""
    return answer.status == 400 and b"ALREADY_COMPLETED" in answer.content[:500]


def _timeout_header(seconds: float) -> str:
    """X-Fal-Request-Timeout in whole seconds, rounded up, and above fal's minimum."""
    whole = int(-(-seconds // 1))
    return str(max(MIN_REQUEST_TIMEOUT_SECONDS + 1, whole))


def _header_safe(text: str) -> str:
    """`text` as a header value: printable ASCII only, bounded."""
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in text)[:200]
    return cleaned or "file"
