"""Trunk header names and the toll-free no-answer timeout (issues 5 and 6).

Rules:
- `trunk.caller_area_header`: the header in which a trusted trunk asserts the caller's
  charging area (issue 5 part 5); null: the area comes from the caller's number.
- `trunk.abroad_header`: the header whose presence on a mobile trunk's request says the
  line is abroad (issue 6 part 6); null: only the stored `abroad` state counts.
- `tollfree_number.no_answer_timeout_seconds` (5-300, named CHECK, default 30): how long
  a toll-free call rings in all before the caller gets 480.
- Every column has a default, so existing rows stay valid; the downgrade drops them.

Revision ID: 9d1e5b7c3a20
Revises: 7a4c1e9b2d63
Create Date: 2026-11-30 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9d1e5b7c3a20"
down_revision: str | Sequence[str] | None = "7a4c1e9b2d63"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("trunk", schema=None) as batch_op:
        batch_op.add_column(sa.Column("caller_area_header", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("abroad_header", sa.String(length=64), nullable=True))
    with op.batch_alter_table("tollfree_number", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "no_answer_timeout_seconds", sa.Integer(), server_default="30", nullable=False
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_tollfree_number_no_answer_timeout_range"),
            "no_answer_timeout_seconds BETWEEN 5 AND 300",
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tollfree_number", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_tollfree_number_no_answer_timeout_range"), type_="check")
        batch_op.drop_column("no_answer_timeout_seconds")
    with op.batch_alter_table("trunk", schema=None) as batch_op:
        batch_op.drop_column("abroad_header")
        batch_op.drop_column("caller_area_header")
