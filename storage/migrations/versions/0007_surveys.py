"""surveys

Revision ID: 0007
Revises: 0006

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "survey_definitions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("survey_id", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_definitions")),
    )
    with op.batch_alter_table("survey_definitions", schema=None) as batch_op:
        batch_op.create_index("ix_survey_definitions_digest", ["survey_id", "digest"], unique=True)

    op.create_table(
        "survey_responses",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("definition_id", BIG_ID, nullable=False),
        sa.Column("survey_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", BIG_ID, nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("ticket_id", BIG_ID, nullable=True),
        sa.Column("order_id", BIG_ID, nullable=True),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("current_question", sa.String(length=32), nullable=True),
        sa.Column("low_score", sa.Boolean(), nullable=False),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_answer_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recovery_ticket_id", BIG_ID, nullable=True),
        sa.Column("recovered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_survey_responses_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["survey_definitions.id"],
            name=op.f("fk_survey_responses_definition_id_survey_definitions"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_survey_responses_order_id_orders"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["recovery_ticket_id"],
            ["tickets.id"],
            name=op.f("fk_survey_responses_recovery_ticket_id_tickets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_survey_responses_ticket_id_tickets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_responses")),
    )
    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.create_index(
            "ix_survey_responses_subject", ["survey_id", "customer_id", "subject"], unique=True
        )
        batch_op.create_index(
            "ix_survey_responses_customer", ["customer_id", "invited_at"], unique=False
        )
        batch_op.create_index("ix_survey_responses_invited", ["invited_at"], unique=False)
        batch_op.create_index(
            "ix_survey_responses_open", ["closed_at", "expires_at"], unique=False
        )
        batch_op.create_index("ix_survey_responses_ticket", ["ticket_id"], unique=False)
        batch_op.create_index("ix_survey_responses_order", ["order_id"], unique=False)

    op.create_table(
        "survey_answers",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("response_id", BIG_ID, nullable=False),
        sa.Column("question_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=True),
        sa.Column("score", sa.SmallInteger(), nullable=True),
        sa.Column("choice", sa.String(length=32), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["survey_responses.id"],
            name=op.f("fk_survey_answers_response_id_survey_responses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_answers")),
    )
    with op.batch_alter_table("survey_answers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_survey_answers_question", ["response_id", "question_id"], unique=True
        )

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index("ix_tickets_closed", ["closed_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_closed")

    with op.batch_alter_table("survey_answers", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_answers_question")
    op.drop_table("survey_answers")

    with op.batch_alter_table("survey_responses", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_responses_order")
        batch_op.drop_index("ix_survey_responses_ticket")
        batch_op.drop_index("ix_survey_responses_open")
        batch_op.drop_index("ix_survey_responses_invited")
        batch_op.drop_index("ix_survey_responses_customer")
        batch_op.drop_index("ix_survey_responses_subject")
    op.drop_table("survey_responses")

    with op.batch_alter_table("survey_definitions", schema=None) as batch_op:
        batch_op.drop_index("ix_survey_definitions_digest")
    op.drop_table("survey_definitions")
