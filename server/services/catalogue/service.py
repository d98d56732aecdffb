"""The model catalogue: every configured provider's image and video models, cached in the database.

Contract:
- `models` and `model(ref)` answer from the `models` table, keyed by provider and ref. A row is fresh
  for CATALOGUE_TTL_SECONDS after it was fetched; a stale row is still served (flagged `stale`) while a
  background task refreshes it (stale-while-revalidate). At most one catalogue refresh runs per process
  at a time, and after a failed one the next waits a little, so a provider outage is not hammered.
- The catalogue is what each provider lists (`Provider.list_models`), plus every model fetched by
  reference or found by search. Only an empty cache waits for the providers (every listing until it is
  filled, never a part of it); if they are all down then, the caller gets CATALOGUE_UNAVAILABLE.
- A reference is written as its provider writes it ("owner/name", fal's "fal-ai/flux/dev"), with an
  optional provider prefix ("fal:fal-ai/flux/dev") for when two providers share a name. Without one, a
  cached model of the default provider comes first, then one of any other; an uncached one is asked of
  each provider in turn, the default first.
- A reference no provider has is answered NOT_FOUND without asking again for
  CATALOGUE_NEGATIVE_TTL_SECONDS (each process remembers its own), and lookups of one uncached
  reference at once share one round of provider calls: repeating an unknown reference costs one round,
  not one each time. Every distinct reference still costs one, bounded by the query rate limit.
- Search asks each provider's search, merges the image and video models it finds into the cache, and
  filters the cache by the query's words; a provider that cannot be asked leaves the cache filter alone
  to answer for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import and_, delete, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.concurrency import gather_bounded
from server.db.models import CatalogModel, utcnow
from server.domain import MediaKind
from server.provider.errors import ProviderError, ProviderNotFoundError
from server.provider.model_schema import unmet_requirements
from server.provider.port import Provider
from server.provider.registry import Providers
from server.provider.types import ModelDescription
from server.quoting import cut_text
from server.services.errors import NotFound, ServiceError
from server.settings import Settings

logger = logging.getLogger(__name__)

# The listing whose models come first when a video model for an image is picked.
IMAGE_TO_VIDEO = "image-to-video"
DEFAULT_TTL_SECONDS = 3600.0
DEFAULT_NEGATIVE_TTL_SECONDS = 60.0
# Unknown references remembered at most; past it the expired ones go, then (all still fresh) every one.
MAX_UNKNOWN_REFS = 4096
SEARCH_LIMIT = 20
FETCH_CONCURRENCY = 4


@dataclass
class ModelPage:
    items: list[CatalogModel]
    has_next: bool


# A model reference is stored as it is (models.ref and generations.model_ref hold 200 characters, an owner,
# a name or a version 100): a longer one names no model, and is neither looked up nor sent to the provider.
MAX_REF_CHARS = 200
MAX_REF_PART_CHARS = 100
MAX_PROVIDER_CHARS = 32


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A reference as a caller wrote it: `provider` when it was prefixed ("fal:..."), else None."""

    provider: str | None
    ref: str
    version: str | None = None

    @property
    def unversioned(self) -> str:
        """The reference without its version, prefixed as it was written."""
        return f"{self.provider}:{self.ref}" if self.provider else self.ref

    @property
    def owner(self) -> str:
        return self.ref.partition("/")[0]

    @property
    def name(self) -> str:
        return self.ref.partition("/")[2]


def _invalid_ref(ref: str, like: str) -> ServiceError:
    message = f"'{cut_text(ref)}' is not a model reference like {like}"
    return ServiceError.single("INVALID_MODEL_REF", message, ["model"])


def _split_provider(ref: str) -> tuple[str | None, str]:
    """("fal", "fal-ai/flux/dev") of "fal:fal-ai/flux/dev"; (None, ref) when no provider prefixes it. A
    prefix has no "/" (a version suffix comes after one)."""
    prefix, colon, rest = ref.partition(":")
    if colon and prefix and "/" not in prefix and len(prefix) <= MAX_PROVIDER_CHARS:
        return prefix, rest
    return None, ref


