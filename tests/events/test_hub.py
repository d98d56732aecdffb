"""The event hub over each broadcast backend: the log drives delivery, the doorbell only wakes the tailer.

The log here is a list (the database's log is exercised end to end in tests/pipeline/test_delivery.py),
so each test can commit, lose a ring or make the log unreadable exactly when it needs to.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.events import EventHub as _EventHub
from server.events import SubscriberOverflow, Subscription
from tests.support.services import SESSION_CHANNEL
from tests.support.waiting import eventually


class ListLog:
    """An event log in memory, shared by every hub of a test, that can be made to fail."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.down = False
        self.reads = 0

    def commit(self, generation: str = "g") -> int:
        """Log an event; its id, as a service publishes it."""
        event = {"id": len(self.events) + 1, "seq": len(self.events) + 1, "generationId": generation}
        self.events.append(event)
        return len(self.events)

    async def newest_id(self) -> int:
        return len(self.events)

    async def read_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        self.reads += 1
        if self.down:
            raise ConnectionError("the log is down")
        return self.events[after_id : after_id + limit]

    async def current_state(self, generation_id: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["generationId"] == generation_id), None)


def EventHub(url: str, log: ListLog, **kwargs: Any) -> _EventHub:
    kwargs.setdefault("tail_interval", 30.0)  # long: unless a test says otherwise, only rings wake a tailer
    kwargs.setdefault("check_seconds", 0.5)
    return _EventHub(url, log, channel=SESSION_CHANNEL, **kwargs)


@pytest.fixture(params=["postgres", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_database"))
    return str(request.getfixturevalue("redis_url"))


async def take(subscription: Subscription, count: int) -> list[int]:
    return [(await asyncio.wait_for(subscription.__anext__(), 5))["id"] for _ in range(count)]


async def test_a_ring_on_one_hub_wakes_the_tailers_of_the_others(broker_url: str) -> None:
    log = ListLog()
    writer, reader = EventHub(broker_url, log), EventHub(broker_url, log)
    await writer.start()
    await reader.start()
    try:
        async with reader.subscribe(lambda event: event["generationId"] == "mine") as mine, reader.subscribe() as all_:
            for generation in ("mine", "other", "mine"):
                await writer.publish(log.commit(generation))
            assert await take(mine, 2) == [1, 3]
            assert await take(all_, 3) == [1, 2, 3]
        assert reader.subscriber_count == 0
    finally:
        await writer.stop()
        await reader.stop()


async def test_events_are_delivered_in_log_order_whatever_order_they_are_announced_in() -> None:
    log = ListLog()
    hub = EventHub("memory://", log)
    await hub.start()
    try:
        async with hub.subscribe() as subscription:
            first, second = log.commit(), log.commit()
            # Two transactions committed as 1 then 2 may announce themselves as 2 then 1.
            await hub.publish(second)
            await hub.publish(first)
            assert await take(subscription, 2) == [1, 2]
    finally:
        await hub.stop()


async def test_an_event_whose_ring_was_lost_is_delivered_by_the_interval_read(broker_url: str) -> None:
    log = ListLog()
    hub = EventHub(broker_url, log, tail_interval=0.2)
    await hub.start()
    try:
        async with hub.subscribe() as subscription:
            log.commit()  # committed by a process whose ring never arrived
            assert await take(subscription, 1) == [1]
    finally:
        await hub.stop()


async def test_an_unreadable_log_is_reported_and_delivery_catches_up_when_it_returns() -> None:
    log = ListLog()
    hub = EventHub("memory://", log, tail_interval=0.1)
    await hub.start()
    try:
        async with hub.subscribe() as subscription:
            log.down = True
            await hub.publish(log.commit())
            await eventually(lambda: not hub.log_readable, timeout=5)
            assert hub.tailer.lag_events == 1 and hub.tailer.lag_seconds > 0
            log.down = False
            assert await take(subscription, 1) == [1]
            await eventually(lambda: hub.log_readable, timeout=5)
            assert hub.tailer.lag_events == 0 and hub.tailer.lag_seconds == 0
    finally:
        await hub.stop()


async def test_one_read_serves_every_subscriber() -> None:
    log = ListLog()
    hub = EventHub("memory://", log)
    await hub.start()
    try:
        async with hub.subscribe() as a, hub.subscribe() as b, hub.subscribe() as c:
            reads_before = log.reads
            await hub.publish(log.commit())
            assert [await take(s, 1) for s in (a, b, c)] == [[1], [1], [1]]
            assert log.reads - reads_before == 1
    finally:
        await hub.stop()


async def test_a_subscription_records_the_position_it_was_registered_at() -> None:
    log = ListLog()
    log.commit()
    hub = EventHub("memory://", log)
    await hub.start()
    try:
        async with hub.subscribe() as subscription:
            assert subscription.registered_at == 1
            await hub.publish(log.commit())
            assert await take(subscription, 1) == [2]
    finally:
        await hub.stop()


async def test_a_slow_subscriber_is_told_it_overflowed_and_others_are_unaffected() -> None:
    hub = EventHub("memory://", ListLog(), queue_size=3)
    await hub.start()
    try:
        async with hub.subscribe() as slow, hub.subscribe() as fast:
            for n in range(10):
                hub.deliver_local({"id": n})
                assert (await fast.__anext__())["id"] == n
            with pytest.raises(SubscriberOverflow):
                for _ in range(10):
                    await slow.__anext__()
    finally:
        await hub.stop()


async def test_subscriptions_unregister_when_their_task_is_cancelled() -> None:
    hub = EventHub("memory://", ListLog())
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


async def test_a_handed_over_subscription_passes_its_queued_events_then_each_new_one_in_order() -> None:
    hub = EventHub("memory://", ListLog())
    await hub.start()
    try:
        async with hub.subscribe(lambda event: event["id"] % 2 == 1) as subscription:
            for n in range(1, 5):
                hub.deliver_local({"id": n})
            received: list[int] = []
            subscription.hand_over(lambda event: received.append(event["id"]))
            assert received == [1, 3]
            for n in range(5, 8):
                hub.deliver_local({"id": n})
            assert received == [1, 3, 5, 7]
            with pytest.raises(RuntimeError, match="handed over"):
                await anext(subscription)  # its queue is gone: an idle subscription holds none
    finally:
        await hub.stop()


async def test_a_subscription_that_overflowed_before_its_hand_over_is_told_so() -> None:
    hub = EventHub("memory://", ListLog(), queue_size=2)
    await hub.start()
    try:
        async with hub.subscribe() as subscription:
            for n in range(5):
                hub.deliver_local({"id": n})
            with pytest.raises(SubscriberOverflow):
                subscription.hand_over(lambda event: None)
    finally:
        await hub.stop()
