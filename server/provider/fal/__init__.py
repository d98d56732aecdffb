"""fal (fal.ai) as Darkroom's provider: its queue API client, its statuses, its ED25519 webhook signing,
its model listing and OpenAPI documents, and how its refusals read as Darkroom's error codes. A
simulator playing fal over its real HTTP API lives in `server.provider.fal.simulator`."""

from server.provider.fal.client import FalClient
from server.provider.fal.provider import FalProvider

__all__ = ["FalClient", "FalProvider"]
