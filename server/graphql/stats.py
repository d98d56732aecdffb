"""The `stats` query's types: success and failure rates per model, download retries, storage used."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import strawberry
from graphql import GraphQLError

from server.domain import MediaKind
from server.graphql.context import Info
from server.services.operations import stats as service

MAX_WINDOW_HOURS = 24 * 366


@strawberry.type(description="How generations of one model and kind fared inside the window.")
class ModelStats:
    model: str
    kind: MediaKind
    total: int
    running: int = strawberry.field(description="STARTING or PROCESSING.")
    succeeded: int
    failed: int
    canceled: int
    timed_out: int
    success_rate: float | None = strawberry.field(description="SUCCEEDED / finished, 0-1; null when none has finished.")
    failure_rate: float | None = strawberry.field(
        description="(FAILED + TIMED_OUT) / finished, 0-1; null when none has finished."
    )

    @classmethod
    def build(cls, item: service.ModelStats) -> ModelStats:
        return cls(
            model=item.model,
            kind=MediaKind(item.kind),
            total=item.total,
            running=item.running,
            succeeded=item.succeeded,
            failed=item.failed,
            canceled=item.canceled,
            timed_out=item.timed_out,
            success_rate=item.success_rate,
            failure_rate=item.failure_rate,
        )


@strawberry.type(description="Media files created inside the window, by download status, and their retries.")
class DownloadStats:
    pending: int
    downloading: int
    ready: int
    failed: int
    retried_media: int = strawberry.field(description="Files that needed more than one attempt.")
    retry_attempts: int = strawberry.field(description="Attempts after each file's first, summed.")


@strawberry.type(description="What is stored now (not limited to the window).")
class StorageStats:
    files: int
    bytes_used: float = strawberry.field(description="Bytes of READY media files (a Float: it may exceed Int).")


@strawberry.type(description="Operational statistics over the last `windowHours`.")
class Stats:
    window_hours: float
    since: datetime
    models: list[ModelStats]
    downloads: DownloadStats
    storage: StorageStats


async def resolve_stats(info: Info, window_hours: float) -> Stats:
    if not 0 < window_hours <= MAX_WINDOW_HOURS:
        raise GraphQLError(
            f"windowHours must be above 0 and at most {MAX_WINDOW_HOURS}", extensions={"code": "BAD_USER_INPUT"}
        )
    result = await info.context.runtime.stats.collect(info.context.viewer, window_hours)
    return Stats(
        window_hours=result.window_hours,
        since=result.since,
        models=[ModelStats.build(item) for item in result.models],
        downloads=DownloadStats(**asdict(result.downloads)),
        storage=StorageStats(files=result.storage.files, bytes_used=float(result.storage.bytes_used)),
    )
