"""The `stats` query's types: success and failure rates per model, download retries, storage used.

Each is the service's model as it is (services/operations/stats.py describes the fields), so the
resolver returns what the service collected.
"""

from __future__ import annotations

from strawberry.experimental.pydantic import type as from_model

from server.services.operations import stats as service


@from_model(
    service.ModelStats,
    all_fields=True,
    include_computed=True,
    description="How generations of one model and kind fared inside the window.",
)
class ModelStats:
    pass


@from_model(
    service.DownloadStats,
    all_fields=True,
    description="Media files created inside the window, by download status, and their retries.",
)
class DownloadStats:
    pass


@from_model(service.StorageStats, all_fields=True, description="What is stored now (not limited to the window).")
class StorageStats:
    bytes_used: float  # a count of bytes may exceed GraphQL's 32-bit Int


@from_model(service.KeySpend, all_fields=True, description="What one API key's generations cost inside the window.")
class KeySpend:
    pass


@from_model(service.Stats, all_fields=True, description="Operational statistics over the last `windowHours`.")
class Stats:
    pass
