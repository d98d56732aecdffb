"""Mutation resolvers: one `input`, one payload with `userErrors`; the service layer does the work."""

from __future__ import annotations

import logging
from typing import cast

import strawberry

from server.graphql.context import Info
from server.graphql.errors import one_line
from server.graphql.ids import decode_id
from server.graphql.inputs import (
    AnimateImageInput,
    CancelGenerationInput,
    DeleteMediaInput,
    RetryDownloadInput,
    StartGenerationInput,
    UploadMediaInput,
)
from server.graphql.types import Generation, Media, UserError
from server.services.errors import ServiceError
from server.services.media.uploads import FILE_FIELD, UploadedFile

logger = logging.getLogger("server.graphql")


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


def spend(info: Info) -> None:
    """Count one mutation against the caller's key; RateLimited (a ServiceError) when it is over its limit."""
    info.context.runtime.rate_limits.take(info.context.viewer)


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


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Start a generation on a model; follow it with the `generation` subscription.")
    async def start_generation(self, info: Info, input: StartGenerationInput) -> GenerationPayload:
        runtime = info.context.runtime
        try:
            spend(info)
            row = await runtime.launcher.start_generation(info.context.viewer, input.model, input.input)
        except ServiceError as exc:
            return GenerationPayload(user_errors=user_errors(exc))
        return GenerationPayload(generation=Generation.from_row(row))

    @strawberry.mutation(description="Turn a READY image into a video with an image-to-video model.")
    async def animate_image(self, info: Info, input: AnimateImageInput) -> GenerationPayload:
        runtime = info.context.runtime
        media_id = decode_id(input.media_id, "Media")
        try:
            spend(info)
            row = await runtime.launcher.animate_image(info.context.viewer, media_id, input.model, input.input)
        except ServiceError as exc:
            return GenerationPayload(user_errors=user_errors(exc))
        return GenerationPayload(generation=Generation.from_row(row))

    @strawberry.mutation(description="Ask the provider to stop a running generation.")
    async def cancel_generation(self, info: Info, input: CancelGenerationInput) -> GenerationPayload:
        generation_id = decode_id(input.id, "Generation")
        try:
            spend(info)
            row = await info.context.runtime.generations.cancel(generation_id, info.context.viewer)
        except ServiceError as exc:
            return GenerationPayload(user_errors=user_errors(exc))
        return GenerationPayload(generation=Generation.from_row(row))

    @strawberry.mutation(description="Download a FAILED media file again, with a fresh attempt budget.")
    async def retry_download(self, info: Info, input: RetryDownloadInput) -> MediaPayload:
        media_id = decode_id(input.media_id, "Media")
        try:
            spend(info)
            row = await info.context.runtime.media.retry(media_id, info.context.viewer)
        except ServiceError as exc:
            return MediaPayload(user_errors=user_errors(exc))
        return MediaPayload(media=Media.from_row(row))

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
        try:
            spend(info)
            row = await info.context.runtime.uploads.upload(info.context.viewer, cast(UploadedFile, file))
        except ServiceError as exc:
            return MediaPayload(user_errors=user_errors(exc))
        return MediaPayload(media=Media.from_row(row))

    @strawberry.mutation(description="Delete a media file and its stored bytes.")
    async def delete_media(self, info: Info, input: DeleteMediaInput) -> DeleteMediaPayload:
        media_id = decode_id(input.media_id, "Media")
        try:
            spend(info)
            await info.context.runtime.media.delete(media_id, info.context.viewer)
        except ServiceError as exc:
            return DeleteMediaPayload(user_errors=user_errors(exc))
        return DeleteMediaPayload(deleted_media_id=input.media_id)
