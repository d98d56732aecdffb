"""GraphQL input types: filters and mutation inputs."""

from __future__ import annotations

import math
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from server.graphql.errors import BAD_USER_INPUT
from server.graphql.types import GenerationStatus, MediaKind, MediaStatus
from server.quoting import quote_value
from server.services.client_metadata import storable_text


def refuse_control_characters(value: str | None, argument: str) -> None:
    """A text argument goes to SQL as it is: PostgreSQL refuses a NUL outright, so none gets that far."""
    if value is not None and not value.isprintable():
        raise GraphQLError(
            f"{argument} {quote_value(value)} has control characters", extensions={"code": BAD_USER_INPUT}
        )


# Most keys one metadata filter may name, and the longest key.
MAX_METADATA_FILTER_KEYS = 20
MAX_METADATA_FILTER_KEY_CHARS = 255


def metadata_filter(value: object, argument: str) -> dict[str, str | int | float | bool] | None:
    """A metadata filter as the read layer takes it: an object of top-level keys, each with a string, number
    or boolean to equal; anything else is a BAD_USER_INPUT error."""
    if value is None:
        return None

    def refuse(why: str) -> GraphQLError:
        return GraphQLError(f"{argument} {why}", extensions={"code": BAD_USER_INPUT})

    if not isinstance(value, dict):
        raise refuse("must be a JSON object of top-level keys and the values they must equal")
    if len(value) > MAX_METADATA_FILTER_KEYS:
        raise refuse(f"names more than {MAX_METADATA_FILTER_KEYS} keys")
    for key, wanted in value.items():
        if not 1 <= len(key) <= MAX_METADATA_FILTER_KEY_CHARS or not storable_text(key):
            raise refuse(
                f"key {quote_value(key)} must be 1-{MAX_METADATA_FILTER_KEY_CHARS} characters, none of them NUL"
            )
        if isinstance(wanted, str):
            if not storable_text(wanted):
                raise refuse(f"value of {quote_value(key)} has a character metadata never holds (NUL)")
        elif not isinstance(wanted, (bool, int, float)) or not math.isfinite(wanted):
            raise refuse(f"value of {quote_value(key)} must be a string, a number or a boolean")
    return value


def idempotency_key_field(same_request: str = "the same request", result: str = "result") -> Any:
    """The optional `idempotencyKey` of a creating mutation's input (a field of its own for each input)."""
    return strawberry.field(
        default=None,
        description="Your own key for this request (1-255 printable characters): a repeat with the same key and "
        f"{same_request} returns the first call's {result} instead of creating again, for "
        "IDEMPOTENCY_KEY_TTL_SECONDS. The same key with a different request: IDEMPOTENCY_KEY_REUSED.",
    )


def metadata_field() -> Any:
    """The optional `metadata` of a creating mutation's input."""
    return strawberry.field(
        default=None,
        description="Your own small JSON object (at most METADATA_MAX_BYTES as compact JSON), stored and "
        "returned as it is, and filterable.",
    )


@strawberry.input
class GenerationFilter:
    status: list[GenerationStatus] | None = None
    kind: MediaKind | None = None
    model: str | None = strawberry.field(default=None, description='Only this model, "owner/name".')
    metadata: JSON | None = strawberry.field(
        default=None,
        description="Only generations whose metadata holds each of these top-level keys with an equal value "
        '(a string, number or boolean): {"orderId": "A-17"}.',
    )


@strawberry.input
class MediaFilter:
    status: list[MediaStatus] | None = None
    kind: MediaKind | None = None
    generation_id: strawberry.ID | None = None
    metadata: JSON | None = strawberry.field(
        default=None,
        description="Only media whose own metadata (given with uploadMedia) holds each of these top-level keys "
        "with an equal value (a string, number or boolean).",
    )


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
    idempotency_key: str | None = idempotency_key_field()
    metadata: JSON | None = metadata_field()


@strawberry.input
class AnimateImageInput:
    media_id: strawberry.ID = strawberry.field(description="A READY image to animate.")
    model: str | None = strawberry.field(default=None, description="An image-to-video model; picked when omitted.")
    input: JSON | None = strawberry.field(default=None, description="More input for the model (prompt, duration...).")
    idempotency_key: str | None = idempotency_key_field()
    metadata: JSON | None = metadata_field()


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
    idempotency_key: str | None = idempotency_key_field("the same request (the same file, type and name)", "media")
    metadata: JSON | None = metadata_field()
