"""knowledge-base questions and hand-off requests

Revision ID: 0004
Revises: 0003

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "kb_handoffs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("question", sa.String(length=500), nullable=False),
        sa.Column("entry_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_kb_handoffs_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_handoffs")),
    )
    with op.batch_alter_table("kb_handoffs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_kb_handoffs_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "kb_questions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("question", sa.String(length=500), nullable=False),
        sa.Column("entry_id", sa.String(length=64), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("feedback", sa.String(length=16), nullable=True),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_kb_questions_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_questions")),
    )
    with op.batch_alter_table("kb_questions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_kb_questions_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index("ix_kb_questions_entry", ["entry_id", "feedback"], unique=False)
        batch_op.create_index("ix_kb_questions_outcome", ["outcome", "asked_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("kb_questions", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_questions_outcome")
        batch_op.drop_index("ix_kb_questions_entry")
        batch_op.drop_index(batch_op.f("ix_kb_questions_customer_id"))

    op.drop_table("kb_questions")
    with op.batch_alter_table("kb_handoffs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kb_handoffs_customer_id"))

    op.drop_table("kb_handoffs")
