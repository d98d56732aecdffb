"""generations.provider names the provider that runs each generation; rows from before say Replicate

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The server default fills the rows already there: every one of them ran on Replicate (or its simulator).
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("provider", sa.String(length=32), nullable=False, server_default="replicate"))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("provider")
