"""`FalProvider`: fal (or the fal simulator playing it) behind Darkroom's provider port.

A job is a request in fal's queue: `create` submits it, `get` reads its queue status and, once it is
COMPLETED, its result (the outputs, or the error status fal stored for it), `cancel` asks fal to drop
it. fal's words become Darkroom's statuses:

| fal                                        | GenerationStatus |
|--------------------------------------------|------------------|
| IN_QUEUE (with its queue_position)         | STARTING         |
| IN_PROGRESS                                | PROCESSING       |
| COMPLETED, result 2xx                      | SUCCEEDED        |
| COMPLETED, result 499 (cancelled)          | CANCELED         |
| COMPLETED, result 504 timeout of type user | CANCELED         |
| COMPLETED, any other error status          | FAILED           |

Webhooks are verified with fal's ED25519 signature (`server.provider.fal.signing`) against the keys of
a JWKS fetched from `jwks_url`, cached for at most a day and fetched again (at most once per
`jwks_min_refresh_seconds`) when no cached key verifies a delivery, so a key rotation is followed.
Models are read from fal's per-endpoint OpenAPI documents and its model listing (``/v1/models``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from server.domain import GenerationStatus, MediaKind
from server.provider.errors import (
    ProviderBadResponseError,
    ProviderError,
    ProviderNotFoundError,
)
from server.provider.fal.client import Answer, FalClient
from server.provider.fal.refusals import refusals_for
from server.provider.fal.signing import JwksError, WebhookVerificationError, keys_from_jwks, verify_webhook
from server.provider.model_schema import find_image_field, resolve_refs
from server.provider.port import WebhookRejected
from server.provider.progress import parse_progress
from server.provider.types import MAX_STATUS_LENGTH, JobRef, ModelDescription, PredictionUpdate, Refusal
from server.quoting import cut_text

logger = logging.getLogger(__name__)

# fal's categories of the models Darkroom shows, and what each makes.
MEDIA_CATEGORIES: dict[str, MediaKind] = {
    "text-to-image": MediaKind.IMAGE,
    "text-to-video": MediaKind.VIDEO,
    "image-to-video": MediaKind.VIDEO,
}
# Keys are cached at most this long: fal's documented limit for caching its JWKS.
JWKS_MAX_AGE_SECONDS = 24 * 3600.0
# Logs kept of a status answer: the newest lines win (progress is read from the last ones).
MAX_LOG_ITEMS = 1_000
MAX_LOG_CHARS = 100_000
MAX_LOG_LINE_CHARS = 2_000
MAX_ERROR_CHARS = 1_000
# Output files collected from a result: how deep and how many.
MAX_OUTPUT_DEPTH = 8
MAX_OUTPUTS = 100
MAX_URL_CHARS = 2_000
# The model listing: pages followed per category, and models kept in all.
MAX_LISTING_PAGES = 20
MAX_LISTED_MODELS = 1_000
LISTING_PAGE_SIZE = 50
# How the error of a request stopped by its start timeout begins (see `_outcome`).
START_TIMEOUT_ERROR_PREFIX = "504 "
_STATUS_CODE = re.compile(r"\b([1-5]\d\d)\b")


def _int(value: Any) -> int | None:
    """A non-negative count as fal may write it (a number or a numeric string); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.strip().isdigit() and len(value) < 12:
        value = int(value)
    if isinstance(value, int) and 0 <= value < 10**9:
        return value
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and len(value) < 32:
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and 0 <= value < 10**8:
        return float(value)
    return None


def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one: fal's nested fields are checked, not trusted."""
    return value if isinstance(value, dict) else {}


