"""FalProvider against the fal simulator over real HTTP: jobs, cancels, failures, refusals, uploads and
the model catalogue."""

from __future__ import annotations

import httpx
import pytest

from server.domain import GenerationStatus, MediaKind
from server.provider.errors import ProviderNotFoundError, ProviderValidationError
from server.provider.fal import FalProvider
from server.provider.fal.client import error_of
from server.provider.port import Provider
from server.provider.types import JobRef
from tests.fal.support import RunningFal

FLUX = "fal-ai/flux/schnell"
T2V = "fal-ai/kling-video/v2.1/master/text-to-video"
I2V = "fal-ai/kling-video/v2.1/standard/image-to-video"


def test_it_is_a_provider(fal: RunningFal) -> None:
    provider: Provider = fal.provider
    assert provider.name == "fal"


async def test_a_job_from_queue_to_outputs(fal: RunningFal) -> None:
    fal.config.queue_length = 3
    created = await fal.provider.create(
        model_ref=FLUX, version_id=None, input={"prompt": "a lighthouse", "num_images": 2}, webhook_url=None
    )
    assert created.status is GenerationStatus.STARTING and created.provider_status == "IN_QUEUE"
    assert created.queue_position == 3
    job = JobRef(created.prediction_id, FLUX)

    running = await fal.until(job, lambda u: u.status is GenerationStatus.PROCESSING and bool(u.logs))
    assert running.provider_status == "IN_PROGRESS"
    queued = [u for u in fal.seen if u.status is GenerationStatus.STARTING]
    assert all(u.queue_position is not None for u in queued)
    done = await fal.finished(job)
    assert done.status is GenerationStatus.SUCCEEDED and done.provider_status == "COMPLETED"
    assert len(done.output_urls) == 2 and all(url.startswith(fal.url + "/files/") for url in done.output_urls)
    assert done.logs is not None and "Using seed: " in done.logs and "4/4" in done.logs
    assert done.predict_time is not None and done.predict_time > 0
    for url in done.output_urls:
        assert (await fal.http.get(url)).headers["content-type"] == "image/jpeg"
    create = fal.simulator.stats.create_of(job.id)
    assert create["path"] == "/" + FLUX and create["webhook"] is None


async def test_a_video_job_and_the_deadline_header(fal: RunningFal) -> None:
    created = await fal.provider.create(
        model_ref=T2V, version_id="ignored", input={"prompt": "waves"}, webhook_url=None, deadline_seconds=30.2
    )
    done = await fal.finished(JobRef(created.prediction_id, T2V))
    assert done.status is GenerationStatus.SUCCEEDED and len(done.output_urls) == 1
    assert (await fal.http.get(done.output_urls[0])).headers["content-type"].startswith("video/")
    assert fal.simulator.stats.create_of(created.prediction_id)["cancel_after"] == "31"


async def test_the_start_timeout_is_a_deadline(fal: RunningFal) -> None:
    fal.config.start_seconds = 10
    created = await fal.provider.create(
        model_ref=FLUX, version_id=None, input={"prompt": "late"}, webhook_url=None, deadline_seconds=1.5
    )
    done = await fal.finished(JobRef(created.prediction_id, FLUX), within=10)
    assert done.status is GenerationStatus.CANCELED and done.error is not None and done.error.startswith("504")
    assert fal.provider.stopped_by_deadline(done, 1.5, 2.0)


async def test_image_to_video_fetches_an_uploaded_picture(fal: RunningFal) -> None:
    picture = (await fal.http.get(fal.url + "/files/covers/FluxSchnell.webp")).content
    url = await fal.provider.upload(picture, filename="still.webp", content_type="image/webp")
    assert url.startswith(fal.url + "/files/uploads/")
    assert (await fal.http.get(url)).content == picture

    created = await fal.provider.create(
        model_ref=I2V, version_id=None, input={"prompt": "zoom", "image_url": url, "duration": "5"}, webhook_url=None
    )
    done = await fal.finished(JobRef(created.prediction_id, I2V))
    assert done.status is GenerationStatus.SUCCEEDED, done.error
    assert done.logs is not None and "Loaded image_url" in done.logs


