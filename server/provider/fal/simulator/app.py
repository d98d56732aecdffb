"""The fal simulator's HTTP routes: the parts of fal's APIs Darkroom uses, on one base URL, plus the
shared test controls.

Every fal host is served from the same base URL (point each of the client's base URLs at it):

- queue (``queue.fal.run``): ``POST /{endpoint_id}[?fal_webhook=URL]`` submits (200, ``{status:
  "IN_QUEUE", request_id, response_url, status_url, cancel_url, gateway_request_id, queue_position}``);
  ``GET …/requests/{id}/status?logs=1`` (202 while queued or running, 200 once COMPLETED; ``logs`` is
  null unless asked for with ``true`` or ``1``); ``GET …/requests/{id}`` the result (400 while
  unfinished, else the stored outcome, see engine.py); ``PUT …/requests/{id}/cancel`` (200 ``OK`` for a
  queued request, 202 ``CANCELLATION_REQUESTED`` for a running one, 400 ``ALREADY_COMPLETED``, 404
  ``NOT_FOUND``; fal documents no status codes for these, so these are the simulator's choice, and the
  adapter reads the body's word whatever the code). ``…`` is the endpoint's owner/app
  (``fal-ai/flux``) or its whole id (``fal-ai/flux/dev``): fal documents the first, its OpenAPI lists
  the second, and both are accepted;
- REST (``rest.fal.ai``): ``POST /storage/auth/token?storage_type=fal-cdn-v3`` a storage token;
- CDN (``v3.fal.media``): ``POST /files/upload`` with the token (raw bytes, ``X-Fal-File-Name``),
  ``{"access_url"}``; the file is then served from ``GET /files/uploads/{id}/{name}``;
- model pages (``fal.ai``): ``GET /api/openapi/queue/openapi.json?endpoint_id=`` (public);
- platform API (``api.fal.ai``): ``GET /v1/models`` the listing (``limit``, ``cursor``, ``endpoint_id``
  repeated, ``q``, ``category``, ``status``, ``expand=openapi-3.0``; public, as fal's is);
- ``GET /.well-known/jwks.json`` the public key webhooks are signed with;
- ``GET /files/{request id}/{name}`` output files (public, like fal's CDN links).

fal's APIs need ``Authorization: Key <key>``; the token rules are the shared ones
(`server.simulator.serving`): any key unless ``config.api_token`` is set and required. Errors are
fal's ``{"detail": ...}`` bodies; the ``/_control`` routes answer as in the Replicate simulator.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from litestar import Litestar, Request, Response, get, post, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.types import LifespanHook

from server.provider.fal.signing import private_key_from_text, public_jwk
from server.provider.fal.simulator.catalogue import ENDPOINTS, FalEndpoint, endpoint_for_path, find_endpoint
from server.provider.fal.simulator.config import FalSimulatorConfig
from server.provider.fal.simulator.engine import FalEngine
from server.simulator.clock import utcnow
from server.simulator.engine import SimPrediction
from server.simulator.files import FileStore, StoredFile
from server.simulator.media import render_image
from server.simulator.problems import Problem, handle_problem
from server.simulator.serving import (
    PUBLIC,
    TokenRequired,
    control_routes,
    file_response,
    json_body,
    simulate_download_failure,
    token_guard,
)
from server.simulator.stats import Stats

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 100_000_000
STORAGE_TOKEN_TTL = timedelta(hours=1)
_LOGS = {"true": True, "1": True, "false": False, "0": False}


class FalError(Problem):
    """Raised by a handler to answer in fal's shape: ``{"detail": ...}`` (a sentence, or validation items),
    or another JSON body (`body`) such as cancel's ``{"status": ...}``."""

    def __init__(
        self, status: int, detail: Any, *, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, "", str(detail), headers=headers)
        self.body = body if body is not None else {"detail": detail}

    def response(self) -> Response[dict[str, Any]]:
        return Response(self.body, status_code=self.status, headers=self.headers)


def _fal_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """Litestar's own errors (unknown route, wrong method, body too large) in fal's shape."""
    detail = "Not Found" if exc.status_code == 404 else str(exc.detail)
    return FalError(exc.status_code, detail, headers=exc.headers).response()


def _fal_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    logger.exception("fal simulator request failed", extra={"path": request.url.path})
    return FalError(500, "Internal Server Error").response()


def _bad_request(detail: str) -> FalError:
    return FalError(400, detail)


