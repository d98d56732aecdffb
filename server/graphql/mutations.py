"""Mutation resolvers: one `input`, one payload with `userErrors`; the service layer does the work."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar, cast

import strawberry

from server.db.models import Generation as GenerationRow
from server.db.models import Media as MediaRow
from server.graphql.context import Info
from server.graphql.errors import one_line
from server.graphql.ids import decode_id, media_ids_in
from server.graphql.inputs import (
    AnimateImageInput,
    CancelGenerationInput,
    DeleteMediaInput,
    RetryDownloadInput,
    StartGenerationInput,
    UploadMediaInput,
)
from server.graphql.types import Generation, Media, UserError
from server.services.access.rate_limits import Limited
from server.services.errors import ServiceError
from server.services.media.uploads import FILE_FIELD, UploadedFile

logger = logging.getLogger("server.graphql")

T = TypeVar("T")
P = TypeVar("P")


def user_errors(exc: ServiceError) -> list[UserError]:
    """The refusal as the payload's userErrors, logged once (INFO: the caller's to fix, not the server's)."""
    logger.info(
        "mutation refused: %s",
        "; ".join(f"{error.code}: {one_line(error.message)}" for error in exc.errors),
        extra={"codes": sorted({error.code for error in exc.errors})},
    )
    return [
        UserError(
            field=error.field,
            message=error.message,
            code=error.code,
            retry_after_seconds=error.retry_after_seconds,
        )
        for error in exc.errors
    ]


async def attempt(
    info: Info, action: Callable[[], Awaitable[T]], done: Callable[[T], P], refused: Callable[..., P]
) -> P:
    """Count one mutation against the caller's key, then run `action` and build its payload with `done`.

    A refusal (the rate limit's too) becomes `refused(user_errors=...)`; nothing was changed."""
    try:
        await info.context.runtime.rate_limits.take(info.context.viewer, Limited.MUTATIONS)
        result = await action()
    except ServiceError as exc:
        return refused(user_errors=user_errors(exc))
    return done(result)


@strawberry.type
class GenerationPayload:
    generation: Generation | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MediaPayload:
    media: Media | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DeleteMediaPayload:
    deleted_media_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _with_generation(row: GenerationRow) -> GenerationPayload:
    return GenerationPayload(generation=Generation.from_row(row))


def _with_media(row: MediaRow) -> MediaPayload:
    return MediaPayload(media=Media.from_row(row))


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Start a generation on a model; follow it with the `generation` subscription.")
    async def start_generation(self, info: Info, input: StartGenerationInput) -> GenerationPayload:
        creates, viewer = info.context.runtime.creates, info.context.viewer
        start = partial(
            creates.start_generation,
            viewer,
            input.model,
            input.input,
            media_ids=media_ids_in(input.input),
            idempotency_key=input.idempotency_key,
            metadata=input.metadata,
        )
        return await attempt(info, start, _with_generation, GenerationPayload)

    @strawberry.mutation(description="Turn a READY image into a video with an image-to-video model.")
    async def animate_image(self, info: Info, input: AnimateImageInput) -> GenerationPayload:
        creates, viewer = info.context.runtime.creates, info.context.viewer
        animate = partial(
            creates.animate_image,
            viewer,
            decode_id(input.media_id, "Media"),
            input.model,
            input.input,
            media_ids=media_ids_in(input.input),
            idempotency_key=input.idempotency_key,
            metadata=input.metadata,
        )
        return await attempt(info, animate, _with_generation, GenerationPayload)

    @strawberry.mutation(description="Ask the provider to stop a running generation.")
    async def cancel_generation(self, info: Info, input: CancelGenerationInput) -> GenerationPayload:
        generations, viewer = info.context.runtime.generations, info.context.viewer
        cancel = partial(generations.cancel, decode_id(input.id, "Generation"), viewer)
        return await attempt(info, cancel, _with_generation, GenerationPayload)

    @strawberry.mutation(description="Download a FAILED media file again, with a fresh attempt budget.")
    async def retry_download(self, info: Info, input: RetryDownloadInput) -> MediaPayload:
        retry = partial(info.context.runtime.media.retry, decode_id(input.media_id, "Media"), info.context.viewer)
        return await attempt(info, retry, _with_media, MediaPayload)

    @strawberry.mutation(
        description="Store your own image or short video as READY media; animate it, or pass its id as a file "
        "input. Send it as a multipart request (the GraphQL multipart request spec)."
    )
    async def upload_media(self, info: Info, input: UploadMediaInput) -> MediaPayload:
        file = input.file
        if not hasattr(file, "read"):
            # The Upload scalar takes any value: a file only arrives as a part of a multipart request.
            message = "file must be a file part of a multipart request (the GraphQL multipart request spec)"
            return MediaPayload(user_errors=[UserError(field=FILE_FIELD, message=message, code="NOT_A_FILE")])
        upload = partial(
            info.context.runtime.creates.upload_media,
            info.context.viewer,
            cast(UploadedFile, file),
            idempotency_key=input.idempotency_key,
            metadata=input.metadata,
        )
        return await attempt(info, upload, _with_media, MediaPayload)

    @strawberry.mutation(description="Delete a media file and its stored bytes.")
    async def delete_media(self, info: Info, input: DeleteMediaInput) -> DeleteMediaPayload:
        delete = partial(info.context.runtime.media.delete, decode_id(input.media_id, "Media"), info.context.viewer)
        return await attempt(
            info, delete, lambda _: DeleteMediaPayload(deleted_media_id=input.media_id), DeleteMediaPayload
        )
