"""generations.predict_time keeps the provider's run time; models.is_official says how a model is run

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from server.db.models import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows from before have no run time: the provider's metrics were not kept.
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("predict_time", sa.Float(), nullable=True))
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("is_official", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Cached models are marked stale, so the catalogue refetches them (still serving them meanwhile) and
    # learns which are official before long.
    models = sa.table("models", sa.column("fetched_at", UTCDateTime(timezone=True)))
    op.execute(models.update().values(fetched_at=datetime(2000, 1, 1, tzinfo=UTC)))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("is_official")
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("predict_time")
