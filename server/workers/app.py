"""The `darkroom worker` process: the background workers, and only /healthz, /readyz and /metrics.

No GraphQL, webhooks, gallery or media routes: API processes (`darkroom serve` with POLLER_ENABLED,
DOWNLOADER_ENABLED and CLEANUP_ENABLED off) answer clients, and workers like this one carry the jobs
to the end. They meet in the database, and tell each other about new events over BROADCAST_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.datastructures import State
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from server import telemetry
from server.http.errors import server_fault
from server.http.health import healthz, metrics_endpoint, readyz
from server.provider.adapters import ADAPTERS
from server.request_id import RequestIdMiddleware
from server.runtime import Runtime
from server.settings import Settings
from server.workers.run import start_background_workers

logger = logging.getLogger(__name__)


class WorkerConfigError(Exception):
    """Settings a worker cannot run with; the message says what to set."""


def check_worker_settings(settings: Settings) -> None:
    """A worker has no simulator of its own to mount: a provider without a token needs a simulator's address."""
    problems = [ADAPTERS[name].worker_problem(settings) for name in settings.provider_names]
    if any(problems):
        raise WorkerConfigError("; ".join(problem for problem in problems if problem))


def create_worker_app(settings: Settings) -> Litestar:
    check_worker_settings(settings)
    telemetry.setup()
    runtime = Runtime(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        stop = asyncio.Event()
        tasks = start_background_workers(runtime, stop, api_keys=False)
        logger.info(
            "darkroom worker ready",
            extra={
                "database": runtime.engine.dialect.name,
                "providers": {name: ADAPTERS[name].api_url(settings) for name in settings.provider_names},
                "poller": settings.poller.enabled,
                "downloader": settings.downloads.enabled,
                "cleanup": settings.media.cleanup_enabled,
            },
        )
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.stop()
            telemetry.flush()

    return Litestar(
        route_handlers=[healthz, readyz, metrics_endpoint],
        lifespan=[lifespan],
        state=State({"runtime": runtime}),
        middleware=[RequestIdMiddleware],
        plugins=telemetry.litestar_plugins(),
        logging_config=None,
        exception_handlers={HTTP_500_INTERNAL_SERVER_ERROR: server_fault},
    )
