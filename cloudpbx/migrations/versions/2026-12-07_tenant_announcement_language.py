"""A tenant's announcement language (cloud PBX refusals and voicemail greeting).

Rules:
- Adds `tenant.announcement_language`: `ja` or `en`, the language of the recordings the
  switch plays on the tenant's cloud PBX calls (`<kind>_<language>.wav`). It is stored
  as its string value with a named CHECK, like every enum of the store.
- The server default `ja` keeps every existing tenant as it was (Japanese for all); the
  downgrade drops the CHECK and the column.

Revision ID: e3a7c5f19b42
Revises: b6f0c2d4e8a1
Create Date: 2026-12-07 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "e3a7c5f19b42"
down_revision: str | Sequence[str] | None = "b6f0c2d4e8a1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "announcement_language",
                sa.String(length=32),
                server_default="ja",
                nullable=False,
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_tenant_announcement_language"),
            "announcement_language IN ('ja', 'en')",
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_tenant_announcement_language"), type_="check")
        batch_op.drop_column("announcement_language")
