"""Spend control: Darkroom's own queue, per-key limits and budgets, a generation's cost and metadata, and
idempotency keys for the creating mutations

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.db.models import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every column starts empty: rows from before were never queued, priced, limited or tagged.
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("client_metadata", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("queue_reason", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("queue_not_before", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("queued_input", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("dispatched_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cost_amount", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cost_currency", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("cost_basis", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("cost_estimated", sa.Boolean(), nullable=True))
        batch.create_index("ix_generations_status_owner_created", ["status", "owner_id", "created_at", "id"])
        batch.create_index("ix_generations_owner_dispatched", ["owner_id", "dispatched_at"])
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("client_metadata", sa.JSON(), nullable=True))
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("max_running", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("budget_amount", sa.Float(), nullable=True))
        batch.add_column(sa.Column("budget_period", sa.String(length=16), nullable=True))
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("operation", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("result_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("api_keys") as batch:
        for column in ("budget_period", "budget_amount", "max_running"):
            batch.drop_column(column)
    with op.batch_alter_table("media") as batch:
        batch.drop_column("client_metadata")
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_owner_dispatched")
        batch.drop_index("ix_generations_status_owner_created")
        for column in (
            "cost_estimated",
            "cost_basis",
            "cost_currency",
            "cost_amount",
            "dispatched_at",
            "queued_input",
            "queue_not_before",
            "queue_reason",
            "client_metadata",
        ):
            batch.drop_column(column)
