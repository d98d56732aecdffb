"""The background workers a process runs, per its settings: downloader, poller, periodic cleanup, key refresh.

`darkroom serve` and `darkroom worker` both start them here, so the two processes run the same tasks
the same way; each stops them by setting the event it passed and awaiting the tasks.
"""

from __future__ import annotations

import asyncio

from server.runtime import Runtime
from server.workers.downloader import Downloader
from server.workers.poller import Poller


def start_background_workers(runtime: Runtime, stop: asyncio.Event, *, api_keys: bool) -> list[asyncio.Task[None]]:
    """One task per worker DOWNLOADER_ENABLED, POLLER_ENABLED and CLEANUP_ENABLED turn on; each ends when
    `stop` is set. `api_keys` adds the API-key refresh, which only a process answering /graphql needs."""
    settings = runtime.settings
    tasks: list[asyncio.Task[None]] = []
    if settings.downloads.enabled:
        downloader = Downloader(settings, runtime.media, runtime.storage, runtime.hub, runtime.alerts)
        tasks.append(asyncio.create_task(downloader.run(stop), name="downloader"))
    if settings.poller.enabled:
        poller = Poller(settings, runtime.sessions, runtime.provider, runtime.generations)
        tasks.append(asyncio.create_task(poller.run(stop), name="poller"))
    if settings.media.cleanup_enabled:
        cleanup = runtime.retention.run_periodically(stop, settings.media.cleanup_interval_seconds)
        tasks.append(asyncio.create_task(cleanup, name="cleanup"))
    if api_keys:
        tasks.append(asyncio.create_task(runtime.api_keys.run(stop), name="api-keys"))
    return tasks
