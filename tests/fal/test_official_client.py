"""The official `fal-client` package, pointed at the fal simulator over real HTTP, works unchanged.

fal_client writes its hosts as https URLs at import; its module constants are read at call time, so the
test points them at the simulator (and the client then follows the URLs the simulator returns)."""

from __future__ import annotations

import io

import fal_client
import fal_client.client
import httpx
import pytest
from PIL import Image

from tests.fal.support import KEY, RunningFal


@pytest.fixture
def official(fal: RunningFal, monkeypatch: pytest.MonkeyPatch) -> fal_client.AsyncClient:
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", fal.url + "/")
    monkeypatch.setattr(fal_client.client, "RUN_URL_FORMAT", fal.url + "/")
    monkeypatch.setattr(fal_client.client, "REST_URL", fal.url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal.url)
    return fal_client.AsyncClient(key=KEY)


async def test_a_job_end_to_end(official: fal_client.AsyncClient, fal: RunningFal) -> None:
    handle = await official.submit("fal-ai/flux/schnell", {"prompt": "from the client", "num_images": 2})
    assert handle.request_id

    statuses = [status async for status in handle.iter_events(with_logs=True, interval=0.02)]
    assert isinstance(statuses[0], fal_client.Queued)
    assert any(isinstance(s, fal_client.InProgress) and s.logs for s in statuses)
    completed = await handle.status(with_logs=True)
    assert isinstance(completed, fal_client.Completed)
    assert completed.logs and any("it/s" in item["message"] for item in completed.logs)
    assert completed.metrics["inference_time"] > 0

    result = await handle.get()
    assert len(result["images"]) == 2 and result["prompt"] == "from the client"
    async with httpx.AsyncClient() as http:
        image = (await http.get(result["images"][0]["url"])).content
    assert Image.open(io.BytesIO(image)).size == (result["images"][0]["width"], result["images"][0]["height"])

    # The same request read by id, through the client's own URL building (owner/app only).
    again = await official.result("fal-ai/flux/schnell", handle.request_id)
    assert again == result


async def test_cancel_and_upload(official: fal_client.AsyncClient, fal: RunningFal) -> None:
    fal.config.start_seconds = 10
    handle = await official.submit("fal-ai/flux/dev", {"prompt": "never mind"})
    await handle.cancel()
    status = await handle.status()
    assert isinstance(status, fal_client.Completed) and status.error
    with pytest.raises(fal_client.client.FalClientHTTPError) as refused:
        await handle.get()
    assert refused.value.status_code == 499

    url = await official.upload(b"hello fal", "text/plain", "hello.txt")
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.content == b"hello fal" and response.headers["content-type"].startswith("text/plain")
