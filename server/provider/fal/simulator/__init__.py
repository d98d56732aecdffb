"""A fal simulator: a real HTTP service shaped like the parts of fal's APIs Darkroom uses (queue,
storage, model listing and OpenAPI documents, signed webhooks and their JWKS).

It runs its requests on the shared simulator core (`server.simulator`: engine, renderer, file store,
webhook delivery, knobs, stats and test controls); only fal's routes and JSON are its own.
"""

from server.provider.fal.simulator.config import FalSimulatorConfig
from server.provider.fal.simulator.service import FalSimulator

__all__ = ["FalSimulator", "FalSimulatorConfig"]
