"""A `darkroom serve` on a localhost PUBLIC_URL and a `darkroom simulator` in a process of its own, as a new
user runs them with a real token: the provider never sees a Darkroom URL it could not fetch.

Out of reach, the image to animate travels as an upload (or a data: URI), no webhook is requested and the
poller carries the job, and startup says so. PUBLIC_URL_REACHABLE=true, with a simulator told it shares
the network, brings back Darkroom's own URLs and webhooks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.flows import RECORD_FIELDS, start_generation, wait_settled
from tests.support.graphql import data, gql
from tests.support.live_server import free_port
from tests.support.processes import darkroom_process, simulator_process

IMAGE_MODEL = "darkroom-sim/snap-still"
VIDEO_MODEL = "darkroom-sim/still-motion"  # image-to-video, image input `image`
TOKEN = "r8_reachability-test"

ANIMATE = f"""
mutation Animate($mediaId: ID!, $model: String, $input: JSON) {{
  animateImage(input: {{mediaId: $mediaId, model: $model, input: $input}}) {{
    generation {{ {RECORD_FIELDS} }}
    userErrors {{ field message code }}
  }}
}}
"""


@dataclass
class Setup:
    darkroom: str  # where the test reaches Darkroom
    public_url: str  # Darkroom's PUBLIC_URL, on localhost
    simulator: str
    darkroom_log: Path
    http: httpx.AsyncClient

    async def query(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return await gql(self.http, query, variables)

    async def simulator_stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.simulator, timeout=10) as client:
            stats: dict[str, Any] = (await client.get("/_control/stats")).json()
        return stats

    async def sent_inputs(self) -> list[dict[str, Any]]:
        """The input of every prediction, as the simulator received it."""
        inputs = []
        async with httpx.AsyncClient(
            base_url=self.simulator, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
        ) as client:
            for created in (await self.simulator_stats())["creates"]:
                prediction = (await client.get(f"/v1/predictions/{created['prediction_id']}")).json()
                inputs.append(prediction["input"])
        return inputs

    def reachability_warnings(self) -> list[str]:
        records = [json.loads(line) for line in self.darkroom_log.read_text().splitlines() if line.startswith("{")]
        return [r["message"] for r in records if r["logger"] == "server.reachability" and r["level"] == "WARNING"]


@asynccontextmanager
async def running(
    tmp_path: Path, darkroom_env: dict[str, str] | None = None, simulator_args: Sequence[str] = ()
) -> AsyncIterator[Setup]:
    port = free_port()
    public_url = f"http://localhost:{port}"
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'darkroom.db'}",
        "DATA_DIR": str(tmp_path / "var"),
        "REPLICATE_API_TOKEN": TOKEN,
        "PUBLIC_URL": public_url,
        "POLL_INTERVAL_SECONDS": "0.2",
        "POLL_STALE_AFTER_SECONDS": "0.3",
        "POLL_BACKOFF_MAX_SECONDS": "0.5",
        "DOWNLOAD_IDLE_SECONDS": "0.2",
        "RATE_LIMIT_MUTATIONS_PER_MINUTE": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        **(darkroom_env or {}),
    }
    simulator_env = {"SIMULATOR_RUN_SECONDS": "0.5", "LOG_LEVEL": "WARNING"}
    log = tmp_path / "darkroom.log"
    async with (
        simulator_process(simulator_env, tmp_path / "simulator.log", args=simulator_args) as simulator,
        darkroom_process(
            {**env, "REPLICATE_API_BASE_URL": simulator, "REPLICATE_FILE_HOSTS": simulator}, log, port
        ) as darkroom,
        httpx.AsyncClient(base_url=darkroom, timeout=30) as http,
    ):
        yield Setup(darkroom, public_url, simulator, log, http)


async def animated(setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a fresh READY image, the finished video generation animating it)."""
    made = await wait_settled(setup, (await start_generation(setup, model=IMAGE_MODEL))["id"])
    assert made["status"] == "SUCCEEDED", made
    image = made["media"][0]
    assert (image["kind"], image["status"]) == ("IMAGE", "READY"), image
    assert image["url"].startswith(f"{setup.public_url}/media/")
    variables = {"mediaId": image["id"], "model": VIDEO_MODEL, "input": {"prompt": "drift", "duration": 1}}
    payload = data(await setup.query(ANIMATE, variables))["animateImage"]
    assert payload["userErrors"] == [], payload
    # The stored input names Darkroom's lasting URL, whatever the provider was sent.
    assert payload["generation"]["input"]["image"] == image["url"]
    video = await wait_settled(setup, payload["generation"]["id"])
    return image, video


async def test_a_localhost_public_url_sends_an_upload_and_asks_for_no_webhook(tmp_path: Path) -> None:
    async with running(tmp_path) as setup:
        image, video = await animated(setup)
        assert video["status"] == "SUCCEEDED", video
        assert [(m["kind"], m["status"]) for m in video["media"]] == [("VIDEO", "READY")]
        assert video["sourceMedia"]["id"] == image["id"]

        stats = await setup.simulator_stats()
        assert [c["model"] for c in stats["creates"]] == [IMAGE_MODEL, VIDEO_MODEL]
        assert [c["webhook"] for c in stats["creates"]] == [None, None], "no webhook could ever arrive"
        assert stats["webhooks"] == []
        inputs = await setup.sent_inputs()
        assert setup.public_url not in json.dumps(inputs) and "localhost" not in json.dumps(inputs)
        # The files API answered, so the image went as an upload (a data: URI is the fallback when it fails).
        sent = inputs[-1]["image"]
        assert sent.startswith(f"{setup.simulator}/v1/files/") and sent.endswith("/download"), sent
        assert stats["file_hits"][sent.removeprefix(setup.simulator)] == 1, "the model read the upload"

        (warning,) = setup.reachability_warnings()
        assert setup.public_url in warning and "PUBLIC_URL_REACHABLE" in warning and "no webhooks" in warning


async def test_public_url_reachable_restores_own_urls_and_webhooks(tmp_path: Path) -> None:
    async with running(tmp_path, {"PUBLIC_URL_REACHABLE": "true"}, simulator_args=["--allow-private-inputs"]) as setup:
        image, video = await animated(setup)
        assert video["status"] == "SUCCEEDED", video
        assert [(m["kind"], m["status"]) for m in video["media"]] == [("VIDEO", "READY")]

        stats = await setup.simulator_stats()
        webhooks = [c["webhook"] for c in stats["creates"]]
        assert len(webhooks) == 2
        assert all(w and w.startswith(f"{setup.public_url}/webhooks/replicate?generation=") for w in webhooks)
        assert any(hook["delivered"] for hook in stats["webhooks"])
        assert (await setup.sent_inputs())[-1]["image"] == image["url"]
        assert setup.reachability_warnings() == []


async def test_the_standalone_simulator_refuses_darkrooms_localhost_url(tmp_path: Path) -> None:
    """Declared reachable, but the provider is a Replicate-like simulator that is not on our network."""
    async with running(tmp_path, {"PUBLIC_URL_REACHABLE": "true"}) as setup:
        image, video = await animated(setup)
        assert video["status"] == "FAILED", video
        assert video["error"].startswith(f"Failed to download image from {image['url']}: localhost is"), video
