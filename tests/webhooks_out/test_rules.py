"""Outgoing webhooks' rules: which URLs are accepted, the connect-time guard, and whose endpoints are whose."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from server.services.webhooks_out.guard import guarded_client, is_refusal
from tests.auth.support import KeyClient, new_key
from tests.support.flows import wait_settled
from tests.support.graphql import data
from tests.support.waiting import eventually
from tests.webhooks_out.support import (
    CREATE,
    DELETE,
    DELIVERIES,
    ENDPOINTS,
    FAST,
    REPLAY,
    ROTATE,
    UPDATE,
    by_generation,
    generations,
    received_all,
    receiver,
    register,
)

SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


async def _refusal(darkroom: Any, **input: Any) -> list[dict[str, Any]]:
    payload = data(await darkroom.query(CREATE, {"input": input}))["createWebhookEndpoint"]
    assert payload["endpoint"] is None and payload["secret"] is None
    return list(payload["userErrors"])


@SQLITE
async def test_private_and_malformed_urls_are_refused_at_registration(start_darkroom: Callable[..., Any]) -> None:
    async with receiver() as hooks, start_darkroom() as darkroom:
        for url in (
            hooks.url("x"),
            "http://localhost:9/hook",
            "http://10.1.2.3/hook",
            "http://[::1]:8080/",
            "http://169.254.169.254/latest",
            "http://printer.local/hook",
            "https://intranet/hook",
        ):
            errors = await _refusal(darkroom, url=url)
            assert [(error["code"], error["field"]) for error in errors] == [("PRIVATE_URL", ["input", "url"])], url
        for url in (
            "ftp://example.com/hook",
            "https://user:pw@example.com/hook",
            "https:///nohost",
            "https://example.com/" + "a" * 2100,
            "not a url",
        ):
            errors = await _refusal(darkroom, url=url)
            assert [error["code"] for error in errors] == ["INVALID_URL"], url
        errors = await _refusal(darkroom, url="https://example.com/hook", eventTypes=["GENERATION_CREATED", "NOPE"])
        assert [(error["code"], error["field"]) for error in errors] == [
            ("UNKNOWN_EVENT_TYPE", ["input", "eventTypes"])
        ]
        assert data(await darkroom.query(ENDPOINTS))["webhookEndpoints"] == []


async def test_the_connect_time_guard_refuses_non_public_addresses() -> None:
    """Registration checks the address once; the guard checks every connection, as DNS may change since."""
    async with receiver() as hooks:
        for url in (hooks.url("guarded"), hooks.url("guarded").replace("127.0.0.1", "localhost")):
            async with guarded_client(allow_private=False, timeout_seconds=3) as client:
                with pytest.raises(httpx.ConnectError) as refused:
                    await client.post(url, content=b"{}")
            assert is_refusal(refused.value), refused.value
            assert "loopback" in str(refused.value)
        assert hooks.paths["guarded"].requests == 0
        # Allowed, the same client reaches it (and follows no redirect).
        async with guarded_client(allow_private=True, timeout_seconds=3) as client:
            response = await client.post(hooks.url("guarded"), content=b"{}")
        assert response.status_code == 401 and hooks.paths["guarded"].requests == 1


@SQLITE
async def test_a_key_sees_and_changes_only_its_own_endpoints(start_darkroom: Callable[..., Any]) -> None:
    async with receiver() as hooks, start_darkroom(**FAST) as darkroom:
        # Made on the open server: once keys are required, its anonymous owner may see nobody's events.
        await register(darkroom, hooks, "anonymous")
        alice, bob = await new_key(darkroom, "alice"), await new_key(darkroom, "bob")
        endpoint = await register(alice, hooks, "alice")
        own = endpoint["id"]
        node = "query Node($id: ID!) { node(id: $id) { id ... on WebhookEndpoint { url } } }"
        assert data(await alice.query(node, {"id": own}))["node"] == {"id": own, "url": hooks.url("alice")}
        assert data(await bob.query(node, {"id": own}))["node"] is None
        assert [item["id"] for item in data(await alice.query(ENDPOINTS))["webhookEndpoints"]] == [own]
        assert data(await bob.query(ENDPOINTS))["webhookEndpoints"] == []
        for document, variables, name in (
            (UPDATE, {"input": {"id": own, "enabled": False}}, "updateWebhookEndpoint"),
            (ROTATE, {"id": own}, "rotateWebhookEndpointSecret"),
            (DELETE, {"id": own}, "deleteWebhookEndpoint"),
            (REPLAY, {"id": own, "after": None}, "replayWebhookEndpoint"),
        ):
            payload = data(await bob.query(document, variables))[name]
            assert [error["code"] for error in payload["userErrors"]] == ["NOT_FOUND"], name
        answer = await bob.query(DELIVERIES, {"id": own})
        assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        # Alice's endpoint is sent Alice's generations only.
        bobs = await generations(bob, 1, "bob's")
        alices = await generations(alice, 1, "alice's")
        await wait_settled(bob, bobs[0])
        await received_all(hooks.paths["alice"], alice, alices)
        assert set(by_generation(hooks.paths["alice"].unique())) == set(alices)
        assert hooks.paths["anonymous"].requests == 0
        # A revoked key's endpoint is sent nothing more, its retries included.
        created = await darkroom.runtime.api_keys.create("carol")
        carol = KeyClient(darkroom, created.token)
        await register(carol, hooks, "carol")
        hooks.paths["carol"].fail = True
        await generations(carol, 1, "carol's")
        await eventually(lambda: hooks.paths["carol"].requests >= 1)
        await darkroom.runtime.api_keys.revoke(str(created.key.id))
        requests = hooks.paths["carol"].requests
        hooks.paths["carol"].fail = False
        # Past the retry schedule (0.3 s, 0.5 s), while the generation goes on logging events.
        await asyncio.sleep(1.5)
        assert hooks.paths["carol"].requests == requests and hooks.paths["carol"].unique() == []
        # A rotated secret signs what follows; the old one is never shown again.
        rotated = data(await alice.query(ROTATE, {"id": own}))["rotateWebhookEndpointSecret"]
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hooks.paths["alice"].secret
        deleted = data(await alice.query(DELETE, {"id": own}))["deleteWebhookEndpoint"]
        assert deleted == {"deletedEndpointId": own, "userErrors": []}
        assert data(await alice.query(ENDPOINTS))["webhookEndpoints"] == []
