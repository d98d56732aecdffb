"""The background workers a process runs, per its settings: downloader, poller, outgoing webhooks, periodic
cleanup, key refresh, and the event loop's monitor.

`darkroom serve` and `darkroom worker` both start them here, so the two processes run the same tasks
the same way; each stops them by setting the event it passed and awaiting the tasks.
"""

from __future__ import annotations

import asyncio

from server.loop_monitor import start_loop_monitor
from server.periodic import periodic_task
from server.runtime import Runtime
from server.workers.downloader import Downloader
from server.workers.poller import Poller
from server.workers.webhook_sender import WebhookSender


def start_background_workers(runtime: Runtime, stop: asyncio.Event, *, api_keys: bool) -> list[asyncio.Task[None]]:
    """One task per worker DOWNLOADER_ENABLED, POLLER_ENABLED (the poller and the queue), WEBHOOKS_OUT_ENABLED
    (the outgoing webhook deliverer) and CLEANUP_ENABLED turn on; each ends when `stop` is set. `api_keys` adds
    the API-key refresh, which only a process answering /graphql needs. The event loop's monitor runs in every
    process unless LOOP_MONITOR_INTERVAL_SECONDS is 0."""
    settings = runtime.settings
    tasks: list[asyncio.Task[None]] = []
    monitor = start_loop_monitor(
        settings.server.loop_monitor_interval_seconds, settings.server.loop_stall_warn_seconds, stop
    )
    if monitor is not None:
        tasks.append(monitor)
    if settings.downloads.enabled:
        downloader = Downloader(settings, runtime.media, runtime.storage, runtime.hub, runtime.alerts)
        downloading = asyncio.create_task(downloader.run(stop), name="downloader")
        runtime.require_running("downloader", downloading)
        tasks.append(downloading)
    if settings.poller.enabled:
        poller = Poller(settings, runtime.polls, runtime.providers, runtime.generations)
        tasks.append(periodic_task("poller", settings.poller.interval_seconds, poller.poll_once, stop))
        tasks.extend(_queue_tasks(runtime, stop))
    if settings.webhooks_out.enabled:
        tasks.extend(WebhookSender(settings, runtime.webhook_deliveries, runtime.hub).start(stop))
    if settings.media.cleanup_enabled:
        tasks.append(periodic_task("cleanup", settings.media.cleanup_interval_seconds, runtime.retention.run, stop))
    if api_keys:
        refresh_keys = runtime.api_keys.refresh_and_record_use
        tasks.append(periodic_task("api-keys", settings.access.auth_refresh_seconds, refresh_keys, stop))
    return tasks


def _queue_tasks(runtime: Runtime, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The queue's rounds: every QUEUE_INTERVAL_SECONDS, and at once when this process frees a slot."""
    wake = runtime.generations.queue_changed
    dispatch = runtime.generations.dispatch_queued
    rounds = periodic_task("queue", runtime.settings.queue.interval_seconds, dispatch, stop, wake=wake)

    async def wake_on_stop() -> None:
        await stop.wait()
        wake.set()  # the queue's task waits on its wake alone

    return [rounds, asyncio.create_task(wake_on_stop(), name="queue-stop")]
