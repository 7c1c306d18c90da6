"""Initial schema: tenants, sites, extensions, SIP credentials, trunks, registrations.

Revision ID: 1dd41227fb59
Revises: (none)
Create Date: 2026-11-22 05:21:21.921433
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "1dd41227fb59"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "registration",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_of_record", sa.String(length=1024), nullable=False),
        sa.Column("contact_uri", sa.String(length=1024), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("call_id", sa.String(length=256), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("received_host", sa.String(length=64), nullable=False),
        sa.Column("received_port", sa.Integer(), nullable=False),
        sa.Column(
            "transport",
            sa.Enum(
                "udp",
                "tcp",
                "tls",
                name="transport",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("instance_id", sa.String(length=256), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registration")),
        sa.UniqueConstraint(
            "address_of_record",
            "contact_uri",
            name=op.f("uq_registration_address_of_record_contact_uri"),
        ),
    )
    with op.batch_alter_table("registration", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_registration_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "tenant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("contract_holder_name", sa.String(length=256), nullable=False),
        sa.Column("sip_domain", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
        sa.UniqueConstraint("name", name=op.f("uq_tenant_name")),
        sa.UniqueConstraint("sip_domain", name=op.f("uq_tenant_sip_domain")),
    )
    op.create_table(
        "site",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_site_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_site")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_site_tenant_id_name")),
    )
    op.create_table(
        "trunk",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column(
            "transport",
            sa.Enum(
                "udp",
                "tcp",
                "tls",
                name="transport",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_trunk_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trunk")),
        sa.UniqueConstraint("name", name=op.f("uq_trunk_name")),
    )
    with op.batch_alter_table("trunk", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trunk_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "extension",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "fixed_ip_phone",
                "mobile",
                "customer_pbx",
                name="extension_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("digest_algorithms", sa.JSON(), nullable=True),
        sa.Column("no_answer_timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("static_contact_uri", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_extension_site_id_site"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_extension_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extension")),
        sa.UniqueConstraint("tenant_id", "number", name=op.f("uq_extension_tenant_id_number")),
    )
    with op.batch_alter_table("extension", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_extension_site_id"), ["site_id"], unique=False)

    op.create_table(
        "trunk_source_address",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trunk_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["trunk_id"],
            ["trunk.id"],
            name=op.f("fk_trunk_source_address_trunk_id_trunk"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trunk_source_address")),
    )
    with op.batch_alter_table("trunk_source_address", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_trunk_source_address_trunk_id"), ["trunk_id"], unique=False
        )

    op.create_table(
        "sip_credential",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extension_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("realm", sa.String(length=256), nullable=False),
        sa.Column("ha1_md5", sa.String(length=32), nullable=False),
        sa.Column("ha1_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["extension_id"],
            ["extension.id"],
            name=op.f("fk_sip_credential_extension_id_extension"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sip_credential")),
        sa.UniqueConstraint("extension_id", name=op.f("uq_sip_credential_extension_id")),
        sa.UniqueConstraint("realm", "username", name=op.f("uq_sip_credential_realm_username")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("sip_credential")
    with op.batch_alter_table("trunk_source_address", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trunk_source_address_trunk_id"))

    op.drop_table("trunk_source_address")
    with op.batch_alter_table("extension", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_extension_site_id"))

    op.drop_table("extension")
    with op.batch_alter_table("trunk", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trunk_tenant_id"))

    op.drop_table("trunk")
    op.drop_table("site")
    op.drop_table("tenant")
    with op.batch_alter_table("registration", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registration_expires_at"))

    op.drop_table("registration")
