"""Reading the shop's catalogue and order lines: ``products.csv`` and ``order-lines.csv``,
validated row by row with the machinery of ``bot.importer`` (the same ``file:line:column``
problems, all-or-nothing files, progress). What only the database can tell (an order or a sku
that is not known) is checked after staging, in the same transaction, and reported the same way.
``PRODUCT_COLUMNS`` and ``ORDER_LINE_COLUMNS`` are the source of truth for the README.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.importer import (
    PROGRESS_EVERY,
    CellError,
    ImportProgress,
    ImportRejected,
    Problem,
    Progress,
    Row,
    Table,
    _cells,
    _check_row_shape,
    _column_of,
    _identifier,
    _optional,
    _required,
    _text,
    parse_amount,
    read_table,
    repeated_key,
)
from bot.kernel.config import OrderConfig
from storage import catalog as catalog_queries
from storage.catalog import OrderLineRow, ProductRow
from storage.orders import ImportCounts

PRODUCT_COLUMNS = {
    "sku": True,  # required
    "name_zh": True,
    "name_en": True,
    "category": False,
    "url": False,
    "active": False,
}
ORDER_LINE_COLUMNS = {"order_id": True, "sku": True, "quantity": True, "unit_price": True}
ACTIVE_WORDS = {
    "true": True,
    "yes": True,
    "y": True,
    "1": True,
    "是": True,
    "上架": True,
    "false": False,
    "no": False,
    "n": False,
    "0": False,
    "否": False,
    "下架": False,
}
MAX_QUANTITY = 1_000_000
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


def _active(cell: str) -> bool:
    """An active cell: true/false, yes/no, 1/0, 是/否, 上架/下架."""
    found = ACTIVE_WORDS.get(cell.lower())
    if found is None:
        raise CellError(f"{cell!r}: expected true or false (also yes/no, 1/0, 是/否)")
    return found


def _url(cell: str) -> str:
    """A product page: an http(s) address without spaces."""
    if not _URL.match(cell) or len(cell) > 1000:
        raise CellError(f"{cell!r} is not a web address (e.g. https://shop.example/p/123)")
    return cell


def _quantity(cell: str) -> int:
    """A positive whole number of items."""
    if not cell.isdigit() or not 1 <= int(cell) <= MAX_QUANTITY:
        raise CellError(f"{cell!r}: expected a whole number from 1 to {MAX_QUANTITY:,}")
    return int(cell)


def _rows(
    table: Table,
    parsers: dict[str, Callable[[str], object]],
    key: tuple[str, ...],
    progress: Progress | None,
) -> tuple[list[tuple[Row, dict[str, object]]], list[Problem]]:
    """Every row read with ``parsers``: the good ones with their values, and a problem for every
    bad cell and for a ``key`` seen on an earlier line."""
    good: list[tuple[Row, dict[str, object]]] = []
    problems: list[Problem] = []
    first_line: dict[tuple[str, ...], int] = {}
    for count, row in enumerate(table.rows, start=1):
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        if (shape := _check_row_shape(table, row)) is not None:
            problems.append(shape)
            continue
        values, row_problems = _cells(table, row, parsers)
        if (repeated := repeated_key(table, row, values, key, first_line)) is not None:
            row_problems.append(repeated)
        problems.extend(row_problems)
        if not row_problems:
            good.append((row, values))
    return good, problems


def parse_products(path: Path, progress: Progress | None = None) -> list[ProductRow]:
    """Every row of a products file, or ImportRejected listing every bad cell."""
    table = read_table(path, PRODUCT_COLUMNS)
    parsers = {
        "sku": _identifier("sku"),
        "name_zh": _required(lambda cell: _text(cell, "name_zh", 256)),
        "name_en": _required(lambda cell: _text(cell, "name_en", 256)),
        "category": _optional(lambda cell: _text(cell, "category", 64)),
        "url": _optional(_url),
        "active": _optional(_active),
    }
    good, problems = _rows(table, parsers, ("sku",), progress)
    if problems:
        raise ImportRejected(sorted(problems, key=lambda p: (p.line, p.column)))
    return [
        ProductRow(line=row.line, **values)  # type: ignore[arg-type]
        for row, values in good
    ]


def parse_order_lines(
    path: Path, rules: OrderConfig, progress: Progress | None = None
) -> tuple[list[OrderLineRow], list[Problem]]:
    """The good rows of an order-lines file and a problem for every bad cell (an unusable header
    raises ImportRejected at once)."""
    table = read_table(path, ORDER_LINE_COLUMNS)
    parsers = {
        "order_id": _identifier("order_id"),
        "sku": _identifier("sku"),
        "quantity": _required(_quantity),
        "unit_price": _required(lambda cell: parse_amount(cell, rules)),
    }
    good, problems = _rows(table, parsers, ("order_id", "sku"), progress)
    rows = []
    for row, values in good:
        price = values["unit_price"]
        assert isinstance(price, tuple)
        cents, currency, _value = price
        rows.append(
            OrderLineRow(
                line=row.line,
                order_external_id=str(values["order_id"]),
                sku=str(values["sku"]),
                quantity=int(values["quantity"]),  # type: ignore[call-overload]
                unit_price_cents=cents,
                currency=currency,
            )
        )
    return rows, problems


async def import_products(
    session: AsyncSession, path: Path, now: datetime, progress: ImportProgress | None = None
) -> ImportCounts:
    """Validate the whole file, then upsert it by sku; raises ImportRejected (nothing
    written)."""
    rows = parse_products(path, progress.read if progress else None)
    await catalog_queries.stage_products(session, rows, progress.written if progress else None)
    return await catalog_queries.apply_staged_products(session, now)


async def import_order_lines(
    session: AsyncSession,
    path: Path,
    rules: OrderConfig,
    now: datetime,
    progress: ImportProgress | None = None,
) -> ImportCounts:
    """Validate the whole file (unknown orders and skus included), then upsert it; raises
    ImportRejected with nothing written (the caller rolls back the transaction)."""
    rows, problems = parse_order_lines(path, rules, progress.read if progress else None)
    # Good rows are staged even when some are bad, to report unknown orders and skus too.
    await catalog_queries.stage_order_lines(session, rows, progress.written if progress else None)
    columns = {name: _column_of(path, name) for name in ("order_id", "sku")}
    problems += [
        Problem(str(path), line, columns[column], f"{column}: unknown {what} {value!r}")
        for line, column, value in await catalog_queries.unknown_line_references(session)
        for what in ["order" if column == "order_id" else "product"]
    ]
    if problems:
        raise ImportRejected(sorted(problems, key=lambda p: (p.line, p.column)))
    return await catalog_queries.apply_staged_order_lines(session, now)
