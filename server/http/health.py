"""GET /healthz, /readyz and /metrics: what a load balancer and a scraper ask of every process."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, get
from litestar.datastructures import State

from server import metrics
from server.runtime import Runtime


@get("/healthz", media_type=MediaType.JSON, sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Alive: the process answers."""
    return {"status": "ok"}


@get("/readyz", media_type=MediaType.JSON)
async def readyz(state: State) -> Response[dict[str, Any]]:
    """Ready: the database answers, the event log can be read, the broadcast connection is up, and every
    background worker this process runs (the downloader) is running."""
    runtime: Runtime = state.runtime
    checks = {
        "database": await runtime.database_ok(),
        "event_log": runtime.hub.log_readable,
        "broadcast": runtime.hub.broadcast_connected,
    }
    workers = runtime.workers_running()
    checks.update(workers)
    ok = all(checks.values())
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
    if stopped := [name for name, running in workers.items() if not running]:
        body["reason"] = f"not running: {', '.join(stopped)}"
    return Response(body, status_code=200 if ok else 503)


@get("/metrics", sync_to_thread=False)
def metrics_endpoint() -> Response[bytes]:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