def _cursor(text: str | None) -> int:
    """fal's cursors encode the page number in base64 ("Mg==" is page 2)."""
    if not text:
        return 1
    try:
        page = int(base64.b64decode(text, validate=True).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad_request("Invalid cursor") from None
    if page < 1:
        raise _bad_request("Invalid cursor")
    return page


def build_app(
    config: FalSimulatorConfig,
    engine: FalEngine,
    files: FileStore,
    stats: Stats,
    on_shutdown: Sequence[LifespanHook] = (),
    token_required: TokenRequired | None = None,
) -> Litestar:
    """The fal simulator's Litestar app. Nothing here needs its lifespan to have run."""
    guard = token_guard(
        config,
        token_required,
        schemes=("key",),
        unauthenticated=lambda had_key: FalError(401, "Invalid Key" if had_key else "Missing authorization header"),
        not_found=lambda: FalError(404, "Not Found"),
    )
    storage_tokens: dict[str, Any] = {}

    def thumbnail(endpoint: FalEndpoint) -> str:
        return f"{config.base_url}/files/covers/{endpoint.pascal}.webp"

    def find_request(prefix: list[str], request_id: str) -> SimPrediction:
        """The request `request_id` under owner/app or the whole endpoint id; 404 otherwise."""
        prediction = engine.get(request_id)
        endpoint = engine.endpoints.get(request_id) if prediction is not None else None
        named = "/".join(prefix)
        if prediction is None or endpoint is None or named not in (endpoint.app_id, endpoint.endpoint_id):
            raise FalError(404, f"Request {request_id[:100]} not found")
        return prediction

    # --- queue ------------------------------------------------------------------------------------

    @post("/{path:path}", status_code=200)
    async def submit(request: Request[Any, Any, Any], path: FromPath[str]) -> dict[str, Any]:
        parts = [part for part in path.split("/") if part]
        endpoint = endpoint_for_path(parts)
        if endpoint is None:
            raise FalError(404, f"Application '{'/'.join(parts)[:200]}' not found")
        body = await json_body(request, _bad_request)
        if not isinstance(body, dict):
            detail = [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
            raise FalError(422, detail)
        webhook = request.query_params.get("fal_webhook")
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise _bad_request("fal_webhook must be an http(s) URL")
        timeout_header = request.headers.get("x-fal-request-timeout")
        start_timeout: float | None = None
        if timeout_header is not None:
            try:
                start_timeout = float(timeout_header)
            except ValueError:
                start_timeout = math.nan
            if not math.isfinite(start_timeout) or start_timeout <= 1:
                raise _bad_request("X-Fal-Request-Timeout must be a number of seconds greater than 1")
        throttled = config.rate_limit_create()
        if throttled is not None:
            stats.rate_limited += 1
            raise FalError(429, "Rate limit exceeded", headers=throttled)
        prediction = engine.submit(endpoint, body, webhook, start_timeout)
        stats.creates.append(
            {
                "prediction_id": prediction.id,
                "model": endpoint.endpoint_id,
                "webhook": webhook,
                "path": "/" + "/".join(parts),
                "version": None,
                "cancel_after": timeout_header,
            }
        )
        return {
            "status": "IN_QUEUE",
            "request_id": prediction.id,
            "gateway_request_id": prediction.id,
            **engine.urls(prediction),
            "queue_position": engine.queue_position(prediction),
        }

    @get("/{path:path}")
    async def read_request(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[Any]:
        parts = [part for part in path.split("/") if part]
        if len(parts) >= 4 and parts[-1] == "status" and parts[-3] == "requests":
            prediction = find_request(parts[:-3], parts[-2])
            raw = request.query_params.get("logs", "false").strip().lower()
            if raw not in _LOGS:
                raise _bad_request("logs must be true, false, 1 or 0")
            body = engine.status_json(prediction, with_logs=_LOGS[raw])
            return Response(body, status_code=200 if body["status"] == "COMPLETED" else 202)
        if len(parts) >= 3 and parts[-2] == "requests":
            prediction = find_request(parts[:-2], parts[-1])
            answer = engine.result(prediction)
            headers = {"x-fal-request-id": prediction.id, **answer.headers}
            return Response(answer.body, status_code=answer.status, headers=headers)
        raise FalError(404, "Not Found")

    @put("/{path:path}")
    async def cancel_request(path: FromPath[str]) -> Response[Any]:
        parts = [part for part in path.split("/") if part]
        if len(parts) < 4 or parts[-1] != "cancel" or parts[-3] != "requests":
            raise FalError(404, "Not Found")
        try:
            prediction = find_request(parts[:-3], parts[-2])
        except FalError:
            return Response({"status": "NOT_FOUND"}, status_code=404)
        if prediction.terminal:
            return Response({"status": "ALREADY_COMPLETED"}, status_code=400)
        running = prediction.status == "processing"
        engine.cancel(prediction)
        if running:
            return Response({"status": "CANCELLATION_REQUESTED"}, status_code=202)
        return Response({"status": "OK"}, status_code=200)

    # --- storage ----------------------------------------------------------------------------------

    @post("/storage/auth/token", status_code=200)
    async def storage_token(request: Request[Any, Any, Any]) -> dict[str, Any]:
        if request.query_params.get("storage_type", "fal-cdn-v3") != "fal-cdn-v3":
            raise _bad_request("Unsupported storage_type")
        token = secrets.token_urlsafe(24)
        expires = utcnow() + STORAGE_TOKEN_TTL
        storage_tokens[token] = expires
        return {"token": token, "token_type": "Bearer", "base_url": config.base_url, "expires_at": expires.isoformat()}

    @post("/files/upload", opt=PUBLIC, status_code=200)
    async def upload(request: Request[Any, Any, Any]) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires = storage_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires is None or expires <= utcnow():
            raise FalError(401, "Unauthorized")
        content = await request.body()
        name = request.headers.get("x-fal-file-name") or "file"
        name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[:100] or "file"
        content_type = request.headers.get("content-type") or "application/octet-stream"
        stored = files.add_upload(name, content_type, content, {})
        url = f"{config.base_url}/files/uploads/{stored.id}/{name}"
        return {"access_url": url, "file_name": name, "content_type": content_type, "file_size": len(content)}

    @get("/files/{file_path:path}", opt=PUBLIC)
    async def serve_file(file_path: FromPath[str]) -> Response[bytes]:
        path = "/files/" + file_path.strip("/")
        stats.hit(path)
        parts = path.split("/")
        if len(parts) == 5 and parts[2] == "uploads":
            uploaded = files.upload(parts[3])
            if uploaded is None or uploaded.name != parts[4]:
                raise FalError(404, "Not Found")
            return file_response(StoredFile(uploaded.content, uploaded.content_type), uploaded.name)
        if len(parts) == 4 and parts[2] == "covers":
            cover = next((e for e in ENDPOINTS if parts[3] == f"{e.pascal}.webp"), None)
            if cover is None:
                raise FalError(404, "Not Found")
            content = await asyncio.to_thread(render_image, cover.display_name, 0, 256, 256, "webp")
            return file_response(StoredFile(content, "image/webp"), parts[3])
        stored = engine.output_file(path)
        if stored is None:
            raise FalError(404, "Not Found")
        simulate_download_failure(
            stored, config, lambda: FalError(500, "Simulated download failure (download_failures).")
        )
        return file_response(stored, parts[-1])

    # --- models and keys --------------------------------------------------------------------------

    @get("/api/openapi/queue/openapi.json", opt=PUBLIC)
    async def openapi(endpoint_id: str = "") -> dict[str, Any]:
        endpoint = find_endpoint(endpoint_id)
        if endpoint is None:
            raise FalError(404, f"Endpoint {endpoint_id[:200]!r} not found")
        return endpoint.openapi(config.base_url, thumbnail(endpoint))

    @get("/v1/models", opt=PUBLIC)
    async def list_models(request: Request[Any, Any, Any]) -> dict[str, Any]:
        query = request.query_params
        try:
            limit = int(query.get("limit") or config.page_size)
        except ValueError:
            raise _bad_request("limit must be an integer") from None
        if limit < 1:
            raise _bad_request("limit must be at least 1")
        page = _cursor(query.get("cursor"))
        ids = query.getall("endpoint_id", [])
        text, category, status = query.get("q"), query.get("category"), query.get("status")
        expand = query.getall("expand", [])
        chosen = [
            e
            for e in ENDPOINTS
            if (not ids or e.endpoint_id in ids)
            and (not text or e.matches(text))
            and (not category or e.category == category)
            and status in (None, "", "active")
        ]
        start = (page - 1) * limit
        window = chosen[start : start + limit]
        more = start + limit < len(chosen)
        return {
            "models": [e.listing(config.base_url, thumbnail(e), with_openapi="openapi-3.0" in expand) for e in window],
            "next_cursor": base64.b64encode(str(page + 1).encode()).decode() if more else None,
            "has_more": more,
        }

    @get("/.well-known/jwks.json", opt=PUBLIC)
    async def jwks() -> dict[str, Any]:
        key = private_key_from_text(config.webhook_signing_key)
        return {"keys": [public_jwk(key, kid="darkroom-sim")]}

    return Litestar(
        route_handlers=[
            storage_token,
            upload,
            serve_file,
            openapi,
            list_models,
            jwks,
            *control_routes(config, stats, _bad_request),
            submit,
            read_request,
            cancel_request,
        ],
        guards=[guard],
        exception_handlers={
            FalError: handle_problem,
            Problem: handle_problem,
            HTTPException: _fal_http_exception,
            Exception: _fal_unexpected,
        },
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,
        logging_config=None,
        on_shutdown=list(on_shutdown),
    )
