"""The outside contract stays written down: schema.graphql, the README's settings table, compose."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_compose_file_parses_and_names_only_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"postgres", "redis", "app"} <= set(compose["services"])
    app = compose["services"]["app"]
    known = {name for name, _ in setting_fields()}
    assert set(app["environment"]) <= known
    assert app["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert app["environment"]["BROADCAST_URL"].startswith(("redis://", "postgres"))
    assert all(service.get("healthcheck") for service in compose["services"].values())
    assert any(volume.endswith(":/data") for volume in app["volumes"])
