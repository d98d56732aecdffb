"""The simulators' shared core: real HTTP services shaped like the parts of the providers' APIs Darkroom
uses, for development and tests.

`SimulatorCore` (service.py) wires the parts every simulator has: the prediction engine (engine.py),
which produces real PNG/WebP/JPEG images and H.264 MP4 videos (media.py), the file store, signed
webhooks delivered with configurable faults (webhooks.py), knobs (config.py), stats and the ``/_control``
test endpoints (serving.py). Replicate's routes are app.py and its models catalogue.py
(`server.provider.replicate.simulator.Simulator` puts them together); fal's simulator is in its package.
"""

from server.simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig"]
