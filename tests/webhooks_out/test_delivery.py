"""Outgoing webhooks from one process: every event, signed and in order; retries; 410; replay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.flows import get_generation, wait_settled
from tests.support.graphql import data
from tests.support.waiting import eventually
from tests.webhooks_out.support import (
    DELIVERIES,
    ENDPOINTS,
    FAST,
    REPLAY,
    UPDATE,
    by_generation,
    generations,
    received_all,
    receiver,
    register,
)

SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


# On both databases: the claims and the lag are read with each one's SQL.
async def test_every_event_arrives_signed_in_order_with_the_feed_s_fields(start_darkroom: Callable[..., Any]) -> None:
    async with receiver() as hooks, start_darkroom(**FAST) as darkroom:
        endpoint = await register(darkroom, hooks, "all", description="everything")
        only_created = await register(darkroom, hooks, "created", eventTypes=["GENERATION_CREATED"])
        ids = await generations(darkroom, 2)
        got = await received_all(hooks.paths["all"], darkroom, ids)
        assert set(got) == set(ids)
        assert hooks.paths["all"].bad_signatures == 0
        # The body: the feed's cursor, type and sequence, and the generation as the Generation type shows it.
        last = hooks.paths["all"].unique()[-1]
        assert set(last) == {"cursor", "type", "sequence", "at", "generation"}
        state = await get_generation(darkroom, last["generation"]["id"])
        shown = last["generation"]
        assert shown["id"] == state["id"] and shown["model"] == state["model"]
        for key in ("status", "progress", "error", "providerStatus", "sequence", "phase", "metadata", "media"):
            assert key in shown, key
        cursors = [body["cursor"] for body in hooks.paths["all"].unique()]
        assert len(set(cursors)) == len(cursors)
        # The event types filter: only GENERATION_CREATED, one per generation.
        await eventually(lambda: len(hooks.paths["created"].unique()) == 2)
        assert {body["type"] for body in hooks.paths["created"].unique()} == {"GENERATION_CREATED"}
        assert sorted(by_generation(hooks.paths["created"].unique()).values()) == [[1], [1]]

        # The endpoint shows where it is; its deliveries log shows each attempt, newest first.
        async def caught_up() -> list[dict[str, Any]] | None:
            # The cursor moves once the receiver's answer is in: a moment after the receiver has the body.
            listed: list[dict[str, Any]] = data(await darkroom.query(ENDPOINTS))["webhookEndpoints"]
            mine = next(item for item in listed if item["id"] == endpoint["id"])
            return listed if mine["cursor"] == cursors[-1] else None

        listed = await eventually(caught_up)
        assert {item["id"] for item in listed} == {endpoint["id"], only_created["id"]}
        mine = next(item for item in listed if item["id"] == endpoint["id"])
        assert mine["enabled"] and mine["failedAttempts"] == 0
        page = data(await darkroom.query(DELIVERIES, {"id": endpoint["id"], "first": 3}))["webhookDeliveries"]
        nodes = [edge["node"] for edge in page["edges"]]
        assert [node["cursor"] for node in nodes] == cursors[::-1][:3]
        assert all(node["statusCode"] == 200 and node["attempt"] == 1 for node in nodes)
        assert nodes[0]["messageId"].startswith("evt_") and nodes[0]["responseExcerpt"] == "answered 200"
        assert page["pageInfo"]["hasNextPage"]
        more = data(
            await darkroom.query(DELIVERIES, {"id": endpoint["id"], "first": 3, "after": page["pageInfo"]["endCursor"]})
        )["webhookDeliveries"]
        assert [edge["node"]["cursor"] for edge in more["edges"]] == cursors[::-1][3:6]


@SQLITE
async def test_a_failing_receiver_gets_everything_in_order_once_it_recovers(
    start_darkroom: Callable[..., Any],
) -> None:
    async with receiver() as hooks, start_darkroom(**FAST) as darkroom:
        endpoint = await register(darkroom, hooks, "flaky")
        hooks.paths["flaky"].fail = True
        ids = await generations(darkroom, 2)
        await eventually(lambda: hooks.paths["flaky"].requests >= 3)
        state = data(await darkroom.query(ENDPOINTS))["webhookEndpoints"][0]
        assert state["failedAttempts"] >= 1 and state["nextAttemptAt"] is not None and state["enabled"]
        hooks.paths["flaky"].fail = False
        await received_all(hooks.paths["flaky"], darkroom, ids)
        page = data(await darkroom.query(DELIVERIES, {"id": endpoint["id"], "first": 50}))["webhookDeliveries"]
        failures = [edge["node"] for edge in page["edges"] if edge["node"]["statusCode"] == 500]
        assert failures and all(node["nextRetryAt"] and node["error"] for node in failures)
        assert {node["attempt"] for node in failures} >= {1, 2}


@SQLITE
async def test_a_receiver_answering_410_is_disabled(start_darkroom: Callable[..., Any]) -> None:
    async with receiver() as hooks, start_darkroom(**FAST, webhook_delivery_retention_seconds=0.5) as darkroom:
        endpoint = await register(darkroom, hooks, "gone")
        hooks.paths["gone"].gone = True
        await generations(darkroom, 1)

        async def disabled() -> dict[str, Any] | None:
            state = data(await darkroom.query(ENDPOINTS))["webhookEndpoints"][0]
            return None if state["enabled"] else state

        state = await eventually(disabled)
        assert "410" in state["disabledReason"] and state["disabledAt"]
        requests = hooks.paths["gone"].requests
        assert requests == 1
        await wait_settled(darkroom, (await generations(darkroom, 1))[0])
        # Enabling it again clears the failure; until then nothing more is sent.
        assert hooks.paths["gone"].requests == requests
        hooks.paths["gone"].gone = False
        enabled = data(await darkroom.query(UPDATE, {"input": {"id": endpoint["id"], "enabled": True}}))
        state = enabled["updateWebhookEndpoint"]["endpoint"]
        assert state["enabled"] and state["disabledReason"] is None and state["failedAttempts"] == 0
        await eventually(lambda: len(hooks.paths["gone"].unique()) > 0)
        # The cleanup removes the delivery log's old attempts.
        await asyncio.sleep(0.6)
        report = await darkroom.runtime.retention.run()
        assert report.old_webhook_deliveries >= 2


@SQLITE
async def test_a_replay_sends_exactly_the_events_after_its_cursor(start_darkroom: Callable[..., Any]) -> None:
    async with receiver() as hooks, start_darkroom(**FAST) as darkroom:
        endpoint = await register(darkroom, hooks, "replayed")
        ids = await generations(darkroom, 2)
        await received_all(hooks.paths["replayed"], darkroom, ids)
        first_pass = hooks.paths["replayed"].unique()
        middle = len(first_pass) // 2
        hooks.paths["replayed"].received.clear()
        hooks.paths["replayed"].message_ids.clear()
        replayed = data(
            await darkroom.query(REPLAY, {"id": endpoint["id"], "after": first_pass[middle - 1]["cursor"]})
        )["replayWebhookEndpoint"]
        assert replayed["userErrors"] == []
        assert replayed["endpoint"]["cursor"] == first_pass[middle - 1]["cursor"]
        await eventually(lambda: len(hooks.paths["replayed"].received) >= len(first_pass) - middle)
        assert hooks.paths["replayed"].received == first_pass[middle:]
        # From the beginning: the whole log, the events from before it was registered too.
        hooks.paths["replayed"].received.clear()
        data(await darkroom.query(REPLAY, {"id": endpoint["id"], "after": None}))
        await eventually(lambda: len(hooks.paths["replayed"].received) >= len(first_pass))
        assert hooks.paths["replayed"].received[-len(first_pass) :] == first_pass
        # A malformed cursor is refused before anything changes.
        refused = await darkroom.query(REPLAY, {"id": endpoint["id"], "after": "nonsense"})
        assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@SQLITE
async def test_an_endpoint_failing_for_too_long_is_disabled(start_darkroom: Callable[..., Any]) -> None:
    async with receiver() as hooks, start_darkroom(**FAST, webhook_disable_after_seconds=0.6) as darkroom:
        await register(darkroom, hooks, "dead")
        hooks.paths["dead"].fail = True
        await generations(darkroom, 1)

        async def disabled() -> dict[str, Any] | None:
            state = data(await darkroom.query(ENDPOINTS))["webhookEndpoints"][0]
            return None if state["enabled"] else state

        state = await eventually(disabled)
        assert "failing since" in state["disabledReason"] and state["failedAttempts"] >= 2
        assert hooks.paths["dead"].unique() == []
