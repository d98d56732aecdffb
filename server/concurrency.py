"""Running a batch of awaitables with a cap on how many run at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def gather_bounded(jobs: Sequence[Awaitable[T]], limit: int) -> list[T]:
    """Run `jobs` with at most `limit` at once; their results in order."""
    gate = asyncio.Semaphore(limit)

    async def run(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return list(await asyncio.gather(*(run(job) for job in jobs)))
