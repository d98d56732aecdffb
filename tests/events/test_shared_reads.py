"""Subscribers starting together share their reads: one state read per generation, one log read per range."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.events.current_states import CurrentStates
from server.events.replay import SharedReplay


class SlowLog:
    """An event log in memory whose reads take a moment, so that waiters pile up behind them."""

    def __init__(self, events: int) -> None:
        self.events = [{"id": i, "seq": i, "generationId": "g"} for i in range(1, events + 1)]
        self.reads: list[int] = []
        self.state: dict[str, Any] | None = {"id": 0, "seq": 1, "generationId": "g"}

    async def newest_id(self) -> int:
        return len(self.events)

    async def read_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        self.reads.append(after_id)
        await asyncio.sleep(0.01)
        return self.events[after_id : after_id + limit]

    async def current_state(self, generation_id: str) -> dict[str, Any] | None:
        await asyncio.sleep(0.01)
        return self.state


async def replay_all(replay: SharedReplay, cursor: int, live_from: int = 0) -> list[int]:
    got: list[int] = []
    reached_end = False
    while not reached_end:
        replayed = await replay.after(cursor, live_from)
        reached_end = replayed.reached_end
        got += [event["id"] for event in replayed]
        cursor = got[-1] if got else cursor
    return got


async def test_a_storm_of_resumes_costs_reads_per_range_not_per_subscriber() -> None:
    log = SlowLog(events=1_000)
    replay = SharedReplay(log, batch_size=100)
    # 2,000 subscribers, at 20 distinct cursors spread over the log, all resuming at once.
    cursors = [(i % 20) * 50 for i in range(2_000)]
    results = await asyncio.gather(*(replay_all(replay, cursor) for cursor in cursors))
    for cursor, got in zip(cursors, results, strict=True):
        assert got == list(range(cursor + 1, 1_001)), "every event after the cursor, once, in order"
    # From the lowest cursor to the end is 10 batches (and one that finds the end), read once.
    assert len(log.reads) <= 11, log.reads
    assert replay.reads == len(log.reads)


async def test_a_failed_read_fails_its_waiters_and_the_next_read_is_fresh() -> None:
    log = SlowLog(events=10)
    replay = SharedReplay(log, batch_size=100)
    original = log.read_after

    async def broken(after_id: int, limit: int) -> list[dict[str, Any]]:
        raise ConnectionError("the log is down")

    log.read_after = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await replay.after(0, 0)
    log.read_after = original  # type: ignore[method-assign]
    assert await replay_all(replay, 5) == [6, 7, 8, 9, 10]


async def test_followers_of_one_generation_share_one_state_read() -> None:
    log = SlowLog(events=0)
    states = CurrentStates(log.current_state)

    async def follow() -> dict[str, Any] | None:
        async with states.hold("g"):
            return await states.current("g")

    results = await asyncio.gather(*(follow() for _ in range(500)))
    assert all(result == log.state for result in results)
    assert states.reads == 1
    assert len(states) == 0, "nobody follows it any more: the entry is gone"


async def test_an_event_delivered_while_the_state_is_read_is_not_lost() -> None:
    log = SlowLog(events=0)
    states = CurrentStates(log.current_state)
    async with states.hold("g"):
        reading = asyncio.create_task(states.current("g"))
        await asyncio.sleep(0)
        newer = {"id": 7, "seq": 2, "generationId": "g"}
        states.observe(newer)  # committed after the read began, delivered before it returned
        assert await reading == newer
        states.observe({"id": 8, "seq": 3, "generationId": "g"})
        assert (await states.current("g") or {})["seq"] == 3
        states.observe({"id": 6, "seq": 1, "generationId": "g"})  # older: changes nothing
        assert (await states.current("g") or {})["seq"] == 3
        assert states.reads == 1


async def test_an_event_with_cut_short_media_makes_the_state_read_again() -> None:
    log = SlowLog(events=0)
    states = CurrentStates(log.current_state)
    async with states.hold("g"):
        await states.current("g")
        states.observe({"id": 9, "seq": 4, "generationId": "g", "mediaTruncated": True})
        log.state = {"id": 0, "seq": 4, "generationId": "g"}
        assert await states.current("g") == log.state
        assert states.reads == 2


async def test_a_missing_generation_is_read_again_by_the_next_follower() -> None:
    log = SlowLog(events=0)
    log.state = None
    states = CurrentStates(log.current_state)
    async with states.hold("g"):
        assert await states.current("g") is None
        log.state = {"id": 0, "seq": 1, "generationId": "g"}
        assert await states.current("g") == log.state


async def test_cursors_among_the_newest_events_replay_from_memory() -> None:
    log = SlowLog(events=30)
    replay = SharedReplay(log, batch_size=100, tail_size=5)
    replay.begin(10)  # the tailer starts after event 10, then delivers the rest in order
    for event in log.events[10:]:
        replay.remember(event)
    # The newest 5 (and at most as many again) are held; a cursor among them costs no read...
    assert await replay_all(replay, 25) == list(range(26, 31))
    assert await replay_all(replay, 30) == []
    assert log.reads == []
    # ...an older one is read from the log.
    assert await replay_all(replay, 3) == list(range(4, 31))
    assert log.reads == [3]


async def test_a_resume_after_a_read_shares_it_unless_the_log_moved_on() -> None:
    log = SlowLog(events=30)
    replay = SharedReplay(log, batch_size=100)
    replay.begin(0)  # keeps no tail: every replay reads the log
    assert await replay_all(replay, 10, live_from=30) == list(range(11, 31))
    # Another subscriber resumes later; its live events begin where that read ended: nothing to read.
    assert await replay_all(replay, 12, live_from=30) == list(range(13, 31))
    assert log.reads == [10]
    # Once the log moved on past the read, a resume reads what came since (and only that).
    log.events.append({"id": 31, "seq": 31, "generationId": "g"})
    assert await replay_all(replay, 12, live_from=31) == list(range(13, 32))
    assert log.reads == [10, 30]
