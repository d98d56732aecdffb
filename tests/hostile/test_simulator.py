"""The embedded simulator is no way in: with API keys it answers only its own token, its signing secret is
no public default, Darkroom downloads outputs from its exact origin only, and its input fetches neither
follow redirects to private addresses nor tell open ports from closed ones."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
from sqlalchemy import select

from server.db.models import Generation
from server.graphql.ids import decode_id
from server.origins import origin_allowed
from server.provider.errors import ProviderAuthError
from server.provider.replicate.adapter import ADAPTER as REPLICATE
from server.provider.replicate.signing import sign_webhook
from server.settings import Settings
from server.simulator.engine import INPUT_FETCH_FAILED
from tests.auth.support import KeyClient, bearer, new_key
from tests.simulator.support import RunningSimulator, serve_simulator
from tests.simulator.test_predictions import png_bytes
from tests.support.darkroom import Darkroom
from tests.support.file_hosts import file_host
from tests.support.flows import GET, START, get_generation, settled, start_generation, wait_settled
from tests.support.graphql import data
from tests.support.live_server import free_port, live_server, read_body
from tests.support.object_storage import both_stores
from tests.support.waiting import eventually

# The signing secret every installation used to share.
OLD_DEFAULT_SECRET = "whsec_ZGFya3Jvb20tc2ltdWxhdG9yLXNpZ25pbmcta2V5IQ=="
PICTURE = png_bytes((64, 48))


async def _refused_everywhere(darkroom: Darkroom, headers: dict[str, str]) -> None:
    http = darkroom.http
    for path in ("/simulator/v1/predictions", "/simulator/v1/webhooks/default/secret", "/simulator/v1/models"):
        response = await http.get(path, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert "whsec_" not in response.text and "prompt" not in response.text
    for method, path in (("GET", "/_control/config"), ("GET", "/_control/stats"), ("POST", "/_control/reset")):
        response = await http.request(method, "/simulator" + path, headers=headers)
        assert response.status_code == 404, (method, path, headers, response.text)
    before = dict(darkroom.simulator.config.to_json())
    patched = await http.patch("/simulator/_control/config", json={"fail_rate": 1.0}, headers=headers)
    assert patched.status_code == 404, patched.text
    assert darkroom.simulator.config.to_json() == before, "nothing changed"


async def _settled_as(client: KeyClient, generation_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        state: dict[str, Any] = data(await client.query(GET, {"id": generation_id}))["generation"]
        return state if settled(state) else None

    return dict(await eventually(check, timeout=30, interval=0.1))


async def test_once_a_key_exists_only_the_simulators_own_token_opens_it(darkroom: Darkroom) -> None:
    # Open, like /graphql, while no key exists (the gallery and the examples work with no setup).
    assert (await darkroom.http.get("/simulator/v1/models", headers=bearer("anything"))).status_code == 200
    shown = await darkroom.http.get("/simulator/_control/config")
    assert shown.status_code == 200 and "api_token" not in shown.json()
    taken = await darkroom.http.patch("/simulator/_control/config", json={"api_token": "mine"})
    assert taken.status_code == 422 and darkroom.simulator.config.api_token != "mine"

    alice = await new_key(darkroom, "alice")
    started = data(await alice.query(START, {"model": "darkroom-sim/pixel-forge", "input": {"prompt": "sk-live-1"}}))
    generation = started["startGeneration"]["generation"]
    assert generation is not None, started

    for headers in ({}, bearer("anything"), bearer(alice.token), {"Authorization": "Token anything"}):
        await _refused_everywhere(darkroom, headers)

    own = bearer(darkroom.simulator.config.api_token)
    listed = await darkroom.http.get("/simulator/v1/predictions", headers=own)
    assert listed.status_code == 200 and listed.json()["results"]
    # Its web page shows a prediction's input: hidden too, to anyone without the token.
    page = f"/simulator/web/p/{listed.json()['results'][0]['id']}"
    for headers in ({}, bearer(alice.token)):
        assert (await darkroom.http.get(page, headers=headers)).status_code == 404
    assert (await darkroom.http.get(page, headers=own)).status_code == 200
    assert (await darkroom.http.get("/simulator/_control/stats", headers=own)).status_code == 200

    final = await _settled_as(alice, generation["id"])
    assert final["status"] == "SUCCEEDED"
    assert [media["status"] for media in final["media"]] == ["READY"]


async def test_auth_required_closes_it_with_no_key_at_all(start_darkroom: Callable[..., Any]) -> None:
    async with start_darkroom(auth_required=True) as darkroom:
        await _refused_everywhere(darkroom, bearer("anything"))


async def test_its_signing_secret_is_no_public_default(darkroom: Darkroom) -> None:
    secret = darkroom.simulator.config.webhook_secret
    assert secret.startswith("whsec_") and secret != OLD_DEFAULT_SECRET
    # Darkroom verifies the embedded simulator's webhooks with that very secret.
    assert await darkroom.replicate.webhook_secret() == secret
    settings = Settings(replicate_api_token=None)
    assert REPLICATE.embedded_config(settings).webhook_secret != REPLICATE.embedded_config(settings).webhook_secret
    chosen = Settings(replicate_api_token=None, simulator_webhook_secret="whsec_b3duLXNlY3JldA==")
    assert REPLICATE.embedded_config(chosen).webhook_secret == "whsec_b3duLXNlY3JldA=="


async def test_other_processes_reach_it_with_the_shared_token(start_darkroom: Callable[..., Any]) -> None:
    """A `darkroom worker` pointed at the embedded simulator: SIMULATOR_API_TOKEN set on both lets it in."""
    async with start_darkroom(simulator_api_token="sim_shared-by-both") as darkroom:
        await new_key(darkroom, "alice")
        elsewhere = {"replicate_api_token": None, "replicate_api_base_url": darkroom.base_url + "/simulator"}
        worker = REPLICATE.build(Settings(**elsewhere, simulator_api_token="sim_shared-by-both"))
        stranger = REPLICATE.build(Settings(**elsewhere))
        try:
            assert await worker.webhook_secret() == darkroom.simulator.config.webhook_secret
            with pytest.raises(ProviderAuthError):
                await stranger.webhook_secret()
        finally:
            await worker.aclose()
            await stranger.aclose()


@both_stores
async def test_an_output_on_another_loopback_port_is_never_fetched(start_darkroom: Callable[..., Any]) -> None:
    async with (
        start_darkroom(poller_enabled=False, simulator_webhook_drop_rate=1.0, simulator_run_seconds=60) as darkroom,
        file_host(PICTURE, content_type="image/png", name="loot.png") as other_port,
    ):
        generation = await start_generation(darkroom)
        async with darkroom.runtime.sessions() as session:
            row = await session.get(Generation, decode_id(generation["id"], "Generation"))
            assert row is not None and row.provider_id
        # Signed with the real secret, as only someone who stole it could: the allowlist must still hold.
        body = json.dumps(
            {
                "id": row.provider_id,
                "status": "succeeded",
                "input": {"prompt": "a lighthouse at dusk"},
                "output": [other_port.url],
                "logs": "",
                "error": None,
            }
        ).encode()
        headers = sign_webhook(darkroom.simulator.config.webhook_secret, f"msg_{uuid.uuid4().hex}", body)
        answer = await darkroom.http.post(
            "/webhooks/replicate", content=body, headers={"content-type": "application/json", **headers}
        )
        assert answer.status_code == 200, answer.text

        final = await wait_settled(darkroom, generation["id"])
        [media] = final["media"]
        assert media["status"] == "FAILED" and media["url"] is None
        assert "not an allowed file host" in media["downloadError"], media
        assert not other_port.requested.is_set(), "the other port was never asked"
        async with darkroom.runtime.sessions() as session:
            stored = (await session.scalars(select(Generation))).all()
        assert len(stored) == 1
        assert (await get_generation(darkroom, generation["id"]))["media"][0]["byteSize"] is None


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8000/simulator/files/p/out.png", True),
        ("http://127.0.0.1:8001/simulator/files/p/out.png", False),
        ("http://127.0.0.1/simulator/files/p/out.png", False),
        ("https://127.0.0.1:8000/simulator/files/p/out.png", False),
        ("https://replicate.delivery/pbxt/a.png", True),
        ("https://pbxt.replicate.delivery:443/a.png", True),
        ("https://pbxt.replicate.delivery:8443/a.png", False),
        ("http://pbxt.replicate.delivery/a.png", False),
        ("http://files.example.com:9000/a.png", True),
        ("http://files.example.com/a.png", False),
        ("http://127.0.0.1:99999/a.png", False),
    ],
)
def test_the_file_allowlist_compares_origins(url: str, allowed: bool) -> None:
    settings = Settings(
        replicate_api_token=None,
        port=8000,
        replicate_file_hosts="*.replicate.delivery, replicate.delivery, http://files.example.com:9000",
    )
    assert origin_allowed(url, settings.allowed_file_hosts()) is allowed


# --- input files -------------------------------------------------------------------------------------------


def redirector(closed_port: int) -> Callable[..., Awaitable[None]]:
    """An ASGI file host whose paths redirect where an attacker would point them, or answer 404."""

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive)
        targets = {
            "/to-metadata.png": "http://169.254.169.254/latest/meta-data",
            "/to-loopback.png": f"{scope['query_string'].decode()}",
            "/to-closed.png": f"http://127.0.0.1:{closed_port}/frame.png",
            "/to-private-name.png": "http://router.internal/frame.png",
        }
        target = targets.get(scope["path"])
        if target is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no such file"})
            return
        await send({"type": "http.response.start", "status": 302, "headers": [(b"location", target.encode())]})
        await send({"type": "http.response.body", "body": b""})

    return app


def simulator_at(base_url: str | None = None, **config: Any) -> AbstractAsyncContextManager[RunningSimulator]:
    """A simulator on a port of its own; `base_url` names where it says it is, whose files it fetches as
    its own whatever their host."""
    return serve_simulator(**config, **({"public_base_url": base_url} if base_url else {}))


async def _failure(sim: RunningSimulator, image: str) -> str:
    final = await sim.run("darkroom-sim/still-motion", {"image": image, "duration": 1})
    assert final["status"] == "failed", final
    error: str = final["error"]
    return error


async def test_input_redirects_to_private_addresses_fail_like_a_closed_port() -> None:
    """Like Replicate: no private input at all. The redirecting host passes as the simulator's own (no
    public host answers in a test), so only where its redirects lead is judged."""
    closed_port = free_port()
    async with (
        file_host(PICTURE, content_type="image/png", name="frame.png") as open_port,
        live_server(redirector(closed_port), lifespan="off") as hosts,
        simulator_at(hosts) as sim,
        simulator_at(f"http://127.0.0.1:{closed_port}") as sim_on_closed,
    ):
        closed_url = f"http://127.0.0.1:{closed_port}/frame.png"
        cases = {
            "metadata": (sim, f"{hosts}/to-metadata.png"),
            "open loopback port": (sim, f"{hosts}/to-loopback.png?{open_port.url}"),
            "closed loopback port": (sim, f"{hosts}/to-closed.png"),
            "private name": (sim, f"{hosts}/to-private-name.png"),
            "an error status": (sim, f"{hosts}/missing.png"),
            "a closed port itself": (sim_on_closed, closed_url),
        }
        for case, (client, image) in cases.items():
            error = await _failure(client, image)
            assert error == f"Failed to download image from {image}: {INPUT_FETCH_FAILED}", (case, error)
        assert not open_port.requested.is_set(), "the redirect to an open loopback port was not followed"


async def test_the_embedded_kind_fetches_private_inputs_but_follows_no_redirect_off_the_internet() -> None:
    """Darkroom's own simulator takes private URLs (the server's media over loopback), but never a
    link-local one, and a redirect must lead to a public address."""
    closed_port = free_port()
    async with (
        file_host(PICTURE, content_type="image/png", name="frame.png") as open_port,
        live_server(redirector(closed_port), lifespan="off") as hosts,
        simulator_at(allow_private_inputs=True) as sim,
    ):
        done = await sim.run("darkroom-sim/still-motion", {"image": open_port.url, "duration": 1})
        assert done["status"] == "succeeded", done["error"]
        open_port.requested.clear()
        for image in (
            f"{hosts}/to-metadata.png",
            f"{hosts}/to-loopback.png?{open_port.url}",
            f"{hosts}/to-closed.png",
            f"{hosts}/missing.png",
            f"http://127.0.0.1:{closed_port}/frame.png",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/latest/meta-data",
            # A name that does not resolve is never fetched by name (it might resolve elsewhere then).
            "http://darkroom-test.invalid/frame.png",
        ):
            error = await _failure(sim, image)
            assert error == f"Failed to download image from {image}: {INPUT_FETCH_FAILED}", error
        assert not open_port.requested.is_set(), "the redirect to an open loopback port was not followed"
