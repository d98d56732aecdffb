"""Several providers: a job's id is unique per provider and no provider is the default, its place in the
provider's queue is kept, old events say their provider, and the model cache is keyed by provider and ref

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.db.models import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _models_table(*key_and_columns: sa.Column[object] | sa.PrimaryKeyConstraint) -> None:
    op.create_table(
        "models",
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("collections", sa.JSON(), nullable=False),
        sa.Column("version_id", sa.String(length=100), nullable=True),
        sa.Column("input_schema", sa.JSON(), nullable=True),
        sa.Column("output_schema", sa.JSON(), nullable=True),
        sa.Column("accepts_image", sa.Boolean(), nullable=False),
        sa.Column("image_input_field", sa.String(length=100), nullable=True),
        sa.Column("cover_image_url", sa.Text(), nullable=True),
        sa.Column("run_count", sa.BigInteger(), nullable=True),
        sa.Column("fetched_at", UTCDateTime(timezone=True), nullable=False),
        *key_and_columns,
    )
    op.create_index(op.f("ix_models_kind"), "models", ["kind"], unique=False)


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_constraint("uq_generations_provider_id", type_="unique")
        batch.create_unique_constraint("uq_generations_provider_provider_id", ["provider", "provider_id"])
        batch.add_column(sa.Column("queue_position", sa.Integer(), nullable=True))
        # Every generation says which provider runs it: there is no default one any more.
        batch.alter_column("provider", existing_type=sa.String(length=32), server_default=None)
    # Events logged before carry no provider in their snapshot; they get their generation's.
    provider = "(SELECT provider FROM generations WHERE generations.id = events.generation_id)"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE events SET payload ="
            f" jsonb_set(payload::jsonb, '{{generation,provider}}', to_jsonb({provider}))::json"
            " WHERE payload::jsonb ? 'generation'"
        )
    else:
        op.execute(
            f"UPDATE events SET payload = json_set(payload, '$.generation.provider', {provider})"
            " WHERE json_type(payload, '$.generation') = 'object'"
        )
    # The model table is a cache: it is made again, empty, with its new key, and refills from the providers.
    # Whether a model runs by its name is now its description's (no version to run by).
    op.drop_index(op.f("ix_models_kind"), table_name="models")
    op.drop_table("models")
    _models_table(
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("example", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("provider", "ref", name=op.f("pk_models")),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_models_kind"), table_name="models")
    op.drop_table("models")
    _models_table(
        sa.Column("is_official", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("ref", name=op.f("pk_models")),
    )
    with op.batch_alter_table("generations") as batch:
        batch.alter_column("provider", existing_type=sa.String(length=32), server_default="replicate")
        batch.drop_column("queue_position")
        batch.drop_constraint("uq_generations_provider_provider_id", type_="unique")
        batch.create_unique_constraint("uq_generations_provider_id", ["provider_id"])
