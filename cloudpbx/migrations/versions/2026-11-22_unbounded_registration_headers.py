"""Registration Call-ID, User-Agent and +sip.instance as TEXT.

Rules:
- RFC 3261 bounds none of these header values. They were VARCHAR(256): SQLite ignores
  the length, PostgreSQL refuses the row (StringDataRightTruncation) and with it the
  registrar's whole write-behind batch, other phones' bindings included.
- Widening only: no data changes; batch mode on SQLite (table copy), ALTER COLUMN ...
  TYPE on PostgreSQL. The downgrade narrows them again (it fails on PostgreSQL if a
  longer value was stored since, which is the honest outcome).

Revision ID: 3c5e0f7a9b21
Revises: b169830fa712
Create Date: 2026-11-22 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3c5e0f7a9b21"
down_revision: str | Sequence[str] | None = "b169830fa712"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (("call_id", False), ("instance_id", True), ("user_agent", True))


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("registration", schema=None) as batch_op:
        for name, nullable in _COLUMNS:
            batch_op.alter_column(
                name, existing_type=sa.String(length=256), type_=sa.Text(),
                existing_nullable=nullable,
            )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("registration", schema=None) as batch_op:
        for name, nullable in _COLUMNS:
            batch_op.alter_column(
                name, existing_type=sa.Text(), type_=sa.String(length=256),
                existing_nullable=nullable,
            )
