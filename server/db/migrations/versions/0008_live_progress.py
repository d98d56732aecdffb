"""Live progress: a generation's phase, steps, expected finish and its basis, the input bucket its duration
is learned by, and its previews

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.db.models import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows from before show no phase of their own (it is read from their status), no steps, no estimate.
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("phase", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("step", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("total_steps", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("expected_finish_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("eta_basis", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("duration_bucket", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("previews", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("previews_seen", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("yields_previews", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index("ix_generations_history", ["model_ref", "duration_bucket", "completed_at"])


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_history")
        for column in (
            "yields_previews",
            "previews_seen",
            "previews",
            "duration_bucket",
            "eta_basis",
            "expected_finish_at",
            "total_steps",
            "step",
            "phase",
        ):
            batch.drop_column(column)
