"""Webhooks: signed, complete, filtered, throttled, retried only when terminal, and the fault knobs."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from server.provider.replicate.signing import verify_webhook
from server.simulator import webhooks
from server.simulator.webhooks import THROTTLE_SECONDS
from tests.simulator.support import Delivery, Receiver, RunningSimulator

TERMINAL = {"succeeded", "failed", "canceled", "aborted"}


def verify_all(deliveries: list[Delivery], secret: str) -> None:
    """Every delivery carries a valid Standard Webhooks signature (and our own verifier agrees)."""
    webhook = Webhook(secret)
    for delivery in deliveries:
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.headers["webhook-id"].startswith("msg_")
        verified = webhook.verify(delivery.body, delivery.headers)
        assert verified == delivery.json
        verify_webhook(secret, delivery.headers, delivery.body)


def got_terminal(deliveries: list[Delivery]) -> bool:
    return any(d.json["status"] in TERMINAL for d in deliveries)


async def test_every_event_is_signed_and_carries_the_prediction(sim: RunningSimulator, receiver: Receiver) -> None:
    created = await sim.create(
        "darkroom-sim/pixel-forge", {"prompt": "hooked", "num_inference_steps": 5}, webhook=receiver.url
    )
    await receiver.wait_for(got_terminal)
    await sim.simulator.webhooks.idle()
    deliveries = receiver.deliveries
    verify_all(deliveries, sim.config.webhook_secret)

    bodies = [d.json for d in deliveries]
    assert all(b["id"] == created["id"] for b in bodies)
    assert bodies[0]["status"] == "processing" and bodies[0]["logs"].startswith("Using seed: ")
    assert bodies[-1]["status"] == "succeeded"
    assert bodies[-1] == (await sim.http.get(created["urls"]["get"])).json()  # exactly what GET returns
    assert len({d.headers["webhook-id"] for d in deliveries}) == len(deliveries)

    records = sim.simulator.stats.webhooks_for(created["id"])
    assert next(r["event"] for r in records) == "start" and records[-1]["event"] == "completed"
    assert all(r["delivered"] and r["response_status"] == 200 and r["attempt"] == 1 for r in records)
    assert len(records) == len(deliveries)


async def test_events_filter(sim: RunningSimulator, receiver: Receiver) -> None:
    created = await sim.create(
        "darkroom-sim/snap-still",
        {"prompt": "quiet"},
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    await sim.finished(created["id"])
    await sim.simulator.webhooks.idle()
    assert receiver.statuses() == ["succeeded"]

    start_only = await sim.create(
        "darkroom-sim/snap-still",
        {"prompt": "hi"},
        webhook=receiver.url,
        webhook_events_filter=["start", "output"],
    )
    await sim.finished(start_only["id"])
    await sim.simulator.webhooks.idle()
    events = [r["event"] for r in sim.simulator.stats.webhooks_for(start_only["id"])]
    assert events == ["start", "output"]
    assert receiver.deliveries[-1].json["output"]


async def test_logs_webhooks_are_throttled(sim: RunningSimulator, receiver: Receiver) -> None:
    sim.config.run_seconds = 1.6
    created = await sim.create(
        "darkroom-sim/pixel-forge",
        {"prompt": "chatty", "num_inference_steps": 40},
        webhook=receiver.url,
        webhook_events_filter=["logs", "completed"],
    )
    await receiver.wait_for(got_terminal)
    await sim.simulator.webhooks.idle()
    logs = [d for d in receiver.deliveries if d.json["status"] == "processing"]
    # 41 log lines in 1.6 s: at most one webhook per 500 ms, and still more than one.
    assert 2 <= len(logs) <= 1.6 / THROTTLE_SECONDS + 1
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(logs)]
    assert all(gap >= THROTTLE_SECONDS - 0.05 for gap in gaps), gaps
    progress = [d.json["logs"].count("\n") for d in logs]
    assert progress == sorted(progress) and progress[-1] < 42
    assert receiver.deliveries[-1].json["status"] == "succeeded"
    assert created["id"] == receiver.deliveries[-1].json["id"]


async def test_only_the_terminal_webhook_is_retried(sim: RunningSimulator, receiver: Receiver) -> None:
    answers: dict[str, int] = {}

    def flaky(body: dict[str, Any]) -> int:
        """Refuse every non-terminal webhook once, and the terminal one twice."""
        key = "terminal" if body["status"] in TERMINAL else f"{body['status']}-{len(answers)}"
        answers[key] = answers.get(key, 0) + 1
        if body["status"] in TERMINAL:
            return 500 if answers[key] <= 2 else 204
        return 503

    receiver.respond = flaky
    created = await sim.create(
        "darkroom-sim/snap-still",
        {"prompt": "retry"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    await receiver.wait_for(lambda ds: any(d.answered == 204 for d in ds))
    await sim.simulator.webhooks.idle()
    verify_all(receiver.deliveries, sim.config.webhook_secret)

    starts = [d for d in receiver.deliveries if d.json["status"] == "processing"]
    terminals = [d for d in receiver.deliveries if d.json["status"] == "succeeded"]
    assert len(starts) == 1 and starts[0].answered == 503  # not retried
    assert [d.answered for d in terminals] == [500, 500, 204]
    assert len({d.headers["webhook-id"] for d in terminals}) == 1  # the same delivery each time
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(terminals)]
    assert gaps[1] > gaps[0] * 1.5  # exponential backoff

    records = sim.simulator.stats.webhooks_for(created["id"])
    completed = [r for r in records if r["event"] == "completed"]
    assert [(r["attempt"], r["delivered"], r["response_status"]) for r in completed] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, 204),
    ]


async def test_unreachable_receiver_is_retried_then_given_up(
    sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "RETRY_BASE_SECONDS", 0.01)
    created = await sim.create("darkroom-sim/snap-still", {"prompt": "void"}, webhook="http://127.0.0.1:9/hook")
    await sim.finished(created["id"])
    await sim.simulator.webhooks.idle()
    records = sim.simulator.stats.webhooks_for(created["id"])
    completed = [r for r in records if r["event"] == "completed"]
    assert len(completed) == webhooks.MAX_ATTEMPTS
    assert all(not r["delivered"] and r["response_status"] is None and r["error"] for r in completed)
    assert all(r["attempt"] == 1 for r in records if r["event"] != "completed")


async def test_dropped_webhooks_never_arrive(sim: RunningSimulator, receiver: Receiver) -> None:
    sim.config.webhook_drop_rate = 1.0
    created = await sim.create("darkroom-sim/snap-still", {"prompt": "lost"}, webhook=receiver.url)
    done = await sim.finished(created["id"])
    await sim.simulator.webhooks.idle()
    assert done["status"] == "succeeded"
    assert receiver.deliveries == []
    records = sim.simulator.stats.webhooks_for(created["id"])
    assert records and all(r["dropped"] and not r["delivered"] and r["attempt"] == 0 for r in records)
    assert any(r["event"] == "completed" for r in records)


async def test_duplicated_webhooks_share_their_id(sim: RunningSimulator, receiver: Receiver) -> None:
    sim.config.webhook_duplicate_rate = 1.0
    await sim.create(
        "darkroom-sim/snap-still",
        {"prompt": "twice"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    await receiver.wait_for(lambda ds: sum(d.json["status"] == "succeeded" for d in ds) == 2)
    await sim.simulator.webhooks.idle()
    verify_all(receiver.deliveries, sim.config.webhook_secret)
    ids = [d.headers["webhook-id"] for d in receiver.deliveries]
    assert len(ids) == 4 and ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    assert [r["duplicate"] for r in sim.simulator.stats.webhooks] == [False, True, False, True]


async def test_reordered_webhooks_arrive_out_of_order(sim: RunningSimulator, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as control:
        await control.patch("/_control/config", json={"webhook_reorder": True})
    created = await sim.create(
        "darkroom-sim/snap-still",
        {"prompt": "shuffled"},
        webhook=receiver.url,
        webhook_events_filter=["start", "completed"],
    )
    await sim.finished(created["id"])
    await receiver.wait_for(lambda ds: len(ds) == 2)
    await sim.simulator.webhooks.idle()
    verify_all(receiver.deliveries, sim.config.webhook_secret)
    # The start webhook was held back and overtaken: the last body a receiver sees is stale.
    assert receiver.statuses() == ["succeeded", "processing"]


async def test_delay(sim: RunningSimulator, receiver: Receiver) -> None:
    sim.config.webhook_delay_ms = 1500
    created = await sim.create(
        "darkroom-sim/snap-still",
        {"prompt": "slow mail"},
        webhook=receiver.url,
        webhook_events_filter=["completed"],
    )
    done = await sim.finished(created["id"])
    assert receiver.deliveries == []  # completed, but the webhook is still on its way
    await receiver.wait_for(lambda ds: len(ds) == 1)
    assert json.loads(receiver.deliveries[0].body) == done


async def test_webhooks_do_not_hold_up_predictions(sim: RunningSimulator, receiver: Receiver) -> None:
    sim.config.webhook_delay_ms = 20_000
    created = await sim.create("darkroom-sim/snap-still", {"prompt": "busy"}, webhook=receiver.url)
    done = await asyncio.wait_for(sim.finished(created["id"]), 10)
    assert done["status"] == "succeeded"
