"""Models, versions, collections, search, auth and the control endpoints."""

from __future__ import annotations

import re
from typing import Any

import httpx

from server.simulator import SimulatorConfig
from tests.simulator.support import RunningSimulator, StartSimulator

HAND_WRITTEN = {
    "pixel-forge",
    "snap-still",
    "motion-sketch",
    "still-motion",
    "frame-flow",
    "preview-image",
    "slow-boot-video",
}
# Copies of real Replicate models' schemas (server/simulator/real_schemas).
REAL = {
    "flux-schnell",
    "sdxl",
    "wan-2.1-1.3b",
    "minimax-video-01",
    "kling-v1.6-pro",
    "minimax-video-01-live",
    "stable-video-diffusion",
}
MODEL_NAMES = HAND_WRITTEN | REAL


async def follow(http: httpx.AsyncClient, first: str) -> list[dict[str, Any]]:
    """Every result of a paginated list, following `next` exactly as given."""
    results: list[dict[str, Any]] = []
    url: str | None = first
    pages = 0
    while url:
        response = await http.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"next", "previous", "results"}
        results.extend(page["results"])
        url = page["next"]
        pages += 1
        assert pages < 50
    return results


async def test_models_paginate_with_absolute_urls(sim: RunningSimulator) -> None:
    first = (await sim.http.get("/v1/models")).json()
    assert first["previous"] is None
    assert first["next"].startswith(sim.url + "/v1/models?cursor=")
    assert len(first["results"]) == sim.config.page_size

    models = await follow(sim.http, "/v1/models")
    assert {m["name"] for m in models} == MODEL_NAMES
    assert len(models) == len(MODEL_NAMES)

    second = (await sim.http.get(first["next"])).json()
    back = (await sim.http.get(second["previous"])).json()
    assert [m["name"] for m in back["results"]] == [m["name"] for m in first["results"]]


async def test_model_shape(sim: RunningSimulator) -> None:
    model = (await sim.http.get("/v1/models/darkroom-sim/pixel-forge")).json()
    for key in (
        "url",
        "owner",
        "name",
        "description",
        "visibility",
        "github_url",
        "paper_url",
        "license_url",
        "run_count",
        "cover_image_url",
        "is_official",
        "default_example",
        "latest_version",
    ):
        assert key in model
    assert model["owner"] == "darkroom-sim"
    version = model["latest_version"]
    assert re.fullmatch(r"[0-9a-f]{64}", version["id"])
    assert set(version) == {"id", "created_at", "cog_version", "openapi_schema"}
    schemas = version["openapi_schema"]["components"]["schemas"]
    props = schemas["Input"]["properties"]
    assert schemas["Input"]["required"] == ["prompt"]
    assert props["scheduler"]["allOf"] == [{"$ref": "#/components/schemas/scheduler"}]
    assert "K_EULER" in schemas["scheduler"]["enum"]
    assert props["output_format"]["enum"] == ["png", "webp", "jpg"]
    assert props["num_outputs"]["minimum"] == 1 and props["num_outputs"]["maximum"] == 4
    assert schemas["Output"] == {
        "type": "array",
        "items": {"type": "string", "format": "uri"},
        "title": "Output",
    }
    assert all("x-order" in p and "description" in p for p in props.values())

    cover = await sim.http.get(model["cover_image_url"])
    assert cover.status_code == 200 and cover.headers["content-type"] == "image/webp"

    again = (await sim.http.get("/v1/models/darkroom-sim/pixel-forge")).json()
    assert again["latest_version"]["id"] == version["id"]  # stable


async def test_secret_input_and_image_fields(sim: RunningSimulator) -> None:
    video = (await sim.http.get("/v1/models/darkroom-sim/motion-sketch")).json()
    api_key = video["latest_version"]["openapi_schema"]["components"]["schemas"]["Input"]["properties"]["api_key"]
    assert api_key["format"] == "password" and api_key["x-cog-secret"] is True
    for name, field in (("still-motion", "image"), ("frame-flow", "first_frame_image")):
        body = (await sim.http.get(f"/v1/models/darkroom-sim/{name}")).json()
        schema = body["latest_version"]["openapi_schema"]["components"]["schemas"]
        prop = schema["Input"]["properties"][field]
        assert (prop["type"], prop["format"]) == ("string", "uri")
        assert field in schema["Input"]["required"]
        assert schema["Output"] == {"type": "string", "format": "uri", "title": "Output"}


async def test_versions(sim: RunningSimulator) -> None:
    versions = await follow(sim.http, "/v1/models/darkroom-sim/snap-still/versions")
    assert len(versions) == 1
    version_id = versions[0]["id"]
    one = await sim.http.get(f"/v1/models/darkroom-sim/snap-still/versions/{version_id}")
    assert one.json()["id"] == version_id
    assert (await sim.http.get(f"/v1/models/darkroom-sim/snap-still/versions/{'0' * 64}")).status_code == 404
    missing = await sim.http.get("/v1/models/darkroom-sim/no-such-model")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json() == {"title": "Not found", "detail": "Not found.", "status": 404}


