"""The built-in Replicate simulator: a real HTTP service shaped like the part of Replicate's API we use.

`Simulator(config).app` is a Litestar app with routes from ``/v1/...`` (see app.py for every route and
the ``/_control`` test endpoints); `serve_simulator` runs one standalone. Models are owned by
``darkroom-sim`` (catalogue.py), predictions run in asyncio tasks (engine.py) and produce real PNG/WebP/
JPEG images and H.264 MP4 videos (media.py), and signed webhooks are delivered with configurable faults
(webhooks.py).
"""

from server.simulator.config import SimulatorConfig
from server.simulator.service import Simulator, serve_simulator

__all__ = ["Simulator", "SimulatorConfig", "serve_simulator"]
