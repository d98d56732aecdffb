"""Two `darkroom serve` processes on one Postgres: a webhook received by A reaches a subscriber on B."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.flows import FOLLOW, IMAGE_MODEL, START
from tests.support.graphql import gql, ws_connect
from tests.support.live_server import free_port
from tests.support.processes import darkroom_process


async def test_a_webhook_on_one_process_reaches_a_subscriber_on_another(
    shared_env: dict[str, str], tmp_path: Path
) -> None:
    port_a, port_b = free_port(), free_port()
    # Each process plays Replicate with a simulator of its own, which serves its outputs on that process's
    # port; either downloader may claim a file, so each allows the other's origin too.
    env = {**shared_env, "REPLICATE_FILE_HOSTS": f"http://127.0.0.1:{port_a},http://127.0.0.1:{port_b}"}
    async with (
        darkroom_process(env, tmp_path / "a.log", port_a) as process_a,
        darkroom_process(env, tmp_path / "b.log", port_b) as process_b,
    ):
        async with httpx.AsyncClient(base_url=process_a, timeout=30) as client_a:
            started = await gql(client_a, START, {"model": IMAGE_MODEL, "input": {"prompt": "two processes"}})
            generation = started["data"]["startGeneration"]["generation"]
            async with ws_connect(process_b) as ws:
                states = [p["data"]["generation"] async for p in ws.subscribe(FOLLOW, {"id": generation["id"]})]
            # Only A's simulator knows the prediction and only A received its webhooks.
            stats = (await client_a.get("/simulator/_control/stats")).json()
        assert any(hook["delivered"] for hook in stats["webhooks"])
        assert [s["status"] for s in states][-1] == "SUCCEEDED"
        assert "PROCESSING" in [s["status"] for s in states] or len(states) > 1
        assert all(media["status"] == "READY" for media in states[-1]["media"])