async def test_collections(sim: RunningSimulator) -> None:
    listed = await follow(sim.http, "/v1/collections")
    assert {c["slug"] for c in listed} == {"text-to-image", "text-to-video", "image-to-video"}
    expected = {
        "text-to-image": {"pixel-forge", "snap-still", "preview-image", "flux-schnell", "sdxl"},
        "text-to-video": {"motion-sketch", "slow-boot-video", "wan-2.1-1.3b", "minimax-video-01"},
        "image-to-video": {
            "still-motion",
            "frame-flow",
            "kling-v1.6-pro",
            "minimax-video-01-live",
            "stable-video-diffusion",
        },
    }
    for slug, names in expected.items():
        collection = (await sim.http.get(f"/v1/collections/{slug}")).json()
        assert set(collection) == {"name", "slug", "description", "full_description", "models"}
        assert {m["name"] for m in collection["models"]} == names
        assert all(m["latest_version"]["openapi_schema"] for m in collection["models"])
    assert (await sim.http.get("/v1/collections/nope")).status_code == 404


async def test_search(sim: RunningSimulator) -> None:
    found = (await sim.http.get("/v1/search", params={"query": "VIDEO", "limit": 10})).json()
    assert set(found) == {"query", "models", "collections", "pages"}
    names = {entry["model"]["name"] for entry in found["models"]}
    assert {"motion-sketch", "still-motion", "frame-flow"} <= names
    assert all("metadata" in entry for entry in found["models"])
    assert {c["slug"] for c in found["collections"]} >= {"text-to-video", "image-to-video"}
    limited = (await sim.http.get("/v1/search", params={"query": "darkroom-sim", "limit": 2})).json()
    assert len(limited["models"]) == 2
    assert (await sim.http.get("/v1/search", params={"query": "zebra"})).json()["models"] == []


async def test_auth(start_simulator: StartSimulator) -> None:
    async with start_simulator() as sim, httpx.AsyncClient(base_url=sim.url) as anonymous:
        response = await anonymous.get("/v1/models")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == 401 and response.json()["title"]
        empty = await anonymous.get("/v1/models", headers={"authorization": "Bearer"})
        assert empty.status_code == 401
        assert (await anonymous.get("/v1/models", headers={"authorization": "Bearer any"})).status_code == 200
        # Files and covers are served without a token, like replicate.delivery.
        assert (await anonymous.get("/files/covers/snap-still.webp")).status_code == 200
        sim.config.api_token = "r8_secret"
        assert (await anonymous.get("/v1/models", headers={"authorization": "Bearer any"})).status_code == 401
        ok = await anonymous.get("/v1/models", headers={"authorization": "Bearer r8_secret"})
        assert ok.status_code == 200


async def test_control_endpoints(sim: RunningSimulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as control:
        config = (await control.get("/_control/config")).json()
        assert config["run_seconds"] == 0.3 and "webhook_secret" not in config and "api_token" not in config
        changed = await control.patch("/_control/config", json={"fail_rate": 1, "webhook_reorder": True})
        assert changed.status_code == 200 and changed.json()["fail_rate"] == 1.0
        assert sim.config.fail_rate == 1.0 and sim.config.webhook_reorder is True
        bad = await control.patch("/_control/config", json={"fail_rate": "high", "nope": 1, "seed": 3})
        assert bad.status_code == 422
        assert {f["field"] for f in bad.json()["invalid_fields"]} == {"fail_rate", "nope"}
        assert sim.config.seed == 1234  # nothing changed
        # Its secrets are the process's own: neither shown (above) nor set over HTTP.
        for secret in ("webhook_secret", "api_token"):
            refused = await control.patch("/_control/config", json={secret: "whsec_mine"})
            assert refused.status_code == 422 and getattr(sim.config, secret) != "whsec_mine"

        await sim.http.get("/files/covers/pixel-forge.webp")
        stats = (await control.get("/_control/stats")).json()
        assert stats == {
            "file_hits": {"/files/covers/pixel-forge.webp": 1},
            "webhooks": [],
            "predictions_created": 0,
            "creates": [],
            "rate_limited": 0,
        }
        assert sim.simulator.stats["file_hits"] == sim.simulator.stats.file_hits
        assert sim.simulator.file_hits(sim.url + "/files/covers/pixel-forge.webp") == 1
        await control.post("/_control/reset")
        assert (await control.get("/_control/stats")).json()["file_hits"] == {}


def test_config_from_settings() -> None:
    from server.settings import Settings

    settings = Settings(
        simulator_run_seconds=1.5,
        simulator_fail_rate=0.25,
        simulator_webhook_drop_rate=0.1,
        simulator_webhook_duplicate_rate=0.2,
        simulator_webhook_reorder=True,
        simulator_webhook_delay_ms=40,
        simulator_download_failures=2,
        simulator_output_ttl_seconds=60,
    )
    config = SimulatorConfig.from_settings(settings, "http://127.0.0.1:8000/simulator/")
    assert config.public_base_url == "http://127.0.0.1:8000/simulator"
    # No secret set: a random one, never one anyone knows.
    assert config.webhook_secret.startswith("whsec_")
    assert config.webhook_secret != SimulatorConfig.from_settings(settings, "http://x").webhook_secret
    assert (config.run_seconds, config.fail_rate, config.download_failures) == (1.5, 0.25, 2)
    assert (config.webhook_drop_rate, config.webhook_duplicate_rate) == (0.1, 0.2)
    assert (config.webhook_reorder, config.webhook_delay_ms, config.output_ttl_seconds) == (True, 40, 60)
    assert config.api_token is None
