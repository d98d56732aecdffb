"""Provider updates on a real database, raced: each change logged once and only forward, ids visible in
commit order, and an update that lost a race decided again on the row it lost to."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.db.migrate import upgrade
from server.db.models import Event, Generation, GenerationRow
from server.db.session import create_engine, create_sessionmaker
from server.provider.registry import Providers
from server.provider.replicate.adapter import ADAPTER as REPLICATE
from server.provider.replicate.prediction import Prediction
from server.provider.types import PredictionUpdate
from server.services.event_log.events import EventType, append_event
from server.services.generations.service import GenerationService, UpdateOutcome
from server.settings import Settings

STEPS = 30


class Published(list[int]):
    async def __call__(self, event_id: int) -> None:
        self.append(event_id)


@pytest.fixture
async def engine(make_settings: Callable[..., Settings]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings())
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _services(settings: Settings, count: int, published: Published) -> AsyncIterator[list[GenerationService]]:
    """Services on separate engines: separate connection pools, as in separate processes."""
    engines = [create_engine(settings) for _ in range(count)]
    try:
        yield [
            GenerationService(settings, create_sessionmaker(each), Providers([REPLICATE.build(settings)]), published)
            for each in engines
        ]
    finally:
        for each in engines:
            await each.dispose()


async def _seed(sessions: async_sessionmaker[AsyncSession], count: int) -> list[uuid.UUID]:
    generations = [
        Generation(
            provider="replicate",
            id=uuid.uuid4(),
            kind="IMAGE",
            model_ref="a/b",
            input={"prompt": "a lighthouse"},
            status="STARTING",
            provider_id=f"p{number}",
        )
        for number in range(count)
    ]
    async with sessions.begin() as session:
        session.add_all(generations)
    return [generation.id for generation in generations]


def _logs(step: int) -> str:
    return "".join(f"{100 * n // STEPS}%|\n" for n in range(1, step + 1))


def _progress(provider_id: str, step: int) -> PredictionUpdate:
    return Prediction.from_json({"id": provider_id, "status": "processing", "logs": _logs(step)}).to_update()


async def test_raced_updates_are_each_logged_once_and_only_forward(
    make_settings: Callable[..., Settings], engine: AsyncEngine
) -> None:
    settings = make_settings()
    sessions = create_sessionmaker(engine)
    [generation_id] = await _seed(sessions, 1)
    updates = [_progress("p0", step) for step in range(1, STEPS + 1)] * 2  # each one delivered twice
    random.Random(7).shuffle(updates)
    published = Published()
    async with _services(settings, 3, published) as services:
        results = await asyncio.gather(
            *(services[n % 3].apply_prediction_update(update, provider="replicate") for n, update in enumerate(updates))
        )

    assert UpdateOutcome.UNKNOWN not in {result.outcome for result in results}
    applied = [result for result in results if result.outcome is UpdateOutcome.APPLIED]
    async with sessions() as session:
        generation = await session.get(Generation, generation_id)
        events = list((await session.scalars(select(Event).order_by(Event.id))).all())
    assert generation is not None
    assert generation.logs == _logs(STEPS)
    assert generation.progress == 1.0
    assert generation.status == "PROCESSING"
    # One event per applied update, numbered 1..n in id order, each further along than the one before.
    assert len(events) == len(applied) == len(published) >= 1
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert generation.event_seq == len(events)
    progress = [event.payload["generation"]["progress"] for event in events]
    assert progress == sorted(set(progress))
    # What was published is what was logged.
    assert [event.id for event in events] == sorted(published)


async def test_event_ids_become_visible_in_commit_order(
    make_settings: Callable[..., Settings], engine: AsyncEngine
) -> None:
    """A reader that has seen id n must already see every id below n that will ever be logged."""
    settings = make_settings()
    sessions = create_sessionmaker(engine)
    count = 12
    await _seed(sessions, count)
    published = Published()
    snapshots: list[list[int]] = []
    done = asyncio.Event()

    async def read() -> None:
        async with engine.connect() as connection:
            while not done.is_set():
                rows = await connection.execute(text("SELECT id FROM events ORDER BY id"))
                snapshots.append([row[0] for row in rows])
                await connection.commit()
                await asyncio.sleep(0)

    async def drive(service: GenerationService, provider_id: str) -> None:
        for step in range(1, 11):
            await service.apply_prediction_update(_progress(provider_id, step), provider="replicate")

    async with _services(settings, 3, published) as services:
        reader = asyncio.create_task(read())
        await asyncio.gather(*(drive(services[n % 3], f"p{n}") for n in range(count)))
        done.set()
        await reader
    async with sessions() as session:
        logged = list((await session.scalars(select(Event.id).order_by(Event.id))).all())
    assert len(logged) == count * 10 == len(published)
    assert len(snapshots) > 1
    for seen in snapshots:
        if seen:
            assert seen == [event_id for event_id in logged if event_id <= seen[-1]]


async def test_an_update_that_lost_a_race_is_decided_again_on_the_row_it_lost_to(
    make_settings: Callable[..., Settings], engine: AsyncEngine, database: str
) -> None:
    if not database.startswith("postgres"):
        pytest.skip("SQLite runs one writer at a time: there is no race to lose")
    settings = make_settings()
    sessions = create_sessionmaker(engine)
    [generation_id] = await _seed(sessions, 1)
    published = Published()
    async with _services(settings, 1, published) as [service]:
        async with sessions() as session, session.begin():
            # Another writer holds the row, and has moved it to step 5 without committing yet.
            row = (
                await session.scalars(select(Generation).where(Generation.id == generation_id).with_for_update())
            ).one()
            row.status = "PROCESSING"
            row.logs = _logs(5)
            await append_event(session, row, [], EventType.UPDATED)
            # Step 3 looks new against the committed row, and waits for the row lock.
            late = asyncio.create_task(service.apply_prediction_update(_progress("p0", 3), provider="replicate"))
            waiting = 0
            async with engine.connect() as probe:
                for _ in range(250):
                    waiting = await probe.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                        )
                    )
                    await probe.commit()
                    if waiting:
                        break
                    await asyncio.sleep(0.02)
            assert waiting, "the update never waited for the row"
            assert not late.done()
        # The other writer committed step 5: step 3 is now stale, and changes nothing.
        result = await late
    assert result.outcome is UpdateOutcome.STALE
    async with sessions() as session:
        generation = await session.get(Generation, generation_id)
        seqs = list((await session.scalars(select(Event.seq).where(Event.generation_id == generation_id))).all())
    assert generation is not None and generation.logs == _logs(5) and generation.event_seq == 1
    assert seqs == [1]
    assert published == []


def test_the_plain_row_has_every_state_column_of_a_generation() -> None:
    """A column added to generations must reach the one-statement update path (and its events) too."""
    columns = {column.key for column in Generation.__table__.columns}
    left_out = {"input", "queued_input", "poll_claimed_until"}
    assert {field.name for field in dataclasses.fields(GenerationRow)} == columns - left_out
