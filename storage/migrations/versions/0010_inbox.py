"""inbox: inbound_messages becomes the durable inbox (raw update, state, attempts)

Revision ID: 0010
Revises: 0009

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECORD = (
    "id, update_id, customer_id, chat_id, telegram_message_id, sender_user_id, kind, text, "
    "media_file_id, edited, received_at"
)


def upgrade() -> None:
    """A new table (so both databases name its keys alike), the old rows as handled."""
    op.create_table(
        "inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("thread_id", sa.BigInteger(), nullable=True),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
        sa.Column("sender_user_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("media_file_id", sa.String(length=256), nullable=True),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_inbox_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
        sa.UniqueConstraint("update_id", name=op.f("uq_inbox_update_id")),
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_chat", ["chat_id", "telegram_message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbox_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(
            "ix_inbox_state", ["state", "chat_id", "thread_id", "id"], unique=False
        )
    op.execute(
        f"INSERT INTO inbox ({_RECORD}, state, attempts, handled_at) "
        f"SELECT {_RECORD}, 'handled', 0, received_at FROM inbound_messages"
    )
    if op.get_bind().dialect.name == "postgresql":  # the copied ids must not be handed out again
        op.execute(
            "SELECT setval(pg_get_serial_sequence('inbox', 'id'), COALESCE(MAX(id), 0) + 1, "
            "false) FROM inbox"
        )
    op.drop_table("inbound_messages")


def downgrade() -> None:
    """Back to the plain record (pending updates are dropped with the inbox)."""
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("chat_id", sa.BigInteger(), nullable=True),
        sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
        sa.Column("sender_user_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("media_file_id", sa.String(length=256), nullable=True),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_inbound_messages_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint("update_id", name=op.f("uq_inbound_messages_update_id")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inbound_messages_chat", ["chat_id", "telegram_message_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_customer_id"), ["customer_id"], unique=False
        )
    op.execute(
        f"INSERT INTO inbound_messages ({_RECORD}) SELECT {_RECORD} FROM inbox "
        "WHERE state = 'handled'"
    )
    op.drop_table("inbox")
