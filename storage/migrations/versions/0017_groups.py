"""groups: several staff groups by name (the one row becomes ``main``), each ticket's group and
the chat of its topic (``ticket_by_topic`` keys on chat and thread), who is on duty per group

Revision ID: 0017
Revises: 0016

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "staff_groups",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=True),
        sa.Column("set_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_staff_groups")),
        sa.UniqueConstraint("chat_id", name=op.f("uq_staff_groups_chat_id")),
    )
    op.execute(
        "INSERT INTO staff_groups (name, chat_id, title, set_by_user_id, set_at) "
        "SELECT 'main', chat_id, title, set_by_user_id, set_at FROM staff_group"
    )
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.add_column(
            sa.Column("staff_group", sa.String(length=32), nullable=False, server_default="main")
        )
        batch_op.add_column(sa.Column("staff_chat_id", sa.BigInteger(), nullable=True))
        batch_op.drop_index("ix_tickets_topic")
        batch_op.create_index("ix_tickets_topic", ["staff_chat_id", "topic_thread_id"])
    # Existing topics are in the group /setup chose (with CAREBOT_STAFF_CHAT_ID instead, the
    # bot fills them in at start-up: handlers.staff.setup.adopt_topics).
    op.execute(
        "UPDATE tickets SET staff_chat_id = (SELECT chat_id FROM staff_group WHERE id = 1) "
        "WHERE topic_thread_id IS NOT NULL"
    )
    op.drop_table("staff_group")
    op.create_table(
        "staff_duty",
        sa.Column("group_name", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("on_duty", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_turn", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "user_id", name=op.f("pk_staff_duty")),
    )


def downgrade() -> None:
    """Downgrade schema (only ``main`` survives as the one staff group)."""
    op.drop_table("staff_duty")
    op.create_table(
        "staff_group",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=True),
        sa.Column("set_by_user_id", sa.BigInteger(), nullable=True),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_group")),
    )
    op.execute(
        "INSERT INTO staff_group (id, chat_id, title, set_by_user_id, set_at) "
        "SELECT 1, chat_id, title, set_by_user_id, set_at FROM staff_groups WHERE name = 'main'"
    )
    with op.batch_alter_table("tickets") as batch_op:
        batch_op.drop_index("ix_tickets_topic")
        batch_op.create_index("ix_tickets_topic", ["topic_thread_id"])
        batch_op.drop_column("staff_chat_id")
        batch_op.drop_column("staff_group")
    op.drop_table("staff_groups")
