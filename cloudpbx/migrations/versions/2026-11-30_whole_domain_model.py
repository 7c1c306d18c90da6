"""The whole domain model: mobile lines, extension kinds, trunk kinds, toll-free numbers.

Rules:
- Adds only: new tables (mobile lines; toll-free numbers with their destination sets,
  destinations, schedules and ranges, designated areas and account grants) and new
  columns whose server defaults give existing rows their old meaning (every existing
  extension stays a fixed IP phone without voicemail, every existing trunk becomes a
  `pstn` trunk without capacity or digest credentials, tenants get an empty address
  and basic contract).
- The extension kind CHECKs (mobile line only for `mobile`, trunk and range only for
  `customer_pbx`) hold for every existing row, which are all fixed IP phones.
- The downgrade drops all of it (toll-free data and mobile lines are lost).

Revision ID: 5d2e8c41a7f0
Revises: 3c5e0f7a9b21
Create Date: 2026-11-30 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5d2e8c41a7f0"
down_revision: str | Sequence[str] | None = "3c5e0f7a9b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "mobile_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("contract_holder_name", sa.String(length=256), nullable=False),
        sa.Column("b_number", sa.String(length=16), nullable=True),
        sa.Column("option_050", sa.Boolean(), nullable=False),
        sa.Column("number_050", sa.String(length=16), nullable=True),
        sa.Column("option_gateway", sa.Boolean(), nullable=False),
        sa.Column("option_roaming", sa.Boolean(), nullable=False),
        sa.Column("abroad", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "(option_050 AND number_050 IS NOT NULL) OR (NOT option_050 AND number_050 IS NULL)",
            name=op.f("ck_mobile_line_number_050_with_option"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_mobile_line_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mobile_line")),
        sa.UniqueConstraint("b_number", name=op.f("uq_mobile_line_b_number")),
        sa.UniqueConstraint("msisdn", name=op.f("uq_mobile_line_msisdn")),
        sa.UniqueConstraint("number_050", name=op.f("uq_mobile_line_number_050")),
    )
    with op.batch_alter_table("mobile_line", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mobile_line_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "tollfree_number",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column(
            "service_type",
            sa.Enum(
                "standard",
                "office",
                name="tollfree_service_type",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("contracted_channels", sa.Integer(), nullable=False),
        sa.Column("channel_setting", sa.Integer(), nullable=False),
        sa.Column("strict_distribution", sa.Boolean(), nullable=False),
        sa.Column("after_hours_announcement", sa.String(length=64), nullable=False),
        sa.Column(
            "refusal_action",
            sa.Enum(
                "announcement",
                "reject",
                name="refusal_action",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("refusal_announcement", sa.String(length=64), nullable=False),
        sa.Column("designated_whole_country", sa.Boolean(), nullable=False),
        sa.Column("allow_fixed", sa.Boolean(), nullable=False),
        sa.Column("allow_mobile", sa.Boolean(), nullable=False),
        sa.Column("allow_withheld", sa.Boolean(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "channel_setting >= 0 AND channel_setting <= contracted_channels",
            name=op.f("ck_tollfree_number_channels_within_contract"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_tollfree_number_tenant_id_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tollfree_number")),
        sa.UniqueConstraint("number", name=op.f("uq_tollfree_number_number")),
    )
    with op.batch_alter_table("tollfree_number", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tollfree_number_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "tollfree_designated_area",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tollfree_number_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "prefecture",
                "area_code",
                name="area_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(
            ["tollfree_number_id"],
            ["tollfree_number.id"],
            name=op.f("fk_tollfree_designated_area_tollfree_number_id_tollfree_number"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tollfree_designated_area")),
        sa.UniqueConstraint(
            "tollfree_number_id",
            "kind",
            "code",
            name=op.f("uq_tollfree_designated_area_tollfree_number_id_kind_code"),
        ),
    )
    with op.batch_alter_table("tollfree_designated_area", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tollfree_designated_area_tollfree_number_id"),
            ["tollfree_number_id"],
            unique=False,
        )

    op.create_table(
        "tollfree_destination_set",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tollfree_number_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tollfree_number_id"],
            ["tollfree_number.id"],
            name=op.f("fk_tollfree_destination_set_tollfree_number_id_tollfree_number"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tollfree_destination_set")),
        sa.UniqueConstraint(
            "tollfree_number_id",
            "name",
            name=op.f("uq_tollfree_destination_set_tollfree_number_id_name"),
        ),
    )
    with op.batch_alter_table("tollfree_destination_set", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tollfree_destination_set_tollfree_number_id"),
            ["tollfree_number_id"],
            unique=False,
        )

    op.create_table(
        "tollfree_destination",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("destination_set_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.Column("trunk_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "weight >= 0 AND weight <= 32", name=op.f("ck_tollfree_destination_weight_range")
        ),
        sa.ForeignKeyConstraint(
            ["destination_set_id"],
            ["tollfree_destination_set.id"],
            name=op.f("fk_tollfree_destination_destination_set_id_tollfree_destination_set"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trunk_id"],
            ["trunk.id"],
            name=op.f("fk_tollfree_destination_trunk_id_trunk"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tollfree_destination")),
        sa.UniqueConstraint(
            "destination_set_id",
            "number",
            name=op.f("uq_tollfree_destination_destination_set_id_number"),
        ),
        sa.UniqueConstraint(
            "destination_set_id",
            "position",
            name=op.f("uq_tollfree_destination_destination_set_id_position"),
        ),
    )
    with op.batch_alter_table("tollfree_destination", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tollfree_destination_destination_set_id"),
            ["destination_set_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_tollfree_destination_trunk_id"), ["trunk_id"], unique=False
        )

    op.create_table(
        "tollfree_schedule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tollfree_number_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "after_hours",
                "destination_change",
                name="schedule_action",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("destination_set_id", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "(action = 'destination_change' AND destination_set_id IS NOT NULL)"
            " OR (action <> 'destination_change' AND destination_set_id IS NULL)",
            name=op.f("ck_tollfree_schedule_destination_set_for_change"),
        ),
        sa.ForeignKeyConstraint(
            ["destination_set_id"],
            ["tollfree_destination_set.id"],
            name=op.f("fk_tollfree_schedule_destination_set_id_tollfree_destination_set"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tollfree_number_id"],
            ["tollfree_number.id"],
            name=op.f("fk_tollfree_schedule_tollfree_number_id_tollfree_number"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tollfree_schedule")),
        sa.UniqueConstraint(
            "tollfree_number_id", "name", name=op.f("uq_tollfree_schedule_tollfree_number_id_name")
        ),
    )
    with op.batch_alter_table("tollfree_schedule", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tollfree_schedule_destination_set_id"),
            ["destination_set_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_tollfree_schedule_tollfree_number_id"),
            ["tollfree_number_id"],
            unique=False,
        )

    op.create_table(
        "tollfree_account_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tollfree_number_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_tollfree_account_grant_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tollfree_number_id"],
            ["tollfree_number.id"],
            name=op.f("fk_tollfree_account_grant_tollfree_number_id_tollfree_number"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tollfree_account_grant")),
        sa.UniqueConstraint(
            "tollfree_number_id",
            "account_id",
            name=op.f("uq_tollfree_account_grant_tollfree_number_id_account_id"),
        ),
    )
    with op.batch_alter_table("tollfree_account_grant", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tollfree_account_grant_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tollfree_account_grant_tollfree_number_id"),
            ["tollfree_number_id"],
            unique=False,
        )

    op.create_table(
        "tollfree_schedule_range",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "weekly",
                "date",
                "holiday",
                name="schedule_range_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("day", sa.String(length=10), nullable=True),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "(kind = 'weekly' AND weekday BETWEEN 0 AND 6 AND day IS NULL)"
            " OR (kind = 'date' AND day IS NOT NULL AND weekday IS NULL)"
            " OR (kind = 'holiday' AND day IS NULL AND weekday IS NULL)",
            name=op.f("ck_tollfree_schedule_range_day_fits_kind"),
        ),
        sa.CheckConstraint(
            "start_minute >= 0 AND start_minute < end_minute AND end_minute <= 1440",
            name=op.f("ck_tollfree_schedule_range_minutes_of_day"),
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["tollfree_schedule.id"],
            name=op.f("fk_tollfree_schedule_range_schedule_id_tollfree_schedule"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tollfree_schedule_range")),
    )
    with op.batch_alter_table("tollfree_schedule_range", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tollfree_schedule_range_schedule_id"), ["schedule_id"], unique=False
        )

    with op.batch_alter_table("extension", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("voicemail_enabled", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("mobile_line_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "mobile_identity",
                sa.Enum(
                    "a",
                    "b",
                    name="mobile_identity",
                    native_enum=False,
                    create_constraint=True,
                    length=32,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("trunk_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("range_last", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_extension_mobile_line_id"), ["mobile_line_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_extension_trunk_id"), ["trunk_id"], unique=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_extension_mobile_line_id_mobile_identity"),
            ["mobile_line_id", "mobile_identity"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_extension_trunk_id_trunk"),
            "trunk",
            ["trunk_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_extension_mobile_line_id_mobile_line"),
            "mobile_line",
            ["mobile_line_id"],
            ["id"],
            ondelete="CASCADE",
        )
        # Autogenerate does not see CHECK constraints: these mirror the model's.
        batch_op.create_check_constraint(
            batch_op.f("ck_extension_mobile_line_only_for_mobile"),
            "(kind = 'mobile' AND mobile_line_id IS NOT NULL AND mobile_identity IS NOT NULL)"
            " OR (kind <> 'mobile' AND mobile_line_id IS NULL AND mobile_identity IS NULL)",
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_extension_trunk_only_for_customer_pbx"),
            "(kind = 'customer_pbx' AND trunk_id IS NOT NULL AND range_last IS NOT NULL)"
            " OR (kind <> 'customer_pbx' AND trunk_id IS NULL AND range_last IS NULL)",
        )

    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(
            sa.Column("basic_contract", sa.String(length=64), server_default="", nullable=False)
        )

    with op.batch_alter_table("trunk", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sa.Enum(
                    "mobile_network",
                    "pstn",
                    "customer_pbx",
                    "external_gateway",
                    name="trunk_kind",
                    native_enum=False,
                    create_constraint=True,
                    length=32,
                ),
                server_default="pstn",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("capacity", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("auth_username", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("auth_realm", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("auth_ha1_md5", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("auth_ha1_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("trunk", schema=None) as batch_op:
        # The enum's CHECK names the column: drop it first (SQLite batch copies it).
        batch_op.drop_constraint(batch_op.f("ck_trunk_trunk_kind"), type_="check")
        batch_op.drop_column("auth_ha1_sha256")
        batch_op.drop_column("auth_ha1_md5")
        batch_op.drop_column("auth_realm")
        batch_op.drop_column("auth_username")
        batch_op.drop_column("capacity")
        batch_op.drop_column("kind")

    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_column("basic_contract")
        batch_op.drop_column("address")

    with op.batch_alter_table("extension", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("ck_extension_trunk_only_for_customer_pbx"), type_="check"
        )
        batch_op.drop_constraint(
            batch_op.f("ck_extension_mobile_line_only_for_mobile"), type_="check"
        )
        batch_op.drop_constraint(batch_op.f("ck_extension_mobile_identity"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_extension_mobile_line_id_mobile_line"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("fk_extension_trunk_id_trunk"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("uq_extension_mobile_line_id_mobile_identity"), type_="unique"
        )
        batch_op.drop_index(batch_op.f("ix_extension_trunk_id"))
        batch_op.drop_index(batch_op.f("ix_extension_mobile_line_id"))
        batch_op.drop_column("range_last")
        batch_op.drop_column("trunk_id")
        batch_op.drop_column("mobile_identity")
        batch_op.drop_column("mobile_line_id")
        batch_op.drop_column("voicemail_enabled")

    with op.batch_alter_table("tollfree_schedule_range", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tollfree_schedule_range_schedule_id"))

    op.drop_table("tollfree_schedule_range")
    with op.batch_alter_table("tollfree_account_grant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tollfree_account_grant_tollfree_number_id"))
        batch_op.drop_index(batch_op.f("ix_tollfree_account_grant_account_id"))

    op.drop_table("tollfree_account_grant")
    with op.batch_alter_table("tollfree_schedule", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tollfree_schedule_tollfree_number_id"))
        batch_op.drop_index(batch_op.f("ix_tollfree_schedule_destination_set_id"))

    op.drop_table("tollfree_schedule")
    with op.batch_alter_table("tollfree_destination", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tollfree_destination_trunk_id"))
        batch_op.drop_index(batch_op.f("ix_tollfree_destination_destination_set_id"))

    op.drop_table("tollfree_destination")
    with op.batch_alter_table("tollfree_destination_set", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tollfree_destination_set_tollfree_number_id"))

    op.drop_table("tollfree_destination_set")
    with op.batch_alter_table("tollfree_designated_area", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tollfree_designated_area_tollfree_number_id"))

    op.drop_table("tollfree_designated_area")
    with op.batch_alter_table("tollfree_number", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tollfree_number_tenant_id"))

    op.drop_table("tollfree_number")
    with op.batch_alter_table("mobile_line", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mobile_line_tenant_id"))

    op.drop_table("mobile_line")
