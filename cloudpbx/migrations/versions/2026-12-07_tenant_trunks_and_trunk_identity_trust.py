"""A tenant's outbound carrier trunks and a trunk's identity trust.

Rules:
- Adds `tenant.pstn_trunk` and `tenant.mobile_trunk`: the names of the carrier-wide
  `pstn` / `mobile_network` trunks the tenant's outbound calls leave on. Names, not
  foreign keys (a tenant -> trunk key would close a cycle with `trunk.tenant_id`); the
  writers check them (`cloudpbx.models` rules). Null, every existing tenant: the
  carrier-wide default, as before.
- Adds `trunk.identity_trusted`: whether the peer is in our trust domain for the
  identities we send it (RFC 3325 §2). Null, every existing trunk: by its kind, as before.
- The downgrade drops the three columns.

Revision ID: 4d8b2f6a9c31
Revises: e3a7c5f19b42
Create Date: 2026-12-07 23:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "4d8b2f6a9c31"
down_revision: str | Sequence[str] | None = "e3a7c5f19b42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pstn_trunk", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("mobile_trunk", sa.String(length=64), nullable=True))
    with op.batch_alter_table("trunk", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_trusted", sa.Boolean(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("trunk", schema=None) as batch_op:
        batch_op.drop_column("identity_trusted")
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_column("mobile_trunk")
        batch_op.drop_column("pstn_trunk")
