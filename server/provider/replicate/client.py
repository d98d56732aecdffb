"""`ReplicateClient`: Darkroom's async client of Replicate's HTTP API (or the simulator standing in).

One `httpx.AsyncClient` (one connection pool) per client; every call sends
``Authorization: Bearer <token>`` and ``User-Agent: darkroom/<version>`` to ``<base_url>/v1/...``.
Failures are raised as `server.provider.errors.ProviderError` subclasses only; retries follow
`server.provider.retry` (idempotent calls on 429/5xx/connection failures; creates on 429, or
when the request never left). `ReplicateProvider` puts this client behind the provider port.

Each HTTP attempt is reported to the optional `on_request(method, path_template, status, seconds)`
hook — `status` None when no answer came back — so metrics can be attached from outside.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
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
)
from server.provider.replicate.errors import error_from_response
from server.provider.replicate.prediction import Prediction
from server.provider.retry import RetryPolicy, RetryRules, never_sent
from server.provider.types import RequestHook

logger = logging.getLogger(__name__)

# Replicate promises a throttled request did nothing, so a create is retried on 429 too.
RETRY_RULES = RetryRules(frozenset({429, 500, 502, 503, 504}), create_statuses=frozenset({429}))
# A prediction's create is not retried on 429 here: Darkroom's queue holds it for the Retry-After, rather
# than the caller's request.
PREDICTION_CREATE_RULES = RetryRules(RETRY_RULES.statuses)
# The token sent to the simulator when no REPLICATE_API_TOKEN is set.
SIMULATOR_TOKEN = "simulator"
USER_AGENT = f"darkroom/{__version__}"
MAX_WAIT_SECONDS = 60

# "owner/name:<version id>" or a bare version id: a version, not a model.
_VERSIONED = re.compile(r"^(?:[^/\s]+/[^/\s:]+:[0-9a-fA-F]+|[0-9a-fA-F]{64})$")
# A page cycle or a runaway `next` chain must end: no list is followed further than this.
_MAX_PAGES = 10_000


def _segment(value: str, what: str) -> str:
    """`value` quoted as one URL path segment; names that cannot be one are a 404 without asking."""
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value:
        raise ProviderNotFoundError("Not found", f"{value!r} is not a valid {what}")
    return quote(value, safe="")


def _split_model(model: str) -> tuple[str, str]:
    owner, slash, name = model.partition("/")
    if not slash:
        raise ProviderNotFoundError("Not found", f"{model!r} is not a model reference (owner/name)")
    return _segment(owner, "model owner"), _segment(name, "model name")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, port


class ReplicateClient:
    """Async client of Replicate's API. Use as ``async with`` or call `aclose()` when done.

    `base_url` is the part before ``/v1`` (``https://api.replicate.com``, or a simulator mounted at
    ``http://127.0.0.1:8000/simulator``). A None `token` sends no Authorization header (Replicate then
    answers 401, raised as ProviderAuthError). Timeouts are per HTTP attempt.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout_seconds: float = 30.0,
        connect_timeout_seconds: float = 5.0,
        max_retries: int = 4,
        retry_base_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        on_request: RequestHook | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_policy = RetryPolicy(max_retries, retry_base_seconds, retry_max_seconds)
        self._timeout_seconds = timeout_seconds
        self._connect_timeout_seconds = connect_timeout_seconds
        self._on_request = on_request
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            # Replicate's API never redirects; following one could carry the token elsewhere.
            follow_redirects=False,
        )
        self._origin = _origin(self._http.base_url)

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- predictions ------------------------------------------------------------------------------

    async def create_prediction(
        self,
        *,
        model: str | None = None,
        version: str | None = None,
        input: dict[str, Any],
        webhook: str | None = None,
        webhook_events_filter: list[str] | None = None,
        cancel_after: str | None = None,
        wait: int | None = None,
    ) -> Prediction:
        """Start a prediction and return it as created (usually status "starting").

        With `version` ("owner/name:<id>", a bare id, or "owner/name" of an official model), or a
        `model` that names a version ("owner/name:<id>"), this POSTs ``/v1/predictions``; with only a
        `model` "owner/name", ``/v1/models/{owner}/{name}/predictions``. `version` wins when both are
        given. The webhook fields are sent only with a `webhook`. `cancel_after` (a duration such as
        "60s") becomes the Cancel-After header; `wait` (1-60 s) the ``Prefer: wait=N`` header, and the
        read timeout grows by it.

        Retried only on 429 (or when the request provably never left); any other failure is raised, and
        after a 5xx or ProviderUnavailableError the prediction may exist anyway.
        """
        if version is None and model is not None and _VERSIONED.match(model):
            version = model
        body: dict[str, Any] = {"input": input}
        if version is not None:
            if not version.strip():
                raise ProviderNotFoundError("Not found", "an empty version names no model")
            path, template = "/v1/predictions", "/v1/predictions"
            body = {"version": version, **body}
        elif model is not None:
            owner, name = _split_model(model)
            path = f"/v1/models/{owner}/{name}/predictions"
            template = "/v1/models/{owner}/{name}/predictions"
        else:
            raise ValueError("create_prediction needs a model or a version")
        if webhook is not None:
            body["webhook"] = webhook
            if webhook_events_filter is not None:
                body["webhook_events_filter"] = list(webhook_events_filter)
        headers: dict[str, str] = {}
        timeout: httpx.Timeout | None = None
        if cancel_after is not None:
            headers["Cancel-After"] = cancel_after
        if wait is not None:
            if not 1 <= wait <= MAX_WAIT_SECONDS:
                raise ValueError(f"wait must be 1-{MAX_WAIT_SECONDS} seconds, not {wait}")
            headers["Prefer"] = f"wait={wait}"
            timeout = httpx.Timeout(self._timeout_seconds + wait, connect=self._connect_timeout_seconds)
        response = await self._request(
            "POST",
            path,
            template,
            idempotent=False,
            json_body=body,
            headers=headers,
            request_timeout=timeout,
            retry_rules=PREDICTION_CREATE_RULES,
        )
        return _prediction(response)

    async def get_prediction(self, prediction_id: str) -> Prediction:
        """The prediction as it is now. ProviderNotFoundError when there is none with this id."""
        path = f"/v1/predictions/{_segment(prediction_id, 'prediction id')}"
        return _prediction(await self._request("GET", path, "/v1/predictions/{id}"))

    async def cancel_prediction(self, prediction_id: str) -> Prediction:
        """Ask to cancel; the prediction comes back ("canceled", or already terminal). Retried like a GET."""
        path = f"/v1/predictions/{_segment(prediction_id, 'prediction id')}/cancel"
        return _prediction(await self._request("POST", path, "/v1/predictions/{id}/cancel"))

    async def list_predictions(self, *, limit: int | None = None) -> AsyncIterator[Prediction]:
        """The account's predictions, newest first, following `next` page by page; at most `limit`."""
        count = 0
        if limit is not None and limit <= 0:
            return
        async for item in self._paginate("/v1/predictions", "/v1/predictions"):
            yield _prediction_from(item)
            count += 1
            if limit is not None and count >= limit:
                return

    # --- models, collections, search --------------------------------------------------------------

    async def get_model(self, owner: str, name: str) -> dict[str, Any]:
        """The model object (with ``latest_version`` and ``default_example``)."""
        path = f"/v1/models/{_segment(owner, 'model owner')}/{_segment(name, 'model name')}"
        return _object(await self._request("GET", path, "/v1/models/{owner}/{name}"))

    async def list_models(self) -> AsyncIterator[dict[str, Any]]:
        """Every public model, following `next` page by page."""
        async for item in self._paginate("/v1/models", "/v1/models"):
            yield item

    async def list_model_versions(self, owner: str, name: str) -> list[dict[str, Any]]:
        """All versions of a model (every page), newest first."""
        path = f"/v1/models/{_segment(owner, 'model owner')}/{_segment(name, 'model name')}/versions"
        return [item async for item in self._paginate(path, "/v1/models/{owner}/{name}/versions")]

    async def get_model_version(self, owner: str, name: str, version_id: str) -> dict[str, Any]:
        """One version: ``{id, created_at, cog_version, openapi_schema}``."""
        path = (
            f"/v1/models/{_segment(owner, 'model owner')}/{_segment(name, 'model name')}"
            f"/versions/{_segment(version_id, 'version id')}"
        )
        return _object(await self._request("GET", path, "/v1/models/{owner}/{name}/versions/{id}"))

    async def get_collection(self, slug: str) -> dict[str, Any]:
        """A collection with its models: ``{name, slug, description, full_description, models}``."""
        path = f"/v1/collections/{_segment(slug, 'collection slug')}"
        return _object(await self._request("GET", path, "/v1/collections/{slug}"))

    async def search(self, query: str, limit: int = 20) -> dict[str, Any]:
        """Replicate's search (beta): ``{query, models: [{model, metadata}], collections, pages}``."""
        params = {"query": query, "limit": str(limit)}
        return _object(await self._request("GET", "/v1/search", "/v1/search", params=params))

    # --- webhooks and files -----------------------------------------------------------------------

    async def get_webhook_secret(self) -> str:
        """The account's webhook signing secret, "whsec_..."."""
        body = _object(await self._request("GET", "/v1/webhooks/default/secret", "/v1/webhooks/default/secret"))
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise ProviderBadResponseError("Bad response from provider", "the webhook secret has no key", status=200)
        return key

    async def upload_file(
        self, content: bytes, filename: str, content_type: str, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Upload a file (multipart ``content``, ``filename``, ``type``, ``metadata`` as a JSON string).

        Returns the file object; its ``urls.get`` may be passed as an input value. Retried only on 429.
        """
        data = {"filename": filename, "type": content_type}
        if metadata is not None:
            data["metadata"] = json.dumps(metadata)
        files = {"content": (filename, content, content_type)}
        response = await self._request("POST", "/v1/files", "/v1/files", idempotent=False, data=data, files=files)
        return _object(response)

    # --- plumbing ---------------------------------------------------------------------------------

    async def _paginate(self, path: str, template: str) -> AsyncIterator[dict[str, Any]]:
        """The items of a ``{"next", "previous", "results"}`` list, following `next` as given.

        A `next` on another origin than `base_url` is refused (ProviderBadResponseError): following it
        would hand the token to that host.
        """
        url: str | None = path
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            if url is None:
                return
            seen.add(url)
            page = _object(await self._request("GET", url, template))
            results, following = page.get("results"), page.get("next")
            if not isinstance(results, list) or not (following is None or isinstance(following, str)):
                raise ProviderBadResponseError(
                    "Bad response from provider", f"{template} did not answer a page of results", status=200
                )
            for item in results:
                if not isinstance(item, dict):
                    raise ProviderBadResponseError(
                        "Bad response from provider", f"{template} listed a non-object", status=200
                    )
                yield item
            if following is not None:
                if _origin(httpx.URL(following)) != self._origin:
                    raise ProviderBadResponseError(
                        "Bad response from provider",
                        f"{template} pointed its next page at another host: {following}",
                        status=200,
                    )
                if following in seen:
                    return
            url = following
        raise ProviderBadResponseError("Bad response from provider", f"{template} never ends", status=200)

    async def _request(
        self,
        method: str,
        url: str,
        template: str,
        *,
        idempotent: bool = True,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        request_timeout: httpx.Timeout | None = None,
        retry_rules: RetryRules = RETRY_RULES,
    ) -> httpx.Response:
        """Send one call, retrying as `server.provider.retry` says; the 2xx response, or a ProviderError."""
        retry = 0
        while True:
            started = time.perf_counter()
            status: int | None = None
            try:
                response = await self._http.request(
                    method,
                    url,
                    json=json_body,
                    params=params,
                    headers=headers,
                    data=data,
                    files=files,
                    timeout=request_timeout or httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                self._report(method, template, None, time.perf_counter() - started)
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                error: ProviderError = ProviderUnavailableError(
                    "Provider unavailable", f"{method} {template}: {reason}", sent=not never_sent(exc)
                )
                retryable = retry_rules.allow(idempotent=idempotent, error=exc)
                cause: BaseException = exc
            except httpx.DecodingError as exc:
                # A Content-Encoding the body does not match: the answer came but cannot be read.
                self._report(method, template, None, time.perf_counter() - started)
                raise ProviderBadResponseError(
                    "Bad response from provider", f"{method} {template}: the body could not be decoded: {exc}"
                ) from exc
            else:
                status = response.status_code
                self._report(method, template, status, time.perf_counter() - started)
                if 200 <= status < 300:
                    return response
                if status < 400:
                    error = ProviderBadResponseError(
                        "Bad response from provider", f"{method} {template} answered {status}", status=status
                    )
                    retryable = False
                else:
                    error = error_from_response(response)
                    retryable = retry_rules.allow(idempotent=idempotent, status=status)
                cause = error
            delay = self.retry_policy.delay(retry, error.retry_after_seconds) if retryable else None
            if delay is None:
                if cause is error:
                    raise error
                raise error from cause
            retry += 1
            logger.warning(
                "provider call %s %s failed (%s); retry %d of %d in %.2f s",
                method,
                httpx.URL(url).path,
                status if status is not None else type(cause).__name__,
                retry,
                self.retry_policy.max_retries,
                delay,
                extra={
                    "method": method,
                    "path": httpx.URL(url).path,
                    "status": status,
                    "delay": round(delay, 3),
                    "retry": retry,
                },
            )
            await asyncio.sleep(delay)

    def _report(self, method: str, template: str, status: int | None, seconds: float) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(method, template, status, seconds)
        except Exception:
            # Metrics must never break a call to the provider.
            logger.warning("the on_request hook failed", exc_info=True)


def _object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or ProviderBadResponseError."""
    try:
        body = response.json()
    except (UnicodeDecodeError, ValueError):
        raise ProviderBadResponseError(
            "Bad response from provider", "the body is not JSON", status=response.status_code
        ) from None
    if not isinstance(body, dict):
        raise ProviderBadResponseError(
            "Bad response from provider", "the body is not a JSON object", status=response.status_code
        )
    return body


def _prediction_from(body: dict[str, Any], status: int | None = 200) -> Prediction:
    try:
        return Prediction.from_json(body)
    except (ValueError, TypeError) as exc:
        raise ProviderBadResponseError(
            "Bad response from provider", f"not a prediction: {exc}", status=status
        ) from None


def _prediction(response: httpx.Response) -> Prediction:
    return _prediction_from(_object(response), response.status_code)
