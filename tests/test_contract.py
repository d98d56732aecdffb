"""The outside contract stays written down: schema.graphql, the README's settings table, compose."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from server.graphql.schema import schema_sdl
from server.settings import setting_fields
from server.settings_table import with_table

ROOT = Path(__file__).resolve().parents[1]


def test_schema_file_matches_the_live_schema() -> None:
    written = (ROOT / "schema.graphql").read_text()
    assert written == schema_sdl(), "schema.graphql is stale: run `darkroom export-schema` (or `make schema`)"


def test_the_readme_settings_table_is_written_from_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme == with_table(readme), "the README's settings table is stale: run `make settings-table`"


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == {name for name, _ in setting_fields()}


def compose_services() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"])


def test_compose_scales_the_api_behind_one_front_and_runs_a_worker() -> None:
    services = compose_services()
    assert {"postgres", "redis", "s3", "bucket", "simulator", "fal-simulator", "api", "worker", "front"} <= set(
        services
    )
    api, worker = services["api"], services["worker"]
    # `--scale api=3` cannot bind one host port three times: only the front publishes one.
    assert "ports" not in api and "ports" not in worker
    assert services["front"]["ports"] == ["8000:8000"]
    assert api["command"] == ["darkroom", "serve"] and worker["command"] == ["darkroom", "worker"]
    off = {"POLLER_ENABLED": "false", "DOWNLOADER_ENABLED": "false", "CLEANUP_ENABLED": "false"}
    assert off.items() <= api["environment"].items()
    assert not off.items() & worker["environment"].items()
    # One-shot services (the bucket's creation) exit; every other one says when it is healthy.
    waits = [service["depends_on"] for service in services.values() if isinstance(service.get("depends_on"), dict)]
    one_shot = {
        name
        for depends_on in waits
        for name, condition in depends_on.items()
        if condition.get("condition") == "service_completed_successfully"
    }
    assert all(service.get("healthcheck") for name, service in services.items() if name not in one_shot)


def test_compose_processes_share_the_database_the_broker_and_the_bucket_and_name_only_real_settings() -> None:
    services = compose_services()
    known = {name for name, _ in setting_fields()}
    # Read by the S3 client's credential chain, not by Settings.
    standard = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert set(env) - standard - {"MEDIA_STORAGE_URL", "S3_ENDPOINT_URL"} <= known
        assert standard <= set(env)
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["BROADCAST_URL"].startswith("redis://")
        assert env["MEDIA_STORAGE_URL"].startswith("s3://")
        assert env["S3_ENDPOINT_URL"] == "http://s3:8333"
        # Without a token a worker has no simulator of its own: every process uses the shared one.
        assert "simulator:8001" in env["REPLICATE_API_BASE_URL"]
        assert "fal-simulator:8002" in env["FAL_BASE_URL"]
        assert "localhost" not in env["PUBLIC_URL"], "the provider cannot reach localhost"
