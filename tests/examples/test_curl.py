"""The curl examples: queries and mutations over HTTP, and a webhook signed by hand with openssl."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.examples.support import EXAMPLES, example_env, require_programs, run
from tests.support.darkroom import Darkroom
from tests.support.flows import get_generation, settled, start_generation
from tests.support.waiting import eventually

QUERIES = EXAMPLES / "curl" / "queries.sh"
SEND_WEBHOOK = EXAMPLES / "curl" / "send-webhook.sh"


@pytest.fixture(autouse=True)
def programs() -> None:
    require_programs("bash", "curl", "jq", "openssl")


async def test_queries_and_mutations_over_http(darkroom: Darkroom, tmp_path: Path) -> None:
    out = tmp_path / "downloads"
    result = await run("bash", QUERIES, darkroom.base_url, env=example_env("unused", OUT_DIR=str(out)))

    assert result.code == 0, result
    assert "darkroom-sim/pixel-forge\t" in result.stdout, result
    assert "prompt\tstring (required)" in result.stdout, result
    assert '"code":"OUT_OF_RANGE"' in result.stdout, result
    assert "SUCCEEDED 100% media: READY, READY" in result.stdout, result
    assert ": the same generation" in result.stdout, result
    # The start sent twice with its idempotency key, the refused one and the canceled one: two creates.
    assert len(darkroom.simulator.stats.creates) == 2
    downloaded = [line for line in result.stdout.splitlines() if line.startswith("downloaded ")]
    assert len(downloaded) == 2 and all("sha256 ok" in line for line in downloaded), result
    for file in out.iterdir():
        assert file.name.startswith(hashlib.sha256(file.read_bytes()).hexdigest()[:16])
    canceled = json.loads(result.stdout.splitlines()[-1])
    assert canceled["userErrors"] == [], result
    assert canceled["generation"]["status"] in ("STARTING", "PROCESSING", "CANCELED"), result


async def newest_prediction(darkroom: Darkroom) -> dict[str, Any]:
    response = await darkroom.http.get("/simulator/v1/predictions", headers={"Authorization": "Bearer test"})
    response.raise_for_status()
    results: list[dict[str, Any]] = response.json()["results"]
    return results[0] if results else {}


async def test_a_webhook_signed_by_hand_is_verified_and_applied(start_darkroom: Any) -> None:
    # Every simulator webhook is dropped and no poller runs: only the hand-made webhook can move it.
    async with start_darkroom(simulator_webhook_drop_rate=1.0, poller_enabled=False) as darkroom:
        generation = await start_generation(darkroom, "delivered by hand")
        await eventually(lambda: _prediction_succeeded(darkroom), timeout=60)
        assert (await get_generation(darkroom, generation["id"]))["status"] == "STARTING"
        env = example_env(darkroom.base_url)

        forged = await run("bash", SEND_WEBHOOK, "--latest", "--bad-signature", env=env)
        assert forged.code == 1, forged
        assert forged.stdout.startswith("HTTP 401"), forged
        assert (await get_generation(darkroom, generation["id"]))["status"] == "STARTING"

        delivered = await run("bash", SEND_WEBHOOK, "--latest", env=env)
        assert delivered.code == 0, delivered
        assert delivered.stdout.strip() == 'HTTP 200 {"result":"applied"}', delivered
        final = await eventually(lambda: _settled(darkroom, generation["id"]), timeout=60)
        assert final["status"] == "SUCCEEDED"
        assert final["media"] and all(media["status"] == "READY" for media in final["media"])

        again = await run("bash", SEND_WEBHOOK, "--latest", env=env)
        assert again.stdout.strip() == 'HTTP 200 {"result":"duplicate"}', again


async def test_a_webhook_for_an_unknown_prediction_is_acknowledged(darkroom: Darkroom, tmp_path: Path) -> None:
    # The secret from the environment this time, instead of asking the simulator for it.
    env = example_env(darkroom.base_url, REPLICATE_WEBHOOK_SECRET=darkroom.simulator.config.webhook_secret)
    result = await run("bash", SEND_WEBHOOK, env=env)
    assert result.code == 0, result
    assert result.stdout.strip() == 'HTTP 200 {"result":"unknown"}', result

    body = tmp_path / "prediction.json"
    body.write_text(json.dumps({"id": "from-a-file", "status": "processing", "input": {}}))
    from_file = await run("bash", SEND_WEBHOOK, body, env=env)
    assert from_file.stdout.strip() == 'HTTP 200 {"result":"unknown"}', from_file
    generations = await darkroom.query("{ generations(first: 5) { edges { node { id } } } }")
    assert generations["data"]["generations"]["edges"] == [], "nothing was written"


async def _prediction_succeeded(darkroom: Darkroom) -> bool:
    return (await newest_prediction(darkroom)).get("status") == "succeeded"


async def _settled(darkroom: Darkroom, generation_id: str) -> dict[str, Any] | None:
    generation = await get_generation(darkroom, generation_id)
    return generation if settled(generation) else None
