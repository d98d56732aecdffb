"""The fal simulator's own contracts: the shared test controls and token rules, fal's error shapes, the
queue position, the listing's paging, and output files with their download faults."""

from __future__ import annotations

import httpx

from server.domain import GenerationStatus
from server.provider.types import JobRef
from tests.fal.support import RunningFal

FLUX = "fal-ai/flux/schnell"


async def test_controls_never_show_or_take_the_signing_key(fal: RunningFal) -> None:
    shown = (await fal.http.get("/_control/config")).json()
    assert "webhook_signing_key" not in shown and "api_token" not in shown and shown["queue_length"] == 2
    refused = await fal.http.patch("/_control/config", json={"webhook_signing_key": "x"})
    assert refused.status_code == 422
    changed = await fal.http.patch("/_control/config", json={"queue_length": 5, "run_seconds": 0.1})
    assert changed.status_code == 200 and changed.json()["queue_length"] == 5
    assert (await fal.http.patch("/_control/config", json={"nope": 1})).status_code == 422
    await fal.provider.create(model_ref=FLUX, version_id=None, input={"prompt": "x"}, webhook_url=None)
    stats = (await fal.http.get("/_control/stats")).json()
    assert stats["predictions_created"] == 1 and stats["creates"][0]["model"] == FLUX
    assert (await fal.http.post("/_control/reset")).json()["predictions_created"] == 0


async def test_the_token_rules(fal: RunningFal) -> None:
    async with httpx.AsyncClient(base_url=fal.url) as anonymous:
        missing = await anonymous.post("/" + FLUX, json={"prompt": "x"})
        assert missing.status_code == 401 and "detail" in missing.json()
        assert (await anonymous.get("/_control/config")).status_code == 200
        fal.config.api_token = "secret"
        assert (await anonymous.get("/_control/config")).status_code == 404
        wrong = await anonymous.post("/" + FLUX, json={"prompt": "x"}, headers={"authorization": "Key other"})
        assert wrong.status_code == 401
        right = await anonymous.post("/" + FLUX, json={"prompt": "x"}, headers={"authorization": "Key secret"})
        assert right.status_code == 200
        assert (await anonymous.get("/_control/stats", headers={"authorization": "Key secret"})).status_code == 200
        # Bearer is Replicate's scheme, not fal's.
        bearer = await anonymous.post("/" + FLUX, json={"prompt": "x"}, headers={"authorization": "Bearer secret"})
        assert bearer.status_code == 401


async def test_fal_error_shapes(fal: RunningFal) -> None:
    unknown = await fal.http.post("/fal-ai/unknown/model", json={"prompt": "x"})
    assert unknown.status_code == 404 and isinstance(unknown.json()["detail"], str)
    not_json = await fal.http.post("/" + FLUX, content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "detail" in not_json.json()
    bad_timeout = await fal.http.post("/" + FLUX, json={"prompt": "x"}, headers={"x-fal-request-timeout": "1"})
    assert bad_timeout.status_code == 400
    assert (await fal.http.put("/fal-ai/flux/requests/nope/cancel")).json() == {"status": "NOT_FOUND"}
    assert (await fal.http.get("/v1/models", params={"cursor": "!!"})).status_code == 400


async def test_the_queue_position_counts_down(fal: RunningFal) -> None:
    fal.config.start_seconds = 0.6
    fal.config.queue_length = 3
    created = await fal.provider.create(model_ref=FLUX, version_id=None, input={"prompt": "x"}, webhook_url=None)
    job = JobRef(created.prediction_id, FLUX)
    await fal.until(job, lambda u: u.status is not GenerationStatus.STARTING)
    positions = [u.queue_position for u in fal.seen if u.status is GenerationStatus.STARTING]
    known = [p for p in positions if p is not None]
    assert known == positions and known == sorted(known, reverse=True) and known[0] > known[-1]


async def test_listing_pages_and_filters(fal: RunningFal) -> None:
    first = (await fal.http.get("/v1/models", params={"limit": 3})).json()
    assert len(first["models"]) == 3 and first["has_more"] and "openapi" not in first["models"][0]
    second = (await fal.http.get("/v1/models", params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert len(second["models"]) == 1 and second["next_cursor"] is None and not second["has_more"]
    picked = await fal.http.get(
        "/v1/models", params=[("endpoint_id", FLUX), ("endpoint_id", "fal-ai/flux/dev"), ("expand", "openapi-3.0")]
    )
    assert [m["endpoint_id"] for m in picked.json()["models"]] == [FLUX, "fal-ai/flux/dev"]
    assert picked.json()["models"][0]["openapi"]["openapi"].startswith("3.0")
    videos = (await fal.http.get("/v1/models", params={"category": "image-to-video"})).json()["models"]
    assert [m["metadata"]["category"] for m in videos] == ["image-to-video"]


async def test_output_files_and_download_faults(fal: RunningFal) -> None:
    fal.config.download_failures = 1
    created = await fal.provider.create(model_ref=FLUX, version_id=None, input={"prompt": "x"}, webhook_url=None)
    done = await fal.finished(JobRef(created.prediction_id, FLUX))
    url = done.output_urls[0]
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(url)).status_code == 500
        assert (await anonymous.get(url)).status_code == 200
    assert fal.simulator.file_hits(url) == 2
