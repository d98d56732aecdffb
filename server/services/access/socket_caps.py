"""Caps on open subscription streams, counted in this process.

A WebSocket is pending from its handshake until its connection_init: at most MAX_PENDING_SOCKETS wait at
once (GRAPHQL_CONNECTION_INIT_TIMEOUT_SECONDS closes each after a while; the cap bounds how many pile up
meanwhile). Once its key is known, a stream (a WebSocket or a multipart/mixed response) counts against
that key: at most MAX_SOCKETS_PER_KEY each. The open server's anonymous caller has no key to count against.
"""

from __future__ import annotations

import uuid
from collections import Counter

from server.services.access.viewer import Viewer
from server.settings import Settings


class SocketCaps:
    def __init__(self, max_pending: int, max_per_key: int) -> None:
        self.max_pending = max_pending
        self.max_per_key = max_per_key
        self.pending = 0
        self.per_key: Counter[uuid.UUID] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings) -> SocketCaps:
        return cls(settings.graphql.max_pending_sockets, settings.graphql.max_sockets_per_key)

    def admit(self) -> SocketSlot | None:
        """A place for a new WebSocket, pending until `initialised`; None when too many are pending."""
        if self.pending >= self.max_pending:
            return None
        self.pending += 1
        return SocketSlot(self, pending=True)

    def stream(self, viewer: Viewer) -> SocketSlot | None:
        """A place for a stream whose caller is known already; None when its key has no more."""
        slot = SocketSlot(self, pending=False)
        return slot if slot.claim(viewer) else None


class SocketSlot:
    """One stream's place: pending, then (maybe) counted against a key, until `release`."""

    def __init__(self, caps: SocketCaps, *, pending: bool) -> None:
        self._caps = caps
        self.pending = pending
        self._owner: uuid.UUID | None = None

    def initialised(self) -> None:
        """The socket said connection_init: it no longer counts as pending."""
        if self.pending:
            self.pending = False
            self._caps.pending -= 1

    def claim(self, viewer: Viewer) -> bool:
        """Count the stream against `viewer`'s key; False (and not counted) when that key has no place left."""
        if viewer.owner_id == self._owner:
            return True
        self._drop_owner()
        if viewer.owner_id is None:
            return True
        if self._caps.per_key[viewer.owner_id] >= self._caps.max_per_key:
            return False
        self._caps.per_key[viewer.owner_id] += 1
        self._owner = viewer.owner_id
        return True

    def release(self) -> None:
        self.initialised()
        self._drop_owner()

    def _drop_owner(self) -> None:
        if self._owner is not None:
            self._caps.per_key[self._owner] -= 1
            if self._caps.per_key[self._owner] <= 0:
                del self._caps.per_key[self._owner]
            self._owner = None
