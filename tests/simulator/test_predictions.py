"""Predictions over real HTTP: create, list, cancel, validation, outputs, faults and retention."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import time
from typing import Any

import av
import httpx
from litestar import Litestar
from litestar.handlers import asgi
from litestar.types import Receive, Scope, Send
from PIL import Image

from server.provider.replicate.prediction import Prediction, output_urls
from server.provider.replicate.simulator import Simulator
from server.simulator import SimulatorConfig
from tests.simulator.support import AUTH, RunningSimulator, StartSimulator, version_id
from tests.support.live_server import free_port, live_server

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
PREDICTION_KEYS = {
    "id",
    "model",
    "version",
    "input",
    "logs",
    "output",
    "error",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "data_removed",
    "source",
    "metrics",
    "urls",
}


def png_bytes(size: tuple[int, int] = (320, 200), color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def video_frames(content: bytes) -> tuple[str, int, int, int]:
    """Codec name, frame count, width and height of an encoded video."""
    with av.open(io.BytesIO(content)) as container:
        assert isinstance(container, av.container.InputContainer)
        stream = container.streams.video[0]
        frames = list(container.decode(video=0))
        return stream.codec_context.name, len(frames), frames[0].width, frames[0].height


async def test_create_get_and_shape(sim: RunningSimulator) -> None:
    created = await sim.create("darkroom-sim/snap-still", {"prompt": "a red fox"})
    assert set(created) == PREDICTION_KEYS
    assert created["status"] == "starting"
    assert re.fullmatch(r"[a-z0-9]{26}", created["id"])
    assert created["model"] == "darkroom-sim/snap-still"
    assert re.fullmatch(r"[0-9a-f]{64}", created["version"])
    assert created["input"] == {"prompt": "a red fox"}
    assert created["logs"] == "" and created["output"] is None and created["error"] is None
    assert ISO.match(created["created_at"]) and created["started_at"] is None
    assert created["source"] == "api" and created["data_removed"] is False
    assert created["urls"]["get"] == f"{sim.url}/v1/predictions/{created['id']}"
    assert created["urls"]["cancel"] == f"{sim.url}/v1/predictions/{created['id']}/cancel"
    assert created["urls"]["web"]

    fetched = (await sim.http.get(created["urls"]["get"])).json()
    assert fetched["id"] == created["id"]
    done = await sim.finished(created["id"])
    assert done["status"] == "succeeded"
    assert ISO.match(done["started_at"]) and ISO.match(done["completed_at"])
    assert done["metrics"]["predict_time"] > 0 and done["metrics"]["total_time"] >= done["metrics"]["predict_time"]
    assert Prediction.from_json(done).is_terminal
    assert (await sim.http.get("/v1/predictions/doesnotexist")).status_code == 404


async def test_version_forms(sim: RunningSimulator) -> None:
    model = (await sim.http.get("/v1/models/darkroom-sim/snap-still")).json()
    version_id = model["latest_version"]["id"]
    for version in (f"darkroom-sim/snap-still:{version_id}", version_id, "darkroom-sim/snap-still"):
        response = await sim.http.post("/v1/predictions", json={"version": version, "input": {"prompt": "x"}})
        assert response.status_code == 201, response.text
        assert response.json()["version"] == version_id
    for bad in ("darkroom-sim/snap-still:" + "0" * 64, "f" * 64, "nobody/nothing"):
        response = await sim.http.post("/v1/predictions", json={"version": bad, "input": {"prompt": "x"}})
        assert response.status_code == 422
        assert response.json()["title"] == "Invalid version or not permitted"
    unknown_model = await sim.http.post("/v1/models/darkroom-sim/nope/predictions", json={"input": {}})
    assert unknown_model.status_code == 404


async def test_only_official_models_run_by_name(sim: RunningSimulator) -> None:
    """As at Replicate: an official model runs through the models endpoint or as version "owner/name";
    a community model only by its version id. Each create is recorded with the route it came through."""
    official, community = "darkroom-sim/snap-still", "darkroom-sim/still-motion"
    image = f"{sim.url}/files/covers/pixel-forge.webp"
    assert (await sim.http.get(f"/v1/models/{official}")).json()["is_official"] is True
    assert (await sim.http.get(f"/v1/models/{community}")).json()["is_official"] is False
    by_name = await sim.http.post(
        f"/v1/models/{official}/predictions", json={"input": {"prompt": "x"}}, headers={"Cancel-After": "90s"}
    )
    assert by_name.status_code == 201, by_name.text
    pinned = f"{community}:{version_id(community)}"
    by_version = await sim.http.post("/v1/predictions", json={"version": pinned, "input": {"image": image}})
    assert by_version.status_code == 201, by_version.text
    for refused in (
        sim.http.post(f"/v1/models/{community}/predictions", json={"input": {"image": image}}),
        sim.http.post("/v1/predictions", json={"version": community, "input": {"image": image}}),
    ):
        response = await refused
        assert response.status_code == 422
        assert response.json()["title"] == "Invalid version or not permitted"
    routes = [
        {
            "prediction_id": r["prediction_id"],
            "path": r["path"],
            "version": r["version"],
            "cancel_after": r["cancel_after"],
        }
        for r in sim.simulator.stats.creates
    ]
    assert routes == [
        {
            "prediction_id": by_name.json()["id"],
            "path": f"/v1/models/{official}/predictions",
            "version": None,
            "cancel_after": "90s",
        },
        {"prediction_id": by_version.json()["id"], "path": "/v1/predictions", "version": pinned, "cancel_after": None},
    ]
    assert sim.simulator.stats.create_of(by_version.json()["id"])["version"] == pinned


async def test_validation_problems(sim: RunningSimulator) -> None:
    response = await sim.http.post("/v1/models/darkroom-sim/pixel-forge/predictions", json={"input": {}})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json() == {
        "title": "Input validation failed",
        "detail": "- input: prompt is required",
        "status": 422,
        "invalid_fields": [{"type": "required", "field": "input", "description": "prompt is required"}],
    }

    response = await sim.http.post(
        "/v1/models/darkroom-sim/pixel-forge/predictions",
        json={
            "input": {
                "prompt": "x",
                "num_outputs": 5,
                "width": "wide",
                "scheduler": "FAST",
                "output_format": "gif",
                "guidance_scale": 0,
            }
        },
    )
    assert response.status_code == 422
    fields = {(f["field"], f["type"]) for f in response.json()["invalid_fields"]}
    assert fields == {
        ("input.num_outputs", "number_lte"),
        ("input.width", "invalid_type"),
        ("input.scheduler", "enum"),
        ("input.output_format", "enum"),
        ("input.guidance_scale", "number_gte"),
    }
    assert all(
        f"- {f['field']}: {f['description']}" in response.json()["detail"] for f in response.json()["invalid_fields"]
    )

    unknown = await sim.http.post(
        "/v1/models/darkroom-sim/snap-still/predictions", json={"input": {"prompt": "x"}, "colour": "red"}
    )
    assert unknown.status_code == 422
    assert unknown.json()["invalid_fields"][0]["description"] == "Additional property colour is not allowed"
    with_version = await sim.http.post(
        "/v1/models/darkroom-sim/snap-still/predictions", json={"input": {"prompt": "x"}, "version": "y"}
    )
    assert with_version.status_code == 422
    no_version = await sim.http.post("/v1/predictions", json={"input": {"prompt": "x"}})
    assert no_version.status_code == 422
    bad_hook = await sim.http.post(
        "/v1/predictions",
        json={
            "version": "darkroom-sim/snap-still",
            "input": {"prompt": "x"},
            "webhook": "not a url",
            "webhook_events_filter": ["start", "sometimes"],
        },
    )
    assert {f["field"] for f in bad_hook.json()["invalid_fields"]} == {"webhook", "webhook_events_filter"}
    not_json = await sim.http.post("/v1/predictions", content=b"{nope")
    assert not_json.status_code == 400
    assert sim.simulator.stats.predictions_created == 0


async def test_list_newest_first_and_paginated(sim: RunningSimulator) -> None:
    ids = [(await sim.create("darkroom-sim/snap-still", {"prompt": f"p{i}"}))["id"] for i in range(7)]
    seen: list[str] = []
    url: str | None = "/v1/predictions"
    while url:
        page = (await sim.http.get(url)).json()
        seen.extend(p["id"] for p in page["results"])
        if url == "/v1/predictions":
            # A prediction created while paging does not shift the pages that follow.
            await sim.create("darkroom-sim/snap-still", {"prompt": "late"})
        url = page["next"]
        assert url is None or url.startswith(sim.url)
    assert seen == list(reversed(ids))


async def test_cancel(sim: RunningSimulator) -> None:
    sim.config.run_seconds = 5
    created = await sim.create("darkroom-sim/pixel-forge", {"prompt": "slow"})
    await asyncio.sleep(0.15)
    response = await sim.http.post(f"/v1/predictions/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled" and response.json()["completed_at"]
    again = await sim.http.post(created["urls"]["cancel"])
    assert again.status_code == 200 and again.json() == response.json()
    await asyncio.sleep(0.1)
    assert (await sim.http.get(created["urls"]["get"])).json()["status"] == "canceled"

    sim.config.run_seconds = 0.2
    done = await sim.run("darkroom-sim/snap-still", {"prompt": "quick"})
    unchanged = await sim.http.post(done["urls"]["cancel"])
    assert unchanged.json()["status"] == "succeeded"
    assert (await sim.http.post("/v1/predictions/nope/cancel")).status_code == 404


async def test_images_are_real(sim: RunningSimulator) -> None:
    done = await sim.run(
        "darkroom-sim/pixel-forge",
        {
            "prompt": "a lighthouse",
            "num_outputs": 2,
            "width": 256,
            "height": 192,
            "output_format": "png",
            "seed": 5,
        },
    )
    assert done["status"] == "succeeded", done["error"]
    assert isinstance(done["output"], list) and len(done["output"]) == 2
    assert done["logs"].startswith("Using seed: 5\n")
    assert " 50%|█████     | 10/20 [" in done["logs"]
    assert done["logs"].rstrip().splitlines()[-1].startswith("100%|██████████| 20/20 [")
    for url in done["output"]:
        assert url.startswith(f"{sim.url}/files/{done['id']}/")
        response = await sim.http.get(url)
        assert response.headers["content-type"] == "image/png"
        assert int(response.headers["content-length"]) == len(response.content)
        image = Image.open(io.BytesIO(response.content))
        assert (image.format, image.size) == ("PNG", (256, 192))

    single = await sim.run("darkroom-sim/snap-still", {"prompt": "fox", "aspect_ratio": "16:9", "output_format": "jpg"})
    assert isinstance(single["output"], str)
    assert re.match(r"Using seed: \d+\n", single["logs"])  # chosen at random and logged
    response = await sim.http.get(single["output"])
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and image.size[0] > image.size[1]


async def test_video_is_real(sim: RunningSimulator) -> None:
    done = await sim.run("darkroom-sim/motion-sketch", {"prompt": "waves", "duration": 1, "fps": 10})
    assert done["status"] == "succeeded", done["error"]
    assert done["output"].endswith(".mp4")
    response = await sim.http.get(done["output"])
    assert response.headers["content-type"] == "video/mp4"
    codec, frames, width, height = video_frames(response.content)
    assert (codec, frames, width, height) == ("h264", 10, 256, 256)


async def test_same_seed_same_bytes(sim: RunningSimulator) -> None:
    async def output_bytes(model: str, input: dict[str, Any]) -> bytes:
        done = await sim.run(model, input)
        url = output_urls(done["output"])[0]
        return (await sim.http.get(url)).content

    image = {"prompt": "same", "seed": 99, "width": 256, "height": 256}
    video = {"prompt": "same", "seed": 7, "duration": 1}
    first, second, other, clip, clip_again = await asyncio.gather(
        output_bytes("darkroom-sim/pixel-forge", image),
        output_bytes("darkroom-sim/pixel-forge", image),
        output_bytes("darkroom-sim/pixel-forge", {**image, "seed": 100}),
        output_bytes("darkroom-sim/motion-sketch", video),
        output_bytes("darkroom-sim/motion-sketch", video),
    )
    assert first == second and first != other
    assert clip == clip_again


async def test_fail_rate(sim: RunningSimulator) -> None:
    sim.config.fail_rate = 1.0
    done = await sim.run("darkroom-sim/snap-still", {"prompt": "doomed"})
    assert done["status"] == "failed"
    assert done["output"] is None and "fail_rate" in done["error"]
    assert done["completed_at"]


async def test_cancel_after(sim: RunningSimulator) -> None:
    sim.config.start_seconds = 0.5
    response = await sim.http.post(
        "/v1/models/darkroom-sim/snap-still/predictions",
        json={"input": {"prompt": "late"}},
        headers={"Cancel-After": "50ms"},
    )
    aborted = await sim.finished(response.json()["id"])
    assert aborted["status"] == "aborted" and aborted["started_at"] is None

    sim.config.start_seconds = 0.02
    sim.config.run_seconds = 3
    response = await sim.http.post(
        "/v1/models/darkroom-sim/snap-still/predictions",
        json={"input": {"prompt": "long"}},
        headers={"Cancel-After": "0.3s"},
    )
    canceled = await sim.finished(response.json()["id"])
    assert canceled["status"] == "canceled" and canceled["started_at"]

    bad = await sim.http.post(
        "/v1/models/darkroom-sim/snap-still/predictions",
        json={"input": {"prompt": "x"}},
        headers={"Cancel-After": "soon"},
    )
    assert bad.status_code == 400


async def test_prefer_wait(sim: RunningSimulator) -> None:
    response = await sim.http.post(
        "/v1/models/darkroom-sim/snap-still/predictions",
        json={"input": {"prompt": "now"}},
        headers={"Prefer": "wait"},
    )
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded" and response.json()["output"]

    sim.config.run_seconds = 30
    began = time.monotonic()
    response = await sim.http.post(
        "/v1/models/darkroom-sim/snap-still/predictions",
        json={"input": {"prompt": "later"}},
        headers={"Prefer": "wait=1"},
    )
    assert 0.9 < time.monotonic() - began < 10  # it gave up waiting, long before the run ends
    assert response.json()["status"] == "processing"


async def test_download_failures(sim: RunningSimulator) -> None:
    sim.config.download_failures = 2
    done = await sim.run("darkroom-sim/snap-still", {"prompt": "flaky"})
    url = done["output"]
    async with httpx.AsyncClient() as anonymous:
        statuses = [(await anonymous.get(url)).status_code for _ in range(4)]
    assert statuses == [500, 500, 200, 200]
    assert sim.simulator.file_hits(url) == 4
    stats = (await sim.http.get("/_control/stats")).json()
    assert stats["file_hits"][url.removeprefix(sim.url)] == 4
    assert stats["predictions_created"] == 1


async def test_outputs_expire(sim: RunningSimulator) -> None:
    done = await sim.run("darkroom-sim/pixel-forge", {"prompt": "brief", "width": 128, "height": 128})
    url = done["output"][0]
    assert (await sim.http.get(url)).status_code == 200
    async with httpx.AsyncClient(base_url=sim.url) as control:
        await control.patch("/_control/config", json={"output_ttl_seconds": 0.2})
    await asyncio.sleep(0.3)
    assert (await sim.http.get(url)).status_code == 404
    expired = (await sim.http.get(done["urls"]["get"])).json()
    assert expired["data_removed"] is True
    assert expired["output"] is None and expired["input"] == {} and expired["logs"] is None
    assert expired["status"] == "succeeded"


async def test_uploaded_file_animates_in_both_image_to_video_models(sim: RunningSimulator) -> None:
    picture = png_bytes((320, 200))
    response = await sim.http.post(
        "/v1/files",
        files={"content": ("frame.png", picture, "image/png")},
        data={"filename": "frame.png", "type": "image/png", "metadata": '{"purpose": "test"}'},
    )
    assert response.status_code == 201, response.text
    upload = response.json()
    assert upload["name"] == "frame.png" and upload["content_type"] == "image/png"
    assert upload["size"] == len(picture) and upload["metadata"] == {"purpose": "test"}
    assert set(upload["checksums"]) == {"sha256", "md5"} and upload["etag"]
    assert ISO.match(upload["created_at"]) and ISO.match(upload["expires_at"])
    assert (await sim.http.get(f"/v1/files/{upload['id']}")).json() == upload
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(upload["urls"]["get"])).content == picture

    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes((100, 200))).decode()
    runs = await asyncio.gather(
        sim.run("darkroom-sim/still-motion", {"image": upload["urls"]["get"], "duration": 1, "seed": 3}),
        sim.run("darkroom-sim/frame-flow", {"first_frame_image": upload["urls"]["get"], "duration": 1}),
        sim.run("darkroom-sim/still-motion", {"image": data_uri, "motion": "pan", "prompt": "drift"}),
    )
    sizes = []
    for done in runs:
        assert done["status"] == "succeeded", done["error"]
        codec, frames, width, height = video_frames((await sim.http.get(done["output"])).content)
        assert codec == "h264" and frames >= 8
        sizes.append((width, height))
    assert sizes == [(256, 160), (256, 160), (128, 256)]  # each keeps its input's aspect ratio
    assert sim.simulator.file_hits(upload["urls"]["get"]) == 3  # fetched over HTTP by both models


async def test_unusable_image_input_fails_clearly(sim: RunningSimulator) -> None:
    missing = await sim.run("darkroom-sim/frame-flow", {"first_frame_image": f"{sim.url}/files/nothing/here.png"})
    assert missing["status"] == "failed"
    # One message for every fetch that fails, so that errors tell nothing of which ports answer.
    assert "first_frame_image" in missing["error"] and "could not fetch the input file" in missing["error"]
    text = "data:text/plain;base64," + base64.b64encode(b"not an image").decode()
    garbage = await sim.run("darkroom-sim/still-motion", {"image": text})
    assert garbage["status"] == "failed" and "not a readable image" in garbage["error"]
    version = f"darkroom-sim/still-motion:{version_id('darkroom-sim/still-motion')}"
    rejected = await sim.http.post("/v1/predictions", json={"version": version, "input": {"image": "just words"}})
    assert rejected.status_code == 422
    assert rejected.json()["invalid_fields"][0]["type"] == "format"


async def test_mounted_under_a_prefix() -> None:
    """Mounted like Darkroom mounts it: links carry the prefix and work, with no lifespan run."""
    port = free_port()
    simulator = Simulator(SimulatorConfig(public_base_url=f"http://127.0.0.1:{port}/simulator", run_seconds=0.2))

    @asgi("/simulator", is_mount=True, copy_scope=True)
    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        await simulator.app(scope, receive, send)

    try:
        async with (
            live_server(Litestar(route_handlers=[mounted]), port) as url,
            httpx.AsyncClient(base_url=url + "/simulator", headers=AUTH) as http,
        ):
            response = await http.post(
                "/v1/models/darkroom-sim/pixel-forge/predictions", json={"input": {"prompt": "m"}}
            )
            assert response.status_code == 201, response.text
            created = response.json()
            assert created["urls"]["get"].startswith(f"{url}/simulator/v1/predictions/")
            await simulator.engine.wait(simulator.engine.predictions[created["id"]], 10)
            body = (await http.get(created["urls"]["get"])).json()
            assert body["status"] == "succeeded"
            image = await http.get(body["output"][0])
            assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).format == "WEBP"
            assert simulator.file_hits(body["output"][0]) == 1
            models = (await http.get("/v1/models")).json()
            assert (await http.get(models["next"])).status_code == 200
            assert (await http.get("/v1/nothing")).status_code == 404
    finally:
        await simulator.aclose()


async def test_aclose_stops_running_predictions(start_simulator: StartSimulator) -> None:
    async with start_simulator(run_seconds=30) as sim:
        await sim.create("darkroom-sim/snap-still", {"prompt": "forever"})
        tasks = [p.task for p in sim.simulator.engine.predictions.values()]
        await sim.simulator.aclose()
        assert all(task is not None and task.done() for task in tasks)
