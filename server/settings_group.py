"""`SettingsGroup`: one area's settings, the base of every group `server.settings.Settings` holds.

Providers declare theirs beside their adapters (server/provider/<name>/settings.py) on the same base.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsGroup(BaseModel):
    """One area's settings; each field's alias is its environment variable."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