def parse_model_ref(text: str, *, versioned: bool = False) -> ModelRef:
    """The reference in `text`: "[provider:]owner/name[/more]", and with `versioned` a ":version" may
    pin a version. INVALID_MODEL_REF for anything else."""
    like = "[provider:]owner/name" + ("[:version]" if versioned else "")
    provider, rest = _split_provider(text.strip())
    ref, colon, version = rest.partition(":")
    ref, version = ref.strip(), version.strip()
    owner, _, name = ref.partition("/")
    segments = ref.split("/")
    malformed = (
        not owner
        or not name
        or any(not segment for segment in segments)
        or " " in ref
        or (colon and (not versioned or not version or any(c in version for c in "/: ")))
    )
    too_long = len(ref) > MAX_REF_CHARS or max(len(owner), len(name), len(version)) > MAX_REF_PART_CHARS
    # Control characters never reach SQL: PostgreSQL refuses a NUL outright.
    if malformed or too_long or not text.isprintable():
        raise _invalid_ref(text, like)
    return ModelRef(provider, ref, version or None)


def is_stale(fetched_at: datetime, ttl_seconds: float, now: datetime | None = None) -> bool:
    """Whether a row fetched at `fetched_at` is past its time-to-live."""
    return (now or utcnow()) >= fetched_at + timedelta(seconds=ttl_seconds)


def _search_terms(search: str) -> list[str]:
    return [term for term in search.lower().split() if term][:8]


