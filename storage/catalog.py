"""Importing what was bought: products by sku and order lines by (order, product), staged and
applied set-based with the machinery of ``storage.orders`` (re-importing a file writes
nothing; the caller owns the transaction, so a rejected file is rolled back whole).

A file of order lines is the truth for the orders it names: a line of one of those orders that
the file no longer has is removed. Orders the file does not name keep their lines, and orders
without lines are fine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.orders import (
    ImportCounts,
    Progress,
    _distinct,
    _rowcount,
    _stage,
    _staged_count,
    _temp,
    _timestamps,
)


@dataclass(frozen=True)
class ProductRow:
    """One parsed line of a products file (None: keep what the database has)."""

    line: int
    sku: str
    name_zh: str
    name_en: str
    category: str | None = None
    url: str | None = None
    active: bool | None = None


@dataclass(frozen=True)
class OrderLineRow:
    """One parsed line of an order-lines file: the shop's order id and the product's sku."""

    line: int
    order_external_id: str
    sku: str
    quantity: int
    unit_price_cents: int
    currency: str


# --- products --------------------------------------------------------------------------------

_PRODUCT_STAGE = """
    line INTEGER NOT NULL,
    sku VARCHAR(64) PRIMARY KEY,
    name_zh VARCHAR(256) NOT NULL,
    name_en VARCHAR(256) NOT NULL,
    category VARCHAR(64),
    url VARCHAR(1000),
    active BOOLEAN
"""
_PRODUCT_FIELDS = ("name_zh", "name_en", "category", "url", "active")


async def stage_products(
    session: AsyncSession, rows: Iterable[ProductRow], progress: Progress | None = None
) -> None:
    """Put parsed product rows in this transaction's staging table (skus unique in the file)."""
    await _stage(session, "import_products", _PRODUCT_STAGE, ProductRow, rows, (), progress)


async def apply_staged_products(session: AsyncSession, now: datetime) -> ImportCounts:
    """Upsert the staged products by sku; empty cells keep the stored value, a new product is
    active unless the file says otherwise."""
    staged = _temp(session, "import_products")
    rows = await _staged_count(session, staged)
    merged = {column: f"COALESCE(i.{column}, products.{column})" for column in _PRODUCT_FIELDS}
    changed = " OR ".join(
        _distinct(session, value, f"products.{column}") for column, value in merged.items()
    )
    update = await session.execute(
        _timestamps(
            text(
                f"""
                UPDATE products
                SET {", ".join(f"{column} = {value}" for column, value in merged.items())},
                    updated_at = :now
                FROM {staged} AS i
                WHERE products.sku = i.sku AND ({changed})
                """
            ),
            "now",
        ),
        {"now": now},
    )
    insert = await session.execute(
        _timestamps(
            text(
                f"""
                INSERT INTO products (
                    sku, name_zh, name_en, category, url, active, created_at, updated_at
                )
                SELECT i.sku, i.name_zh, i.name_en, i.category, i.url,
                       COALESCE(i.active, true), :now, :now
                FROM {staged} AS i
                WHERE NOT EXISTS (SELECT 1 FROM products AS p WHERE p.sku = i.sku)
                """
            ),
            "now",
        ),
        {"now": now},
    )
    return ImportCounts(rows=rows, inserted=_rowcount(insert), updated=_rowcount(update))


# --- order lines -----------------------------------------------------------------------------

_LINE_STAGE = """
    line INTEGER NOT NULL,
    order_external_id VARCHAR(64) NOT NULL,
    sku VARCHAR(64) NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price_cents BIGINT NOT NULL,
    currency VARCHAR(3) NOT NULL,
    PRIMARY KEY (order_external_id, sku)
"""
_LINE_FIELDS = ("quantity", "unit_price_cents", "currency")


async def stage_order_lines(
    session: AsyncSession, rows: Iterable[OrderLineRow], progress: Progress | None = None
) -> None:
    """Put parsed order lines in this transaction's staging table ((order, sku) unique)."""
    await _stage(session, "import_order_lines", _LINE_STAGE, OrderLineRow, rows, (), progress)


async def unknown_line_references(session: AsyncSession) -> list[tuple[int, str, str]]:
    """Staged lines naming an order or a sku that is not known: (line, column, value), the
    order first when both are unknown."""
    staged = _temp(session, "import_order_lines")
    result = await session.execute(
        text(
            f"""
            SELECT i.line, 'order_id', i.order_external_id FROM {staged} AS i
            WHERE NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.external_id = i.order_external_id)
            UNION ALL
            SELECT i.line, 'sku', i.sku FROM {staged} AS i
            WHERE NOT EXISTS (SELECT 1 FROM products AS p WHERE p.sku = i.sku)
            """
        )
    )
    found = [(int(line), str(column), str(value)) for line, column, value in result]
    return sorted(found, key=lambda item: (item[0], item[1] != "order_id"))


def _incoming_lines(staged: str) -> str:
    """The staged lines with their order's and product's carebot ids (a subquery)."""
    return f"""
        SELECT i.*, o.id AS order_id, p.id AS product_id
        FROM {staged} AS i
        JOIN orders AS o ON o.external_id = i.order_external_id
        JOIN products AS p ON p.sku = i.sku
    """


async def _remove_missing_lines(session: AsyncSession, staged: str, incoming: str) -> int:
    """Delete the lines of the file's orders that the file no longer has; how many."""
    removed = await session.execute(
        text(
            f"""
            DELETE FROM order_lines
            WHERE order_id IN (
                SELECT o.id FROM orders AS o
                WHERE o.external_id IN (SELECT order_external_id FROM {staged})
            )
            AND NOT EXISTS (
                SELECT 1 FROM ({incoming}) AS n
                WHERE n.order_id = order_lines.order_id AND n.product_id = order_lines.product_id
            )
            """
        )
    )
    return _rowcount(removed)


async def apply_staged_order_lines(session: AsyncSession, now: datetime) -> ImportCounts:
    """Upsert the staged lines by (order, product), removing the lines the file's orders no
    longer have (call ``unknown_line_references`` first: unknown ones are skipped here)."""
    staged = _temp(session, "import_order_lines")
    incoming = _incoming_lines(staged)
    rows = await _staged_count(session, staged)
    removed = await _remove_missing_lines(session, staged, incoming)
    changed = " OR ".join(
        _distinct(session, f"order_lines.{column}", f"n.{column}") for column in _LINE_FIELDS
    )
    update = await session.execute(
        _timestamps(
            text(
                f"""
                UPDATE order_lines
                SET {", ".join(f"{column} = n.{column}" for column in _LINE_FIELDS)},
                    updated_at = :now
                FROM ({incoming}) AS n
                WHERE order_lines.order_id = n.order_id
                  AND order_lines.product_id = n.product_id AND ({changed})
                """
            ),
            "now",
        ),
        {"now": now},
    )
    insert = await session.execute(
        _timestamps(
            text(
                f"""
                INSERT INTO order_lines (
                    order_id, product_id, {", ".join(_LINE_FIELDS)}, created_at, updated_at
                )
                SELECT n.order_id, n.product_id, {", ".join(f"n.{c}" for c in _LINE_FIELDS)},
                       :now, :now
                FROM ({incoming}) AS n
                WHERE NOT EXISTS (
                    SELECT 1 FROM order_lines AS l
                    WHERE l.order_id = n.order_id AND l.product_id = n.product_id
                )
                """
            ),
            "now",
        ),
        {"now": now},
    )
    return ImportCounts(
        rows=rows, inserted=_rowcount(insert), updated=_rowcount(update), removed=removed
    )
