"""orders, RFM scores, tier runs and history, link codes

Revision ID: 0003
Revises: 0002

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTED_ORDERS = "status NOT IN ('refunded', 'cancelled')"


def upgrade() -> None:
    """Upgrade schema."""

    op.create_table(
        "tier_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("tier_changes", sa.Integer(), nullable=False),
        sa.Column("customer_changes", sa.Integer(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_runs")),
    )
    with op.batch_alter_table("tier_runs", schema=None) as batch_op:
        batch_op.create_index("ix_tier_runs_full", ["full", "id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("value_cents", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("placed_day", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("coupon", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_orders_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("external_id", name=op.f("uq_orders_external_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_customer", ["customer_id", "placed_at"], unique=False)
        batch_op.create_index(
            "ix_orders_day",
            ["placed_day", "customer_id", "value_cents", "status"],
            unique=False,
            sqlite_where=sa.text(COUNTED_ORDERS),
            postgresql_where=sa.text(COUNTED_ORDERS),
        )
        batch_op.create_index(
            "ix_orders_rfm",
            ["customer_id", "placed_day", "value_cents", "status"],
            unique=False,
            sqlite_where=sa.text(COUNTED_ORDERS),
            postgresql_where=sa.text(COUNTED_ORDERS),
        )

    op.create_table(
        "rfm_pending",
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_rfm_pending_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_rfm_pending")),
    )
    op.create_table(
        "rfm_scores",
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("first_day", sa.Integer(), nullable=False),
        sa.Column("last_day", sa.Integer(), nullable=False),
        sa.Column("orders_total", sa.Integer(), nullable=False),
        sa.Column("median_gap", sa.Float(), nullable=True),
        sa.Column("frequency", sa.Integer(), nullable=False),
        sa.Column("monetary_cents", sa.BigInteger(), nullable=False),
        sa.Column("orders_recent", sa.Integer(), nullable=False),
        sa.Column("orders_previous", sa.Integer(), nullable=False),
        sa.Column("spend_recent_cents", sa.BigInteger(), nullable=False),
        sa.Column("spend_previous_cents", sa.BigInteger(), nullable=False),
        sa.Column("r_score", sa.SmallInteger(), nullable=True),
        sa.Column("f_score", sa.SmallInteger(), nullable=True),
        sa.Column("m_score", sa.SmallInteger(), nullable=True),
        sa.Column("tier", sa.String(length=32), nullable=True),
        sa.Column("tier_rule", sa.SmallInteger(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=True),
        sa.Column("at_risk_after", sa.Float(), nullable=True),
        sa.Column("churn_flags", sa.SmallInteger(), nullable=False),
        sa.Column("changed_run", sa.BigInteger(), nullable=True),
        sa.Column("pinned_tier", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_rfm_scores_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_rfm_scores")),
    )
    with op.batch_alter_table("rfm_scores", schema=None) as batch_op:
        batch_op.create_index("ix_rfm_scores_changed_run", ["changed_run"], unique=False)
        batch_op.create_index("ix_rfm_scores_frequency", ["frequency"], unique=False)
        batch_op.create_index("ix_rfm_scores_last_day", ["last_day"], unique=False)
        batch_op.create_index("ix_rfm_scores_monetary", ["monetary_cents"], unique=False)

    op.create_table(
        "tier_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("old_tier", sa.String(length=32), nullable=True),
        sa.Column("new_tier", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_tier_history_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["tier_runs.id"],
            name=op.f("fk_tier_history_run_id_tier_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_history")),
    )
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tier_history_customer", ["customer_id", "changed_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_tier_history_run_id"), ["run_id"], unique=False)

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_code", sa.String(length=16), nullable=True))
        batch_op.create_index("ix_customers_link_code", ["link_code"], unique=True)
        batch_op.create_index("ix_customers_phone", ["phone"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""

    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index("ix_customers_phone")
        batch_op.drop_index("ix_customers_link_code")
        batch_op.drop_column("link_code")

    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tier_history_run_id"))
        batch_op.drop_index("ix_tier_history_customer")

    op.drop_table("tier_history")
    with op.batch_alter_table("rfm_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_rfm_scores_monetary")
        batch_op.drop_index("ix_rfm_scores_last_day")
        batch_op.drop_index("ix_rfm_scores_frequency")
        batch_op.drop_index("ix_rfm_scores_changed_run")

    op.drop_table("rfm_scores")
    op.drop_table("rfm_pending")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_orders_rfm",
            sqlite_where=sa.text(COUNTED_ORDERS),
            postgresql_where=sa.text(COUNTED_ORDERS),
        )
        batch_op.drop_index(
            "ix_orders_day",
            sqlite_where=sa.text(COUNTED_ORDERS),
            postgresql_where=sa.text(COUNTED_ORDERS),
        )
        batch_op.drop_index("ix_orders_customer")

    op.drop_table("orders")
    with op.batch_alter_table("tier_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_runs_full")

    op.drop_table("tier_runs")
