"""Toll-free call records: one row per finished toll-free call (issue 5 part 6).

Rules:
- Adds only one table, `tollfree_call_record`, with no foreign key (records outlive the
  number and tenant they name) and a unique `call_id` (a replayed record is written
  once). The category is a string enum with a named CHECK, like every enum of the store.
- The downgrade drops the table: the call records and the statistics are lost.

Revision ID: 7a4c1e9b2d63
Revises: 5d2e8c41a7f0
Create Date: 2026-11-30 03:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7a4c1e9b2d63"
down_revision: str | Sequence[str] | None = "5d2e8c41a7f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "tollfree_call_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=256), nullable=False),
        sa.Column("tollfree_number", sa.String(length=16), nullable=False),
        sa.Column("tenant_name", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=True),
        sa.Column(
            "category",
            sa.Enum(
                "connected",
                "after_hours",
                "busy",
                "out_of_area",
                "abandoned",
                "other",
                name="tollfree_call_category",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("final_status", sa.Integer(), nullable=False),
        sa.Column("arrival_time", sa.Float(), nullable=False),
        sa.Column("answer_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tollfree_call_record")),
        sa.UniqueConstraint("call_id", name=op.f("uq_tollfree_call_record_call_id")),
    )
    with op.batch_alter_table("tollfree_call_record", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tollfree_call_record_tollfree_number_arrival_time",
            ["tollfree_number", "arrival_time"],
            unique=False,
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tollfree_call_record", schema=None) as batch_op:
        batch_op.drop_index("ix_tollfree_call_record_tollfree_number_arrival_time")
    op.drop_table("tollfree_call_record")
