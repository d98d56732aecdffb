"""`FalEngine`: the shared simulator engine running fal's requests, and their JSON in fal's words.

A request runs on `server.simulator.engine.Engine` like any simulated prediction; this subclass maps
the engine's states onto fal's queue (``starting`` → IN_QUEUE with a queue position counting down,
``processing`` → IN_PROGRESS, any end → COMPLETED), fal's inputs onto the renderer (``image_size``,
``num_images``, ``duration`` as a string...), and an end onto what fal answers for the result:

| how it ended                         | result status | body                                           |
|--------------------------------------|---------------|------------------------------------------------|
| succeeded                            | 200           | the endpoint's output (``images`` / ``video``) |
| the input broke the endpoint's schema| 422           | ``{"detail": [{loc, msg, type, input}]}``      |
| cancelled                            | 499           | ``{"detail": "Request cancelled"}``            |
| start timeout (X-Fal-Request-Timeout)| 504 + headers | ``{"detail", "error_type": "request_timeout"}``|
| the run failed                       | 500           | ``{"detail": <why>}``                          |

Validation happens when the request is taken from the queue, as fal's runners do it: the submit is
accepted, and the request ends COMPLETED with its 422 (a stored status of a failed request, docs/fal.md).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError
from PIL import Image

from server.provider.fal.simulator.catalogue import IMAGE_SIZES, FalEndpoint
from server.provider.fal.simulator.config import FalSimulatorConfig
from server.simulator.clock import iso, utcnow
from server.simulator.engine import Engine, PredictionFailure, SimPrediction
from server.simulator.validation import PredictionRequest

# What fal's queue answers a request in each of the engine's states.
QUEUE_STATUSES = {"starting": "IN_QUEUE", "processing": "IN_PROGRESS"}
WEBHOOK_EVENTS = frozenset({"completed"})
VIDEO_FPS = 8
_PYDANTIC_TYPES = {"string": "string_type", "integer": "int_type", "number": "float_type", "boolean": "bool_type"}
_TYPE_WORDS = {"string": "a valid string", "integer": "a valid integer", "number": "a valid number"}


@dataclass(frozen=True, slots=True)
class ResultAnswer:
    """What ``GET …/requests/{id}`` answers: a status, a body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def _pydantic_error(error: ValidationError, value: Any) -> list[dict[str, Any]]:
    """One jsonschema failure in the shape fal's (pydantic) validation reports it."""
    loc: list[Any] = ["body", *error.absolute_path]
    kind = error.validator
    expected: Any = error.validator_value
    if kind == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        return [
            {"loc": [*loc, name], "msg": "Field required", "type": "missing", "input": value}
            for name in expected
            if name not in present
        ]
    if kind == "type":
        word = expected if isinstance(expected, str) else "value"
        return [
            {
                "loc": loc,
                "msg": f"Input should be {_TYPE_WORDS.get(word, 'a valid ' + word)}",
                "type": _PYDANTIC_TYPES.get(word, "value_error"),
                "input": error.instance,
            }
        ]
    if kind == "enum":
        choices = " or ".join(repr(choice) for choice in expected)
        return [{"loc": loc, "msg": f"Input should be {choices}", "type": "literal_error", "input": error.instance}]
    words = {
        "minimum": ("greater_than_equal", f"Input should be greater than or equal to {expected}"),
        "maximum": ("less_than_equal", f"Input should be less than or equal to {expected}"),
        "maxLength": ("string_too_long", f"String should have at most {expected} characters"),
        "minLength": ("string_too_short", f"String should have at least {expected} characters"),
    }
    error_type, message = words.get(str(kind), ("value_error", error.message))
    return [{"loc": loc, "msg": message, "type": error_type, "input": error.instance}]


