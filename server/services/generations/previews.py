"""Previews: the intermediate images a model yields while it runs, copied to Darkroom and shown live.

A provider lists what a running prediction has yielded so far as its outputs (Replicate sends an `output`
webhook for each, and a poll shows them). Each update that shows new ones takes the newest (under the
generation's row lock, counting what it has seen in `previews_seen`, so that two processes never take the
same one), and it is fetched in the background: from an allowed file host only, under PREVIEW_MAX_BYTES,
and kept only if its bytes are an image within MEDIA_MAX_PIXELS. It is stored under `previews/`, the
generation's `previews` list gains it (the newest PREVIEWS_PER_GENERATION are kept), and that change is
logged as an event, so subscribers see it. A preview is no Media: it is in no list, statistic or retention
count, and never becomes one of the generation's files, which are copied from its final outputs as ever.
When the generation settles, its previews are dropped (unless PREVIEWS_KEEP_AFTER_SETTLE); files no
generation names any more are left to the orphan sweep should a removal fail.

A fetch lost with its process (a restart mid-way) is no loss worth a lease: the next intermediate output
brings a newer preview.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server import metrics
from server.db.models import AnyGeneration, Generation, utcnow
from server.domain import GenerationStatus
from server.origins import origin_allowed, written_origin
from server.provider.types import PredictionUpdate
from server.services.event_log.events import EventType, Publish, append_event
from server.services.media.keys import extension_for
from server.services.media.probe import SNIFF_BYTES, NotMedia, probe_file, sniff_content_type
from server.services.media.scratch import PROBE_SCRATCH_PREFIX
from server.settings import Settings
from server.storage.port import MediaStorage, StorageError, store_bytes

logger = logging.getLogger(__name__)

PREVIEW_PREFIX = "previews/"
# A preview is worth a few seconds at most: a newer one follows.
FETCH_TIMEOUT_SECONDS = 10.0


def previews_of(generation: AnyGeneration) -> list[dict[str, Any]]:
    """The generation's previews, oldest first (read without the ORM, a JSON column arrives as its text)."""
    value = generation.previews
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or [])


def preview_key(generation_id: uuid.UUID, content_type: str) -> str:
    """`previews/<generation id>/<random>.<ext>`: the random part makes the URL a capability, as media keys are."""
    return f"{PREVIEW_PREFIX}{generation_id.hex}/{uuid.uuid4().hex}{extension_for(content_type)}"


def generation_of_key(key: str) -> uuid.UUID | None:
    """The generation a preview key belongs to; None for a key that is no preview's."""
    if not key.startswith(PREVIEW_PREFIX):
        return None
    try:
        return uuid.UUID(key[len(PREVIEW_PREFIX) :].split("/", 1)[0])
    except ValueError:
        return None


def yields_previews(output_schema: dict[str, Any] | None) -> bool:
    """Whether a model with this output schema yields its outputs while it runs: an iterator (cog marks one
    `x-cog-array-type: iterator`). Any other model's outputs arrive once, as it ends: an `output` webhook
    that comes just before the `completed` one shows its final files, no previews."""
    return isinstance(output_schema, dict) and output_schema.get("x-cog-array-type") == "iterator"


def take_new_output(generation: AnyGeneration, update: PredictionUpdate, keep: int) -> str | None:
    """The newest intermediate output `update` shows that `generation` has not seen, marked seen; None when
    there is none (or previews are off). Only an unfinished job's outputs are intermediate."""
    if keep <= 0 or not shows_new_output(generation, update):
        return None
    generation.previews_seen = len(update.output_urls)
    return update.output_urls[-1]


def shows_new_output(generation: AnyGeneration, update: PredictionUpdate) -> bool:
    """Whether `update` is news to an unfinished `generation` for its intermediate outputs alone."""
    return (
        bool(generation.yields_previews)
        and not update.is_terminal
        and len(update.output_urls) > (generation.previews_seen or 0)
    )


class PreviewFetchError(Exception):
    pass