async def test_a_private_picture_is_refused_like_fal_would(fal: RunningFal) -> None:
    created = await fal.provider.create(
        model_ref=I2V,
        version_id=None,
        input={"prompt": "zoom", "image_url": "http://10.1.2.3/still.png"},
        webhook_url=None,
    )
    done = await fal.finished(JobRef(created.prediction_id, I2V))
    assert done.status is GenerationStatus.FAILED and done.error is not None and done.error.startswith("500 ")


@pytest.mark.parametrize("state", ["queued", "running"])
async def test_cancel(fal: RunningFal, state: str) -> None:
    if state == "queued":
        fal.config.start_seconds = 10
    else:
        fal.config.run_seconds = 10
    created = await fal.provider.create(model_ref=FLUX, version_id=None, input={"prompt": "stop"}, webhook_url=None)
    job = JobRef(created.prediction_id, "fal-ai/flux/schnell")
    if state == "running":
        await fal.until(job, lambda u: u.status is GenerationStatus.PROCESSING)
    canceled = await fal.provider.cancel(job)
    assert canceled.status is GenerationStatus.CANCELED and canceled.error is not None
    assert canceled.error.startswith("499")
    assert not fal.provider.stopped_by_deadline(canceled, 1.0, 100.0)
    # A finished request is answered as it finished.
    assert (await fal.provider.cancel(job)).status is GenerationStatus.CANCELED


async def test_a_failed_job(fal: RunningFal) -> None:
    fal.config.fail_rate = 1.0
    created = await fal.provider.create(model_ref=FLUX, version_id=None, input={"prompt": "doomed"}, webhook_url=None)
    done = await fal.finished(JobRef(created.prediction_id, FLUX))
    assert done.status is GenerationStatus.FAILED
    assert done.error is not None and "simulated model crashed" in done.error


async def test_an_invalid_input_fails_the_job_and_reads_as_refusals(fal: RunningFal) -> None:
    created = await fal.provider.create(
        model_ref=FLUX, version_id=None, input={"num_images": 9, "output_format": "gif"}, webhook_url=None
    )
    job = JobRef(created.prediction_id, FLUX)
    done = await fal.finished(job)
    assert done.status is GenerationStatus.FAILED and done.error is not None
    assert done.error.startswith("422 ") and "prompt" in done.error

    answer = await fal.provider.client.result(FLUX, job.id)
    error = error_of(answer)
    assert isinstance(error, ProviderValidationError)
    refusals = {tuple(r.field or ()): r.code for r in fal.provider.refusals(error)}
    assert refusals == {
        ("input", "prompt"): "REQUIRED",
        ("input", "num_images"): "OUT_OF_RANGE",
        ("input", "output_format"): "NOT_IN_ENUM",
    }


async def test_a_body_that_is_no_object_is_refused_at_submit(fal: RunningFal) -> None:
    with pytest.raises(ProviderValidationError) as refused:
        await fal.provider.client.submit(FLUX, ["not", "an", "object"])  # type: ignore[arg-type]
    assert refused.value.status == 422 and fal.provider.refusals(refused.value)[0].code == "INVALID_TYPE"


async def test_unknown_things_are_not_found(fal: RunningFal) -> None:
    with pytest.raises(ProviderNotFoundError):
        await fal.provider.create(model_ref="fal-ai/nope/x", version_id=None, input={"prompt": "x"}, webhook_url=None)
    with pytest.raises(ProviderNotFoundError):
        await fal.provider.get(JobRef("no-such-request", FLUX))
    with pytest.raises(ProviderNotFoundError):
        await fal.provider.cancel(JobRef("no-such-request", FLUX))
    with pytest.raises(ProviderNotFoundError):
        await fal.provider.describe_model("fal-ai/nope/x")
    with pytest.raises(ProviderNotFoundError):
        await fal.provider.describe_model("not-an-endpoint")