def validate(endpoint: FalEndpoint, value: Any) -> list[dict[str, Any]]:
    """Every way `value` breaks the endpoint's input schema, as fal's 422 ``detail`` lists them."""
    schema = {**endpoint.input_schema(), "components": {"schemas": endpoint.openapi("", "")["components"]["schemas"]}}
    errors = sorted(Draft7Validator(schema).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    return [item for error in errors for item in _pydantic_error(error, value)]


class FalEngine(Engine):
    """Every request this simulator has queued, on the shared engine (see the module docstring)."""

    config: FalSimulatorConfig
    upload_hint = "upload the file (fal's storage: POST /storage/auth/token, then /files/upload)"
    input_fetch_failed = (
        "could not fetch the input file. Pass a public URL that answers it, upload it to fal's storage or send it "
        "as a data: URI."
    )

    def __init__(self, config: FalSimulatorConfig, *args: Any) -> None:
        super().__init__(config, *args)
        self.endpoints: dict[str, FalEndpoint] = {}
        self.rejections: dict[str, list[dict[str, Any]]] = {}
        self.params: dict[str, dict[str, Any]] = {}
        self._payloads: dict[str, dict[str, Any]] = {}

    # --- requests ---------------------------------------------------------------------------------

    def submit(
        self, endpoint: FalEndpoint, input: dict[str, Any], webhook: str | None, start_timeout: float | None
    ) -> SimPrediction:
        """Queue a request; the start timeout (X-Fal-Request-Timeout) bounds only its wait in the queue."""
        request = PredictionRequest(endpoint.engine_model, input, webhook, WEBHOOK_EVENTS, False)
        prediction = self.create(request, start_timeout, deadline_covers_run=False)
        self.endpoints[prediction.id] = endpoint
        return prediction

    def render_params(self, prediction: SimPrediction, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = self.endpoints[prediction.id]
        problems = validate(endpoint, prediction.input)
        if problems:
            self.rejections[prediction.id] = problems
            raise PredictionFailure("Invalid status code: 422")
        seed = params.get("seed") if isinstance(params.get("seed"), int) else self.dice.seed()
        prompt = str(params.get("prompt") or "")
        rendered: dict[str, Any]
        if endpoint.renders == "video":
            rendered = {"prompt": prompt, "seed": seed, "duration": float(params["duration"]), "fps": VIDEO_FPS}
            if endpoint.image_field:
                rendered[endpoint.image_field] = params.get(endpoint.image_field)
        else:
            size = params.get("image_size")
            if isinstance(size, dict):
                width, height = int(size.get("width", 512)), int(size.get("height", 512))
            else:
                width, height = IMAGE_SIZES[str(size)]
            rendered = {
                "prompt": prompt,
                "seed": seed,
                "width": width,
                "height": height,
                "num_outputs": int(params.get("num_images", 1)),
                "num_inference_steps": int(params.get("num_inference_steps", 4)),
                "output_format": "png" if params.get("output_format") == "png" else "jpg",
            }
        self.params[prediction.id] = rendered
        return rendered

    # --- fal's JSON -------------------------------------------------------------------------------

    def urls(self, prediction: SimPrediction) -> dict[str, str]:
        endpoint = self.endpoints[prediction.id]
        base = f"{self.config.base_url}/{endpoint.app_id}/requests/{prediction.id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    def queue_position(self, prediction: SimPrediction) -> int:
        """Counts down from `queue_length` to 0 over the request's time in the queue."""
        wait, length = self.config.start_seconds, max(0, self.config.queue_length)
        if wait <= 0 or length == 0:
            return 0
        elapsed = (utcnow() - prediction.created_at).total_seconds()
        return max(0, min(length, math.ceil(length * (1 - elapsed / wait))))

    def status_json(self, prediction: SimPrediction, *, with_logs: bool) -> dict[str, Any]:
        """``GET …/status``: the request in the queue, running, or completed."""
        word = QUEUE_STATUSES.get(prediction.status, "COMPLETED")
        body: dict[str, Any] = {"status": word, "request_id": prediction.id, **self.urls(prediction)}
        body["logs"] = self.log_items(prediction) if with_logs else None
        body["metrics"] = {}
        if word == "IN_QUEUE":
            body["queue_position"] = self.queue_position(prediction)
        if word == "COMPLETED":
            if prediction.started_at is not None and prediction.completed_at is not None:
                inference = (prediction.completed_at - prediction.started_at).total_seconds()
                body["metrics"] = {"inference_time": round(inference, 6)}
            answer = self.result(prediction)
            if answer.status >= 400:
                detail = answer.body.get("detail")
                body["error"] = detail if isinstance(detail, str) else "Unprocessable Entity"
                body["error_type"] = answer.body.get("error_type", "request_error")
        return body

    def log_items(self, prediction: SimPrediction) -> list[dict[str, Any]]:
        lines = (prediction.logs or "").splitlines()
        times = prediction.log_times
        return [
            {
                "message": line,
                "level": "INFO",
                "source": "USER",
                "timestamp": iso(times[index] if index < len(times) else prediction.created_at),
            }
            for index, line in enumerate(lines)
        ]

    def result(self, prediction: SimPrediction) -> ResultAnswer:
        """``GET …/requests/{id}``: 400 while unfinished, else the outcome (see the module docstring)."""
        if not prediction.terminal:
            return ResultAnswer(400, {"detail": "Request is still in progress"}, {})
        if prediction.status == "succeeded":
            return ResultAnswer(200, self.payload(prediction), {})
        if prediction.id in self.rejections:
            return ResultAnswer(422, {"detail": self.rejections[prediction.id]}, {})
        if prediction.timed_out:
            headers = {"X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"}
            body = {"detail": "Request timed out before it started", "error_type": "request_timeout"}
            return ResultAnswer(504, body, headers)
        if prediction.status in ("canceled", "aborted"):
            return ResultAnswer(499, {"detail": "Request cancelled"}, {})
        return ResultAnswer(500, {"detail": prediction.error or "Internal error"}, {})

    def payload(self, prediction: SimPrediction) -> dict[str, Any]:
        """A succeeded request's output, as the endpoint's Output schema shapes it (kept once built, so the
        result reads the same after the files expired)."""
        cached = self._payloads.get(prediction.id)
        if cached is not None:
            return cached
        endpoint, params = self.endpoints[prediction.id], self.params.get(prediction.id, {})
        files = [(path, self.files.outputs.get(path)) for path in prediction.file_paths]
        if endpoint.renders == "video":
            path, stored = files[0]
            payload: dict[str, Any] = {
                "video": {
                    "url": self.config.base_url + path,
                    "content_type": stored.content_type if stored else "video/mp4",
                    "file_name": path.rsplit("/", 1)[-1],
                    "file_size": len(stored.content) if stored else 0,
                }
            }
        else:
            images = []
            for path, stored in files:
                width, height = Image.open(io.BytesIO(stored.content)).size if stored else (0, 0)
                images.append(
                    {
                        "url": self.config.base_url + path,
                        "width": width,
                        "height": height,
                        "content_type": stored.content_type if stored else "image/jpeg",
                    }
                )
            inference = 0.0
            if prediction.started_at is not None and prediction.completed_at is not None:
                inference = (prediction.completed_at - prediction.started_at).total_seconds()
            payload = {
                "images": images,
                "timings": {"inference": round(inference, 6)},
                "seed": params.get("seed"),
                "has_nsfw_concepts": [False] * len(images),
                "prompt": params.get("prompt", ""),
            }
        self._payloads[prediction.id] = payload
        return payload

    def webhook_body(self, prediction: SimPrediction) -> dict[str, Any]:
        """fal's delivery: ``{request_id, gateway_request_id, status: OK, payload}``, or for a failed request
        ``status: ERROR`` with ``error: "Invalid status code: N"`` and the error body as payload."""
        answer = self.result(prediction)
        body: dict[str, Any] = {"request_id": prediction.id, "gateway_request_id": prediction.id}
        if answer.status < 400:
            return {**body, "status": "OK", "payload": answer.body}
        return {**body, "status": "ERROR", "error": f"Invalid status code: {answer.status}", "payload": answer.body}
