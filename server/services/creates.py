"""The creating mutations as a caller makes them: startGeneration, animateImage and uploadMedia, each with an
optional idempotency key and the caller's metadata.

The key and the metadata are checked first, before anything is created; then the create runs under its key
(`server.services.access.idempotency`), whose fingerprint is the operation and its arguments as the caller
gave them: the model, input, metadata and mediaId; for an upload the file's bytes (their sha256) and its
declared content type and filename, which is why an upload is checked before its key is claimed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, cast

from server.db.models import Generation, Media
from server.services.access.idempotency import IdempotencyService, key_problems
from server.services.access.viewer import Viewer
from server.services.client_metadata import metadata_problems
from server.services.errors import ServiceError
from server.services.generations.launch import NO_MEDIA, Launcher
from server.services.generations.service import GenerationService
from server.services.media.uploads import UploadedFile, UploadService
from server.settings import Settings


class CreateService:
    def __init__(
        self,
        settings: Settings,
        idempotency: IdempotencyService,
        launcher: Launcher,
        generations: GenerationService,
        uploads: UploadService,
    ) -> None:
        self._metadata_max_bytes = settings.creates.metadata_max_bytes
        self._idempotency = idempotency
        self._launcher = launcher
        self._generations = generations
        self._uploads = uploads

    async def start_generation(
        self,
        viewer: Viewer,
        model_ref: str,
        raw_input: Any,
        *,
        media_ids: Mapping[str, uuid.UUID] = NO_MEDIA,
        idempotency_key: str | None = None,
        metadata: Any = None,
    ) -> Generation:
        """`Launcher.start_generation`, at most once per idempotency key."""
        checked = self._checked(idempotency_key, metadata)
        arguments = {"model": model_ref, "input": raw_input, "metadata": checked}
        create = partial(
            self._launcher.start_generation, viewer, model_ref, raw_input, media_ids=media_ids, metadata=checked
        )
        return await self._generation_once(viewer, idempotency_key, "startGeneration", arguments, create)

    async def animate_image(
        self,
        viewer: Viewer,
        media_id: uuid.UUID,
        model_ref: str | None,
        raw_input: Any,
        *,
        media_ids: Mapping[str, uuid.UUID] = NO_MEDIA,
        idempotency_key: str | None = None,
        metadata: Any = None,
    ) -> Generation:
        """`Launcher.animate_image`, at most once per idempotency key."""
        checked = self._checked(idempotency_key, metadata)
        arguments = {"mediaId": str(media_id), "model": model_ref, "input": raw_input, "metadata": checked}
        create = partial(
            self._launcher.animate_image, viewer, media_id, model_ref, raw_input, media_ids=media_ids, metadata=checked
        )
        return await self._generation_once(viewer, idempotency_key, "animateImage", arguments, create)

    async def upload_media(
        self, viewer: Viewer, file: UploadedFile, *, idempotency_key: str | None = None, metadata: Any = None
    ) -> Media:
        """`UploadService.upload`, at most once per idempotency key: the file is checked first, as its bytes
        are part of the request the key stands for."""
        checked_metadata = self._checked(idempotency_key, metadata)
        async with self._uploads.checked(file) as upload:
            arguments = {
                "sha256": upload.checked.sha256,
                "contentType": upload.declared_type,
                "filename": upload.filename,
                "metadata": checked_metadata,
            }
            return await self._idempotency.once(
                viewer,
                idempotency_key,
                "uploadMedia",
                arguments,
                partial(self._uploads.keep, viewer, upload, metadata=checked_metadata),
                lambda media: media.id,
                partial(self._uploads.get, viewer=viewer),
            )

    def _checked(self, idempotency_key: str | None, metadata: Any) -> dict[str, Any] | None:
        """The metadata, once it and the key are known to be good; ServiceError listing both's problems."""
        problems = key_problems(idempotency_key) + metadata_problems(metadata, self._metadata_max_bytes)
        if problems:
            raise ServiceError(problems)
        return cast(dict[str, Any] | None, metadata)

    async def _generation_once(
        self,
        viewer: Viewer,
        idempotency_key: str | None,
        operation: str,
        arguments: dict[str, Any],
        create: Callable[[], Awaitable[Generation]],
    ) -> Generation:
        return await self._idempotency.once(
            viewer,
            idempotency_key,
            operation,
            arguments,
            create,
            lambda generation: generation.id,
            partial(self._generations.get, viewer=viewer),
        )
