"""DataLoaders: one statement per batch of keys, so a page costs the same queries at any size."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.dataloader import DataLoader

from server.db.models import CatalogModel, Generation, Media
from server.services.generations import queries

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
    """A request's (or one pushed event's) DataLoaders, each built on first use.

    A socket's context swaps in a fresh Loaders for every event it pushes; most events need none of them.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @cached_property
    def generation(self) -> DataLoader[uuid.UUID, Generation | None]:
        return _loader(self._sessions, queries.generations_by_id)

    @cached_property
    def media(self) -> DataLoader[uuid.UUID, Media | None]:
        return _loader(self._sessions, queries.media_by_id)

    @cached_property
    def media_of_generation(self) -> DataLoader[uuid.UUID, list[Media]]:
        return _loader(self._sessions, queries.media_by_generation, list)

    @cached_property
    def animations_of_media(self) -> DataLoader[uuid.UUID, list[Generation]]:
        return _loader(self._sessions, queries.generations_by_source, list)

    @cached_property
    def model(self) -> DataLoader[str, CatalogModel | None]:
        return _loader(self._sessions, queries.models_by_ref)
