"""The official `replicate` Python client, pointed at the simulator, works unchanged."""

from __future__ import annotations

import asyncio
import io

import replicate
from PIL import Image

from tests.simulator.support import RunningSimulator, version_id


async def test_official_client(sim: RunningSimulator) -> None:
    client = replicate.Client(api_token="x", base_url=sim.url)

    model = await asyncio.to_thread(client.models.get, "darkroom-sim/pixel-forge")
    assert model.owner == "darkroom-sim" and model.latest_version is not None
    assert "Input" in model.latest_version.openapi_schema["components"]["schemas"]
    assert model.default_example is not None and model.default_example.status == "succeeded"

    prediction = await asyncio.to_thread(
        client.predictions.create,
        version=model.latest_version.id,
        input={"prompt": "from the client", "num_outputs": 2, "width": 128, "height": 128},
    )
    assert prediction.status == "starting"
    await asyncio.to_thread(prediction.wait)
    assert prediction.status == "succeeded", prediction.error
    assert isinstance(prediction.output, list) and len(prediction.output) == 2
    for url in prediction.output:
        response = await sim.http.get(url)
        assert Image.open(io.BytesIO(response.content)).size == (128, 128)

    sim.config.run_seconds = 10
    doomed = await asyncio.to_thread(
        client.models.predictions.create, model="darkroom-sim/snap-still", input={"prompt": "never mind"}
    )
    await asyncio.to_thread(doomed.cancel)
    await asyncio.to_thread(doomed.reload)
    assert doomed.status == "canceled"

    secret = await asyncio.to_thread(client.webhooks.default.secret)
    assert secret.key == sim.config.webhook_secret

    page = await asyncio.to_thread(client.predictions.list)
    assert [p.id for p in page.results][:2] == [doomed.id, prediction.id]

    collection = await asyncio.to_thread(client.collections.get, "image-to-video")
    assert {"still-motion", "frame-flow"} <= {m.name for m in collection.models}


async def test_official_client_run_and_files(sim: RunningSimulator) -> None:
    client = replicate.Client(api_token="x", base_url=sim.url)
    # run() sends Prefer: wait. It wraps only https:// outputs in FileOutput, so ours stay URLs.
    output = await asyncio.to_thread(
        client.run, "darkroom-sim/snap-still", input={"prompt": "run it", "output_format": "png"}
    )
    assert isinstance(output, str) and output.startswith(sim.url + "/files/")
    content = (await sim.http.get(output)).content
    assert Image.open(io.BytesIO(content)).format == "PNG"

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(buffer, format="PNG")
    buffer.seek(0)
    uploaded = await asyncio.to_thread(client.files.create, buffer, filename="tiny.png", content_type="image/png")
    assert uploaded.size == len(buffer.getvalue()) and uploaded.urls["get"].startswith(sim.url)
    video = await asyncio.to_thread(
        client.run,
        f"darkroom-sim/frame-flow:{version_id('darkroom-sim/frame-flow')}",  # a community model runs by version
        input={"first_frame_image": uploaded.urls["get"], "duration": 1},
    )
    assert isinstance(video, str)
    assert (await sim.http.get(video)).content[4:8] == b"ftyp"
