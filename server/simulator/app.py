"""The simulator's HTTP routes: the part of Replicate's API Darkroom uses, plus test controls.

Replicate's endpoints live under ``/v1`` and need ``Authorization: Bearer <token>`` (``Token`` is
accepted too). Answers are JSON; errors are problem+json (see problems.py). Lists are paginated as
``{"next", "previous", "results"}`` with opaque ``cursor`` URLs built on the public base URL.

Which token: any non-empty one, unless ``config.api_token`` is set and `token_required()` says it is
needed now (by default whenever it is set); then that token alone, compared in constant time. The
embedded simulator is asked for it once Darkroom has API keys or AUTH_REQUIRED.

Served without a token, like replicate.delivery and signed URLs:
- ``GET /files/<prediction_id>/<name>`` output files, ``GET /files/covers/<model>.webp`` covers;
- ``GET /v1/files/<id>/download`` the bytes of an upload (its ``urls.get``);
- ``GET /web/...`` tiny HTML pages behind the ``url`` / ``urls.web`` links (while the token is not
  required; then, as they show a prediction's input, only with it).

Test controls (not part of Replicate's API; no token needed while the token is not required, else the
token, and a caller without it is told 404):
- ``GET /_control/config`` every SimulatorConfig knob as JSON; ``PATCH /_control/config`` with a JSON
  object changes the knobs it names (unknown names or wrong types: 422, nothing changed);
- ``GET /_control/stats`` ``{"file_hits": {path: n}, "webhooks": [attempt, ...], "predictions_created": n,
  "creates": [{prediction_id, model, webhook, path, version, cancel_after}, ...]}``;
- ``POST /_control/reset`` clears those stats.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from litestar import Litestar, Request, Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.types import LifespanHook

from server.simulator import catalogue
from server.simulator.config import SimulatorConfig
from server.simulator.engine import Engine, SimPrediction
from server.simulator.files import FileStore, StoredFile
from server.simulator.media import render_image
from server.simulator.problems import (
    EXCEPTION_HANDLERS,
    InvalidField,
    Problem,
    bad_request,
    invalid,
    not_found,
    unauthenticated,
)
from server.simulator.serving import (
    HIDDEN_WHEN_CLOSED,
    PUBLIC,
    TokenRequired,
    control_routes,
    file_response,
    json_body,
    simulate_download_failure,
    token_guard,
)
from server.simulator.stats import Stats
from server.simulator.validation import parse_duration, parse_prediction_request, parse_prefer_wait

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BODY_BYTES = 100_000_000
_NO_TOKEN = "You did not pass an authentication token"
__all__ = ["HIDDEN_WHEN_CLOSED", "PUBLIC", "TokenRequired", "build_app"]


def _page(
    items: Sequence[T], key: Callable[[T], str], cursor: str | None, size: int, url: str
) -> tuple[list[T], str | None, str | None]:
    """One page of `items` (already in display order) and the URLs of the next and previous pages.

    Cursors name the item the page starts after (or ends before), so items added at the front while a
    client pages through do not shift what it sees.
    """
    size = max(1, size)
    keys = [key(item) for item in items]
    start = 0
    if cursor:
        try:
            direction, _, anchor = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        except ValueError:
            raise bad_request("Invalid cursor.") from None
        if direction not in ("after", "before") or anchor not in keys:
            raise bad_request("Invalid cursor.")
        index = keys.index(anchor)
        start = index + 1 if direction == "after" else max(0, index - size)
    page = list(items[start : start + size])

    def link(direction: str, anchor: str) -> str:
        token = base64.urlsafe_b64encode(f"{direction}:{anchor}".encode()).decode()
        return f"{url}?cursor={token}"

    following = link("after", keys[start + len(page) - 1]) if start + len(page) < len(items) else None
    preceding = link("before", keys[start]) if start > 0 and page else None
    return page, following, preceding


def _paginated(
    items: Sequence[T],
    key: Callable[[T], str],
    render: Callable[[T], Any],
    cursor: str | None,
    size: int,
    url: str,
) -> dict[str, Any]:
    page, following, preceding = _page(items, key, cursor, size, url)
    return {"next": following, "previous": preceding, "results": [render(item) for item in page]}


async def _json_body(request: Request[Any, Any, Any]) -> Any:
    return await json_body(request, bad_request)


def _html_page(title: str, rows: dict[str, Any]) -> Response[str]:
    cells = "".join(
        f"<tr><th>{html.escape(k)}</th><td><pre>{html.escape(json.dumps(v, indent=1))}</pre></td></tr>"
        for k, v in rows.items()
    )
    heading = html.escape(title)
    body = f"<!doctype html><title>{heading}</title><h1>{heading}</h1><table>{cells}</table>"
    return Response(body, media_type="text/html; charset=utf-8")


def build_app(
    config: SimulatorConfig,
    engine: Engine,
    files: FileStore,
    stats: Stats,
    on_shutdown: Sequence[LifespanHook] = (),
    token_required: TokenRequired | None = None,
) -> Litestar:
    """The simulator's Litestar app. Nothing here needs its lifespan to have run.

    `token_required()` says, per request, whether ``config.api_token`` is needed (None: whenever set)."""

    require_token = token_guard(
        config,
        token_required,
        schemes=("bearer", "token"),
        unauthenticated=lambda had_token: unauthenticated(
            "You did not pass a valid authentication token" if had_token else _NO_TOKEN
        ),
        not_found=not_found,
    )

    def model_or_404(owner: str, name: str) -> catalogue.CatalogueModel:
        model = catalogue.find_model(owner, name)
        if model is None:
            raise not_found()
        return model

    def prediction_or_404(prediction_id: str) -> SimPrediction:
        prediction = engine.get(prediction_id)
        if prediction is None:
            raise not_found()
        return prediction

    def model_json(model: catalogue.CatalogueModel) -> dict[str, Any]:
        return catalogue.model_json(model, config.base_url)

    # --- models, collections, search ---------------------------------------------------------------

    @get("/v1/models")
    async def list_models(cursor: FromQuery[str | None] = None) -> dict[str, Any]:
        return _paginated(
            catalogue.MODELS,
            lambda m: m.ref,
            model_json,
            cursor,
            config.page_size,
            f"{config.base_url}/v1/models",
        )

    @get("/v1/models/{owner:str}/{name:str}")
    async def get_model(owner: FromPath[str], name: FromPath[str]) -> dict[str, Any]:
        return model_json(model_or_404(owner, name))

    @get("/v1/models/{owner:str}/{name:str}/versions")
    async def list_versions(
        owner: FromPath[str], name: FromPath[str], cursor: FromQuery[str | None] = None
    ) -> dict[str, Any]:
        model = model_or_404(owner, name)
        url = f"{config.base_url}/v1/models/{model.ref}/versions"
        return _paginated([model], lambda m: m.version_id, catalogue.version_json, cursor, config.page_size, url)

    @get("/v1/models/{owner:str}/{name:str}/versions/{version_id:str}")
    async def get_version(owner: FromPath[str], name: FromPath[str], version_id: FromPath[str]) -> dict[str, Any]:
        model = model_or_404(owner, name)
        if version_id != model.version_id:
            raise not_found()
        return catalogue.version_json(model)

    @get("/v1/collections")
    async def list_collections(cursor: FromQuery[str | None] = None) -> dict[str, Any]:
        return _paginated(
            catalogue.COLLECTIONS,
            lambda c: c.slug,
            catalogue.collection_summary_json,
            cursor,
            config.page_size,
            f"{config.base_url}/v1/collections",
        )

    @get("/v1/collections/{slug:str}")
    async def get_collection(slug: FromPath[str]) -> dict[str, Any]:
        collection = catalogue.find_collection(slug)
        if collection is None:
            raise not_found()
        return catalogue.collection_json(collection, config.base_url)

    @get("/v1/search")
    async def search(
        text: Annotated[str, QueryParameter(name="query")] = "", limit: FromQuery[int] = 20
    ) -> dict[str, Any]:
        if not text.strip():
            raise invalid("Invalid request", [InvalidField("required", "query", "query is required")])
        models, collections = catalogue.search(text, max(1, min(50, limit)))
        return {
            "query": text,
            "models": [
                {
                    "model": model_json(model),
                    "metadata": {
                        "generated_description": model.description,
                        "tags": list(model.tags),
                        "score": score,
                    },
                }
                for model, score in models
            ],
            "collections": [catalogue.collection_summary_json(c) for c in collections],
            "pages": [],
        }

    @get("/v1/account")
    async def account() -> dict[str, Any]:
        return {
            "type": "organization",
            "username": catalogue.OWNER,
            "name": "Darkroom simulator",
            "github_url": None,
        }

    # --- predictions -----------------------------------------------------------------------------

    async def create(
        request: Request[Any, Any, Any], model: catalogue.CatalogueModel | None, path: str
    ) -> Response[Any]:
        body = await _json_body(request)
        parsed = parse_prediction_request(body, model)
        throttled = config.rate_limit_create()
        if throttled is not None:
            stats.rate_limited += 1
            raise Problem(
                429,
                "Request was throttled",
                f"Request was throttled. Expected available in {throttled['Retry-After']} second.",
                headers=throttled,
            )
        cancel_header = request.headers.get("cancel-after")
        cancel_after = parse_duration(cancel_header) if cancel_header else None
        wait = parse_prefer_wait(request.headers.get("prefer"))
        prediction = engine.create(parsed, cancel_after)
        stats.creates.append(
            {
                "prediction_id": prediction.id,
                "model": parsed.model.ref,
                "webhook": parsed.webhook,
                "path": path,
                "version": body.get("version") if isinstance(body, dict) else None,
                "cancel_after": cancel_header,
            }
        )
        if wait is not None:
            await engine.wait(prediction, wait)
        return Response(engine.to_json(prediction), status_code=201)

    @post("/v1/predictions")
    async def create_prediction(request: Request[Any, Any, Any]) -> Response[Any]:
        return await create(request, None, "/v1/predictions")

    @post("/v1/models/{owner:str}/{name:str}/predictions")
    async def create_model_prediction(
        request: Request[Any, Any, Any], owner: FromPath[str], name: FromPath[str]
    ) -> Response[Any]:
        return await create(request, model_or_404(owner, name), f"/v1/models/{owner}/{name}/predictions")

    @get("/v1/predictions")
    async def list_predictions(cursor: FromQuery[str | None] = None) -> dict[str, Any]:
        return _paginated(
            engine.newest_first(),
            lambda p: p.id,
            engine.to_json,
            cursor,
            config.page_size,
            f"{config.base_url}/v1/predictions",
        )

    @get("/v1/predictions/{prediction_id:str}")
    async def get_prediction(prediction_id: FromPath[str]) -> dict[str, Any]:
        return engine.to_json(prediction_or_404(prediction_id))

    @post("/v1/predictions/{prediction_id:str}/cancel", status_code=200)
    async def cancel_prediction(prediction_id: FromPath[str]) -> dict[str, Any]:
        prediction = prediction_or_404(prediction_id)
        engine.cancel(prediction)
        return engine.to_json(prediction)

    @get("/v1/webhooks/default/secret")
    async def webhook_secret() -> dict[str, str]:
        return {"key": config.webhook_secret}

    # --- files -----------------------------------------------------------------------------------

    @post("/v1/files", status_code=201)
    async def upload_file(request: Request[Any, Any, Any]) -> dict[str, Any]:
        form = await request.form()
        content = form.get("content")
        if not isinstance(content, UploadFile):
            raise invalid("Invalid request", [InvalidField("required", "content", "content is required")])
        data = await content.read()
        name = str(form.get("filename") or content.filename or "file")
        content_type = str(form.get("type") or form.get("content_type") or content.content_type)
        raw_metadata = form.get("metadata")
        try:
            metadata = json.loads(raw_metadata) if isinstance(raw_metadata, str) and raw_metadata else {}
        except json.JSONDecodeError:
            metadata = None
        if not isinstance(metadata, dict):
            raise invalid(
                "Invalid request",
                [InvalidField("invalid_type", "metadata", "metadata must be a JSON object")],
            )
        upload = files.add_upload(name, content_type or "application/octet-stream", data, metadata)
        return upload.to_json(config.base_url)

    @get("/v1/files")
    async def list_files(cursor: FromQuery[str | None] = None) -> dict[str, Any]:
        uploads = sorted(files.uploads.values(), key=lambda u: u.created_at, reverse=True)
        return _paginated(
            uploads,
            lambda u: u.id,
            lambda u: u.to_json(config.base_url),
            cursor,
            config.page_size,
            f"{config.base_url}/v1/files",
        )

    @get("/v1/files/{file_id:str}")
    async def get_file(file_id: FromPath[str]) -> dict[str, Any]:
        upload = files.upload(file_id)
        if upload is None:
            raise not_found()
        return upload.to_json(config.base_url)

    @delete("/v1/files/{file_id:str}")
    async def delete_file(file_id: FromPath[str]) -> None:
        if files.upload(file_id) is None:
            raise not_found()
        del files.uploads[file_id]

    @get("/v1/files/{file_id:str}/download", opt=PUBLIC)
    async def download_file(file_id: FromPath[str]) -> Response[bytes]:
        upload = files.upload(file_id)
        stats.hit(f"/v1/files/{file_id}/download")
        if upload is None:
            raise not_found()
        return _file_response(StoredFile(upload.content, upload.content_type), upload.name)

    @get("/files/{file_path:path}", opt=PUBLIC)
    async def serve_output(file_path: FromPath[str]) -> Response[bytes]:
        path = "/files/" + file_path.strip("/")
        stats.hit(path)
        stored = engine.output_file(path)
        if stored is None:
            cover = catalogue.find_by_cover(path)
            if cover is None:
                raise not_found()
            content = await asyncio.to_thread(render_image, cover.description, 0, 256, 256, "webp")
            files.put_output(path, content, "image/webp", None)
            stored = files.outputs[path]
        else:
            simulate_download_failure(
                stored,
                config,
                lambda: Problem(500, "Internal server error", "Simulated download failure (download_failures)."),
            )
        return _file_response(stored, path.rsplit("/", 1)[-1])

    # --- web pages -------------------------------------------------------------------------------

    @get("/web/p/{prediction_id:str}", opt=HIDDEN_WHEN_CLOSED)
    async def prediction_page(prediction_id: FromPath[str]) -> Response[str]:
        body = engine.to_json(prediction_or_404(prediction_id))
        return _html_page(f"Prediction {prediction_id}", body)

    @get("/web/{owner:str}/{name:str}", opt=HIDDEN_WHEN_CLOSED)
    async def model_page(owner: FromPath[str], name: FromPath[str]) -> Response[str]:
        model = model_or_404(owner, name)
        return _html_page(model.ref, {"description": model.description, "input": model.input_schema()})

    return Litestar(
        route_handlers=[
            list_models,
            get_model,
            list_versions,
            get_version,
            list_collections,
            get_collection,
            search,
            account,
            create_prediction,
            create_model_prediction,
            list_predictions,
            get_prediction,
            cancel_prediction,
            webhook_secret,
            upload_file,
            list_files,
            get_file,
            delete_file,
            download_file,
            serve_output,
            prediction_page,
            model_page,
            *control_routes(config, stats, bad_request),
        ],
        guards=[require_token],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=None,
        logging_config=None,
        on_shutdown=list(on_shutdown),
    )


def _file_response(stored: StoredFile, filename: str) -> Response[bytes]:
    return file_response(stored, filename)
