"""What every service of the media room works with, and the one way they find a caller's media."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.db.models import Media
from server.services.access.viewer import Viewer
from server.services.errors import NotFound
from server.services.event_log.events import Publish
from server.settings import Settings
from server.storage.port import MediaStorage


class StoredMediaService:
    """A service over media rows and their stored files: the settings, the database, the store, the feed."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        storage: MediaStorage,
        publish: Publish,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._storage = storage
        self._publish = publish


async def visible_media(session: AsyncSession, media_id: uuid.UUID, viewer: Viewer, *, lock: bool = False) -> Media:
    """The media row, if `viewer` may see it (locked for update with `lock`); else NotFound at mediaId.

    Media the caller may not see is reported exactly like media that does not exist."""
    statement = select(Media).where(Media.id == media_id)
    media = (await session.scalars(statement.with_for_update() if lock else statement)).first()
    if media is None or not viewer.can_see(media.owner_id):
        raise NotFound("media", ["mediaId"])
    return media
