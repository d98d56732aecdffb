"""provider_status holds up to 64 characters: statuses Darkroom does not know are stored as sent

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite does not enforce VARCHAR lengths: nothing to change there.
    if op.get_context().dialect.name == "sqlite":
        return
    op.alter_column("generations", "provider_status", type_=sa.String(length=64), existing_type=sa.String(length=16))


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    op.execute("UPDATE generations SET provider_status = left(provider_status, 16)")
    op.alter_column("generations", "provider_status", type_=sa.String(length=16), existing_type=sa.String(length=64))
