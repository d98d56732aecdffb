"""Reading the event log in commit order: what every process's tailer delivers from."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Event, Generation, Media
from server.services.event_log.snapshots import state_snapshot


class StoredEventLog:
    """The `events` table as the hub's EventLog: newest id, the rows after a position, a generation's state."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def newest_id(self) -> int:
        async with self._sessions() as session:
            return int(await session.scalar(select(func.coalesce(func.max(Event.id), 0))) or 0)

    async def read_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        statement = select(Event.id, Event.payload).where(Event.id > after_id).order_by(Event.id).limit(limit)
        async with self._sessions() as session:
            rows = (await session.execute(statement)).all()
        return [{**payload, "id": event_id} for event_id, payload in rows]

    async def current_state(self, generation_id: str) -> dict[str, Any] | None:
        """A generation and its media as an event-shaped snapshot, or None when it does not exist."""
        key = uuid.UUID(generation_id)
        async with self._sessions() as session:
            generation = await session.get(Generation, key)
            if generation is None:
                return None
            media = await session.scalars(select(Media).where(Media.generation_id == key).order_by(Media.position))
            return state_snapshot(generation, list(media))
