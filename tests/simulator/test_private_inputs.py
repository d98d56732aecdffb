"""Like Replicate, the simulator fails a prediction whose input file is on a host it could not reach, unless
told it shares the network (`allow_private_inputs`, as the embedded one is); its own files always load."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.simulator.support import RunningSimulator, StartSimulator
from tests.simulator.test_predictions import png_bytes
from tests.support.live_server import live_server, read_body

PICTURE = png_bytes((160, 100))


async def image_host(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """Serves PICTURE at every path, as a user's own web server on the local network would."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    headers = [(b"content-type", b"image/png"), (b"content-length", str(len(PICTURE)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": PICTURE})


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost:{port}/frame.png", "localhost is a loopback name"),
        ("http://127.0.0.1:{port}/frame.png", "127.0.0.1 is a loopback address"),
        ("http://10.1.2.3/frame.png", "10.1.2.3 is a private network address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("http://[fc00::5]/frame.png", "fc00::5 is a private network address"),
        ("http://nas.local/frame.png", "nas.local is a local network name (.local)"),
    ],
)
async def test_an_input_on_a_non_public_host_fails_the_prediction(
    start_simulator: StartSimulator, url: str, reason: str
) -> None:
    async with live_server(image_host, lifespan="off") as served, start_simulator() as sim:
        port = served.rsplit(":", 1)[-1]
        target = url.format(port=port)
        done = await sim.run("darkroom-sim/still-motion", {"image": target, "duration": 1})
    assert done["status"] == "failed"
    assert done["error"].startswith(f"Failed to download image from {target}: {reason}"), done["error"]
    assert "POST /v1/files" in done["error"] and "data: URI" in done["error"]
    assert done["output"] is None


async def test_allowed_private_inputs_are_fetched(start_simulator: StartSimulator) -> None:
    async with live_server(image_host, lifespan="off") as served, start_simulator(allow_private_inputs=True) as sim:
        done = await sim.run("darkroom-sim/still-motion", {"image": f"{served}/frame.png", "duration": 1})
    assert done["status"] == "succeeded", done["error"]


async def test_its_own_uploads_and_data_uris_are_always_read(sim: RunningSimulator) -> None:
    assert sim.config.allow_private_inputs is False and sim.url.startswith("http://127.0.0.1:")
    uploaded = await sim.http.post("/v1/files", files={"content": ("frame.png", PICTURE, "image/png")})
    assert uploaded.status_code == 201, uploaded.text
    inline = "data:image/png;base64," + base64.b64encode(PICTURE).decode()
    for image in (uploaded.json()["urls"]["get"], inline):
        done = await sim.run("darkroom-sim/frame-flow", {"first_frame_image": image, "duration": 1})
        assert done["status"] == "succeeded", done["error"]


async def test_the_knob_can_be_turned_at_runtime(sim: RunningSimulator) -> None:
    changed = await sim.http.patch("/_control/config", json={"allow_private_inputs": True})
    assert changed.status_code == 200 and changed.json()["allow_private_inputs"] is True
    assert sim.config.allow_private_inputs is True
