"""campaigns: the campaigns sent, and their recipients (once each; tier, outbox row, coupon,
"stop" pressed) (issue 21, part 4). Coupons of a campaign are ``coupons.kind`` campaign.

Revision ID: 0019
Revises: 0018

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _foreign_key(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete=ondelete,
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "campaigns",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("name", name=op.f("uq_campaigns_name")),
    )
    table = "campaign_recipients"
    op.create_table(
        table,
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("outbox_id", ID, nullable=True),
        sa.Column("coupon_id", ID, nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pressed_at", sa.DateTime(timezone=True), nullable=True),
        _foreign_key(table, "campaign_id", "campaigns", "CASCADE"),
        _foreign_key(table, "customer_id", "customers", "CASCADE"),
        _foreign_key(table, "outbox_id", "outbox", "SET NULL"),
        _foreign_key(table, "coupon_id", "coupons", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipients")),
    )
    with op.batch_alter_table(table) as batch_op:
        batch_op.create_index(
            "ix_campaign_recipients_customer", ["campaign_id", "customer_id"], unique=True
        )
        batch_op.create_index("ix_campaign_recipients_erasure", ["customer_id"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("campaign_recipients")
    op.drop_table("campaigns")
