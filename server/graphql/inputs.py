"""GraphQL input types: filters and mutation inputs."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from server.graphql.errors import BAD_USER_INPUT
from server.graphql.types import GenerationStatus, MediaKind, MediaStatus
from server.quoting import quote_value


def refuse_control_characters(value: str | None, argument: str) -> None:
    """A text argument goes to SQL as it is: PostgreSQL refuses a NUL outright, so none gets that far."""
    if value is not None and not value.isprintable():
        raise GraphQLError(
            f"{argument} {quote_value(value)} has control characters", extensions={"code": BAD_USER_INPUT}
        )


@strawberry.input
class GenerationFilter:
    status: list[GenerationStatus] | None = None
    kind: MediaKind | None = None
    model: str | None = strawberry.field(default=None, description='Only this model, "owner/name".')


@strawberry.input
class MediaFilter:
    status: list[MediaStatus] | None = None
    kind: MediaKind | None = None
    generation_id: strawberry.ID | None = None


@strawberry.input
class GenerationEventFilter:
    generation_ids: list[strawberry.ID] | None = None
    kind: list[MediaKind] | None = None


@strawberry.input
class StartGenerationInput:
    model: str = strawberry.field(description='The model to run, "owner/name"; "owner/name:version" pins a version.')
    input: JSON = strawberry.field(
        description="The model's input, checked against its Input schema. A file input (format: uri) also takes "
        "the ID of a READY Media, such as an upload."
    )


@strawberry.input
class AnimateImageInput:
    media_id: strawberry.ID = strawberry.field(description="A READY image to animate.")
    model: str | None = strawberry.field(default=None, description="An image-to-video model; picked when omitted.")
    input: JSON | None = strawberry.field(default=None, description="More input for the model (prompt, duration...).")


@strawberry.input
class CancelGenerationInput:
    id: strawberry.ID


@strawberry.input
class RetryDownloadInput:
    media_id: strawberry.ID


@strawberry.input
class DeleteMediaInput:
    media_id: strawberry.ID


@strawberry.input
class UploadMediaInput:
    file: Upload = strawberry.field(
        description="An image (PNG, JPEG, WebP, GIF) or a short video (MP4, WebM), sent as a multipart request "
        "(the GraphQL multipart request spec)."
    )
