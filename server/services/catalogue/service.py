"""The model catalogue: the provider's image and video models, cached in the database.

Contract:
- `models` and `model(ref)` answer from the `models` table. A row is fresh for CATALOGUE_TTL_SECONDS
  after it was fetched; a stale row is still served (flagged `stale`) while a background task refreshes
  it (stale-while-revalidate). At most one catalogue refresh runs per process at a time, and after a
  failed one the next waits a little, so a provider outage is not hammered.
- The catalogue is the provider's `text-to-image`, `text-to-video` and `image-to-video` collections,
  plus every model fetched by reference or found by search. Only an empty cache waits for the provider
  (every listing until it is filled, never a part of it); if the provider is down then, the caller gets
  CATALOGUE_UNAVAILABLE.
- A reference the provider said does not exist is answered NOT_FOUND without asking again for
  CATALOGUE_NEGATIVE_TTL_SECONDS (each process remembers its own), and lookups of one uncached
  reference at once share one provider call: repeating an unknown reference costs one provider call, not
  one each time. Every distinct reference still costs one, bounded by the query rate limit.
- Search asks the provider's search, merges the image and video models it finds into the cache, and
  filters the cache by the query's words; when the provider cannot be asked, the cache filter alone
  answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol
from urllib.parse import urlparse

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import CatalogModel, utcnow
from server.domain import VIDEO_EXTENSIONS, MediaKind
from server.provider.errors import ProviderError, ProviderNotFoundError
from server.quoting import cut_text
from server.services.catalogue.model_schema import describe_openapi, produces_files, unmet_requirements
from server.services.errors import NotFound, ServiceError
from server.settings import Settings

logger = logging.getLogger(__name__)

COLLECTION_KINDS: dict[str, MediaKind] = {
    "text-to-image": MediaKind.IMAGE,
    "text-to-video": MediaKind.VIDEO,
    "image-to-video": MediaKind.VIDEO,
}
IMAGE_TO_VIDEO = "image-to-video"
DEFAULT_TTL_SECONDS = 3600.0
DEFAULT_NEGATIVE_TTL_SECONDS = 60.0
# Unknown references remembered at most; past it the expired ones go, then (all still fresh) every one.
MAX_UNKNOWN_REFS = 4096
SEARCH_LIMIT = 20
FETCH_CONCURRENCY = 4
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".avif", ".bmp", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac")


class CatalogueProvider(Protocol):
    """What the catalogue needs from the provider's client (Replicate's or the simulator's)."""

    async def get_collection(self, slug: str) -> dict[str, Any]: ...

    async def get_model(self, owner: str, name: str) -> dict[str, Any]: ...

    async def search(self, query: str, *, limit: int) -> dict[str, Any]: ...


@dataclass
class ModelPage:
    items: list[CatalogModel]
    has_next: bool


# A model reference is stored as it is (models.ref and generations.model_ref hold 200 characters, an owner,
# a name or a version 100): a longer one names no model, and is neither looked up nor sent to the provider.
MAX_REF_CHARS = 200
MAX_REF_PART_CHARS = 100


def _invalid_ref(ref: str, like: str) -> ServiceError:
    message = f"'{cut_text(ref)}' is not a model reference like {like}"
    return ServiceError.single("INVALID_MODEL_REF", message, ["model"])


def split_version(ref: str) -> tuple[str, str | None]:
    """("owner/name", version) of a reference that may pin a version, "owner/name:<version>"; the
    version is None when none is pinned. An empty version is INVALID_MODEL_REF."""
    model, colon, version = ref.strip().partition(":")
    version = version.strip()
    bad_version = colon and (not version or len(version) > MAX_REF_PART_CHARS or any(c in version for c in "/: "))
    # Control characters never reach SQL: PostgreSQL refuses a NUL outright.
    if bad_version or len(model) > MAX_REF_CHARS or not ref.isprintable():
        raise _invalid_ref(ref, "owner/name or owner/name:version")
    return model, version or None


def parse_ref(ref: str) -> tuple[str, str]:
    """(owner, name) of "owner/name"; INVALID_MODEL_REF for anything else (a version suffix included)."""
    owner, _, name = ref.strip().partition("/")
    malformed = not owner or not name or "/" in name or ":" in name or " " in ref.strip()
    too_long = len(ref) > MAX_REF_CHARS or max(len(owner), len(name)) > MAX_REF_PART_CHARS
    if malformed or too_long or not ref.isprintable():
        raise _invalid_ref(ref, "owner/name")
    return owner, name


