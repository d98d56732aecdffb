"""Starting work: a generation from a model and input, or an animation of an existing image.

Both paths resolve the model from the catalogue, check the input's size against the INPUT_* limits
before anything else is done with it, then check it against its schema (nothing is created or sent
when either fails), and hand the result to GenerationService.start — one pipeline for
images and videos alike. What is sent is the caller's input; what is stored adds the schema's
defaults and masks secrets (see `server.services.catalogue.validation`).

A file input (a `format: uri` field, or a list of them) also takes the global ID of a READY Media the
caller can see, such as an upload. The stored input names that media's lasting Darkroom URL; the provider
is sent a URL or an upload it can fetch, as for animateImage's image. An ID of media the caller cannot see,
or that is not READY, is a userError at the input's path.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import CatalogModel, Generation, Media
from server.domain import MediaKind, MediaStatus
from server.provider.errors import ProviderError
from server.provider.model_schema import is_file_input, is_uri_string
from server.provider.registry import Providers
from server.services.access.viewer import Viewer
from server.services.catalogue.input_bounds import check_input_bounds
from server.services.catalogue.service import CatalogueService, parse_model_ref, unmet_inputs
from server.services.catalogue.validation import check_input, not_an_object
from server.services.errors import FieldError, ServiceError
from server.services.generations.service import GenerationService
from server.services.media.base import visible_media
from server.services.media.urls import media_url
from server.services.spend.costs import Cost
from server.services.spend.service import SpendService
from server.settings import Settings
from server.storage.port import MediaStorage, StorageError, read_all

logger = logging.getLogger(__name__)

# No Media IDs in an input.
NO_MEDIA: Mapping[str, uuid.UUID] = MappingProxyType({})

T = TypeVar("T")

# Providers take data: URIs for small files (Replicate's guidance); past this an image must be uploaded.
DATA_URI_MAX_BYTES = 256 * 1024

# The media a global ID names, or None when the text is no Media ID (a URL, a data: URI).


@dataclass(frozen=True, slots=True)
class MediaInput:
    """A file input given as a Media ID: where it sits (a field, and its index in a list) and what it names."""

    name: str
    index: int | None
    media: Media
    own_url: str

    @property
    def path(self) -> list[str]:
        return input_path(self.name, self.index)


def input_path(name: str, index: int | None) -> list[str]:
    return ["input", name] if index is None else ["input", name, str(index)]


class Launcher:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        catalogue: CatalogueService,
        generations: GenerationService,
        storage: MediaStorage,
        providers: Providers,
        *,
        own_urls_reachable: bool = False,
        spend: SpendService | None = None,
    ) -> None:
        """`own_urls_reachable`: the provider can fetch this server's media URLs (see `server.reachability`),
        so an image is sent as our own URL rather than uploaded. `spend` estimates each start and holds it to
        the budgets (None: no estimates, no budgets)."""
        self._spend = spend
        self._settings = settings
        self._sessions = sessions
        self._catalogue = catalogue
        self._generations = generations
        self._storage = storage
        self._providers = providers
        self._own_urls_reachable = own_urls_reachable

    async def start_generation(
        self,
        viewer: Viewer,
        model_ref: str,
        raw_input: Any,
        *,
        media_ids: Mapping[str, uuid.UUID] = NO_MEDIA,
        metadata: dict[str, Any] | None = None,
    ) -> Generation:
        """Validate `raw_input` against the model's schema and start it; ServiceError lists every problem.

        `media_ids` are the Media IDs `raw_input` holds, by their text, as the API layer decoded them: given
        to a file input, each stands for that media.

        `model_ref` "owner/name:version" pins a version: the catalogue's entry for owner/name describes
        the input, and the version is sent as given. `metadata` (checked by the caller) is stored with it.
        """
        wanted = parse_model_ref(model_ref, versioned=True)
        model = await self._catalogue.get_model(wanted.unversioned)
        check_input_bounds(raw_input, model.input_schema, self._settings.inputs)
        given, media_inputs = await self._media_inputs(viewer, model.input_schema, raw_input, media_ids)
        checked = check_input(model.input_schema, given, model_ref=model.ref, limits=self._settings.inputs)
        cost = await self._within_budget(viewer, model, checked.given)
        provider_input = await self._fetchable(model, checked.given, media_inputs)
        return await self._generations.start(
            viewer,
            model,
            checked.stored(),
            provider_input=provider_input,
            version=wanted.version,
            cost=cost,
            metadata=metadata,
        )

    async def animate_image(
        self,
        viewer: Viewer,
        media_id: uuid.UUID,
        model_ref: str | None,
        raw_input: Any,
        *,
        media_ids: Mapping[str, uuid.UUID] = NO_MEDIA,
        metadata: dict[str, Any] | None = None,
    ) -> Generation:
        """Start a video generation from a READY image of `viewer`'s.

        With no `model_ref`, a model that can run on `raw_input` is picked: DEFAULT_VIDEO_MODEL if it
        takes an image, else the catalogue's best image-to-video model (see `_video_model`). The image
        goes into the model's image input; `raw_input` (prompt, duration...) is validated like any other
        input, so a required input still missing is a REQUIRED error at ["input", name] and nothing is
        sent. The generation records the image as its source.
        """
        problems: list[FieldError] = []
        media = await _collect(problems, self._ready_image(media_id, viewer))
        given_input = raw_input if isinstance(raw_input, dict) else {}
        model = await _collect(problems, self._video_model(model_ref, given_input))
        if raw_input is not None and not isinstance(raw_input, dict):
            problems.append(not_an_object(raw_input))
        if problems or media is None or model is None:
            raise ServiceError(problems)
        # Picking the model only looked up names in the input; now, before any other work, its size.
        check_input_bounds(raw_input, model.input_schema, self._settings.inputs)
        field = model.image_input_field
        assert field is not None  # _video_model only returns models that take an image
        given = dict(raw_input or {})
        if field in given:
            raise ServiceError.single(
                "IMAGE_FROM_MEDIA",
                f"{field} is filled with the image of mediaId; leave it out of input",
                ["input", field],
            )
        own_url = self._media_url(media)
        given, media_inputs = await self._media_inputs(viewer, model.input_schema, given, media_ids)
        checked = check_input(
            model.input_schema, {**given, field: own_url}, model_ref=model.ref, limits=self._settings.inputs
        )
        cost = await self._within_budget(viewer, model, checked.given)
        provider_input = await self._fetchable(model, checked.given, media_inputs)
        provider_input[field] = await self._reachable_url(model, media, own_url)
        # The stored input names our own lasting URL, not an upload that expires or a long data: URI.
        return await self._generations.start(
            viewer,
            model,
            checked.stored(),
            provider_input=provider_input,
            source_media_id=media.id,
            cost=cost,
            metadata=metadata,
        )

    async def _within_budget(self, viewer: Viewer, model: CatalogModel, given: dict[str, Any]) -> Cost | None:
        """The start's estimated cost, once the budgets have room for it (BUDGET_EXCEEDED otherwise).

        Checked before any file is uploaded to the provider, so that a refusal sends nothing."""
        if self._spend is None:
            return None
        return await self._spend.check_budget(viewer, model, given)

    async def _ready_image(self, media_id: uuid.UUID, viewer: Viewer) -> Media:
        async with self._sessions() as session:
            media = await visible_media(session, media_id, viewer)
        if media.kind != MediaKind.IMAGE:
            raise ServiceError.single(
                "NOT_AN_IMAGE",
                f"only an image can be animated; this media is a {media.kind.lower()}",
                ["mediaId"],
            )
        if media.status != MediaStatus.READY or not media.storage_key:
            raise ServiceError.single(
                "MEDIA_NOT_READY",
                f"the image is {media.status}, not READY; wait for its download",
                ["mediaId"],
            )
        if not await self._storage.exists(media.storage_key):
            raise ServiceError.single("MEDIA_NOT_READY", "the image's file is missing from storage", ["mediaId"])
        return media

    async def _video_model(self, model_ref: str | None, given: dict[str, Any]) -> CatalogModel:
        """The named model, or the best pick for an input `given` besides the image.

        The pick prefers models whose other required inputs `given` holds or a default fills (many
        real image-to-video models require a prompt): DEFAULT_VIDEO_MODEL when it can run, else the
        catalogue's best that can. When none can, DEFAULT_VIDEO_MODEL (else the best) is returned,
        and validation names what is missing.
        """
        if model_ref:
            model = await self._catalogue.get_model(model_ref)
            if model.kind != MediaKind.VIDEO:
                raise ServiceError.single(
                    "NOT_A_VIDEO_MODEL",
                    f"{model.ref} makes images, not videos; pick an image-to-video model",
                    ["model"],
                )
            if not model.accepts_image or not model.image_input_field:
                raise ServiceError.single(
                    "MODEL_TAKES_NO_IMAGE", f"{model.ref} has no image input to animate", ["model"]
                )
            return model
        default = self._settings.catalogue.default_video_model
        fallback: CatalogModel | None = None
        if default:
            try:
                model = await self._catalogue.get_model(default)
            except ServiceError as exc:
                logger.warning("DEFAULT_VIDEO_MODEL is unavailable", extra={"model": default, "error": str(exc)})
            else:
                if model.kind == MediaKind.VIDEO and model.accepts_image and model.image_input_field:
                    missing = unmet_inputs(model, given)
                    if not missing:
                        return model
                    fallback = model
                    logger.info(
                        "DEFAULT_VIDEO_MODEL needs inputs the caller did not give; picking another",
                        extra={"model": default, "missing": missing},
                    )
                else:
                    logger.warning("DEFAULT_VIDEO_MODEL takes no image; picking another", extra={"model": default})
        candidates = await self._catalogue.image_to_video_models(given)
        if candidates and not unmet_inputs(candidates[0], given):
            return candidates[0]
        if fallback is not None:
            return fallback
        if not candidates:
            raise ServiceError.single("NO_VIDEO_MODEL", "no image-to-video model is available", ["model"])
        return candidates[0]

    async def _media_inputs(
        self, viewer: Viewer, schema: Any, raw: Any, media_ids: Mapping[str, uuid.UUID]
    ) -> tuple[Any, list[MediaInput]]:
        """`raw` with every Media ID in a file input replaced by the media's own URL, and where each was.

        Every ID that names no READY media the viewer can see is reported at once (ServiceError)."""
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(raw, dict) or not isinstance(properties, dict):
            return raw, []
        wanted = list(_media_ids(raw, properties, media_ids))
        if not wanted:
            return raw, []
        found: list[MediaInput] = []
        problems: list[FieldError] = []
        async with self._sessions() as session:
            for name, position, media_id in wanted:
                media = await session.get(Media, media_id)
                path = input_path(name, position)
                if media is None or not viewer.can_see(media.owner_id):
                    problems.append(FieldError(path, f"{'.'.join(path[1:])}: media not found", "NOT_FOUND"))
                elif media.status != MediaStatus.READY or not media.storage_key:
                    message = f"{'.'.join(path[1:])}: the media is {media.status}, not READY; wait for it"
                    problems.append(FieldError(path, message, "MEDIA_NOT_READY"))
                elif not await self._storage.exists(media.storage_key):
                    message = f"{'.'.join(path[1:])}: the media's file is missing from storage"
                    problems.append(FieldError(path, message, "MEDIA_NOT_READY"))
                else:
                    found.append(MediaInput(name, position, media, self._media_url(media)))
        if problems:
            raise ServiceError(problems)
        replaced = dict(raw)
        for item in found:
            if item.index is None:
                replaced[item.name] = item.own_url
            else:
                replaced[item.name] = list(replaced[item.name])
                replaced[item.name][item.index] = item.own_url
        return replaced, found

    async def _fetchable(
        self, model: CatalogModel, given: dict[str, Any], media_inputs: list[MediaInput]
    ) -> dict[str, Any]:
        """What the provider is sent: `given` with each media's own URL replaced by one it can fetch."""
        sent = dict(given)
        for item in media_inputs:
            try:
                url = await self._reachable_url(model, item.media, item.own_url)
            except ServiceError as exc:
                raise ServiceError([FieldError(item.path, e.message, e.code) for e in exc.errors]) from exc
            if item.index is None:
                sent[item.name] = url
            else:
                sent[item.name] = list(sent[item.name])
                sent[item.name][item.index] = url
        return sent

    def _media_url(self, media: Media) -> str:
        assert media.storage_key is not None
        return media_url(self._settings, media.storage_key)

    async def _reachable_url(self, model: CatalogModel, media: Media, own_url: str) -> str:
        """A URL of the image that the model's provider can fetch.

        Our own media URL when the provider can fetch it from outside (MEDIA_BASE_URL, or a PUBLIC_URL it
        reaches); else a short-lived presigned URL when the store has them (S3); else our own URL when the
        provider reaches our serving address (the embedded simulator, or PUBLIC_URL_REACHABLE); otherwise
        an upload through the provider's files API, with a data: URI for a small file when the upload fails.
        """
        if self._settings.media.base_url or (self._own_urls_reachable and self._settings.server.public_url):
            return own_url
        assert media.storage_key is not None
        try:
            presigned = await self._storage.presigned_url(media.storage_key, self._settings.media.presign_seconds)
        except StorageError as exc:
            raise ServiceError.single("MEDIA_NOT_READY", f"the image could not be reached: {exc}", ["mediaId"]) from exc
        if presigned is not None:
            return presigned
        if self._own_urls_reachable:  # the provider runs beside us
            return own_url
        try:
            data = await read_all(self._storage, media.storage_key)
        except (OSError, StorageError) as exc:
            raise ServiceError.single("MEDIA_NOT_READY", f"the image could not be read: {exc}", ["mediaId"]) from exc
        content_type = media.content_type or "application/octet-stream"
        filename = media.storage_key.rsplit("/", 1)[-1]
        try:
            provider = self._providers.get(model.provider)
            return await provider.upload(data, filename=filename, content_type=content_type)
        except ProviderError as exc:
            if len(data) > DATA_URI_MAX_BYTES:
                raise ServiceError.single(
                    "UPLOAD_FAILED", f"the image could not be uploaded to the provider: {exc}", ["mediaId"]
                ) from exc
            logger.warning("file upload failed; sending the image inline", extra={"error": str(exc)})
            return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


async def _collect(problems: list[FieldError], job: Awaitable[T]) -> T | None:
    """Await `job`; on a ServiceError keep its errors in `problems` and give None."""
    try:
        return await job
    except ServiceError as exc:
        problems.extend(exc.errors)
        return None


def _media_ids(
    raw: dict[str, Any], properties: dict[str, Any], media_ids: Mapping[str, uuid.UUID]
) -> Iterator[tuple[str, int | None, uuid.UUID]]:
    """Each Media ID given to a file input: the field, its index in a list (or None), the media's id."""
    for name, value in raw.items():
        prop = properties.get(name)
        if not isinstance(prop, dict) or not is_file_input(prop):
            continue
        items: list[tuple[int | None, Any]] = (
            [(None, value)] if is_uri_string(prop) else list(enumerate(value)) if isinstance(value, list) else []
        )
        for index, item in items:
            media_id = media_ids.get(item.strip()) if isinstance(item, str) else None
            if media_id is not None:
                yield name, index, media_id
