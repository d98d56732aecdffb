"""generations.predict_time keeps the provider's run time; models.is_official says how a model is run

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows from before have no run time: the provider's metrics were not kept.
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("predict_time", sa.Float(), nullable=True))
    # Cached models are refetched within the catalogue's TTL, which sets the flag from the provider.
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("is_official", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("is_official")
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("predict_time")
