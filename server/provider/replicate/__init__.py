"""Replicate as Darkroom's provider: its HTTP client, its prediction format and statuses, its webhook
signing, its retry rules and how its refusals read as Darkroom's error codes."""

from server.provider.replicate.client import ReplicateClient
from server.provider.replicate.provider import ReplicateProvider

__all__ = ["ReplicateClient", "ReplicateProvider"]
