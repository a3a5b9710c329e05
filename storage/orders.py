"""Importing customers and orders: staged in a temporary table, then applied set-based.

An import is: stage every parsed row (``stage_*``), check what only the database knows
(``unknown_customer_lines``), then apply (``apply_staged_*``): one ``UPDATE ... FROM`` for rows
whose values differ, one ``INSERT ... SELECT`` for new ones. Rows that are already there with the
same values are not written at all, so re-importing a file changes nothing. Customers whose
orders changed are queued in ``rfm_pending`` for the incremental tiers run, in the same
transaction. The caller owns the transaction: a rejected file is rolled back whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Result, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from storage.care import schedule_followups
from storage.columns import UTCDateTime
from storage.models import Order, RfmPending

STAGE_BATCH = 5_000
Progress = Callable[[int], None]


@dataclass(frozen=True)
class CustomerRow:
    """One parsed line of a customers file (None: keep what the database has)."""

    line: int
    external_id: str
    name: str | None = None
    phone: str | None = None
    language: str | None = None
    timezone: str | None = None
    country: str | None = None
    birth_year: int | None = None
    birth_month: int | None = None
    birth_day: int | None = None
    birthday_lunar: bool | None = None
    link_code: str | None = None  # given to the customer only if this row creates them


@dataclass(frozen=True)
class OrderRow:
    """One parsed line of an orders file; the customer is the shop's customer id."""

    line: int
    external_id: str
    customer_external_id: str
    amount_cents: int
    currency: str
    value_cents: int
    status: str
    placed_at: datetime
    placed_day: int
    delivered_at: datetime | None = None
    coupon: str | None = None


@dataclass(frozen=True)
class ImportCounts:
    rows: int
    inserted: int
    updated: int
    customers_queued: int = 0
    removed: int = 0  # order lines the file's orders no longer have

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _temp(session: AsyncSession, name: str) -> str:
    return f"{'pg_temp' if _dialect(session) == 'postgresql' else 'temp'}.{name}"


def _distinct(session: AsyncSession, left: str, right: str) -> str:
    operator = "IS DISTINCT FROM" if _dialect(session) == "postgresql" else "IS NOT"
    return f"{left} {operator} {right}"


def _timestamps(statement: TextClause, *names: str) -> TextClause:
    """Bind ``names`` as aware UTC timestamps (stored the same way the models store them)."""
    return statement.bindparams(*(bindparam(name, type_=UTCDateTime()) for name in names))


async def _stage(
    session: AsyncSession,
    table: str,
    columns: str,
    row_type: type[Any],
    rows: Iterable[Any],
    timestamp_columns: tuple[str, ...],
    progress: Progress | None,
) -> None:
    qualified = _temp(session, table)
    await session.execute(text(f"DROP TABLE IF EXISTS {qualified}"))
    suffix = " ON COMMIT DROP" if _dialect(session) == "postgresql" else ""
    await session.execute(text(f"CREATE TEMPORARY TABLE {table} ({columns}){suffix}"))
    names = [f.name for f in fields(row_type)]
    insert = _timestamps(
        text(
            f"INSERT INTO {qualified} ({', '.join(names)}) "
            f"VALUES ({', '.join(':' + name for name in names)})"
        ),
        *timestamp_columns,
    )
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, STAGE_BATCH)):
        await session.execute(insert, [row.__dict__ for row in batch])
        if progress is not None:
            progress(len(batch))
    if _dialect(session) == "postgresql":
        await session.execute(text(f"ANALYZE {qualified}"))


# --- customers -----------------------------------------------------------------------------

_CUSTOMER_STAGE = """
    line INTEGER NOT NULL,
    external_id VARCHAR(64) PRIMARY KEY,
    name VARCHAR(256),
    phone VARCHAR(32),
    language VARCHAR(8),
    timezone VARCHAR(64),
    country VARCHAR(2),
    birth_year SMALLINT,
    birth_month SMALLINT,
    birth_day SMALLINT,
    birthday_lunar BOOLEAN,
    link_code VARCHAR(16)
"""
_CUSTOMER_FIELDS = (
    "name",
    "phone",
    "language",
    "timezone",
    "country",
    "birth_year",
    "birth_month",
    "birth_day",
    "birthday_lunar",
)


async def stage_customers(
    session: AsyncSession, rows: Iterable[CustomerRow], progress: Progress | None = None
) -> None:
    """Put parsed customer rows in this transaction's staging table (ids unique in the file)."""
    await _stage(session, "import_customers", _CUSTOMER_STAGE, CustomerRow, rows, (), progress)


async def _staged_count(session: AsyncSession, staged: str) -> int:
    """How many rows the staging table holds: the import's row count."""
    return int((await session.execute(text(f"SELECT COUNT(*) FROM {staged}"))).scalar_one())


