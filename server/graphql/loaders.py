"""DataLoaders: one statement per batch of keys, so a page costs the same queries at any size."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader

from server.db.models import CatalogModel, Generation, Media
from server.services import queries

K = TypeVar("K")
V = TypeVar("V")


def _loader(
    sessions: async_sessionmaker[AsyncSession],
    fetch: Callable[[AsyncSession, Sequence[Any]], Awaitable[dict[Any, Any]]],
    default: Callable[[], Any] = lambda: None,
) -> DataLoader[Any, Any]:
    async def load(keys: list[Any]) -> list[Any]:
        async with sessions() as session:
            found = await fetch(session, keys)
        return [found.get(key, default()) for key in keys]

    return DataLoader(load_fn=load)


class Loaders:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.generation: DataLoader[uuid.UUID, Generation | None] = _loader(sessions, queries.generations_by_id)
        self.media: DataLoader[uuid.UUID, Media | None] = _loader(sessions, queries.media_by_id)
        self.media_of_generation: DataLoader[uuid.UUID, list[Media]] = _loader(
            sessions, queries.media_by_generation, list
        )
        self.animations_of_media: DataLoader[uuid.UUID, list[Generation]] = _loader(
            sessions, queries.generations_by_source, list
        )
        self.model: DataLoader[str, CatalogModel | None] = _loader(sessions, queries.models_by_ref)
