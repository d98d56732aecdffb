"""The prediction lifecycle: create, run in the background, cancel, expire, and render as JSON.

A prediction is `starting` for ``config.start_seconds``, then `processing` for ``config.run_seconds``
while it appends tqdm-style lines to its logs, then renders its files in a thread and ends `succeeded`
(or `failed`, with ``config.fail_rate``). Some models behave as particular real ones do:

- one that boots (darkroom-sim/slow-boot-video) is `starting` for ``config.boot_seconds`` more, and
  writes boot lines to its logs meanwhile (``start`` is sent when the boot begins, ``logs`` for each line);
- one that yields previews (darkroom-sim/preview-image) renders a small PNG at each quarter of its steps,
  served like its outputs, and shows every one so far as its `output` while `processing` (a list of URLs,
  each change sent as an ``output`` event); its `output` is its final files only once it succeeds;
- one whose run time scales with its input runs for ``outputs.run_units`` times ``config.run_seconds``.

Every run's time is then multiplied by a factor drawn from the dice in [1 - j, 1 + j], j being
``config.run_jitter`` (0 by default: no draw, and every run of an input lasts the same).

Image-to-video models first fetch their image input over HTTP (or decode a ``data:`` URI); a fetch that
fails fails the prediction with one generic `error`, whatever the cause, so that it tells nothing of
which addresses and ports answer. Like Replicate, which cannot reach them, it refuses URLs on loopback,
private and local-network hosts (a name resolving to one included) unless
``config.allow_private_inputs`` (the embedded simulator's, which fetches the server's own media over
loopback; never a link-local address though). A redirect (at most MAX_INPUT_REDIRECTS) must lead to a
public address in either case; its own files are always fetched.

Every prediction runs in its own asyncio task, created when the prediction is created, so nothing
depends on an ASGI lifespan. Cancel-After deadlines are timers: reached while `starting` the prediction
ends `aborted`, while `processing` it ends `canceled`.

Another provider's simulator (fal's) runs its jobs on this same engine by subclassing it: it renders
its own JSON (`webhook_body`), maps its inputs onto the renderer's parameters (`render_params`) and may
give a deadline that only bounds the wait before the start (`create(..., deadline_covers_run=False)`).

Data retention is applied lazily, whenever a prediction or file is looked at: ``output_ttl_seconds``
after completion the files are deleted and the prediction shows ``output: null, data_removed: true``
with its input and logs cleared.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes, urlparse

import httpx

from server.reachability import link_local_reason, non_public_reason
from server.simulator.catalogue import CatalogueModel
from server.simulator.clock import iso, utcnow
from server.simulator.config import Dice, SimulatorConfig
from server.simulator.files import FileStore, StoredFile, new_id
from server.simulator.media import MediaError
from server.simulator.outputs import (
    boot_lines,
    effective_input,
    preview_steps,
    render_outputs,
    render_preview_file,
    run_units,
    step_count,
)
from server.simulator.progress import progress_line
from server.simulator.stats import Stats
from server.simulator.validation import PredictionRequest
from server.simulator.webhooks import WebhookChannel, WebhookDispatcher

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled", "aborted"})
MAX_INPUT_BYTES = 20_000_000
FETCH_ATTEMPTS = 3
FETCH_RETRY_SECONDS = 0.1
MAX_INPUT_REDIRECTS = 3
INPUT_FETCH_FAILED = (
    "could not fetch the input file. Pass a public URL that answers it, upload the file (POST /v1/files) or "
    "send it as a data: URI."
)


class PredictionFailure(Exception):
    """Ends a run with status `failed` and this message as its `error`."""


class _FetchFailed(Exception):
    """Why one attempt at an input file failed; kept out of the prediction's error, logged at DEBUG."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class _Vetted:
    """A URL judged for fetching: why not (`refusal`, or a name that did not resolve: `unresolved`), or the
    addresses it was judged at (`pinned`)."""

    original: str
    refusal: str | None = None
    pinned: tuple[str, ...] = ()
    unresolved: bool = False

    def requests(self, client: httpx.AsyncClient) -> list[httpx.Request]:
        """The GET to send: one per pinned address, each naming the original host (Host header, and TLS's
        server name, which the certificate is checked against); the URL as it is when nothing is pinned."""
        url = httpx.URL(self.original)
        if not self.pinned:
            return [client.build_request("GET", url)]
        named = {"host": url.netloc.decode("ascii")}
        return [
            client.build_request(
                "GET", url.copy_with(host=address), headers=named, extensions={"sni_hostname": url.host}
            )
            for address in self.pinned
        ]


