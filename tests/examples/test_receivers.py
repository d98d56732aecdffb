"""The webhook receivers, run as a user runs them, fed deliveries signed as Darkroom signs its webhooks.

No Darkroom server is needed: the `standardwebhooks` package Darkroom signs with signs these deliveries.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from tests.examples.support import EXAMPLES, Background, example_env, require_programs, run
from tests.support.waiting import eventually

RECEIVERS = {
    "python": (sys.executable, str(EXAMPLES / "python" / "webhook_receiver.py")),
    "node": ("node", str(EXAMPLES / "node" / "webhook-receiver.mjs")),
}
VERIFY = EXAMPLES / "curl" / "verify-webhook.sh"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def event(sequence: int, status: str = "PROCESSING", phase: str | None = "running") -> bytes:
    return json.dumps(
        {
            "cursor": f"c{sequence}",
            "type": "GENERATION_UPDATED",
            "sequence": sequence,
            "at": "2026-01-01T00:00:00Z",
            "generation": {"id": "gen_1", "status": status, "phase": phase, "progress": 0.5, "media": []},
        }
    ).encode()


def signed(secret: str, webhook_id: str, body: bytes, *, age: timedelta = timedelta()) -> dict[str, str]:
    """The headers Darkroom sends with `body`, signed `age` ago."""
    at = datetime.now(UTC) - age
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


@pytest.fixture(params=sorted(RECEIVERS))
def receiver(request: pytest.FixtureRequest) -> tuple[str, ...]:
    require_programs(RECEIVERS[request.param][0])
    return RECEIVERS[request.param]


async def test_a_receiver_verifies_signatures_and_handles_each_delivery_once(
    receiver: tuple[str, ...], tmp_path: Path
) -> None:
    secret = new_secret()
    env = example_env("unused", DARKROOM_WEBHOOK_SECRET=secret)
    process = await Background.start(*receiver, "--port", "0", env=env, logs=tmp_path)
    try:
        listening = await eventually(lambda: re.search(r"listening on (http://\S+)", process.stderr), timeout=15)
        async with httpx.AsyncClient(base_url=listening[1], timeout=10) as http:

            async def deliver(body: bytes, headers: dict[str, str]) -> int:
                return (await http.post("/", content=body, headers=headers)).status_code

            assert await deliver(event(1), signed(secret, "evt_1", event(1))) == 204
            # A retry: the same id, signed again a moment later.
            assert await deliver(event(1), signed(secret, "evt_1", event(1))) == 204

            forged = signed(new_secret(), "evt_2", event(2))
            assert await deliver(event(2), forged) == 401
            tampered = signed(secret, "evt_2", event(2))
            assert await deliver(event(2, "SUCCEEDED"), tampered) == 401
            stale = signed(secret, "evt_2", event(2), age=timedelta(minutes=6))
            assert await deliver(event(2), stale) == 401
            assert await deliver(event(2), {"content-type": "application/json"}) == 401

            # The refusals did not mark evt_2 seen; a header with a rotated-out signature first still passes.
            valid = signed(secret, "evt_2", event(2, "SUCCEEDED", None))
            valid["webhook-signature"] = forged["webhook-signature"] + " " + valid["webhook-signature"]
            assert await deliver(event(2, "SUCCEEDED", None), valid) == 204
    finally:
        await process.stop()

    # Each line is printed before its 204, so all are there now.
    assert process.stdout.splitlines() == [
        "GENERATION_UPDATED #1 gen_1 PROCESSING running",
        "GENERATION_UPDATED #2 gen_1 SUCCEEDED -",
    ], f"{process.stdout}\n{process.stderr}"
    assert "repeat evt_1" in process.stderr
    assert process.stderr.count("refused evt_2") == 3, process.stderr


async def test_a_receiver_without_a_secret_refuses_to_start(receiver: tuple[str, ...]) -> None:
    result = await run(*receiver, "--port", "0", env=example_env("unused"), timeout=15)
    assert result.code == 2, result
    assert "DARKROOM_WEBHOOK_SECRET" in result.stderr, result


async def test_the_curl_verifier_accepts_a_valid_delivery_and_nothing_else(tmp_path: Path) -> None:
    require_programs("bash", "openssl", "jq")
    secret = new_secret()
    env = example_env("unused", DARKROOM_WEBHOOK_SECRET=secret)
    body = tmp_path / "body.json"
    body.write_bytes(event(3, "SUCCEEDED", "saving") + b"\n")  # a trailing newline is part of what was signed

    def save_headers(name: str, headers: dict[str, str]) -> Path:
        path = tmp_path / name
        # As a proxy logs them: names in any case, CRLF line ends.
        path.write_bytes(b"".join(f"{k.title()}: {v}\r\n".encode() for k, v in headers.items()))
        return path

    headers = signed(secret, "evt_3", body.read_bytes())
    valid = await run("bash", VERIFY, save_headers("valid", headers), body, env=env, timeout=15)
    assert valid.code == 0, valid
    assert valid.stdout.splitlines() == [
        f"valid: webhook-id evt_3, signed at {headers['webhook-timestamp']}",
        "GENERATION_UPDATED #3 gen_1 SUCCEEDED saving",
    ], valid

    by_args = ("--id", "evt_3", "--timestamp", headers["webhook-timestamp"])
    several = "v1,bm90IGl0 " + headers["webhook-signature"]
    from_args = await run("bash", VERIFY, *by_args, "--signature", several, body, env=env, timeout=15)
    assert from_args.code == 0, from_args

    other = tmp_path / "other.json"
    other.write_bytes(event(3, "FAILED", None) + b"\n")
    tampered = await run("bash", VERIFY, save_headers("tampered", headers), other, env=env, timeout=15)
    assert tampered.code == 1 and "no signature" in tampered.stderr, tampered

    wrong_key = {**env, "DARKROOM_WEBHOOK_SECRET": new_secret()}
    forged = await run("bash", VERIFY, save_headers("forged", headers), body, env=wrong_key, timeout=15)
    assert forged.code == 1, forged

    old = signed(secret, "evt_3", body.read_bytes(), age=timedelta(hours=1))
    stale = await run("bash", VERIFY, save_headers("stale", old), body, env=env, timeout=15)
    assert stale.code == 1 and "more than 5 minutes" in stale.stderr, stale
    saved = await run("bash", VERIFY, "--any-age", save_headers("stale", old), body, env=env, timeout=15)
    assert saved.code == 0, saved

    unsigned = await run("bash", VERIFY, save_headers("unsigned", {"content-type": "x"}), body, env=env, timeout=15)
    assert unsigned.code == 1, unsigned
    no_secret = await run("bash", VERIFY, save_headers("valid", headers), body, env=example_env("unused"))
    assert no_secret.code == 2, no_secret
