"""The Litestar application: GraphQL, webhooks, media files, health and metrics, and its lifespan.

The lifespan builds the Runtime, migrates the database, connects the event hub, and starts the
background workers its settings turn on (server/workers/run.py); with no REPLICATE_API_TOKEN it also
mounts the Replicate simulator at /simulator so the whole flow runs with no account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.handlers import asgi
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Receive, Scope, Send

from server import collector, metrics, telemetry
from server.graphql.controller import build_graphql_controller
from server.graphql.live.socket_writer import expose_socket
from server.graphql.schema import build_schema
from server.http.errors import server_fault
from server.http.health import healthz, metrics_endpoint, readyz
from server.http.media import serve_media
from server.http.webhooks import provider_webhook
from server.periodic import periodic_task
from server.provider.adapters import ADAPTERS
from server.provider.port import Provider
from server.reachability import log_reachability
from server.request_id import RequestIdMiddleware
from server.runtime import Runtime, configured_providers
from server.settings import Settings, get_settings
from server.workers.run import start_background_workers

logger = logging.getLogger(__name__)

GALLERY_DIR = Path(__file__).parent / "static" / "gallery"
GRAPHIQL_DIR = Path(__file__).parent / "static" / "graphiql"


def _simulator_mount(path: str, simulator: Any) -> Any:
    @asgi(path, is_mount=True, copy_scope=True, name=f"simulator{path.replace('/', '-')}")
    async def simulator_app(scope: Scope, receive: Receive, send: Send) -> None:
        await simulator.app(scope, receive, send)

    return simulator_app


class DarkroomApp(Litestar):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Before Litestar wraps `send`: live events are written to the server's socket directly (live/socket_writer.py).
        expose_socket(scope, send)
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, providers: list[Provider] | None = None) -> Litestar:
    """The application `settings` describe; `providers` replace the ones they name (the first is the default)."""
    settings = settings or get_settings()
    # Before anything builds an httpx client or the schema: both look whether tracing is on.
    telemetry.setup()
    runtime: Runtime | None = None

    async def keys_required() -> bool:
        assert runtime is not None, "a simulator is called once the app serves"
        return await runtime.api_keys.keys_required()

    # The simulators this process mounts: their tokens and signing keys are its own, and the clients that
    # call them get them here. They are open like /graphql while no API key is needed; from the first key
    # on, only their own tokens open them.
    simulators = {
        name: ADAPTERS[name].embedded_simulator(settings, keys_required)
        for name in settings.provider_names
        if settings.embeds(name)
    }
    if providers is None:
        providers = configured_providers(settings, simulators=simulators, on_request=metrics.observe_provider_request)
    runtime = Runtime(settings, providers)
    runtime.simulators = simulators

    graphql = build_graphql_controller(build_schema(settings), settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        collector.tune_after_start_up(settings.server.gc_thresholds)
        stop = asyncio.Event()
        tasks = start_background_workers(runtime, stop, api_keys=True)
        if settings.server.gc_freeze_after_subscribe_seconds > 0:
            hub = runtime.hub
            freezer = collector.SubscriptionFreezer(lambda: hub.subscriptions_opened, lambda: hub.subscriber_count)
            quiet = settings.server.gc_freeze_after_subscribe_seconds
            tasks.append(periodic_task("subscription-freezer", quiet, freezer.look, stop, wait_first=True))
        await runtime.api_keys.log_access_mode()
        for name in simulators:
            logger.warning(
                "no token: the built-in simulator plays a provider",
                extra={"provider": name, "url": ADAPTERS[name].api_url(settings)},
            )
        log_reachability(settings)
        logger.info("darkroom ready", extra={"url": settings.base_url(), "database": runtime.engine.dialect.name})
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for simulator in simulators.values():
                await simulator.aclose()
            await runtime.stop()
            telemetry.flush()

    handlers: list[Any] = [graphql, provider_webhook, serve_media, healthz, readyz, metrics_endpoint]
    # The live gallery: one page of plain HTML and JavaScript at /gallery, no build step.
    handlers.append(create_static_files_router("/gallery", [GALLERY_DIR], html_mode=True, name="gallery"))
    if settings.graphql.graphiql_enabled:
        # The scripts and styles of GraphiQL's page at /graphql, vendored: nothing comes from a CDN.
        handlers.append(create_static_files_router("/graphiql", [GRAPHIQL_DIR], name="graphiql"))
    handlers += [_simulator_mount(ADAPTERS[name].simulator_path, simulator) for name, simulator in simulators.items()]
    return DarkroomApp(
        route_handlers=handlers,
        lifespan=[lifespan],
        state=State({"runtime": runtime}),
        request_max_body_size=settings.graphql.max_body_bytes,
        middleware=[RequestIdMiddleware],
        plugins=telemetry.litestar_plugins(),
        cors_config=_cors_config(settings),
        logging_config=None,
        exception_handlers={HTTP_500_INTERNAL_SERVER_ERROR: server_fault},
    )


def _cors_config(settings: Settings) -> CORSConfig | None:
    """Browser pages on CORS_ORIGINS may call the API (bearer tokens, no cookies); none when unset."""
    origins = settings.allowed_cors_origins()
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
