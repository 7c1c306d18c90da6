"""Whole bindings and switch secrets: registration q, Contact parameters and times;
the switch_secret table (the digest nonce key kept across restarts).

Rules:
- The new registration columns are nullable, so the upgrade needs no data migration:
  a row written before it loads as it did (q absent, only `+sip.instance` kept from
  `instance_id`, times = load time) until the phone's next refresh rewrites it whole.
- Portable: plain ADD COLUMN (batch mode on SQLite, ALTER TABLE on PostgreSQL), JSON
  (TEXT on SQLite, json on PostgreSQL) and LargeBinary (BLOB / bytea).

Revision ID: 8b72318540a5
Revises: 1dd41227fb59
Create Date: 2026-11-22 08:02:51.267999
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "8b72318540a5"
down_revision: str | Sequence[str] | None = "1dd41227fb59"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "switch_secret",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(length=256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_switch_secret")),
    )
    with op.batch_alter_table("registration", schema=None) as batch_op:
        batch_op.add_column(sa.Column("q", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("contact_parameters", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("registered_at", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.Float(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("registration", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
        batch_op.drop_column("registered_at")
        batch_op.drop_column("contact_parameters")
        batch_op.drop_column("q")
    op.drop_table("switch_secret")