def is_stale(fetched_at: datetime, ttl_seconds: float, now: datetime | None = None) -> bool:
    """Whether a row fetched at `fetched_at` is past its time-to-live."""
    return (now or utcnow()) >= fetched_at + timedelta(seconds=ttl_seconds)


def _example_urls(body: dict[str, Any]) -> list[str]:
    example = body.get("default_example")
    output = example.get("output") if isinstance(example, dict) else None
    values = output if isinstance(output, list) else list(output.values()) if isinstance(output, dict) else [output]
    return [urlparse(v).path.lower() for v in values if isinstance(v, str) and v.startswith(("http", "data:"))]


def classify(
    body: dict[str, Any], collections: Iterable[str], output_schema: dict[str, Any] | None
) -> MediaKind | None:
    """IMAGE or VIDEO for a model body, or None when it makes neither (text, audio, embeddings...).

    A collection says it outright; otherwise a model that speaks of video in its name or description,
    then the files of its default example, then its Output schema decide.
    """
    for slug in collections:
        if slug in COLLECTION_KINDS:
            return COLLECTION_KINDS[slug]
    text = f"{body.get('name', '')} {body.get('description') or ''}".lower()
    makes_files = output_schema is None or produces_files(output_schema)
    if "video" in text and makes_files:
        return MediaKind.VIDEO
    examples = _example_urls(body)
    if any(path.endswith(VIDEO_EXTENSIONS) for path in examples):
        return MediaKind.VIDEO
    if any(path.endswith(IMAGE_EXTENSIONS) for path in examples):
        return MediaKind.IMAGE
    if any(path.endswith(AUDIO_EXTENSIONS) for path in examples):
        return None
    if not makes_files or (output_schema is None and not examples):
        return None
    return MediaKind.IMAGE


def _search_terms(search: str) -> list[str]:
    return [term for term in search.lower().split() if term][:8]