def _rowcount(result: Result[Any]) -> int:
    """Rows a statement wrote (a driver that cannot tell says -1: counted as none)."""
    return max(int(result.rowcount), 0)  # type: ignore[attr-defined]


async def _update_staged_customers(session: AsyncSession, staged: str, now: datetime) -> int:
    """Update the known customers whose staged values differ (an empty cell keeps the stored
    value; erased customers are left alone); how many were updated."""
    merged = {column: f"COALESCE(i.{column}, customers.{column})" for column in _CUSTOMER_FIELDS}
    changed = " OR ".join(
        _distinct(session, value, f"customers.{column}") for column, value in merged.items()
    )
    update = await session.execute(
        _timestamps(
            text(
                f"""
                UPDATE customers
                SET {", ".join(f"{column} = {value}" for column, value in merged.items())},
                    updated_at = :now
                FROM {staged} AS i
                WHERE customers.external_id = i.external_id AND customers.erased_at IS NULL
                  AND ({changed})
                """
            ),
            "now",
        ),
        {"now": now},
    )
    return _rowcount(update)


async def _insert_staged_customers(
    session: AsyncSession, staged: str, now: datetime, defaults: dict[str, str]
) -> int:
    """Insert the staged customers not known yet, with the ``defaults`` (language, timezone,
    country) for empty cells and their link code; how many were inserted."""
    insert = await session.execute(
        _timestamps(
            text(
                f"""
                INSERT INTO customers (
                    external_id, name, phone, language, language_chosen, timezone, country,
                    birth_year, birth_month, birth_day, birthday_lunar, consent,
                    consent_answered, reachable, tier, tier_pinned, stage, link_code,
                    created_at, updated_at
                )
                SELECT i.external_id, i.name, i.phone,
                       COALESCE(i.language, CAST(:language AS VARCHAR(8))), false,
                       COALESCE(i.timezone, CAST(:timezone AS VARCHAR(64))),
                       COALESCE(i.country, CAST(:country AS VARCHAR(2))),
                       i.birth_year, i.birth_month, i.birth_day,
                       COALESCE(i.birthday_lunar, false), false, false, true,
                       'normal', false, 'prospect', i.link_code, :now, :now
                FROM {staged} AS i
                WHERE NOT EXISTS (
                    SELECT 1 FROM customers AS c WHERE c.external_id = i.external_id
                )
                """
            ),
            "now",
        ),
        {"now": now, **defaults},
    )
    return _rowcount(insert)


async def apply_staged_customers(
    session: AsyncSession, now: datetime, *, language: str, timezone: str, country: str
) -> ImportCounts:
    """Upsert the staged customers by external id; empty cells keep the stored value.

    Customers who erased their data (``/forget``) are left alone: an import must not bring
    their personal data back. New customers get the given defaults and their link code.
    """
    staged = _temp(session, "import_customers")
    rows = await _staged_count(session, staged)
    updated = await _update_staged_customers(session, staged, now)
    defaults = {"language": language, "timezone": timezone, "country": country}
    inserted = await _insert_staged_customers(session, staged, now, defaults)
    return ImportCounts(rows=rows, inserted=inserted, updated=updated)


# --- orders --------------------------------------------------------------------------------

_ORDER_STAGE = """
    line INTEGER NOT NULL,
    external_id VARCHAR(64) PRIMARY KEY,
    customer_external_id VARCHAR(64) NOT NULL,
    amount_cents BIGINT NOT NULL,
    currency VARCHAR(3) NOT NULL,
    value_cents BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    placed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    placed_day INTEGER NOT NULL,
    delivered_at TIMESTAMP WITH TIME ZONE,
    coupon VARCHAR(64)
"""
_ORDER_FIELDS = (
    "customer_id",
    "amount_cents",
    "currency",
    "value_cents",
    "status",
    "placed_at",
    "placed_day",
    "delivered_at",
    "coupon",
)


async def stage_orders(
    session: AsyncSession, rows: Iterable[OrderRow], progress: Progress | None = None
) -> None:
    """Put parsed order rows in this transaction's staging table (ids unique in the file)."""
    await _stage(
        session,
        "import_orders",
        _ORDER_STAGE,
        OrderRow,
        rows,
        ("placed_at", "delivered_at"),
        progress,
    )


async def unknown_customer_lines(session: AsyncSession) -> list[tuple[int, str]]:
    """Staged orders whose customer id is not a known customer: (line, customer id)."""
    result = await session.execute(
        text(
            f"""
            SELECT i.line, i.customer_external_id
            FROM {_temp(session, "import_orders")} AS i
            WHERE NOT EXISTS (
                SELECT 1 FROM customers AS c WHERE c.external_id = i.customer_external_id
            )
            ORDER BY i.line
            """
        )
    )
    return [(int(line), str(customer)) for line, customer in result]