async def test_the_key_is_required_when_configured(fal: RunningFal) -> None:
    fal.config.api_token = "the-key"
    with pytest.raises(Exception) as refused:
        await fal.provider.create(model_ref=FLUX, version_id=None, input={"prompt": "x"}, webhook_url=None)
    assert getattr(refused.value, "code", None) == "PROVIDER_AUTH"
    # Public documents stay public.
    assert (await fal.provider.describe_model(FLUX)).ref == FLUX


@pytest.mark.parametrize(
    ("ref", "kind", "image_input", "required"),
    [
        ("fal-ai/flux/schnell", MediaKind.IMAGE, None, ["prompt"]),
        ("fal-ai/flux/dev", MediaKind.IMAGE, None, ["prompt"]),
        (T2V, MediaKind.VIDEO, None, ["prompt"]),
        (I2V, MediaKind.VIDEO, "image_url", ["prompt", "image_url"]),
    ],
)
async def test_describe_model(
    fal: RunningFal, ref: str, kind: MediaKind, image_input: str | None, required: list[str]
) -> None:
    model = await fal.provider.describe_model(ref)
    assert model.ref == ref and model.kind is kind and model.image_input == image_input
    assert model.input_schema is not None and model.input_schema["required"] == required
    assert "$ref" not in str(model.input_schema)
    assert model.groups == (("text-to-image",) if kind is MediaKind.IMAGE else model.groups)
    assert model.output_schema is not None and model.version_id is None
    if ref.startswith("fal-ai/flux"):
        size = model.input_schema["properties"]["image_size"]
        assert size["anyOf"][0]["properties"]["width"]["type"] == "integer"
    else:
        assert model.input_schema["properties"]["duration"]["enum"] == ["5", "10"]


async def test_list_and_search(fal: RunningFal) -> None:
    fal.config.page_size = 1  # the listing's default page: the provider must follow next_cursor
    listed = await fal.provider.list_models()
    assert sorted(m.ref for m in listed) == sorted(["fal-ai/flux/schnell", "fal-ai/flux/dev", T2V, I2V])
    by_ref = {m.ref: m for m in listed}
    assert by_ref[I2V].groups == ("image-to-video",) and by_ref[I2V].image_input == "image_url"
    assert by_ref[T2V].kind is MediaKind.VIDEO and by_ref[T2V].input_schema is not None

    found = await fal.provider.search("flux", limit=10)
    assert sorted(m.ref for m in found) == ["fal-ai/flux/dev", "fal-ai/flux/schnell"]
    assert len(await fal.provider.search("flux", limit=1)) == 1
    assert await fal.provider.search("no such thing at all", limit=5) == []


async def test_both_url_forms_are_served(fal: RunningFal) -> None:
    created = await fal.provider.create(model_ref=FLUX, version_id=None, input={"prompt": "x"}, webhook_url=None)
    rid = created.prediction_id
    for prefix in ("fal-ai/flux", FLUX):
        for logs in ("true", "false", "1", "0"):
            answer = await fal.http.get(f"/{prefix}/requests/{rid}/status", params={"logs": logs})
            assert answer.status_code in (200, 202)
            assert (answer.json()["logs"] is None) == (logs in ("false", "0"))
    assert (await fal.http.get(f"/fal-ai/other/requests/{rid}/status")).status_code == 404
    unfinished = await fal.http.get(f"/fal-ai/flux/requests/{rid}")
    assert unfinished.status_code == 400


async def test_answers_are_capped(fal: RunningFal) -> None:
    small = FalProvider(
        type(fal.provider.client)(
            "k", openapi_base_url=fal.url, queue_base_url=fal.url, max_response_bytes=1_000, retry_base_seconds=0
        ),
        jwks_url=fal.url + "/.well-known/jwks.json",
    )
    try:
        with pytest.raises(Exception) as refused:
            await small.describe_model(FLUX)
        assert getattr(refused.value, "code", None) == "PROVIDER_BAD_RESPONSE"
    finally:
        await small.aclose()


async def test_uploads_need_the_storage_token(fal: RunningFal) -> None:
    answer = await fal.http.post("/files/upload", content=b"x", headers={"authorization": "Bearer forged"})
    assert answer.status_code == 401
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(fal.url + "/.well-known/jwks.json")).status_code == 200
