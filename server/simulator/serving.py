"""What every simulator's HTTP app shares, whichever provider it plays: the token guard, the test
controls, reading a JSON body and answering a file.

The token rules (the Replicate simulator's app.py docstring tells them in full): any non-empty token,
unless ``config.api_token`` is set and `token_required()` says it is needed now (by default whenever it
is set); then that token alone, compared in constant time. A handler with ``opt={"public": True}`` needs
none; one with ``opt={"hidden_when_closed": True}`` is open while no token is required, and otherwise
answers 404 to anyone without the token. Each simulator names the schemes its provider's Authorization
header uses ("Bearer"/"Token" for Replicate, "Key" for fal) and how it refuses, in its provider's shape.

Test controls (`control_routes`), the same in every simulator and never part of a provider's API:
``GET /_control/config`` (every knob but the secrets), ``PATCH /_control/config`` (change the knobs it
names; unknown names or wrong types: 422, nothing changed), ``GET /_control/stats``, ``POST
/_control/reset``.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar import Request, Response, get, patch, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler

from server.simulator.config import SimulatorConfig
from server.simulator.files import StoredFile
from server.simulator.problems import InvalidField, invalid
from server.simulator.stats import Stats

logger = logging.getLogger(__name__)

TokenRequired = Callable[[], Awaitable[bool]]
Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]

PUBLIC = {"public": True}
# Open while no token is required; then only for the token, and a 404 to anyone else.
HIDDEN_WHEN_CLOSED = {"hidden_when_closed": True}


def token_guard(
    config: SimulatorConfig,
    token_required: TokenRequired | None,
    *,
    schemes: Iterable[str],
    unauthenticated: Callable[[bool], Exception],
    not_found: Callable[[], Exception],
) -> Guard:
    """The guard of every route (see the module docstring). `unauthenticated(had_token)` is the refusal of
    a caller without a valid token; `not_found()` the answer a hidden route gives it."""
    accepted = frozenset(scheme.lower() for scheme in schemes)

    async def required() -> bool:
        if config.api_token is None:
            return False
        if token_required is None:
            return True
        try:
            return await token_required()
        except Exception:
            # Not knowing whether callers need a key: keep the door shut rather than open.
            logger.warning("could not tell whether the simulator's token is required", exc_info=True)
            return True

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public"):
            return
        scheme, _, token = connection.headers.get("authorization", "").strip().partition(" ")
        token = token.strip() if scheme.lower() in accepted else ""
        if await required():
            assert config.api_token is not None
            if secrets.compare_digest(token.encode(), config.api_token.encode()):
                return
            if handler.opt.get("hidden_when_closed"):
                raise not_found()
            raise unauthenticated(bool(token))
        if not token and not handler.opt.get("hidden_when_closed"):
            raise unauthenticated(False)

    return guard


async def json_body(request: Request[Any, Any, Any], refuse: Callable[[str], Exception]) -> Any:
    """The request's JSON body ({} when empty); `refuse(reason)` is raised when it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise refuse(f"The request body is not valid JSON: {exc}") from None


def file_response(stored: StoredFile, filename: str) -> Response[bytes]:
    """A stored file's bytes, cacheable, shown inline under `filename`."""
    return Response(
        stored.content,
        media_type=stored.content_type,
        headers={
            "cache-control": "public, max-age=3600",
            "content-disposition": f'inline; filename="{filename}"',
        },
    )


def simulate_download_failure(stored: StoredFile, config: SimulatorConfig, fail: Callable[[], Exception]) -> None:
    """Raise `fail()` while an output file still owes ``config.download_failures`` failed answers."""
    if stored.prediction_id is not None and stored.failures_served < config.download_failures:
        stored.failures_served += 1
        raise fail()


def control_routes(config: SimulatorConfig, stats: Stats, refuse: Callable[[str], Exception]) -> list[HTTPRouteHandler]:
    """The ``/_control`` test endpoints over `config` and `stats` (see the module docstring)."""

    @get("/_control/config", opt=HIDDEN_WHEN_CLOSED)
    async def read_config() -> dict[str, Any]:
        return config.to_json()

    @patch("/_control/config", opt=HIDDEN_WHEN_CLOSED)
    async def update_config(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await json_body(request, refuse)
        if not isinstance(body, dict):
            raise invalid("Invalid request", [InvalidField("invalid_type", "(root)", "Expected: object")])
        problems = config.update(body)
        if problems:
            raise invalid("Invalid config", [InvalidField("invalid_field", name, text) for name, text in problems])
        return config.to_json()

    @get("/_control/stats", opt=HIDDEN_WHEN_CLOSED)
    async def read_stats() -> dict[str, Any]:
        return stats.to_json()

    @post("/_control/reset", opt=HIDDEN_WHEN_CLOSED, status_code=200)
    async def reset_stats() -> dict[str, Any]:
        stats.reset()
        return stats.to_json()

    return [read_config, update_config, read_stats, reset_stats]
