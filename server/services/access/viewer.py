"""Who is asking: the API key behind a request, and what it may see.

The visibility rule lives here, in the two forms its callers need: `can_see` for a row or an event in
hand, `visible` for the where-clause of a statement. Every query, subscription and statistic uses them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, false, true
from sqlalchemy.orm import InstrumentedAttribute


@dataclass(frozen=True, slots=True)
class Viewer:
    """`owner_id` None with `sees_all` True is the open server (no API keys) or the system itself."""

    owner_id: uuid.UUID | None
    sees_all: bool = False

    @classmethod
    def system(cls) -> Viewer:
        return cls(owner_id=None, sees_all=True)

    @classmethod
    def anonymous(cls) -> Viewer:
        """The caller of an open server: sees and owns everything that has no owner."""
        return cls(owner_id=None, sees_all=True)

    @classmethod
    def nobody(cls) -> Viewer:
        """A caller not yet (or not) authenticated: sees nothing at all."""
        return cls(owner_id=None, sees_all=False)

    @classmethod
    def key(cls, owner_id: uuid.UUID) -> Viewer:
        return cls(owner_id=owner_id, sees_all=False)

    def can_see(self, owner_id: uuid.UUID | None) -> bool:
        """Everything for the open server and the system, its own for a key, nothing without a key."""
        return self.sees_all or (owner_id is not None and owner_id == self.owner_id)

    def visible(self, owner_column: InstrumentedAttribute[uuid.UUID | None]) -> ColumnElement[bool]:
        """`can_see` as SQL: true for the rows whose `owner_column` this viewer may see."""
        if self.sees_all:
            return true()
        if self.owner_id is None:
            return false()
        return owner_column == self.owner_id