def _word(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ProviderBadResponseError("Bad response from provider", "the status answer has no status word")
    return value[:MAX_STATUS_LENGTH]


def join_logs(items: Any) -> str | None:
    """fal's log items' messages, one per line, newest kept when there are too many; None without logs."""
    if not isinstance(items, list):
        return None
    lines = [
        cut_text(item["message"], MAX_LOG_LINE_CHARS)
        for item in items[-MAX_LOG_ITEMS:]
        if isinstance(item, dict) and isinstance(item.get("message"), str)
    ]
    text = "\n".join(lines)
    return text[-MAX_LOG_CHARS:]


def output_urls(payload: Any) -> tuple[str, ...]:
    """Every file URL of a result, in order: any object's ``url`` (``images[].url``, ``video.url``...),
    http(s) only (a ``data:`` URI of sync_mode is not a file to fetch), each once."""
    found: list[str] = []

    def walk(node: Any, depth: int) -> None:
        if depth > MAX_OUTPUT_DEPTH or len(found) >= MAX_OUTPUTS:
            return
        if isinstance(node, dict):
            url = node.get("url")
            if (
                isinstance(url, str)
                and url.startswith(("https://", "http://"))
                and len(url) <= MAX_URL_CHARS
                and url not in found
            ):
                found.append(url)
            for key, value in node.items():
                if key != "url":
                    walk(value, depth + 1)
        elif isinstance(node, list):
            for item in node[: MAX_OUTPUTS * 10]:
                walk(item, depth + 1)

    walk(payload, 0)
    return tuple(found)


def error_text(status: int | None, body: Any, fallback: str = "") -> str:
    """What a failed request's stored error says: its ``detail`` (a sentence, or each validation item),
    else `fallback`; prefixed with the status."""
    detail: Any = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        parts = []
        for item in detail[:10]:
            if isinstance(item, dict):
                loc = item.get("loc")
                where = ".".join(str(p) for p in loc[:10] if isinstance(p, str | int)) if isinstance(loc, list) else ""
                parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        text = "; ".join(parts)
    elif isinstance(detail, str):
        text = detail
    else:
        text = fallback
    prefix = f"{status} " if status is not None else ""
    return cut_text(f"{prefix}{text}".strip() or f"{prefix}error".strip(), MAX_ERROR_CHARS)


def _outcome(request_id: str, answer: Answer, predict_time: float | None, logs: str | None) -> PredictionUpdate:
    """The update a COMPLETED request's result answer stands for."""
    common: dict[str, Any] = {
        "prediction_id": request_id,
        "provider_status": "COMPLETED",
        "logs": logs,
        "progress": parse_progress(logs),
    }
    if 200 <= answer.status < 300:
        payload = answer.json()
        return PredictionUpdate(
            status=GenerationStatus.SUCCEEDED, output_urls=output_urls(payload), predict_time=predict_time, **common
        )
    if answer.status == 400:
        # "Not finished yet": the result lags the status. Not a word Darkroom knows, so it looks again.
        return PredictionUpdate(status=None, **common)
    try:
        body = json.loads(answer.content)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        body = None
    fallback = answer.content.decode("utf-8", "replace")[:300]
    if answer.status == 499:
        return PredictionUpdate(status=GenerationStatus.CANCELED, error=error_text(499, body, "cancelled"), **common)
    if answer.status == 504 and answer.headers.get("x-fal-request-timeout-type", "").lower() == "user":
        # The X-Fal-Request-Timeout Darkroom set ran out before the request started: its deadline.
        return PredictionUpdate(
            status=GenerationStatus.CANCELED, error=error_text(504, body, "request timed out"), **common
        )
    return PredictionUpdate(status=GenerationStatus.FAILED, error=error_text(answer.status, body, fallback), **common)


def describe_openapi(endpoint_id: str, document: Any, listing: Mapping[str, Any] | None = None) -> ModelDescription:
    """A model as fal's OpenAPI document of `endpoint_id` (and, when given, its listing entry's
    ``metadata``) describes it; ProviderNotFoundError when the document does not describe that endpoint."""
    metadata = listing if isinstance(listing, Mapping) else {}
    if not isinstance(document, dict):
        raise ProviderNotFoundError("Not found", f"fal describes no endpoint {endpoint_id!r}")
    info = _obj(document.get("info"))
    fal_meta = _obj(info.get("x-fal-metadata"))
    paths = _obj(document.get("paths"))
    operation = paths.get(f"/{endpoint_id}")
    post = operation.get("post") if isinstance(operation, dict) else None
    if not isinstance(post, dict):
        raise ProviderNotFoundError("Not found", f"fal describes no endpoint {endpoint_id!r}")
    input_schema = _body_schema(post.get("requestBody"), document)
    result_path = paths.get(f"/{endpoint_id}/requests/{{request_id}}")
    result_get = result_path.get("get") if isinstance(result_path, dict) else None
    responses = result_get.get("responses") if isinstance(result_get, dict) else None
    output_schema = _body_schema(responses.get("200"), document) if isinstance(responses, dict) else None
    category = fal_meta.get("category") if isinstance(fal_meta.get("category"), str) else metadata.get("category")
    category = category if isinstance(category, str) and len(category) <= 100 else None
    kind = MEDIA_CATEGORIES.get(category or "")
    image_input = _image_input(input_schema) if category == "image-to-video" else None
    description = metadata.get("description") or info.get("description")
    cover = metadata.get("thumbnail_url")
    return ModelDescription(
        ref=endpoint_id,
        kind=kind,
        description=cut_text(description, 2_000) if isinstance(description, str) else None,
        input_schema=input_schema,
        output_schema=output_schema,
        image_input=image_input,
        example=_example(input_schema),
        cover_image_url=cover if isinstance(cover, str) and cover.startswith("https://") else None,
        groups=(category,) if category else (),
    )


def _image_input(schema: dict[str, Any] | None) -> str | None:
    """The input of an image-to-video endpoint that takes the picture.

    fal writes file inputs as plain strings named ``*_url`` (``image_url``), where Darkroom knows them by
    ``format: uri``: the one found is marked so (in `schema`, which is this description's own copy), so
    that it is read as the file input it is.
    """
    found = find_image_field(schema)
    properties = schema.get("properties") if schema else None
    if found is None and isinstance(properties, dict):
        names = [name for name in properties if isinstance(name, str) and name.endswith("image_url")]
        found = "image_url" if "image_url" in names else (names[0] if names else None)
        prop = properties.get(found) if found else None
        if isinstance(prop, dict) and prop.get("type") == "string":
            prop.setdefault("format", "uri")
        elif found is not None:
            found = None
    return found


def _body_schema(holder: Any, document: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of a requestBody or response (``content["application/json"].schema``), resolved."""
    content = holder.get("content") if isinstance(holder, dict) else None
    media = content.get("application/json") if isinstance(content, dict) else None
    schema = media.get("schema") if isinstance(media, dict) else None
    if not isinstance(schema, dict):
        return None
    resolved = resolve_refs(schema, document)
    return resolved if isinstance(resolved, dict) and resolved else None


def _example(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The input schema's own example (``example``, or the first of ``examples``), when it has one."""
    if not schema:
        return None
    example = schema.get("example")
    if example is None and isinstance(schema.get("examples"), list) and schema["examples"]:
        example = schema["examples"][0]
    return example if isinstance(example, dict) else None


class FalProvider:
    """The provider port over `client` (see the module docstring).

    `jwks_url` is where fal publishes its webhook keys; a signature older (or newer) than
    `webhook_tolerance_seconds` is refused. `categories` are the listings `list_models` reads.
    `clock` is a monotonic clock, for tests of the JWKS cache.
    """

    name = "fal"
    progress_by_webhook = False  # fal sends one webhook, at the end: progress comes from status polls

    def __init__(
        self,
        client: FalClient,
        *,
        jwks_url: str,
        webhook_tolerance_seconds: int = 300,
        jwks_max_age_seconds: float = JWKS_MAX_AGE_SECONDS,
        jwks_min_refresh_seconds: float = 60.0,
        webhook_max_body_bytes: int = 1_000_000,
        categories: tuple[str, ...] = tuple(MEDIA_CATEGORIES),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.webhook_max_body_bytes = webhook_max_body_bytes
        self.jwks_url = jwks_url
        self._tolerance = webhook_tolerance_seconds
        self._jwks_max_age = min(jwks_max_age_seconds, JWKS_MAX_AGE_SECONDS)
        self._jwks_min_refresh = jwks_min_refresh_seconds
        self._categories = categories
        self._clock = clock
        self._keys: list[Ed25519PublicKey] = []
        self._keys_fetched_at: float | None = None
        self._keys_lock = asyncio.Lock()

    # --- jobs -------------------------------------------------------------------------------------

    async def create(
        self,
        *,
        model_ref: str,
        version_id: str | None,
        input: dict[str, Any],
        webhook_url: str | None,
        deadline_seconds: float | None = None,
    ) -> PredictionUpdate:
        """Submit to fal's queue. fal has no versions: `version_id` is ignored.

        A deadline becomes X-Fal-Request-Timeout, which bounds only the wait before the request starts
        (queue, retries, routing; fal_client's `start_timeout`): fal has no header that stops a running
        request, so Darkroom's own timeout covers the rest.
        """
        body = await self.client.submit(
            model_ref, input, webhook_url=webhook_url, start_timeout_seconds=deadline_seconds
        )
        word = body.get("status") if isinstance(body.get("status"), str) else "IN_QUEUE"
        return self._status_update(str(body["request_id"]), {**body, "status": word})

    async def get(self, job: JobRef) -> PredictionUpdate:
        status = await self.client.status(job.model_ref, job.id, logs=True)
        word = _word(status.get("status"))
        if word != "COMPLETED":
            return self._status_update(job.id, status)
        logs = join_logs(status.get("logs"))
        metrics = status.get("metrics")
        predict_time = _seconds(metrics.get("inference_time")) if isinstance(metrics, dict) else None
        answer = await self.client.result(job.model_ref, job.id)
        return _outcome(job.id, answer, predict_time, logs)

    async def cancel(self, job: JobRef) -> PredictionUpdate:
        """Ask fal to drop the request (a queued one goes at once, a running one is signalled); then the
        request as it is now: canceled, or as it finished."""
        answer = await self.client.cancel(job.model_ref, job.id)
        logger.debug("fal cancel answered", extra={"request_id": job.id, "answer": str(answer.get("status"))[:64]})
        return await self.get(job)

    def stopped_by_deadline(self, update: PredictionUpdate, deadline_seconds: float, elapsed_seconds: float) -> bool:
        """Only fal's start timeout stops a request by itself (a result of 504 with
        ``X-Fal-Request-Timeout-Type: user``, read as CANCELED with a 504 error); nothing of fal's stops
        one that has started, so a cancellation of any other kind is not the deadline's."""
        return (
            update.status is GenerationStatus.CANCELED
            and update.error is not None
            and update.error.startswith(START_TIMEOUT_ERROR_PREFIX)
        )

    def _status_update(self, request_id: str, status: dict[str, Any]) -> PredictionUpdate:
        word = _word(status.get("status"))
        if word == "IN_QUEUE":
            return PredictionUpdate(
                prediction_id=request_id,
                status=GenerationStatus.STARTING,
                provider_status=word,
                queue_position=_int(status.get("queue_position")),
            )
        if word == "IN_PROGRESS":
            logs = join_logs(status.get("logs"))
            return PredictionUpdate(
                prediction_id=request_id,
                status=GenerationStatus.PROCESSING,
                provider_status=word,
                logs=logs,
                progress=parse_progress(logs),
            )
        # A word Darkroom does not know says the request is not finished.
        return PredictionUpdate(prediction_id=request_id, status=None, provider_status=word)

    # --- files ------------------------------------------------------------------------------------

    async def upload(self, content: bytes, *, filename: str, content_type: str) -> str:
        return await self.client.upload(content, filename=filename, content_type=content_type)

    # --- models -----------------------------------------------------------------------------------

    async def describe_model(self, ref: str) -> ModelDescription:
        """The endpoint as its OpenAPI document describes it; ProviderNotFoundError when fal has none."""
        return describe_openapi(ref, await self.client.openapi(ref))

    async def list_models(self) -> list[ModelDescription]:
        """The active models of every media category, from fal's listing with their OpenAPI inline."""
        described: dict[str, ModelDescription] = {}
        for category in self._categories:
            params: dict[str, str | list[str]] = {
                "category": category,
                "status": "active",
                "expand": "openapi-3.0",
                "limit": str(LISTING_PAGE_SIZE),
            }
            seen: set[str] = set()
            for _ in range(MAX_LISTING_PAGES):
                page = await self.client.list_models(params)
                for model in self._listed(page):
                    described.setdefault(model.ref, model)
                    if len(described) >= MAX_LISTED_MODELS:
                        return list(described.values())
                cursor = page.get("next_cursor")
                if not isinstance(cursor, str) or not cursor or len(cursor) > 200 or cursor in seen:
                    break
                seen.add(cursor)
                params = {**params, "cursor": cursor}
        return list(described.values())

    async def search(self, query: str, *, limit: int) -> list[ModelDescription]:
        """fal's free-text model search (``q``), active models only, at most `limit`."""
        limit = max(1, min(limit, LISTING_PAGE_SIZE))
        page = await self.client.list_models(
            {"q": query[:200], "status": "active", "expand": "openapi-3.0", "limit": str(limit)}
        )
        return self._listed(page)[:limit]

    def _listed(self, page: dict[str, Any]) -> list[ModelDescription]:
        models = page.get("models")
        if not isinstance(models, list):
            raise ProviderBadResponseError("Bad response from provider", "the model listing has no models")
        described = []
        for entry in models[:MAX_LISTED_MODELS]:
            if not isinstance(entry, dict) or not isinstance(entry.get("endpoint_id"), str):
                continue
            endpoint_id = entry["endpoint_id"][:500]
            metadata = _obj(entry.get("metadata"))
            try:
                described.append(describe_openapi(endpoint_id, entry.get("openapi"), metadata))
            except ProviderNotFoundError:
                # Listed without a usable document: what the listing says, no inputs.
                category = metadata.get("category") if isinstance(metadata.get("category"), str) else None
                described.append(
                    ModelDescription(
                        ref=endpoint_id,
                        kind=MEDIA_CATEGORIES.get(category or ""),
                        groups=(category,) if category else (),
                    )
                )
        return described

    # --- webhooks ---------------------------------------------------------------------------------

    async def _fetch_keys(self) -> None:
        try:
            document = await self.client.fetch_public(self.jwks_url, "{jwks}")
            keys = keys_from_jwks(document)
        except JwksError as exc:
            raise ProviderBadResponseError("Bad response from provider", f"the JWKS is unusable: {exc}") from None
        self._keys = keys
        self._keys_fetched_at = self._clock()

    async def _current_keys(self) -> list[Ed25519PublicKey]:
        async with self._keys_lock:
            fetched = self._keys_fetched_at
            if fetched is None or self._clock() - fetched > self._jwks_max_age:
                await self._fetch_keys()
            return self._keys

    async def _refreshed_keys(self, tried: list[Ed25519PublicKey]) -> list[Ed25519PublicKey] | None:
        """Fresh keys when no cached one verified, unless they were fetched under a minute ago (so forged
        deliveries cannot make Darkroom hammer fal's JWKS); None when they were."""
        async with self._keys_lock:
            if self._keys is not tried:
                return self._keys  # another delivery refreshed them meanwhile
            fetched = self._keys_fetched_at
            if fetched is not None and self._clock() - fetched < self._jwks_min_refresh:
                return None
            await self._fetch_keys()
            return self._keys

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> PredictionUpdate:
        keys = await self._current_keys()
        try:
            request_id = verify_webhook(keys, headers, body, tolerance_seconds=self._tolerance)
        except WebhookVerificationError as exc:
            if "no key verifies" not in str(exc):
                raise WebhookRejected(str(exc), signature=True) from None
            fresh = await self._refreshed_keys(keys)
            if fresh is None:
                raise WebhookRejected(str(exc), signature=True) from None
            try:
                request_id = verify_webhook(fresh, headers, body, tolerance_seconds=self._tolerance)
            except WebhookVerificationError as again:
                raise WebhookRejected(str(again), signature=True) from None
        return webhook_update(request_id, body)

    def refusals(self, error: ProviderError) -> list[Refusal]:
        return refusals_for(error)

    async def aclose(self) -> None:
        await self.client.aclose()


def webhook_update(request_id: str, body: bytes) -> PredictionUpdate:
    """The terminal update a verified delivery's body carries; WebhookRejected(signature=False) when it is
    not one.

    A delivery whose output could not be sent as JSON (``payload: null`` with ``payload_error``) says the
    request is done but not what it made: it is read as a word Darkroom does not know (status None), so the
    generation is polled and its result fetched.
    """
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise WebhookRejected(f"not JSON: {exc}", signature=False) from None
    if not isinstance(parsed, dict):
        raise WebhookRejected("not a JSON object", signature=False)
    if parsed.get("request_id") != request_id:
        raise WebhookRejected("the body names another request than the signature", signature=False)
    word = parsed.get("status")
    payload = parsed.get("payload")
    if word == "OK":
        if payload is None and parsed.get("payload_error") is not None:
            return PredictionUpdate(prediction_id=request_id, status=None, provider_status="OK")
        return PredictionUpdate(
            prediction_id=request_id,
            status=GenerationStatus.SUCCEEDED,
            provider_status="OK",
            output_urls=output_urls(payload),
        )
    if word == "ERROR":
        error = parsed.get("error")
        error = error if isinstance(error, str) else ""
        match = _STATUS_CODE.search(error[:200])
        code = int(match.group(1)) if match else None
        text = error_text(None, payload, error) if isinstance(payload, dict) else cut_text(error, MAX_ERROR_CHARS)
        if isinstance(payload, dict) and error:
            text = cut_text(f"{error}: {text}", MAX_ERROR_CHARS) if text != error else text
        status = GenerationStatus.CANCELED if code == 499 else GenerationStatus.FAILED
        return PredictionUpdate(prediction_id=request_id, status=status, provider_status="ERROR", error=text or "error")
    raise WebhookRejected("the body has no status OK or ERROR", signature=False)
