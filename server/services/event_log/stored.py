"""Reading the event log in commit order: what every process's tailer delivers from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Event


class StoredEventLog:
    """The `events` table as the hub's EventLog: newest id, and the rows after a position."""

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
