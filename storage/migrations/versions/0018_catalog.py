"""catalog: products, order lines, bought-together pairs, per-customer recommendations and
the recommendations job's runs (issue 21, parts 1 and 3)

Revision ID: 0018
Revises: 0017

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _foreign_key(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete="CASCADE",
    )


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "products",
        sa.Column("id", ID, nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name_zh", sa.String(length=256), nullable=False),
        sa.Column("name_en", sa.String(length=256), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("url", sa.String(length=1000), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
    )
    op.create_table(
        "order_lines",
        sa.Column("id", ID, nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        *_stamps(),
        _foreign_key("order_lines", "order_id", "orders"),
        _foreign_key("order_lines", "product_id", "products"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
    )
    op.create_index(
        "ix_order_lines_order_product", "order_lines", ["order_id", "product_id"], unique=True
    )
    op.create_index("ix_order_lines_product", "order_lines", ["product_id"], unique=False)
    op.create_table(
        "product_pairs",
        sa.Column("product_id", ID, nullable=False),
        sa.Column("other_id", ID, nullable=False),
        sa.Column("support", sa.Integer(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        _foreign_key("product_pairs", "product_id", "products"),
        _foreign_key("product_pairs", "other_id", "products"),
        sa.PrimaryKeyConstraint("product_id", "other_id", name=op.f("pk_product_pairs")),
    )
    op.create_table(
        "recommendations",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("product_id", ID, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        _foreign_key("recommendations", "customer_id", "customers"),
        _foreign_key("recommendations", "product_id", "products"),
        sa.PrimaryKeyConstraint("customer_id", "rank", name=op.f("pk_recommendations")),
    )
    op.create_table(
        "recommend_runs",
        sa.Column("id", ID, nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommend_runs")),
    )
    op.create_index("ix_recommend_runs_day", "recommend_runs", ["day"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_recommend_runs_day", table_name="recommend_runs")
    op.drop_table("recommend_runs")
    op.drop_table("recommendations")
    op.drop_table("product_pairs")
    op.drop_index("ix_order_lines_product", table_name="order_lines")
    op.drop_index("ix_order_lines_order_product", table_name="order_lines")
    op.drop_table("order_lines")
    op.drop_table("products")