class CatalogueService:
    """Reads and refreshes the cached catalogue; see the module docstring for the contract."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        provider: CatalogueProvider,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self.provider = provider
        self.ttl_seconds = settings.catalogue.ttl_seconds if settings else DEFAULT_TTL_SECONDS
        self.negative_ttl_seconds = (
            settings.catalogue.negative_ttl_seconds if settings else DEFAULT_NEGATIVE_TTL_SECONDS
        )
        self._clock = clock
        self._refresh: asyncio.Task[bool] | None = None
        # The refresh filling an empty catalogue: until it ends, the rows stored so far are only part of it.
        self._filling: asyncio.Task[bool] | None = None
        self._model_refreshes: dict[str, asyncio.Task[None]] = {}
        self._failed_at: datetime | None = None
        self._searches: dict[str, tuple[datetime, list[str]]] = {}
        # ref -> until when the provider's "no such model" stands; ref -> the lookup under way.
        self._unknown: dict[str, datetime] = {}
        self._lookups: dict[str, asyncio.Task[CatalogModel]] = {}

    @property
    def retry_after_failure_seconds(self) -> float:
        """How long after a failed refresh the next one waits: a tenth of the TTL, 1 to 60 s."""
        return max(1.0, min(60.0, self.ttl_seconds / 10))

    def is_stale(self, row: CatalogModel) -> bool:
        return is_stale(row.fetched_at, self.ttl_seconds, self._clock())

    # --- reads ---------------------------------------------------------------------------------------
    async def list_models(
        self, *, kind: str | None = None, search: str | None = None, after: str | None = None, limit: int = 20
    ) -> ModelPage:
        """A page of cached models ordered by ref, after the ref `after`, optionally of a kind and a query."""
        await self._ensure_catalogue()
        search = (search or "").strip()
        found: list[str] = await self._provider_search(search) if search else []
        statement = select(CatalogModel)
        if kind:
            statement = statement.where(CatalogModel.kind == kind)
        if search:
            words = [
                or_(
                    CatalogModel.ref.icontains(term, autoescape=True),
                    CatalogModel.description.icontains(term, autoescape=True),
                )
                for term in _search_terms(search)
            ]
            statement = statement.where(or_(and_(*words), CatalogModel.ref.in_(found)) if found else and_(*words))
        if after:
            statement = statement.where(CatalogModel.ref > after)
        async with self._sessions() as session:
            rows = list((await session.scalars(statement.order_by(CatalogModel.ref).limit(limit + 1))).all())
        return ModelPage(items=rows[:limit], has_next=len(rows) > limit)

    async def get_model(self, ref: str) -> CatalogModel:
        """The cached model (refreshed in the background when stale), else fetched from the provider.

        NotFound when the provider has no such model; a ServiceError when it cannot be asked.
        """
        owner, name = parse_ref(ref)
        ref = f"{owner}/{name}"
        async with self._sessions() as session:
            cached = await session.get(CatalogModel, ref)
        if cached is not None:
            if self.is_stale(cached):
                self._refresh_model_later(ref)
            return cached
        unknown_until = self._unknown.get(ref)
        if unknown_until is not None:
            if self._clock() < unknown_until:
                raise NotFound(f"model {cut_text(ref)}", ["model"])
            del self._unknown[ref]
        lookup = self._lookups.get(ref)
        if lookup is None:
            lookup = self._lookups[ref] = asyncio.create_task(self._look_up(owner, name), name=f"catalogue-get-{ref}")
            lookup.add_done_callback(partial(self._lookup_done, ref))
        # Shielded: a caller that goes away does not cancel the lookup the others wait on.
        return await asyncio.shield(lookup)

    async def _look_up(self, owner: str, name: str) -> CatalogModel:
        """Fetch and store a model not cached yet; an unknown one is remembered as such for a while."""
        ref = f"{owner}/{name}"
        try:
            body = await self.provider.get_model(owner, name)
        except ProviderNotFoundError:
            self._remember_unknown(ref)
            raise NotFound(f"model {cut_text(ref)}", ["model"]) from None
        except ProviderError as exc:
            raise ServiceError.single(
                "PROVIDER_UNAVAILABLE", f"the provider could not be asked about {cut_text(ref)}: {exc}", ["model"]
            ) from exc
        row = await self._store(body, [], require_media=False)
        assert row is not None
        return row

    def _lookup_done(self, ref: str, lookup: asyncio.Task[CatalogModel]) -> None:
        self._lookups.pop(ref, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: every caller that stayed has been given it

    def _remember_unknown(self, ref: str) -> None:
        if self.negative_ttl_seconds <= 0:
            return
        now = self._clock()
        if len(self._unknown) >= MAX_UNKNOWN_REFS:
            self._unknown = {known: until for known, until in self._unknown.items() if until > now}
            if len(self._unknown) >= MAX_UNKNOWN_REFS:
                self._unknown.clear()
        self._unknown[ref] = now + timedelta(seconds=self.negative_ttl_seconds)

    async def find_model(self, ref: str) -> CatalogModel | None:
        """Like `get_model`, but None for a model that does not exist (or a malformed reference)."""
        try:
            return await self.get_model(ref)
        except NotFound:
            return None
        except ServiceError as exc:
            if exc.errors[0].code == "INVALID_MODEL_REF":
                return None
            raise

    async def image_to_video_models(self, given: Mapping[str, Any] | None = None) -> list[CatalogModel]:
        """Video models that take an image, best first.

        First the models that can run on `given` (the caller's input besides the image): each of their
        other required inputs is given or has a default. Then the image-to-video collection, then the
        most run.
        """
        await self._ensure_catalogue()
        async with self._sessions() as session:
            rows = await session.scalars(
                select(CatalogModel).where(CatalogModel.kind == MediaKind.VIDEO, CatalogModel.accepts_image.is_(True))
            )
            return sorted(
                rows,
                key=lambda row: (
                    bool(unmet_inputs(row, given or {})),
                    IMAGE_TO_VIDEO not in (row.collections or []),
                    -(row.run_count or 0),
                    row.ref,
                ),
            )

    # --- refreshing ------------------------------------------------------------------------------------
    async def refresh(self) -> bool:
        """Refresh the whole catalogue now (joining a refresh already running); True if all of it worked."""
        return await asyncio.shield(self._refresh_task())

    def _refresh_task(self) -> asyncio.Task[bool]:
        """The refresh running now, or a new one."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._refresh_all(), name="catalogue-refresh")
        return self._refresh

    def refresh_later(self) -> bool:
        """Start a background refresh unless one runs or one failed moments ago; True if one started."""
        if self._refresh is not None and not self._refresh.done():
            return False
        if self._failed_at and self._clock() < self._failed_at + timedelta(seconds=self.retry_after_failure_seconds):
            return False
        self._refresh = asyncio.create_task(self._refresh_all(), name="catalogue-refresh")
        return True

    async def aclose(self) -> None:
        """Stop background refreshes (at shutdown, before the database goes away)."""
        running = [self._refresh, *self._model_refreshes.values(), *self._lookups.values()]
        tasks = [t for t in running if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _ensure_catalogue(self) -> None:
        """Wait for the provider only until the collections are cached; after that refresh in the background.

        Rows fetched one by one (model(ref), search) do not make a catalogue: until the collections have
        been read once, a listing waits for them. If the provider is down then, whatever is cached is
        served, and with nothing cached the caller gets CATALOGUE_UNAVAILABLE. A listing that comes while
        the first fill is under way waits for it too, rather than serve the part stored so far.
        """
        if self._filling is not None and not self._filling.done():
            await asyncio.shield(self._filling)
        async with self._sessions() as session:
            rows = (await session.execute(select(CatalogModel.collections, CatalogModel.fetched_at))).all()
        if not any(collections for collections, _ in rows):
            self._filling = self._refresh_task()
            await asyncio.shield(self._filling)
            if not rows:
                async with self._sessions() as session:
                    if (await session.scalars(select(CatalogModel.ref).limit(1))).first() is None:
                        raise ServiceError.single(
                            "CATALOGUE_UNAVAILABLE",
                            "the model catalogue could not be loaded from the provider",
                        )
            return
        now = self._clock()
        if any(is_stale(fetched_at, self.ttl_seconds, now) for _, fetched_at in rows):
            self.refresh_later()

    async def _refresh_all(self) -> bool:
        """Reload every collection, then the other stale rows one by one. Never raises but cancellation."""
        try:
            ok = True
            listed: set[str] = set()
            for slug in COLLECTION_KINDS:
                refs = await self._refresh_collection(slug)
                if refs is None:
                    ok = False
                else:
                    listed |= refs
            # With a collection unreadable the provider is likely down: asking model by model would only
            # queue up retries.
            for ref in await self._stale_refs(exclude=listed) if ok else []:
                ok = await self._refresh_one(ref) and ok
            self._failed_at = None if ok else self._clock()
            logger.info("catalogue refreshed", extra={"models": len(listed), "complete": ok})
            return ok
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("catalogue refresh failed")
            self._failed_at = self._clock()
            return False

    async def _refresh_collection(self, slug: str) -> set[str] | None:
        """Store a collection's models; the refs stored, or None when the collection could not be read."""
        try:
            collection = await self.provider.get_collection(slug)
        except ProviderError as exc:
            logger.warning("could not load a collection", extra={"collection": slug, "error": str(exc)})
            return None
        bodies = [b for b in collection.get("models") or [] if isinstance(b, dict) and b.get("owner") and b.get("name")]
        stored = await _bounded([self._store_listed(body, slug) for body in bodies])
        refs = {row.ref for row in stored if row is not None}
        await self._forget_collection(slug, keep=refs)
        return refs if len(refs) == len(bodies) else None

    async def _store_listed(self, body: dict[str, Any], slug: str) -> CatalogModel | None:
        try:
            return await self._store(body, [slug], require_media=False)
        except ProviderError as exc:
            logger.warning("could not load a model", extra={"model": _ref_of(body), "error": str(exc)})
            return None

    async def _refresh_one(self, ref: str) -> bool:
        owner, name = ref.split("/", 1)
        try:
            body = await self.provider.get_model(owner, name)
        except ProviderNotFoundError:
            async with self._sessions.begin() as session:
                await session.execute(delete(CatalogModel).where(CatalogModel.ref == ref))
            logger.info("model left the provider; dropped from the catalogue", extra={"model": ref})
            return True
        except ProviderError as exc:
            logger.warning("could not refresh a model", extra={"model": ref, "error": str(exc)})
            return False
        await self._store(body, [], require_media=False)
        return True

    def _refresh_model_later(self, ref: str) -> None:
        running = self._model_refreshes.get(ref)
        if (running is not None and not running.done()) or (self._refresh is not None and not self._refresh.done()):
            return

        async def run() -> None:
            try:
                await self._refresh_one(ref)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("model refresh failed", extra={"model": ref})
            finally:
                self._model_refreshes.pop(ref, None)

        self._model_refreshes[ref] = asyncio.create_task(run(), name=f"catalogue-refresh-{ref}")

    async def _stale_refs(self, exclude: set[str]) -> list[str]:
        threshold = self._clock() - timedelta(seconds=self.ttl_seconds)
        async with self._sessions() as session:
            refs = await session.scalars(select(CatalogModel.ref).where(CatalogModel.fetched_at <= threshold))
            return [ref for ref in refs if ref not in exclude]

    async def _forget_collection(self, slug: str, keep: set[str]) -> None:
        """Take `slug` off the rows the collection no longer lists (the rows stay: they may be in use)."""
        async with self._sessions.begin() as session:
            for row in await session.scalars(select(CatalogModel)):
                if slug in (row.collections or []) and row.ref not in keep:
                    row.collections = [c for c in row.collections if c != slug]

    # --- search -----------------------------------------------------------------------------------------
    async def _provider_search(self, query: str) -> list[str]:
        """Refs of the media models the provider's search finds (cached for the TTL); [] when it fails."""
        key = " ".join(_search_terms(query))
        hit = self._searches.get(key)
        if hit is not None and not is_stale(hit[0], self.ttl_seconds, self._clock()):
            return hit[1]
        try:
            answer = await self.provider.search(query, limit=SEARCH_LIMIT)
        except ProviderError as exc:
            logger.warning("provider search failed; filtering the cache only", extra={"error": str(exc)})
            return []
        bodies = []
        for item in answer.get("models") or []:
            body = item.get("model") if isinstance(item, dict) and isinstance(item.get("model"), dict) else item
            if isinstance(body, dict) and body.get("owner") and body.get("name"):
                bodies.append(body)
        stored = await _bounded([self._store_found(body) for body in bodies])
        refs = [row.ref for row in stored if row is not None]
        if len(self._searches) > 256:
            self._searches.clear()
        self._searches[key] = (self._clock(), refs)
        return refs

    async def _store_found(self, body: dict[str, Any]) -> CatalogModel | None:
        try:
            return await self._store(body, [], require_media=True)
        except ProviderError as exc:
            logger.warning("could not load a model found by search", extra={"model": _ref_of(body), "error": str(exc)})
            return None

    # --- storing -------------------------------------------------------------------------------------------
    async def _store(self, body: dict[str, Any], collections: list[str], *, require_media: bool) -> CatalogModel | None:
        """Upsert a model body (fetching its full record when the body lacks the version's schema).

        With `require_media`, a model that makes neither images nor videos is not stored (None).
        """
        ref = _ref_of(body)
        body = await self._complete(body, ref)
        latest = body.get("latest_version")
        version: dict[str, Any] = latest if isinstance(latest, dict) else {}
        described = describe_openapi(version.get("openapi_schema"))
        async with self._sessions() as session:
            existing = await session.get(CatalogModel, ref)
        merged = sorted(set(existing.collections if existing else []) | set(collections))
        kind = classify(body, merged, described.output_schema)
        if kind is None:
            if require_media and existing is None:
                return None
            kind = MediaKind(existing.kind) if existing else (MediaKind.VIDEO if "video" in ref else MediaKind.IMAGE)
        values: dict[str, Any] = {
            "owner": body["owner"],
            "name": body["name"],
            "description": body.get("description"),
            "kind": kind.value,
            "collections": merged,
            "version_id": version.get("id"),
            "input_schema": described.input_schema,
            "output_schema": described.output_schema,
            "accepts_image": described.image_field is not None,
            "image_input_field": described.image_field,
            "cover_image_url": body.get("cover_image_url"),
            "run_count": body.get("run_count"),
            "is_official": body.get("is_official") is True,
            "fetched_at": self._clock(),
        }
        return await self._upsert(ref, values)

    async def _complete(self, body: dict[str, Any], ref: str) -> dict[str, Any]:
        """`body` itself when it carries its version's schema, else the model's own record."""
        version = body.get("latest_version")
        if isinstance(version, dict) and isinstance(version.get("openapi_schema"), dict):
            return body
        owner, name = ref.split("/", 1)
        full = await self.provider.get_model(owner, name)
        return full if isinstance(full, dict) and full.get("owner") else body

    async def _upsert(self, ref: str, values: dict[str, Any]) -> CatalogModel:
        for attempt in range(2):
            try:
                async with self._sessions.begin() as session:
                    row = await session.get(CatalogModel, ref)
                    if row is None:
                        row = CatalogModel(ref=ref, **values)
                        session.add(row)
                    else:
                        for key, value in values.items():
                            setattr(row, key, value)
                return row
            except IntegrityError:
                # Another process inserted the same model meanwhile; the second pass updates it.
                if attempt:
                    raise
        raise AssertionError("unreachable")


def unmet_inputs(model: CatalogModel, given: Mapping[str, Any]) -> list[str]:
    """The model's required inputs that `given` leaves out and no default fills; its image input aside."""
    return unmet_requirements(model.input_schema, given, filled=[model.image_input_field])


def _ref_of(body: dict[str, Any]) -> str:
    return f"{body.get('owner')}/{body.get('name')}"


async def _bounded(jobs: list[Awaitable[Any]], limit: int = FETCH_CONCURRENCY) -> list[Any]:
    """Run `jobs` with at most `limit` at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def run(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return list(await asyncio.gather(*(run(job) for job in jobs)))