def _incoming_orders(staged: str) -> str:
    """The staged orders with their customer's carebot id (a subquery)."""
    return f"""
        SELECT i.*, c.id AS customer_id
        FROM {staged} AS i JOIN customers AS c ON c.external_id = i.customer_external_id
    """


async def _queue_order_customers(
    session: AsyncSession, incoming: str, changed: str, now: datetime
) -> int:
    """Queue for the tiers run every customer whose orders change: the owner of a new or
    changed order, and the old owner of an order that moved; how many were queued."""
    queued = await session.execute(
        _timestamps(
            text(
                f"""
                INSERT INTO rfm_pending (customer_id, marked_at)
                SELECT DISTINCT affected.customer_id, :now FROM (
                    SELECT n.customer_id FROM ({incoming}) AS n
                    LEFT JOIN orders ON orders.external_id = n.external_id
                    WHERE orders.id IS NULL OR {changed}
                    UNION
                    SELECT orders.customer_id FROM ({incoming}) AS n
                    JOIN orders ON orders.external_id = n.external_id
                    WHERE orders.customer_id <> n.customer_id
                ) AS affected
                WHERE true
                ON CONFLICT (customer_id) DO UPDATE SET marked_at = excluded.marked_at
                """
            ),
            "now",
        ),
        {"now": now},
    )
    return _rowcount(queued)


async def _update_staged_orders(
    session: AsyncSession, incoming: str, changed: str, now: datetime
) -> int:
    """Update the known orders whose staged values differ; how many were updated."""
    update = await session.execute(
        _timestamps(
            text(
                f"""
                UPDATE orders
                SET {", ".join(f"{column} = n.{column}" for column in _ORDER_FIELDS)},
                    updated_at = :now
                FROM ({incoming}) AS n
                WHERE orders.external_id = n.external_id AND ({changed})
                """
            ),
            "now",
        ),
        {"now": now},
    )
    return _rowcount(update)


async def _insert_staged_orders(session: AsyncSession, incoming: str, now: datetime) -> int:
    """Insert the staged orders not known yet; how many were inserted."""
    insert = await session.execute(
        _timestamps(
            text(
                f"""
                INSERT INTO orders (
                    external_id, {", ".join(_ORDER_FIELDS)}, created_at, updated_at
                )
                SELECT n.external_id, {", ".join(f"n.{column}" for column in _ORDER_FIELDS)},
                       :now, :now
                FROM ({incoming}) AS n
                WHERE NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.external_id = n.external_id)
                """
            ),
            "now",
        ),
        {"now": now},
    )
    return _rowcount(insert)


async def apply_staged_orders(session: AsyncSession, now: datetime) -> ImportCounts:
    """Upsert the staged orders by external id and queue every customer whose orders changed
    (the new owner, and the old one when an order moved to another customer)."""
    staged = _temp(session, "import_orders")
    incoming = _incoming_orders(staged)
    changed = " OR ".join(
        _distinct(session, f"orders.{column}", f"n.{column}") for column in _ORDER_FIELDS
    )
    rows = await _staged_count(session, staged)
    # Queued first: the comparison with the stored orders must see them before they change.
    queued = await _queue_order_customers(session, incoming, changed, now)
    updated = await _update_staged_orders(session, incoming, changed, now)
    inserted = await _insert_staged_orders(session, incoming, now)
    # The customers just queued (marked now) get their follow-up visits rescheduled.
    queued_now = select(RfmPending.customer_id).where(RfmPending.marked_at == now)
    await schedule_followups(session, queued_now)
    return ImportCounts(rows=rows, inserted=inserted, updated=updated, customers_queued=queued)


async def add_orders(
    session: AsyncSession, rows: Iterable[OrderRow], now: datetime
) -> ImportCounts:
    """Upsert orders from code (an API, a shop integration); raises ValueError naming the first
    unknown customer. The customers are queued for the incremental tiers run."""
    await stage_orders(session, rows)
    unknown = await unknown_customer_lines(session)
    if unknown:
        raise ValueError(f"unknown customer {unknown[0][1]!r}")
    return await apply_staged_orders(session, now)


# --- what the customer card shows -------------------------------------------------------------


async def recent_orders(session: AsyncSession, customer_id: int, limit: int = 5) -> list[Order]:
    """A customer's latest orders, newest first (the customer card, the complaint flow)."""
    result = await session.execute(
        select(Order)
        .where(Order.customer_id == customer_id)
        .order_by(Order.placed_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return list(result.scalars())
