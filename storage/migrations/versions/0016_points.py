"""loyalty points: the points ledger; coupons of redeemed points beside retention offers
(``kind``, ``value_cents``; one retention offer per customer and day, any number of
redemptions)

Revision ID: 0016
Revises: 0015

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RETENTION = sa.text("kind = 'retention'")


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("coupons") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="retention", nullable=False)
        )
        batch_op.add_column(sa.Column("value_cents", sa.BigInteger(), nullable=True))
        batch_op.drop_index("ix_coupons_customer_day")
        batch_op.create_index(
            "ix_coupons_customer_day",
            ["customer_id", "issued_day"],
            unique=True,
            sqlite_where=RETENTION,
            postgresql_where=RETENTION,
        )
    op.create_table(
        "points_ledger",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("customer_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("order_id", BIG_ID, nullable=True),
        sa.Column("coupon_id", BIG_ID, nullable=True),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_points_ledger_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_points_ledger_order_id_orders"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"],
            ["coupons.id"],
            name=op.f("fk_points_ledger_coupon_id_coupons"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_points_ledger")),
        sa.UniqueConstraint("key", name=op.f("uq_points_ledger_key")),
    )
    with op.batch_alter_table("points_ledger") as batch_op:
        batch_op.create_index("ix_points_ledger_customer", ["customer_id", "created_at", "id"])
        batch_op.create_index("ix_points_ledger_order", ["order_id", "kind"])
        batch_op.create_index("ix_points_ledger_expires", ["expires_at", "customer_id"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("points_ledger")
    with op.batch_alter_table("coupons") as batch_op:
        batch_op.drop_index("ix_coupons_customer_day")
        batch_op.create_index(
            "ix_coupons_customer_day", ["customer_id", "issued_day"], unique=True
        )
        batch_op.drop_column("value_cents")
        batch_op.drop_column("kind")
