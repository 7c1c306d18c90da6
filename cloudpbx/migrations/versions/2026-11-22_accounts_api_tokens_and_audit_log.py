"""Customer Control accounts, API tokens and the audit log (issue 4, first slice).

Rules:
- Three new tables, nothing existing changes: no data migration.
- Portable: `account.role` is a VARCHAR with a named CHECK (as every enum here), the two
  account CHECKs use plain SQL both SQLite and PostgreSQL accept, Boolean is BOOLEAN on
  PostgreSQL and an integer on SQLite, JSON is json / TEXT. Indexes are created in batch
  mode as the other revisions do (plain CREATE INDEX outside SQLite).
- Downgrade drops the three tables: every account, token and audit row is lost.

Revision ID: b169830fa712
Revises: 8b72318540a5
Create Date: 2026-11-22 08:23:55.617451
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b169830fa712"
down_revision: str | Sequence[str] | None = "8b72318540a5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("login", sa.String(length=128), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "operator",
                "tenant_admin",
                "user",
                "tollfree_viewer",
                name="account_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("extension_id", sa.Integer(), nullable=True),
        sa.Column("failed_login_count", sa.Integer(), nullable=False),
        sa.Column("failed_login_window_start", sa.Float(), nullable=True),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.Column("password_changed_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "(role = 'operator' AND tenant_id IS NULL)"
            " OR (role <> 'operator' AND tenant_id IS NOT NULL)",
            name=op.f("ck_account_tenant_unless_operator"),
        ),
        sa.CheckConstraint(
            "extension_id IS NULL OR role = 'user'", name=op.f("ck_account_extension_only_for_user")
        ),
        sa.ForeignKeyConstraint(
            ["extension_id"],
            ["extension.id"],
            name=op.f("fk_account_extension_id_extension"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_account_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("login", name=op.f("uq_account_login")),
    )
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_account_extension_id"), ["extension_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_account_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_api_token_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_token")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_token_token_sha256")),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_token_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=True),
        sa.Column("actor_account_id", sa.Integer(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("remote_address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_account_id"],
            ["account.id"],
            name=op.f("fk_audit_log_actor_account_id_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_audit_log_tenant_id_tenant"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_log_actor_account_id"), ["actor_account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
        batch_op.drop_index(batch_op.f("ix_audit_log_actor_account_id"))

    op.drop_table("audit_log")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_expires_at"))
        batch_op.drop_index(batch_op.f("ix_api_token_account_id"))

    op.drop_table("api_token")
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_account_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_account_extension_id"))

    op.drop_table("account")
