"""Reading Replicate's model records into neutral `ModelDescription`s.

A model record carries ``owner``, ``name``, ``description``, ``cover_image_url``, ``run_count``,
``is_official``, ``default_example`` and ``latest_version`` with its ``id`` and ``openapi_schema``, which
Cog writes as an OpenAPI document whose ``components.schemas.Input`` and ``Output`` are the version's
JSON Schemas. Collections (``{"models": [record, ...]}``) list records without the schema, and search
answers ``{"models": [{"model": record}, ...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from server.domain import VIDEO_EXTENSIONS, MediaKind
from server.provider.model_schema import find_image_field, produces_files, resolve_refs
from server.provider.types import ModelDescription

# The collections the catalogue is made of, and the kind each says its models make.
COLLECTION_KINDS: dict[str, MediaKind] = {
    "text-to-image": MediaKind.IMAGE,
    "text-to-video": MediaKind.VIDEO,
    "image-to-video": MediaKind.VIDEO,
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".avif", ".bmp", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac")


@dataclass(frozen=True, slots=True)
class DescribedSchema:
    """A version's Input and Output schemas (refs resolved) and the input taking the image to animate."""

    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    image_field: str | None


def describe_openapi(openapi: dict[str, Any] | None) -> DescribedSchema:
    """Input and Output of a version's `openapi_schema`, refs resolved, and its image input field."""
    components = ((openapi or {}).get("components") or {}).get("schemas") or {}
    raw_input = components.get("Input")
    raw_output = components.get("Output")
    document = openapi or {}
    input_schema = resolve_refs(raw_input, document) if isinstance(raw_input, dict) else None
    output_schema = resolve_refs(raw_output, document) if isinstance(raw_output, dict) else None
    return DescribedSchema(input_schema, output_schema, find_image_field(input_schema))


def _example_urls(body: dict[str, Any]) -> list[str]:
    example = body.get("default_example")
    output = example.get("output") if isinstance(example, dict) else None
    values = output if isinstance(output, list) else list(output.values()) if isinstance(output, dict) else [output]
    return [urlparse(v).path.lower() for v in values if isinstance(v, str) and v.startswith(("http", "data:"))]


def classify(
    body: dict[str, Any], collections: Iterable[str], output_schema: dict[str, Any] | None
) -> MediaKind | None:
    """IMAGE or VIDEO for a model record, or None when it makes neither (text, audio, embeddings...).

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


def ref_of(record: dict[str, Any]) -> str:
    return f"{record.get('owner')}/{record.get('name')}"


def has_schema(record: dict[str, Any]) -> bool:
    """Whether a record carries its version's schema (a collection's records do not)."""
    version = record.get("latest_version")
    return isinstance(version, dict) and isinstance(version.get("openapi_schema"), dict)


def describe_record(record: dict[str, Any], groups: Iterable[str] = ()) -> ModelDescription:
    """The neutral description of a model record listed in `groups` (collection slugs).

    An official model runs by its name, at whatever version its owner serves, so it has no version
    to run by (`version_id` None); any other runs at its latest version.
    """
    latest = record.get("latest_version")
    version: dict[str, Any] = latest if isinstance(latest, dict) else {}
    described = describe_openapi(version.get("openapi_schema"))
    groups = tuple(groups)
    example = record.get("default_example")
    example_input = example.get("input") if isinstance(example, dict) else None
    run_count = record.get("run_count")
    description = record.get("description")
    cover = record.get("cover_image_url")
    version_id = version.get("id")
    return ModelDescription(
        ref=ref_of(record),
        kind=classify(record, groups, described.output_schema),
        description=description if isinstance(description, str) else None,
        input_schema=described.input_schema,
        output_schema=described.output_schema,
        image_input=described.image_field,
        example=example_input if isinstance(example_input, dict) else None,
        run_count=run_count if isinstance(run_count, int) and not isinstance(run_count, bool) else None,
        cover_image_url=cover if isinstance(cover, str) else None,
        version_id=None if record.get("is_official") is True or not isinstance(version_id, str) else version_id,
        groups=groups,
    )