class CatalogueService:
    """Reads and refreshes the cached catalogue; see the module docstring for the contract."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        providers: Providers,
        settings: Settings | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self.providers = providers
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
        self._searches: dict[str, tuple[datetime, list[tuple[str, str]]]] = {}
        # reference -> until when "no such model" stands; reference -> the lookup under way.
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
        self,
        *,
        kind: str | None = None,
        provider: str | None = None,
        search: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 20,
    ) -> ModelPage:
        """A page of cached models ordered by ref (then provider), after `after` (a row's ref and
        provider), optionally of a kind, a provider and a query."""
        await self._ensure_catalogue()
        search = (search or "").strip()
        found = await self._provider_search(search) if search else []
        statement = select(CatalogModel)
        if kind:
            statement = statement.where(CatalogModel.kind == kind)
        if provider:
            statement = statement.where(CatalogModel.provider == provider)
        if search:
            words = [
                or_(
                    CatalogModel.ref.icontains(term, autoescape=True),
                    CatalogModel.description.icontains(term, autoescape=True),
                )
                for term in _search_terms(search)
            ]
            by_words = and_(*words)
            statement = statement.where(
                or_(by_words, tuple_(CatalogModel.provider, CatalogModel.ref).in_(found)) if found else by_words
            )
        if after:
            ref, after_provider = after
            statement = statement.where(
                or_(CatalogModel.ref > ref, and_(CatalogModel.ref == ref, CatalogModel.provider > after_provider))
            )
        ordered = statement.order_by(CatalogModel.ref, CatalogModel.provider).limit(limit + 1)
        async with self._sessions() as session:
            rows = list((await session.scalars(ordered)).all())
        return ModelPage(items=rows[:limit], has_next=len(rows) > limit)

    async def get_model(self, text: str) -> CatalogModel:
        """The cached model (refreshed in the background when stale), else fetched from the providers.

        NotFound when no provider has such a model; a ServiceError when one that might cannot be asked.
        """
        wanted = parse_model_ref(text)
        if wanted.provider is not None and wanted.provider not in self.providers:
            raise NotFound(f"model {cut_text(text)} (no provider {cut_text(wanted.provider)} is configured)", ["model"])
        cached = await self._cached(wanted)
        if cached is not None:
            if self.is_stale(cached):
                self._refresh_model_later(cached.provider, cached.ref)
            return cached
        key = f"{wanted.provider or ''}:{wanted.ref}"
        unknown_until = self._unknown.get(key)
        if unknown_until is not None:
            if self._clock() < unknown_until:
                raise NotFound(f"model {cut_text(wanted.ref)}", ["model"])
            del self._unknown[key]
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.create_task(self._look_up(wanted, key), name=f"catalogue-get-{key}")
            lookup.add_done_callback(partial(self._lookup_done, key))
        # Shielded: a caller that goes away does not cancel the lookup the others wait on.
        return await asyncio.shield(lookup)

    async def _cached(self, wanted: ModelRef) -> CatalogModel | None:
        """The stored row `wanted` names: its provider's, or without a prefix the default provider's first."""
        names = [wanted.provider] if wanted.provider else self.providers.names
        async with self._sessions() as session:
            rows = {
                row.provider: row
                for row in await session.scalars(
                    select(CatalogModel).where(CatalogModel.ref == wanted.ref, CatalogModel.provider.in_(names))
                )
            }
        return next((rows[name] for name in names if name in rows), None)

    async def _look_up(self, wanted: ModelRef, key: str) -> CatalogModel:
        """Fetch and store a model not cached yet, asking each provider it may belong to in turn; an
        unknown one is remembered as such for a while."""
        candidates = [self.providers.get(wanted.provider)] if wanted.provider else list(self.providers)
        for provider in candidates:
            try:
                description = await provider.describe_model(wanted.ref)
            except ProviderNotFoundError:
                continue
            except ProviderError as exc:
                raise ServiceError.single(
                    "PROVIDER_UNAVAILABLE",
                    f"{provider.name} could not be asked about {cut_text(wanted.ref)}: {exc}",
                    ["model"],
                ) from exc
            row = await self._store(provider, description, require_media=False)
            assert row is not None
            return row
        self._remember_unknown(key)
        raise NotFound(f"model {cut_text(wanted.ref)}", ["model"])

    def _lookup_done(self, key: str, lookup: asyncio.Task[CatalogModel]) -> None:
        self._lookups.pop(key, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: every caller that stayed has been given it

    def _remember_unknown(self, key: str) -> None:
        if self.negative_ttl_seconds <= 0:
            return
        now = self._clock()
        if len(self._unknown) >= MAX_UNKNOWN_REFS:
            self._unknown = {known: until for known, until in self._unknown.items() if until > now}
            if len(self._unknown) >= MAX_UNKNOWN_REFS:
                self._unknown.clear()
        self._unknown[key] = now + timedelta(seconds=self.negative_ttl_seconds)

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
        other required inputs is given or has a default. Then the default provider's, then those its
        provider lists as image-to-video, then the most run.
        """
        await self._ensure_catalogue()
        default = self.providers.default.name
        async with self._sessions() as session:
            rows = await session.scalars(
                select(CatalogModel).where(
                    CatalogModel.kind == MediaKind.VIDEO,
                    CatalogModel.accepts_image.is_(True),
                    CatalogModel.provider.in_(self.providers.names),
                )
            )
            return sorted(
                rows,
                key=lambda row: (
                    bool(unmet_inputs(row, given or {})),
                    row.provider != default,
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
        """Wait for the providers only until their listings are cached; after that refresh in the background.

        Rows fetched one by one (model(ref), search) do not make a catalogue: until the listings have been
        read once, a listing waits for them. If the providers are down then, whatever is cached is served,
        and with nothing cached the caller gets CATALOGUE_UNAVAILABLE. A listing that comes while the first
        fill is under way waits for it too, rather than serve the part stored so far.
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
        """Reload every provider's listing, then the other stale rows one by one. Never raises but
        cancellation."""
        try:
            ok = True
            listed: set[tuple[str, str]] = set()
            for provider in self.providers:
                refs = await self._refresh_listing(provider)
                if refs is None:
                    # With a listing unreadable the provider is likely down: asking model by model would only
                    # queue up retries.
                    ok = False
                    continue
                listed |= {(provider.name, ref) for ref in refs}
                for ref in await self._stale_refs(provider.name, exclude=refs):
                    ok = await self._refresh_one(provider, ref) and ok
            self._failed_at = None if ok else self._clock()
            logger.info("catalogue refreshed", extra={"models": len(listed), "complete": ok})
            return ok
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("catalogue refresh failed")
            self._failed_at = self._clock()
            return False

    async def _refresh_listing(self, provider: Provider) -> set[str] | None:
        """Store what `provider` lists; the refs stored, or None when the listing could not be read."""
        try:
            descriptions = await provider.list_models()
        except ProviderError as exc:
            logger.warning("could not load a provider's models", extra={"provider": provider.name, "error": str(exc)})
            return None
        stores = [self._store(provider, description, require_media=False) for description in descriptions]
        stored = await gather_bounded(stores, FETCH_CONCURRENCY)
        refs = {row.ref for row in stored if row is not None}
        await self._forget_listings(provider.name, keep=refs)
        return refs

    async def _refresh_one(self, provider: Provider, ref: str) -> bool:
        try:
            description = await provider.describe_model(ref)
        except ProviderNotFoundError:
            async with self._sessions.begin() as session:
                await session.execute(
                    delete(CatalogModel).where(CatalogModel.provider == provider.name, CatalogModel.ref == ref)
                )
            logger.info("model left the provider; dropped from the catalogue", extra={"model": ref})
            return True
        except ProviderError as exc:
            logger.warning("could not refresh a model", extra={"model": ref, "error": str(exc)})
            return False
        await self._store(provider, description, require_media=False)
        return True

    def _refresh_model_later(self, provider_name: str, ref: str) -> None:
        key = f"{provider_name}:{ref}"
        running = self._model_refreshes.get(key)
        busy = self._refresh is not None and not self._refresh.done()
        if (running is not None and not running.done()) or busy or provider_name not in self.providers:
            return

        async def run() -> None:
            try:
                await self._refresh_one(self.providers.get(provider_name), ref)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("model refresh failed", extra={"model": ref})
            finally:
                self._model_refreshes.pop(key, None)

        self._model_refreshes[key] = asyncio.create_task(run(), name=f"catalogue-refresh-{key}")

    async def _stale_refs(self, provider_name: str, exclude: set[str]) -> list[str]:
        threshold = self._clock() - timedelta(seconds=self.ttl_seconds)
        async with self._sessions() as session:
            refs = await session.scalars(
                select(CatalogModel.ref).where(
                    CatalogModel.provider == provider_name, CatalogModel.fetched_at <= threshold
                )
            )
            return [ref for ref in refs if ref not in exclude]

    async def _forget_listings(self, provider_name: str, keep: set[str]) -> None:
        """Take the provider's listings off the rows it no longer lists (the rows stay: they may be in use)."""
        async with self._sessions.begin() as session:
            for row in await session.scalars(select(CatalogModel).where(CatalogModel.provider == provider_name)):
                if row.collections and row.ref not in keep:
                    row.collections = []

    # --- search -----------------------------------------------------------------------------------------
    async def _provider_search(self, query: str) -> list[tuple[str, str]]:
        """(provider, ref) of the media models the providers' searches find (cached for the TTL); a
        provider whose search fails adds nothing."""
        key = " ".join(_search_terms(query))
        hit = self._searches.get(key)
        if hit is not None and not is_stale(hit[0], self.ttl_seconds, self._clock()):
            return hit[1]
        found: list[tuple[str, str]] = []
        for provider in self.providers:
            try:
                descriptions = await provider.search(query, limit=SEARCH_LIMIT)
            except ProviderError as exc:
                logger.warning(
                    "provider search failed; filtering the cache only",
                    extra={"provider": provider.name, "error": str(exc)},
                )
                continue
            stored = await gather_bounded(
                [self._store(provider, d, require_media=True) for d in descriptions], FETCH_CONCURRENCY
            )
            found += [(row.provider, row.ref) for row in stored if row is not None]
        if len(self._searches) > 256:
            self._searches.clear()
        self._searches[key] = (self._clock(), found)
        return found

    # --- storing -------------------------------------------------------------------------------------------
    async def _store(
        self, provider: Provider, description: ModelDescription, *, require_media: bool
    ) -> CatalogModel | None:
        """Upsert a model's description.

        With `require_media`, a model that makes neither images nor videos is not stored (None). A kind
        learned from a listing stands until the next listing: a model fetched on its own keeps it.
        """
        ref = description.ref
        try:
            wanted = parse_model_ref(ref)
        except ServiceError:
            logger.warning(
                "a provider described a model by a reference Darkroom cannot keep", extra={"model": ref[:80]}
            )
            return None
        async with self._sessions() as session:
            existing = await session.get(CatalogModel, (provider.name, wanted.ref))
        groups = list(description.groups) or (list(existing.collections) if existing else [])
        kind = description.kind
        if existing is not None and existing.collections and not description.groups:
            kind = MediaKind(existing.kind)
        if kind is None:
            if require_media and existing is None:
                return None
            kind = MediaKind(existing.kind) if existing else (MediaKind.VIDEO if "video" in ref else MediaKind.IMAGE)
        values: dict[str, Any] = {
            "owner": wanted.owner,
            "name": wanted.name,
            "description": description.description,
            "kind": kind.value,
            "collections": sorted(set(groups)),
            "version_id": description.version_id,
            "input_schema": description.input_schema,
            "output_schema": description.output_schema,
            "accepts_image": description.image_input is not None,
            "image_input_field": description.image_input,
            "cover_image_url": description.cover_image_url,
            "run_count": description.run_count,
            "example": description.example,
            "fetched_at": self._clock(),
        }
        return await self._upsert(provider.name, wanted.ref, values)

    async def _upsert(self, provider_name: str, ref: str, values: dict[str, Any]) -> CatalogModel:
        for attempt in range(2):
            try:
                async with self._sessions.begin() as session:
                    row = await session.get(CatalogModel, (provider_name, ref))
                    if row is None:
                        row = CatalogModel(provider=provider_name, ref=ref, **values)
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
