"""docker-compose.yml: the several-process deployment the README's "Scaling out" describes, as a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).parents[2] / "docker-compose.yml"


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return dict(loaded["services"])


def test_the_api_scales_behind_one_front_and_a_worker_carries_the_jobs() -> None:
    found = services()
    assert {"postgres", "redis", "s3", "bucket", "simulator", "api", "worker", "front"} <= set(found)
    api, worker = found["api"], found["worker"]
    # `--scale api=3` cannot bind one host port three times: only the front publishes one.
    assert "ports" not in api and "ports" not in worker
    assert found["front"]["ports"] == ["8000:8000"]
    assert api["command"] == ["darkroom", "serve"]
    assert worker["command"] == ["darkroom", "worker"]
    off = {"POLLER_ENABLED": "false", "DOWNLOADER_ENABLED": "false", "CLEANUP_ENABLED": "false"}
    assert off.items() <= api["environment"].items()
    assert not off.keys() & {key for key, value in worker["environment"].items() if value == "false"}


def test_every_process_shares_the_database_the_broker_and_the_bucket() -> None:
    found = services()
    for name in ("api", "worker"):
        env = found[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql")
        assert env["BROADCAST_URL"].startswith("redis://")
        assert env["MEDIA_STORAGE_URL"].startswith("s3://")
        assert env["S3_ENDPOINT_URL"] == "http://s3:8333"
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= env.keys()
        # Without a token the worker has no simulator of its own: all of them use the shared one.
        assert "simulator:8001" in env["REPLICATE_API_BASE_URL"]
        assert "localhost" not in env["PUBLIC_URL"], "Replicate cannot reach localhost"
