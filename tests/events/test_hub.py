"""The event hub over each broadcast backend: delivery across hubs, filters, overflow, cleanup."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from server.events import EventHub as _EventHub
from server.events import SubscriberOverflow
from tests.conftest import SESSION_CHANNEL


def EventHub(url: str, **kwargs: Any) -> _EventHub:
    return _EventHub(url, channel=SESSION_CHANNEL, **kwargs)


@pytest.fixture(params=["memory", "postgres", "redis"])
def broadcast_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_database"))
    return str(request.getfixturevalue("redis_url"))


def _event(n: int, generation: str = "g") -> dict[str, Any]:
    return {"id": n, "seq": n, "generationId": generation, "type": "GENERATION_UPDATED"}


async def test_events_reach_subscribers_of_every_hub_on_the_backend(broadcast_url: str) -> None:
    publisher = EventHub(broadcast_url)
    listeners = [publisher] if broadcast_url == "memory://" else [publisher, EventHub(broadcast_url)]
    for hub in {id(h): h for h in listeners}.values():
        await hub.start()
    try:
        async with (
            listeners[-1].subscribe(lambda event: event["generationId"] == "mine") as mine,
            listeners[-1].subscribe() as everything,
        ):
            for n in range(1, 4):
                await publisher.publish(_event(n, "mine" if n != 2 else "other"))
            got_mine = [await asyncio.wait_for(mine.__anext__(), 5) for _ in range(2)]
            got_all = [await asyncio.wait_for(everything.__anext__(), 5) for _ in range(3)]
        assert [event["id"] for event in got_mine] == [1, 3]
        assert [event["id"] for event in got_all] == [1, 2, 3]
        assert listeners[-1].subscriber_count == 0
    finally:
        for hub in {id(h): h for h in listeners}.values():
            await hub.stop()


async def test_concurrent_publishes_on_one_hub_all_arrive(broadcast_url: str) -> None:
    hub = EventHub(broadcast_url)
    await hub.start()
    try:
        async with hub.subscribe() as subscription:
            await asyncio.gather(*(hub.publish(_event(n, str(uuid.uuid4()))) for n in range(50)))
            received = {(await asyncio.wait_for(subscription.__anext__(), 5))["id"] for _ in range(50)}
        assert received == set(range(50))
    finally:
        await hub.stop()


async def test_a_slow_subscriber_is_told_it_overflowed_and_others_are_unaffected() -> None:
    hub = EventHub("memory://", queue_size=3)
    await hub.start()
    try:
        async with hub.subscribe() as slow, hub.subscribe() as fast:
            for n in range(10):
                hub.deliver_local(_event(n))
                if n < 10:
                    assert (await fast.__anext__())["id"] == n
            with pytest.raises(SubscriberOverflow):
                for _ in range(10):
                    await slow.__anext__()
    finally:
        await hub.stop()


async def test_subscriptions_unregister_when_their_task_is_cancelled() -> None:
    hub = EventHub("memory://")
    await hub.start()
    try:
        started = asyncio.Event()

        async def listen() -> None:
            async with hub.subscribe() as subscription:
                started.set()
                async for _ in subscription:
                    pass

        task = asyncio.create_task(listen())
        await started.wait()
        assert hub.subscriber_count == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert hub.subscriber_count == 0
    finally:
        await hub.stop()
