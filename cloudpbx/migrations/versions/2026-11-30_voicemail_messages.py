"""Voicemail messages: one row per message left for an extension (issue 6 item 4).

Rules:
- Adds only one table, `voicemail_message`; the audio lives in a WAV file under the
  store's voicemail directory (`cloudpbx.voicemail`), the row names it relative to it.
- `extension_id` cascades: deleting an extension deletes its messages' rows.
- `heard` has a server default (false), like every boolean added to the store.
- The downgrade drops the table (the WAV files stay on disk).

Revision ID: b6f0c2d4e8a1
Revises: 9d1e5b7c3a20
Create Date: 2026-11-30 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b6f0c2d4e8a1"
down_revision: str | Sequence[str] | None = "9d1e5b7c3a20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "voicemail_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("extension_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=256), nullable=False),
        sa.Column("caller", sa.String(length=1024), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("file_name", sa.String(length=256), nullable=False),
        sa.Column("heard", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(
            ["extension_id"],
            ["extension.id"],
            name=op.f("fk_voicemail_message_extension_id_extension"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voicemail_message")),
        sa.UniqueConstraint("message_id", name=op.f("uq_voicemail_message_message_id")),
    )
    with op.batch_alter_table("voicemail_message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_voicemail_message_extension_id_received_at",
            ["extension_id", "received_at"],
            unique=False,
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("voicemail_message", schema=None) as batch_op:
        batch_op.drop_index("ix_voicemail_message_extension_id_received_at")
    op.drop_table("voicemail_message")
