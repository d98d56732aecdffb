"""The providers the pipeline's tests run on: for each, its models, the inputs they take, and its
simulator's controls. Tests take the `on_provider` fixture to run once per provider."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from server.provider.types import JobRef, PredictionUpdate
from server.simulator.service import SimulatorCore
from tests.support.darkroom import Darkroom
from tests.support.live_server import free_port, live_server

# The `start_darkroom` fixture: `async with start_darkroom(**settings) as darkroom:`.
StartDarkroom = Callable[..., AbstractAsyncContextManager[Darkroom]]


@dataclass(frozen=True)
class ProviderCase:
    """One provider as the tests use it: `settings` run a Darkroom on it alone, its embedded simulator
    answering at `simulator_path`."""

    name: str
    simulator_path: str
    image_model: str
    video_model: str
    animate_model: str
    # The input of `animate_model` that takes the image.
    animate_field: str
    # The inputs that ask `image_model` for two PNG files.
    two_pngs: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        return {"providers": self.name}

    def simulator(self, darkroom: Darkroom) -> SimulatorCore:
        simulator = darkroom.runtime.simulators.get(self.name)
        assert isinstance(simulator, SimulatorCore), simulator
        return simulator

    async def configure(self, darkroom: Darkroom, **knobs: Any) -> None:
        """Change the simulator's knobs over its test controls."""
        response = await darkroom.http.patch(f"{self.simulator_path}/_control/config", json=knobs)
        assert response.status_code == 200, response.text

    async def stats(self, darkroom: Darkroom) -> dict[str, Any]:
        response = await darkroom.http.get(f"{self.simulator_path}/_control/stats")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def job(self, darkroom: Darkroom, job_id: str, model_ref: str) -> PredictionUpdate:
        """The job as the provider tells it now."""
        return await darkroom.runtime.providers.get(self.name).get(JobRef(job_id, model_ref))

    def failed_delivery(self, job_id: str) -> bytes:
        """The body of a webhook that ends the job FAILED, as the provider writes it."""
        if self.name == "replicate":
            body: dict[str, Any] = {"id": job_id, "status": "failed", "error": "out of memory", "logs": ""}
        else:
            body = {"request_id": job_id, "status": "ERROR", "error": "Invalid status code: 500", "payload": {}}
        return json.dumps(body).encode()

    async def sign(
        self, darkroom: Darkroom, job_id: str, body: bytes, *, at: int | None = None, forged: bool = False
    ) -> dict[str, str]:
        """The headers the provider signs `body` with (sent at `at`), or with a key that is not its own."""
        if self.name == "replicate":
            from server.provider.replicate.signing import sign_webhook as sign_replicate

            secret = "whsec_" + base64.b64encode(os.urandom(24)).decode() if forged else None
            secret = secret or await darkroom.replicate.webhook_secret()
            return sign_replicate(secret, f"msg_{job_id}", body, at)
        from server.provider.fal.signing import new_private_key_text, private_key_from_text
        from server.provider.fal.signing import sign_webhook as sign_fal

        config = self.simulator(darkroom).config
        key_text = new_private_key_text() if forged else config.webhook_signing_key  # type: ignore[attr-defined]
        user = config.webhook_user_id  # type: ignore[attr-defined]
        return sign_fal(private_key_from_text(key_text), job_id, user, body, timestamp=at)

    @asynccontextmanager
    async def behind_a_separate_simulator(
        self, start_darkroom: StartDarkroom
    ) -> AsyncIterator[tuple[Darkroom, SimulatorCore]]:
        """Darkroom with a token and no PUBLIC_URL, talking to a simulator of its own: as with the real
        provider, nothing fetches from Darkroom, and no webhook reaches it."""
        from server.provider.fal.simulator import FalSimulator, FalSimulatorConfig
        from server.provider.replicate.simulator import Simulator
        from server.simulator import SimulatorConfig

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        simulator: SimulatorCore = (
            Simulator(SimulatorConfig(public_base_url=base_url, run_seconds=0.3, start_seconds=0.05))
            if self.name == "replicate"
            else FalSimulator(FalSimulatorConfig(public_base_url=base_url, run_seconds=0.3, start_seconds=0.05))
        )
        try:
            async with live_server(simulator.app, port) as url:
                settings = (
                    {"replicate_api_token": "r8_test", "replicate_api_base_url": url, "replicate_file_hosts": url}
                    if self.name == "replicate"
                    else {"fal_key": "test-key", "fal_base_url": url, "fal_file_hosts": url}
                )
                async with start_darkroom(**self.settings, **settings) as darkroom:
                    yield darkroom, simulator
        finally:
            await simulator.aclose()


PROVIDER_CASES = {
    "replicate": ProviderCase(
        "replicate",
        "/simulator",
        image_model="darkroom-sim/pixel-forge",
        video_model="darkroom-sim/motion-sketch",
        animate_model="darkroom-sim/still-motion",
        animate_field="image",
        two_pngs={"num_outputs": 2, "output_format": "png"},
    ),
    "fal": ProviderCase(
        "fal",
        "/fal-simulator",
        image_model="fal-ai/flux/schnell",
        video_model="fal-ai/kling-video/v2.1/master/text-to-video",
        animate_model="fal-ai/kling-video/v2.1/standard/image-to-video",
        animate_field="image_url",
        two_pngs={"num_images": 2, "output_format": "png"},
    ),
}
