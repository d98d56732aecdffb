"""Starting work: a generation from a model and input, or an animation of an existing image.

Both paths resolve the model from the catalogue, check the input against its schema (nothing is
created or sent when it fails), and hand the result to GenerationService.start — one pipeline for
images and videos alike. What is sent is the caller's input; what is stored adds the schema's
defaults and masks secrets (see `server.services.catalogue.validation`).
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import CatalogModel, Generation, Media
from server.domain import MediaKind, MediaStatus
from server.provider.errors import ProviderError
from server.provider.port import Provider
from server.services.access.viewer import Viewer
from server.services.catalogue.service import CatalogueService, split_version, unmet_inputs
from server.services.catalogue.validation import check_input, show
from server.services.errors import FieldError, NotFound, ServiceError
from server.services.generations.service import GenerationService
from server.services.media.urls import media_url
from server.settings import Settings
from server.storage.port import MediaStorage, StorageError, read_all

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Replicate takes data: URIs for small files; past this an image must be uploaded to reach it.
DATA_URI_MAX_BYTES = 256 * 1024


class Launcher:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        catalogue: CatalogueService,
        generations: GenerationService,
        storage: MediaStorage,
        provider: Provider,
        *,
        own_urls_reachable: bool = False,
    ) -> None:
        """`own_urls_reachable`: the provider can fetch this server's media URLs (PUBLIC_URL is set, or the
        provider runs beside us), so an image is sent as our own URL rather than uploaded."""
        self._settings = settings
        self._sessions = sessions
        self._catalogue = catalogue
        self._generations = generations
        self._storage = storage
        self._provider = provider
        self._own_urls_reachable = own_urls_reachable

    async def start_generation(self, viewer: Viewer, model_ref: str, raw_input: Any) -> Generation:
        """Validate `raw_input` against the model's schema and start it; ServiceError lists every problem.

        `model_ref` "owner/name:version" pins a version: the catalogue's entry for owner/name describes
        the input, and the version is sent as given.
        """
        model_ref, version = split_version(model_ref)
        model = await self._catalogue.get_model(model_ref)
        checked = check_input(model.input_schema, raw_input, model_ref=model.ref)
        return await self._generations.start(
            viewer, model, checked.stored(), provider_input=checked.given, version=version
        )

    async def animate_image(
        self, viewer: Viewer, media_id: uuid.UUID, model_ref: str | None, raw_input: Any
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
            problems.append(
                FieldError(["input"], f"input must be a JSON object; got {show(raw_input)}", "INVALID_INPUT")
            )
        if problems or media is None or model is None:
            raise ServiceError(problems)
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
        checked = check_input(model.input_schema, {**given, field: own_url}, model_ref=model.ref)
        provider_input = {**checked.given, field: await self._reachable_url(media, own_url)}
        # The stored input names our own lasting URL, not an upload that expires or a long data: URI.
        return await self._generations.start(
            viewer, model, checked.stored(), provider_input=provider_input, source_media_id=media.id
        )

    async def _ready_image(self, media_id: uuid.UUID, viewer: Viewer) -> Media:
        async with self._sessions() as session:
            media = await session.get(Media, media_id)
        if media is None or not viewer.can_see(media.owner_id):
            raise NotFound("media", ["mediaId"])
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

    def _media_url(self, media: Media) -> str:
        assert media.storage_key is not None
        return media_url(self._settings, media.storage_key)

    async def _reachable_url(self, media: Media, own_url: str) -> str:
        """A URL of the image that the provider can fetch.

        Our own media URL when the world can reach it (MEDIA_BASE_URL, or PUBLIC_URL); else a short-lived
        presigned URL when the store has them (S3); else our own URL when the simulator, which runs beside
        us, plays the provider; otherwise an upload through the provider's files API, with a data: URI
        for a small file when the upload fails.
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
            return await self._provider.upload(data, filename=filename, content_type=content_type)
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