def _redirect_target(url: str, response: httpx.Response) -> str:
    """Where a redirect leads, resolved against the URL as named (not the pinned address); http(s) only."""
    target = response.headers.get("location", "")
    try:
        joined = str(httpx.URL(url).join(target))
    except (httpx.InvalidURL, ValueError):
        raise _FetchFailed(f"bad redirect to {target!r}", retryable=False) from None
    if urlparse(joined).scheme not in ("http", "https"):
        raise _FetchFailed(f"redirect to {joined}, not http(s)", retryable=False)
    return joined


@dataclass(eq=False)
class SimPrediction:
    id: str
    seq: int
    model: CatalogueModel
    input: dict[str, Any]
    created_at: datetime
    webhook: str | None = None
    status: str = "starting"
    logs: str | None = ""
    # When each line of `logs` was written, in order (providers that timestamp log lines show them).
    log_times: list[datetime] = field(default_factory=list)
    output: Any = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    completed_monotonic: float | None = None
    data_removed: bool = False
    file_paths: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    deadline: asyncio.TimerHandle | None = None
    # False: the deadline stops only a prediction still waiting to start (fal's X-Fal-Request-Timeout).
    deadline_covers_run: bool = True
    timed_out: bool = False
    channel: WebhookChannel | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Engine:
    """Every prediction this simulator has made, newest last, and their running tasks."""

    # How the provider's users put a file where a run can fetch it, quoted when an input cannot be fetched.
    upload_hint = "upload the file (POST /v1/files)"
    input_fetch_failed = INPUT_FETCH_FAILED

    def __init__(
        self,
        config: SimulatorConfig,
        dice: Dice,
        stats: Stats,
        files: FileStore,
        webhooks: WebhookDispatcher,
        http: httpx.AsyncClient,
    ) -> None:
        self.config = config
        self.dice = dice
        self.stats = stats
        self.files = files
        self.webhooks = webhooks
        self.http = http
        self.predictions: dict[str, SimPrediction] = {}
        self._seq = 0

    # --- queries ----------------------------------------------------------------------------------

    def get(self, prediction_id: str) -> SimPrediction | None:
        prediction = self.predictions.get(prediction_id)
        if prediction is not None:
            self._expire_if_due(prediction)
        return prediction

    def newest_first(self) -> list[SimPrediction]:
        self.expire_due()
        return sorted(self.predictions.values(), key=lambda p: p.seq, reverse=True)

    def output_file(self, path: str) -> StoredFile | None:
        """An output file still within its prediction's retention, or None."""
        stored = self.files.outputs.get(path)
        if stored is not None and stored.prediction_id is not None:
            prediction = self.predictions.get(stored.prediction_id)
            if prediction is not None:
                self._expire_if_due(prediction)
            stored = self.files.outputs.get(path)
        return stored

    def to_json(self, prediction: SimPrediction) -> dict[str, Any]:
        """The prediction exactly as ``GET /v1/predictions/{id}`` returns it (and webhooks send it)."""
        self._expire_if_due(prediction)
        base = self.config.base_url
        metrics: dict[str, Any] = {}
        if prediction.completed_at is not None:
            if prediction.started_at is not None:
                metrics["predict_time"] = _seconds(prediction.started_at, prediction.completed_at)
            metrics["total_time"] = _seconds(prediction.created_at, prediction.completed_at)
        return {
            "id": prediction.id,
            "model": prediction.model.ref,
            "version": prediction.model.version_id,
            "input": prediction.input,
            "logs": prediction.logs,
            "output": prediction.output,
            "data_removed": prediction.data_removed,
            "error": prediction.error,
            "status": prediction.status,
            "created_at": iso(prediction.created_at),
            "started_at": iso(prediction.started_at),
            "completed_at": iso(prediction.completed_at),
            "source": "api",
            "metrics": metrics,
            "urls": {
                "get": f"{base}/v1/predictions/{prediction.id}",
                "cancel": f"{base}/v1/predictions/{prediction.id}/cancel",
                "web": f"{base}/web/p/{prediction.id}",
            },
        }

    # --- commands ---------------------------------------------------------------------------------

    def webhook_body(self, prediction: SimPrediction) -> dict[str, Any]:
        """What a webhook delivery of `prediction` carries (Replicate's: the prediction JSON)."""
        return self.to_json(prediction)

    def render_params(self, prediction: SimPrediction, params: dict[str, Any]) -> dict[str, Any]:
        """The renderer's parameters for a run's effective input (Replicate's models use them as they are).
        Raising PredictionFailure here fails the run before it starts."""
        return params

    def create(
        self, request: PredictionRequest, cancel_after: float | None = None, *, deadline_covers_run: bool = True
    ) -> SimPrediction:
        """Record a new prediction and start running it; it is `starting` on return."""
        self.expire_due()
        self._seq += 1
        prediction = SimPrediction(new_id(), self._seq, request.model, request.input, utcnow(), request.webhook)
        prediction.deadline_covers_run = deadline_covers_run
        self.predictions[prediction.id] = prediction
        self.stats.predictions_created += 1
        if request.webhook:
            prediction.channel = self.webhooks.open(
                prediction.id, request.webhook, request.events, lambda: self.webhook_body(prediction)
            )
        prediction.task = asyncio.create_task(self._run(prediction), name=f"simulator-prediction-{prediction.id}")
        if cancel_after is not None:
            prediction.deadline = asyncio.get_running_loop().call_later(
                cancel_after, self._deadline_reached, prediction
            )
        logger.debug("simulated prediction created", extra={"prediction_id": prediction.id})
        return prediction

    def cancel(self, prediction: SimPrediction) -> None:
        """Cancel a running prediction; a finished one is left as it is."""
        if self._finish(prediction, "canceled") and prediction.task is not None:
            prediction.task.cancel()

    async def wait(self, prediction: SimPrediction, seconds: float) -> None:
        """Return when the prediction is finished or `seconds` have passed, whichever is first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(prediction.done.wait(), seconds)

    def expire_due(self) -> None:
        for prediction in self.predictions.values():
            self._expire_if_due(prediction)

    async def aclose(self) -> None:
        """Stop every running prediction (they stay as they are)."""
        tasks = []
        for prediction in self.predictions.values():
            if prediction.deadline is not None:
                prediction.deadline.cancel()
            if prediction.task is not None and not prediction.task.done():
                prediction.task.cancel()
                tasks.append(prediction.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- lifecycle --------------------------------------------------------------------------------

    def _emit(self, prediction: SimPrediction, event: str) -> None:
        if prediction.channel is not None:
            prediction.channel.notify(event)

    def _finish(self, prediction: SimPrediction, status: str, error: str | None = None) -> bool:
        """Move to a terminal status once; False when the prediction had already finished."""
        if prediction.terminal:
            return False
        prediction.status = status
        prediction.error = error
        prediction.completed_at = utcnow()
        prediction.completed_monotonic = time.monotonic()
        if prediction.deadline is not None:
            prediction.deadline.cancel()
        prediction.done.set()
        self._emit(prediction, "completed")
        logger.debug("simulated prediction %s", status, extra={"prediction_id": prediction.id})
        return True

    def _deadline_reached(self, prediction: SimPrediction) -> None:
        status = "aborted" if prediction.status == "starting" else "canceled"
        if prediction.terminal:
            return
        prediction.timed_out = True
        if self._finish(prediction, status) and prediction.task is not None:
            prediction.task.cancel()

    async def _run(self, prediction: SimPrediction) -> None:
        try:
            await self._execute(prediction)
        except PredictionFailure as exc:
            self._finish(prediction, "failed", str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("simulated prediction crashed", extra={"prediction_id": prediction.id})
            self._finish(prediction, "failed", f"Internal simulator error: {type(exc).__name__}: {exc}")

    async def _execute(self, prediction: SimPrediction) -> None:
        model = prediction.model
        # Waiting for a worker; one that boots then spends its boot time starting, logging as it goes.
        await asyncio.sleep(max(0.0, self.config.start_seconds))
        if model.boots:
            await self._boot(prediction)
        if not prediction.deadline_covers_run and prediction.deadline is not None:
            prediction.deadline.cancel()
        params = self.render_params(prediction, effective_input(model, prediction.input))
        seed = params.get("seed")
        if not isinstance(seed, int):
            seed = self.dice.seed()
        # Drawn after the seed, and only with a spread, so the seeds of runs without jitter stay as they were.
        duration = run_units(model, params) * self.dice.jitter(self.config.run_jitter)
        prediction.status = "processing"
        prediction.started_at = utcnow()
        # A booted model keeps its boot lines above its run's, as Replicate shows a cold start's setup logs.
        prediction.logs = (prediction.logs or "") + f"Using seed: {seed}\n"
        prediction.log_times.append(prediction.started_at)
        # The boot already sent `start`; going `processing` changed the logs.
        self._emit(prediction, "logs" if model.boots else "start")

        source: bytes | None = None
        # Some models take a picture only optionally (a first frame); without one they draw a scene.
        if model.image_field is not None and params.get(model.image_field):
            source = await self._fetch_input(model.image_field, str(params[model.image_field]))
            self._append_log(prediction, f"Loaded {model.image_field} ({len(source)} bytes)")

        steps = max(1, step_count(model, params))
        previews = preview_steps(model, steps)
        began = time.monotonic()
        for step in range(1, steps + 1):
            await asyncio.sleep(max(0.0, self.config.run_seconds) * duration / steps)
            self._append_log(prediction, progress_line(step, steps, time.monotonic() - began))
            if step in previews:
                await self._yield_preview(prediction, params, seed, previews.index(step) + 1, step / steps)

        if self.dice.chance(self.config.fail_rate):
            raise PredictionFailure(
                "Prediction failed: the simulated model crashed (simulator fail_rate "
                f"{self.config.fail_rate:g}). Retrying may succeed."
            )
        try:
            rendered = await asyncio.to_thread(render_outputs, model, params, seed, source)
        except MediaError as exc:
            raise PredictionFailure(f"Invalid {model.image_field}: {exc}") from None
        if prediction.terminal:  # canceled while the thread was rendering
            return
        urls = []
        for output in rendered:
            path = f"/files/{prediction.id}/{output.name}"
            self.files.put_output(path, output.content, output.content_type, prediction.id)
            prediction.file_paths.append(path)
            urls.append(self.config.base_url + path)
        prediction.output = urls if model.renders == "images" else urls[0]
        self._emit(prediction, "output")
        self._finish(prediction, "succeeded")

    async def _boot(self, prediction: SimPrediction) -> None:
        """A cold boot: `starting` for ``config.boot_seconds``, writing a boot line at its start, at even
        intervals and at its end. Replicate sends `start` when the prediction starts, so it comes first."""
        self._emit(prediction, "start")
        lines = boot_lines(prediction.model)
        for index, line in enumerate(lines):
            if index:
                await asyncio.sleep(max(0.0, self.config.boot_seconds) / (len(lines) - 1))
            self._append_log(prediction, line)

    async def _yield_preview(
        self, prediction: SimPrediction, params: dict[str, Any], seed: int, index: int, progress: float
    ) -> None:
        """Store the `index`-th intermediate image and show every one so far as the output, as Replicate
        shows what an iterator model has yielded while it runs."""
        preview = await asyncio.to_thread(render_preview_file, params, seed, index, progress)
        if prediction.terminal:  # canceled while the thread was rendering
            return
        path = f"/files/{prediction.id}/{preview.name}"
        self.files.put_output(path, preview.content, preview.content_type, prediction.id)
        prediction.file_paths.append(path)
        prediction.output = [*(prediction.output or []), self.config.base_url + path]
        self._emit(prediction, "output")

    def _append_log(self, prediction: SimPrediction, line: str) -> None:
        prediction.logs = (prediction.logs or "") + line + "\n"
        prediction.log_times.append(utcnow())
        self._emit(prediction, "logs")

    async def _fetch_input(self, field_name: str, value: str) -> bytes:
        """The bytes an image input names: a ``data:`` URI, or an http(s) URL fetched with retries on 5xx."""
        if value.startswith("data:"):
            header, _, payload = value.partition(",")
            try:
                if header.endswith(";base64"):
                    return base64.b64decode(payload, validate=False)
                return unquote_to_bytes(payload)
            except ValueError as exc:
                raise PredictionFailure(f"Could not decode the data URI in {field_name}: {exc}") from None
        if not self.config.allow_private_inputs:
            refusal = (await self._vet(value, non_public_reason)).refusal
            if refusal is not None:
                raise PredictionFailure(
                    f"Failed to download {field_name} from {value}: {refusal}, which cannot be reached from the "
                    f"internet. Pass a public URL, {self.upload_hint} or send it as a data: URI."
                )
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                return await self._fetch_following_redirects(value)
            except _FetchFailed as failed:
                logger.debug("simulator input fetch failed", extra={"url": value, "reason": str(failed)})
                if not failed.retryable:
                    break
            if attempt < FETCH_ATTEMPTS:
                await asyncio.sleep(FETCH_RETRY_SECONDS * attempt)
        # One message whatever went wrong (refused, closed, filtered, an error status, a redirect to a
        # private address): a caller must not learn which addresses and ports answer.
        raise PredictionFailure(f"Failed to download {field_name} from {value}: {self.input_fetch_failed}")

    async def _fetch_following_redirects(self, url: str) -> bytes:
        """GET `url`, following at most MAX_INPUT_REDIRECTS redirects, each to a public address only.

        Every hop is fetched from the address it was vetted at, so a name that resolves differently the
        second time (DNS rebinding) cannot lead it elsewhere."""
        for hop in range(MAX_INPUT_REDIRECTS + 1):
            # A private first URL is the embedded simulator's own server; a link-local one never is (a cloud's
            # metadata service lives there). Any later hop must be public.
            judge = link_local_reason if hop == 0 and self.config.allow_private_inputs else non_public_reason
            vetted = await self._vet(url, judge)
            if vetted.refusal is not None:
                raise _FetchFailed(vetted.refusal, retryable=False)
            if vetted.unresolved:
                raise _FetchFailed(f"{urlparse(url).hostname} does not resolve", retryable=True)
            try:
                async with self._opened(vetted) as response:
                    if response.is_redirect:
                        url = _redirect_target(url, response)
                        continue
                    if response.status_code != 200:
                        raise _FetchFailed(f"HTTP {response.status_code}", retryable=response.status_code >= 500)
                    content = bytearray()
                    async for chunk in response.aiter_bytes():
                        content += chunk
                        if len(content) > MAX_INPUT_BYTES:
                            raise _FetchFailed(f"over {MAX_INPUT_BYTES} bytes", retryable=False)
                    return bytes(content)
            except (httpx.HTTPError, ValueError) as exc:
                raise _FetchFailed(f"{type(exc).__name__}: {exc}", retryable=True) from None
        raise _FetchFailed(f"more than {MAX_INPUT_REDIRECTS} redirects", retryable=False)

    @contextlib.asynccontextmanager
    async def _opened(self, vetted: _Vetted) -> AsyncIterator[httpx.Response]:
        """The response of the first of `vetted`'s addresses that takes the connection, streamed."""
        refused: httpx.ConnectError | None = None
        for request in vetted.requests(self.http):
            try:
                response = await self.http.send(request, stream=True, follow_redirects=False)
            except httpx.ConnectError as exc:
                refused = exc
                continue
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise refused or httpx.ConnectError("no address to connect to")

    async def _vet(self, url: str, judge: Callable[[str], str | None]) -> _Vetted:
        """Whether `url` may be fetched: what `judge` says of its host, by name and of every address it
        resolves to (the simulator's own files always may), and the address to fetch it from."""
        if url.startswith(self.config.base_url + "/"):
            return _Vetted(url)
        parsed = urlparse(url)
        host = parsed.hostname or ""
        reason = judge(host)
        if reason is not None:
            return _Vetted(url, refusal=f"{host or 'the URL'} is {reason}")
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            addresses = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, ValueError):
            # Never fetched by name instead: a name that fails once and then resolves to a private address
            # (DNS rebinding) would reach it.
            return _Vetted(url, unresolved=True)
        for *_, address in addresses:
            reason = judge(str(address[0]))
            if reason is not None:
                return _Vetted(url, refusal=f"{host} resolves to {address[0]}, {reason}")
        pinned = tuple(dict.fromkeys(str(address[0]) for *_, address in addresses))
        return _Vetted(url, pinned=pinned)

    def _expire_if_due(self, prediction: SimPrediction) -> None:
        completed = prediction.completed_monotonic
        if prediction.data_removed or completed is None:
            return
        if time.monotonic() - completed < self.config.output_ttl_seconds:
            return
        prediction.data_removed = True
        prediction.output = None
        prediction.input = {}
        prediction.logs = None
        self.files.remove_outputs(prediction.file_paths)


def _seconds(start: datetime, end: datetime) -> float:
    return round((end - start).total_seconds(), 6)