class PreviewService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        storage: MediaStorage,
        publish: Publish,
    ) -> None:
        self._settings = settings
        self._keep = settings.progress.previews_per_generation
        self._sessions = sessions
        self._storage = storage
        self._publish = publish
        self._tasks: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(FETCH_TIMEOUT_SECONDS, connect=settings.downloads.connect_timeout_seconds),
            follow_redirects=False,
        )

    @property
    def keep(self) -> int:
        return self._keep

    def settle(self, generation: AnyGeneration) -> list[str]:
        """The generation has just finished: clear its previews unless they are kept; the keys to remove."""
        if self._settings.progress.previews_keep_after_settle:
            return []
        dropped = [entry["key"] for entry in previews_of(generation)]
        if generation.previews is not None:
            generation.previews = None
        return dropped

    def fetch_later(self, generation_id: uuid.UUID, url: str, index: int) -> None:
        """Fetch and show the intermediate output `url` (the `index`th) in the background."""
        task = asyncio.create_task(self._fetch_logged(generation_id, url, index))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def remove_later(self, keys: list[str]) -> None:
        if keys:
            task = asyncio.create_task(self._remove(keys))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait for the fetches and removals under way (tests, and a clean shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._client.aclose()

    async def content_type_of(self, key: str) -> str | None:
        """The content type of the preview stored under `key`, or None when no generation shows it."""
        generation_id = generation_of_key(key)
        if generation_id is None:
            return None
        async with self._sessions() as session:
            previews = await session.scalar(select(Generation.previews).where(Generation.id == generation_id))
        for entry in previews or []:
            if entry.get("key") == key:
                return str(entry.get("contentType"))
        return None

    async def _fetch_logged(self, generation_id: uuid.UUID, url: str, index: int) -> None:
        # A background task that lets an exception escape dies silently: every fault ends here, logged.
        try:
            shown = await self._fetch(generation_id, url, index)
        except PreviewFetchError as exc:
            shown = False
            logger.info("preview not kept", extra={"generation_id": str(generation_id), "reason": str(exc)})
        except Exception:
            metrics.PREVIEWS.labels("failed").inc()
            logger.exception("fetching a preview failed", extra={"generation_id": str(generation_id)})
            return
        metrics.PREVIEWS.labels("shown" if shown else "refused").inc()

    async def _fetch(self, generation_id: uuid.UUID, url: str, index: int) -> bool:
        """Whether the output at `url` is now shown as one of the generation's previews."""
        if not origin_allowed(url, self._settings.allowed_file_hosts()):
            raise PreviewFetchError(f"{written_origin(url)} is not an allowed file host")
        if not await self._unfinished(generation_id):
            return False  # its last outputs and its end came together: those are its files, no preview
        data = await self._download(url)
        content_type = sniff_content_type(data[:SNIFF_BYTES])
        if content_type is None or not content_type.startswith("image/"):
            raise PreviewFetchError("not an image")
        await asyncio.to_thread(self._probe, data, content_type)
        key = preview_key(generation_id, content_type)
        try:
            await store_bytes(self._storage, key, data, content_type)
        except StorageError as exc:
            raise PreviewFetchError(f"storage: {exc}") from None
        entry = {"key": key, "at": utcnow().isoformat(), "contentType": content_type, "index": index}
        shown, evicted, event_id = await self._show(generation_id, entry)
        if event_id is not None:
            await self._publish(event_id)
        await self._remove([*evicted, *([] if shown else [key])])
        return shown

    async def _unfinished(self, generation_id: uuid.UUID) -> bool:
        async with self._sessions() as session:
            status = await session.scalar(select(Generation.status).where(Generation.id == generation_id))
        return status is not None and not GenerationStatus(status).is_terminal

    async def _download(self, url: str) -> bytes:
        limit = self._settings.progress.preview_max_bytes
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise PreviewFetchError(f"HTTP {response.status_code} from the file host")
                if int(response.headers.get("content-length") or 0) > limit:
                    raise PreviewFetchError("larger than PREVIEW_MAX_BYTES")
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise PreviewFetchError("larger than PREVIEW_MAX_BYTES")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise PreviewFetchError(f"{type(exc).__name__}") from None
        return b"".join(chunks)

    def _probe(self, data: bytes, content_type: str) -> None:
        """Refuse what is no image of `content_type` within MEDIA_MAX_PIXELS (a small file may declare a huge one)."""
        with tempfile.NamedTemporaryFile(prefix=PROBE_SCRATCH_PREFIX) as scratch:
            scratch.write(data)
            scratch.flush()
            try:
                probe_file(Path(scratch.name), self._settings.media.max_pixels, content_type)
            except NotMedia as exc:
                raise PreviewFetchError(exc.message) from None

    async def _show(self, generation_id: uuid.UUID, entry: dict[str, Any]) -> tuple[bool, list[str], int | None]:
        """Add `entry` to the generation's previews, newest `keep` by their place among the outputs, and log
        the change: (whether it is shown, the keys pushed out, the event's id)."""
        async with self._sessions.begin() as session:
            generation = (
                await session.scalars(select(Generation).where(Generation.id == generation_id).with_for_update())
            ).first()
            if generation is None:
                return False, [], None
            settled = GenerationStatus(generation.status).is_terminal
            if settled and not self._settings.progress.previews_keep_after_settle:
                return False, [], None
            ordered = sorted([*previews_of(generation), entry], key=lambda each: int(each.get("index", 0)))
            kept, evicted = ordered[-self._keep :], ordered[: -self._keep]
            if entry not in kept:
                return False, [], None
            generation.previews = kept
            event_id = await append_event(session, generation, [], EventType.UPDATED)
        return True, [each["key"] for each in evicted], event_id

    async def _remove(self, keys: list[str]) -> None:
        for key in keys:
            try:
                await self._storage.delete(key)
            except StorageError as exc:  # the orphan sweep removes it later
                logger.warning("could not remove a preview", extra={"key": key, "error": str(exc)})
