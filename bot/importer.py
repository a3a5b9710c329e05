"""Reading the shop's CSV exports: customers and orders, validated row by row.

A file is read whole before anything is written: every bad cell is reported as
``file:line:column: what was wrong`` (line as in the file, column counted from 1), and a file
with any bad row is rejected whole (design, Principle 6). What only the database can tell (an
order's customer is unknown) is checked after staging, in the same transaction, and reported the
same way. The accepted forms are documented in the README (section "Importing customers and
orders"); ``CUSTOMER_COLUMNS`` and ``ORDER_COLUMNS`` are the source of truth.
"""

from __future__ import annotations

import base64
import csv
import io
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.config import GeneralConfig, OrderConfig, is_time_zone
from bot.kernel.texts import LANGUAGES
from handlers.onboarding.registration import BirthdayError, parse_birthday
from storage import care as care_queries
from storage import orders as order_queries
from storage.orders import CustomerRow, ImportCounts, OrderRow

CUSTOMER_COLUMNS = {
    "customer_id": True,  # required
    "name": False,
    "phone": False,
    "language": False,
    "timezone": False,
    "country": False,
    "birthday": False,
    "lunar": False,
}
LUNAR_YES = ("1", "true", "yes", "y", "农历", "阴历", "是")
LUNAR_NO = ("", "0", "false", "no", "n", "公历", "阳历", "否")
ORDER_COLUMNS = {
    "order_id": True,
    "customer_id": True,
    "amount": True,
    "placed_at": True,
    "status": False,
    "delivered_at": False,
    "coupon": False,
}
STATUSES = {
    "placed": "placed",
    "paid": "paid",
    "shipped": "shipped",
    "delivered": "delivered",
    "completed": "completed",
    "refunded": "refunded",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "待付款": "placed",
    "已付款": "paid",
    "已发货": "shipped",
    "已签收": "delivered",
    "已完成": "completed",
    "已退款": "refunded",
    "已取消": "cancelled",
}
DEFAULT_STATUS = "completed"
# Symbols and words that stand for a currency; ¥ is the yuan (write JPY for yen).
CURRENCY_SIGNS = {
    "¥": "CNY",
    "元": "CNY",
    "RMB": "CNY",
    "CN¥": "CNY",
    "$": "USD",
    "US$": "USD",
    "HK$": "HKD",
    "€": "EUR",
    "£": "GBP",
}
MAX_ID_LENGTH = 64
PROGRESS_EVERY = 1000
_EPOCH = date(1970, 1, 1)  # an order's placed_day counts days from here

_AMOUNT = re.compile(
    r"^(?P<before>[^\d\s.,+-]*)\s*(?P<sign>[+-]?)\s*(?P<after_sign>[^\d\s.,+-]*)\s*"
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*(?P<after>[^\d\s.,]*)$"
)
_DATE = re.compile(
    r"^(?P<year>\d{4})(?P<sep>[-/])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})"
    r"(?:[ T](?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d{1,6})?)?)?"
    r"\s*(?P<zone>Z|[+-]\d{2}:?\d{2})?$"
)
_PHONE_NOISE = re.compile(r"[\s\-().]")


@dataclass(frozen=True)
class Problem:
    """One bad cell (or a bad header, or a bad line): where and what."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class ImportRejected(Exception):
    """The file has bad rows; nothing of it was imported."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


class CellError(ValueError):
    """A cell that cannot be read; the message says what was wrong."""


@dataclass(frozen=True)
class Row:
    line: int
    cells: dict[str, str]
    columns: dict[str, int]  # column name -> 1-based position
    width: int  # how many cells the line has


@dataclass(frozen=True)
class Table:
    path: str
    header: list[str]
    rows: list[Row]


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise ImportRejected(
            [Problem(str(path), line, column, "not UTF-8 text (save the file as UTF-8)")]
        ) from None


def _delimiter(first_line: str) -> str:
    """Comma or tab: whichever the header line has more of (column names have neither)."""
    return "\t" if first_line.count("\t") > first_line.count(",") else ","


def read_table(path: Path, columns: dict[str, bool]) -> Table:
    """The file's header and rows; raises ImportRejected for an unusable header.

    UTF-8 with or without BOM; comma- or tab-separated (the header line decides); column
    names are matched case-insensitively, in any order; blank lines are skipped.
    """
    name = str(path)
    text = _decode(path)
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line))
    try:
        header = [cell.strip().lower() for cell in next(reader)]
    except StopIteration:
        raise ImportRejected([Problem(name, 1, 1, "empty file: expected a header line")]) from None
    problems = []
    positions: dict[str, int] = {}
    for index, column in enumerate(header, start=1):
        if column not in columns:
            expected = ", ".join(columns)
            problems.append(
                Problem(name, 1, index, f"unknown column {column!r} (expected: {expected})")
            )
        elif column in positions:
            problems.append(Problem(name, 1, index, f"column {column!r} appears twice"))
        else:
            positions[column] = index
    for column, required in columns.items():
        if required and column not in positions:
            problems.append(
                Problem(name, 1, len(header) + 1, f"missing required column {column!r}")
            )
    if problems:
        raise ImportRejected(problems)
    rows = []
    previous_end = reader.line_num
    for record in reader:
        line = previous_end + 1
        previous_end = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        cells = {
            column: record[index - 1].strip()
            for column, index in positions.items()
            if index <= len(record)
        }
        rows.append(Row(line, cells, positions, len(record)))
    return Table(name, header, rows)


def repeated_key(
    table: Table,
    row: Row,
    values: dict[str, object],
    columns: tuple[str, ...],
    first_line: dict[tuple[str, ...], int],
) -> Problem | None:
    """The row's key (the values of ``columns``) already stood on an earlier line (else it is
    noted); reported at the key's first column."""
    parts = tuple(values.get(column) for column in columns)
    if not all(isinstance(part, str) for part in parts):
        return None
    key = tuple(str(part) for part in parts)
    if key not in first_line:
        first_line[key] = row.line
        return None
    named = " and ".join(f"{column} {part!r}" for column, part in zip(columns, key, strict=True))
    return Problem(
        table.path, row.line, row.columns[columns[0]], f"{named} also on line {first_line[key]}"
    )


def _check_row_shape(table: Table, row: Row) -> Problem | None:
    """A line with more cells than the header (usually an unquoted delimiter in a value)."""
    if row.width > len(table.header):
        return Problem(
            table.path,
            row.line,
            len(table.header) + 1,
            f"{row.width} cells but the header has {len(table.header)} columns "
            "(quote values that contain the delimiter)",
        )
    return None


# --- cells ---------------------------------------------------------------------------------


def parse_amount(text: str, rules: OrderConfig) -> tuple[int, str, int]:
    """``(cents, currency, value in the shop's currency in cents)`` from an amount.

    Accepted: ``128.50`` (the shop's currency), ``¥128.50``, ``￥128.5``, ``128.50元``,
    ``128.50 CNY``, ``CNY 128.50``, ``USD 12``, ``$12``, ``€9.90``, ``1,280.00`` (thousands
    separators); at most two decimals; not negative. Currencies other than the shop's need a
    rate in ``tiers.toml`` ``[orders.rates]``.
    """
    normalised = unicodedata.normalize("NFKC", text).strip()
    match = _AMOUNT.match(normalised)
    if match is None or not normalised:
        raise CellError(f"{text!r} is not an amount (e.g. 128.50, ¥128.50, 128.50 CNY)")
    signs = [match["before"], match["after_sign"], match["after"]]
    marks = [sign for sign in signs if sign]
    if len(marks) > 1:
        raise CellError(f"{text!r} names its currency twice")
    mark = marks[0] if marks else ""
    currency = CURRENCY_SIGNS.get(mark, CURRENCY_SIGNS.get(mark.upper(), mark.upper()))
    if not currency:
        currency = rules.currency
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise CellError(f"{text!r}: unknown currency {mark!r} (write a code such as CNY)")
    number = Decimal(match["number"].replace(",", ""))
    if match["sign"] == "-" and number != 0:
        raise CellError(f"{text!r} is negative: refunds are orders with status refunded")
    if number != number.quantize(Decimal("0.01")):
        raise CellError(f"{text!r} has more than two decimals")
    cents = int(number * 100)
    if currency == rules.currency:
        return cents, currency, cents
    rate = rules.rates.get(currency)
    if rate is None:
        raise CellError(
            f"currency {currency} is neither the shop's ({rules.currency}) nor in tiers.toml "
            "[orders.rates]"
        )
    value = int((Decimal(cents) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return cents, currency, value


def parse_moment(text: str, zone: ZoneInfo) -> datetime:
    """An aware datetime from ``2025-03-01``, ``2025/3/1``, ``2025-03-01 14:30``,
    ``2025-03-01T14:30:00+08:00`` or ``...Z``; without an offset, in the shop's time zone."""
    match = _DATE.match(unicodedata.normalize("NFKC", text).strip())
    if match is None:
        raise CellError(f"{text!r} is not a date (e.g. 2025-03-01, 2025/03/01 14:30)")
    try:
        day = date(int(match["year"]), int(match["month"]), int(match["day"]))
        moment = time(
            int(match["hour"] or 0), int(match["minute"] or 0), int(match["second"] or 0)
        )
    except ValueError:
        raise CellError(f"{text!r} is not a real date or time") from None
    if day.year < 1970:
        raise CellError(f"{text!r} is before 1970")
    zone_text = match["zone"]
    if zone_text is None:
        return datetime.combine(day, moment, zone)
    if zone_text == "Z":
        return datetime.combine(day, moment, UTC)
    sign = 1 if zone_text[0] == "+" else -1
    digits = zone_text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return datetime.combine(day, moment, timezone(sign * offset))


def normalise_phone(text: str, calling_code: str) -> str:
    """``+<country code><number>``, as Telegram's contact button gives it.

    ``+86 138 0013 8000``, ``0086 13800138000`` and ``138-0013-8000`` (national, with the
    configured calling code) all give ``+8613800138000``; one leading trunk 0 is dropped.
    """
    compact = _PHONE_NOISE.sub("", unicodedata.normalize("NFKC", text))
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith("00"):
        digits = compact[2:]
    else:
        digits = calling_code + compact.removeprefix("0")
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise CellError(f"{text!r} is not a phone number (e.g. +86 138 0013 8000)")
    return f"+{digits}"


def _text(cell: str, column: str, limit: int) -> str | None:
    if not cell:
        return None
    if len(cell) > limit:
        raise CellError(f"{column} is longer than {limit} characters")
    return cell


def new_link_code() -> str:
    """A one-time link code: 12 characters of base32, 60 random bits, for ``/start CODE``."""
    return base64.b32encode(secrets.token_bytes(8)).decode()[:12]


# --- files ---------------------------------------------------------------------------------

Progress = Callable[[int], None]


def _cells(
    table: Table, row: Row, parsers: dict[str, Callable[[str], object]]
) -> tuple[dict[str, object], list[Problem]]:
    values: dict[str, object] = {}
    problems = []
    for column, parse in parsers.items():
        cell = row.cells.get(column, "")
        try:
            values[column] = parse(cell)
        except CellError as error:
            position = row.columns.get(column, len(table.header) + 1)
            problems.append(Problem(table.path, row.line, position, f"{column}: {error}"))
    return values, problems


def _required(parse: Callable[[str], object]) -> Callable[[str], object]:
    def parse_required(cell: str) -> object:
        if not cell:
            raise CellError("missing value")
        return parse(cell)

    return parse_required


def _optional(parse: Callable[[str], object]) -> Callable[[str], object]:
    return lambda cell: parse(cell) if cell else None


def _identifier(column: str) -> Callable[[str], object]:
    return _required(lambda cell: _text(cell, column, MAX_ID_LENGTH))


def _language(cell: str) -> str:
    """A language cell: one carebot speaks, by its first two letters (``zh-CN`` is ``zh``)."""
    code = cell.lower()
    if code[:2] not in LANGUAGES:
        raise CellError(f"{cell!r}: expected one of {', '.join(LANGUAGES)}")
    return code[:2]


def _zone(cell: str) -> str:
    """A time zone cell: an IANA name, kept as written."""
    if not is_time_zone(cell):
        raise CellError(f"{cell!r} is not a time zone (e.g. Asia/Shanghai)")
    return cell


def _country(cell: str) -> str:
    """A country cell: two letters, upper-cased."""
    if not re.fullmatch(r"[A-Za-z]{2}", cell):
        raise CellError(f"{cell!r}: expected a two-letter country code such as CN")
    return cell.upper()


def _lunar(cell: str) -> bool:
    """A lunar cell: whether the row's birthday is a lunar date (empty: no)."""
    word = cell.strip().lower()
    if word in LUNAR_YES:
        return True
    if word in LUNAR_NO:
        return False
    raise CellError(f"{cell!r}: expected 1, true or 农历 (lunar), or 0, false or empty (not)")


_BIRTHDAY_REASONS = {
    "birthday_reason_format": "not a date",
    "birthday_reason_impossible": "no such day in the Gregorian calendar",
    "birthday_reason_impossible_lunar": "a lunar month is 1-12 and a lunar day 1-30",
    "birthday_reason_lunar_year": "no such day in that lunar year",
    "birthday_reason_future": "in the future",
    "birthday_reason_too_old": "before 1900",
}


def _birthday(today: date, *, lunar: bool) -> Callable[[str], object]:
    """A birthday cell's reader, in the calendar the row's ``lunar`` cell says; ``today``
    bounds it (nobody is born in the future)."""

    def birthday(cell: str) -> object:
        try:
            return parse_birthday(cell, today, lunar=lunar)
        except BirthdayError as error:
            reason = _BIRTHDAY_REASONS.get(error.reason_key, error.reason_key)
            calendar = "lunar" if lunar else "Gregorian"
            raise CellError(f"{cell!r} is not a {calendar} birthday ({reason})") from None

    return birthday


def _birthday_cells(
    table: Table, row: Row, values: dict[str, object], today: date
) -> list[Problem]:
    """Read the birthday cell in the calendar of the lunar cell (a bad lunar cell is reported
    by itself; the birthday is then read as Gregorian). A lunar flag needs a birthday."""
    lunar = values.get("lunar") is True
    birthday, problems = _cells(table, row, {"birthday": _optional(_birthday(today, lunar=lunar))})
    values.update(birthday)
    if lunar and values.get("birthday") is None and not problems:
        position = row.columns.get("lunar", len(table.header) + 1)
        message = "lunar: says the birthday is lunar, but the row has no birthday"
        problems.append(Problem(table.path, row.line, position, message))
    return problems


def _customer_parsers(rules: OrderConfig) -> dict[str, Callable[[str], object]]:
    """How each column of a customers file is read: a value, or CellError saying why not."""
    return {
        "customer_id": _identifier("customer_id"),
        "name": _optional(lambda cell: _text(cell, "name", 256)),
        "phone": _optional(lambda cell: normalise_phone(cell, rules.calling_code)),
        "language": _optional(_language),
        "timezone": _optional(_zone),
        "country": _optional(_country),
        "lunar": _lunar,
    }


def _customer_row(row: Row, external_id: str, values: dict[str, object]) -> CustomerRow:
    """A good line of a customers file as the row to stage, with a fresh link code."""
    born = values["birthday"]
    return CustomerRow(
        line=row.line,
        external_id=external_id,
        name=values["name"],  # type: ignore[arg-type]
        phone=values["phone"],  # type: ignore[arg-type]
        language=values["language"],  # type: ignore[arg-type]
        timezone=values["timezone"],  # type: ignore[arg-type]
        country=values["country"],  # type: ignore[arg-type]
        birth_year=getattr(born, "year", None),
        birth_month=getattr(born, "month", None),
        birth_day=getattr(born, "day", None),
        birthday_lunar=values.get("lunar") is True if born is not None else None,
        link_code=new_link_code(),
    )


def parse_customers(
    path: Path, rules: OrderConfig, today: date, progress: Progress | None = None
) -> list[CustomerRow]:
    """Every row of a customers file, or ImportRejected listing every bad cell."""
    table = read_table(path, CUSTOMER_COLUMNS)
    parsers = _customer_parsers(rules)
    rows: list[CustomerRow] = []
    problems: list[Problem] = []
    first_line: dict[tuple[str, ...], int] = {}
    for count, row in enumerate(table.rows, start=1):
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        if (shape := _check_row_shape(table, row)) is not None:
            problems.append(shape)
            continue
        values, row_problems = _cells(table, row, parsers)
        row_problems += _birthday_cells(table, row, values, today)
        problems.extend(row_problems)
        external_id = values.get("customer_id")
        if (
            repeated := repeated_key(table, row, values, ("customer_id",), first_line)
        ) is not None:
            problems.append(repeated)
        if row_problems or not isinstance(external_id, str):
            continue
        rows.append(_customer_row(row, external_id, values))
    if problems:
        raise ImportRejected(sorted(problems, key=lambda p: (p.line, p.column)))
    return rows


def _status(cell: str) -> str:
    """An order status cell, in English or Chinese, as the stored status."""
    found = STATUSES.get(cell.lower()) or STATUSES.get(cell)
    if found is None:
        raise CellError(f"{cell!r}: expected one of {', '.join(sorted(set(STATUSES.values())))}")
    return found


def _order_parsers(
    rules: OrderConfig, zone: ZoneInfo, today: date
) -> dict[str, Callable[[str], object]]:
    """How each column of an orders file is read (times in the shop's ``zone``; an order
    placed after ``today`` is refused)."""

    def placed(cell: str) -> datetime:
        moment = parse_moment(cell, zone)
        if moment.astimezone(zone).date() > today:
            raise CellError(f"{cell!r} is in the future")
        return moment

    return {
        "order_id": _identifier("order_id"),
        "customer_id": _identifier("customer_id"),
        "amount": _required(lambda cell: parse_amount(cell, rules)),
        "placed_at": _required(placed),
        "status": lambda cell: _status(cell) if cell else DEFAULT_STATUS,
        "delivered_at": _optional(lambda cell: parse_moment(cell, zone)),
        "coupon": _optional(lambda cell: _text(cell, "coupon", 64)),
    }


def _delivered_before_placed(table: Table, row: Row, values: dict[str, object]) -> Problem | None:
    """An order cannot be delivered before it was placed (checked when both cells read)."""
    placed_at, delivered_at = values.get("placed_at"), values.get("delivered_at")
    if (
        isinstance(placed_at, datetime)
        and isinstance(delivered_at, datetime)
        and delivered_at < placed_at
    ):
        return Problem(
            table.path, row.line, row.columns["delivered_at"], "delivered_at: before placed_at"
        )
    return None


def _order_row(row: Row, values: dict[str, object], zone: ZoneInfo) -> OrderRow:
    """A good line of an orders file as the row to stage: times in UTC, the amount split in
    its parts, the day it was placed counted in the shop's ``zone`` from 1970-01-01."""
    placed_at, delivered_at = values["placed_at"], values["delivered_at"]
    assert isinstance(placed_at, datetime)
    amount = values["amount"]
    assert isinstance(amount, tuple)
    cents, currency, value = amount
    return OrderRow(
        line=row.line,
        external_id=str(values["order_id"]),
        customer_external_id=str(values["customer_id"]),
        amount_cents=cents,
        currency=currency,
        value_cents=value,
        status=str(values["status"]),
        placed_at=placed_at.astimezone(UTC),
        placed_day=(placed_at.astimezone(zone).date() - _EPOCH).days,
        delivered_at=delivered_at.astimezone(UTC) if isinstance(delivered_at, datetime) else None,
        coupon=values["coupon"],  # type: ignore[arg-type]
    )


def parse_orders(
    path: Path, rules: OrderConfig, now: datetime, progress: Progress | None = None
) -> tuple[list[OrderRow], list[Problem]]:
    """The good rows of an orders file and a problem for every bad cell (an unusable header
    raises ImportRejected at once)."""
    table = read_table(path, ORDER_COLUMNS)
    zone = ZoneInfo(rules.timezone)
    parsers = _order_parsers(rules, zone, now.astimezone(zone).date())
    rows: list[OrderRow] = []
    problems: list[Problem] = []
    first_line: dict[tuple[str, ...], int] = {}
    for count, row in enumerate(table.rows, start=1):
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        if (shape := _check_row_shape(table, row)) is not None:
            problems.append(shape)
            continue
        values, row_problems = _cells(table, row, parsers)
        if (repeated := repeated_key(table, row, values, ("order_id",), first_line)) is not None:
            row_problems.append(repeated)
        if (late := _delivered_before_placed(table, row, values)) is not None:
            row_problems.append(late)
        problems.extend(row_problems)
        if not row_problems:
            rows.append(_order_row(row, values, zone))
    return rows, problems


# --- importing -----------------------------------------------------------------------------


def count_lines(path: Path) -> int:
    """Lines in the file (cheap: decides whether a progress bar is worth showing)."""
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


@dataclass(frozen=True)
class ImportProgress:
    """Where an import reports how many rows it has read and written (a progress bar)."""

    read: Progress
    written: Progress


async def import_customers(
    session: AsyncSession,
    path: Path,
    rules: OrderConfig,
    general: GeneralConfig,
    now: datetime,
    progress: ImportProgress | None = None,
) -> ImportCounts:
    """Validate the whole file, then upsert it; raises ImportRejected (nothing written)."""
    today = now.astimezone(ZoneInfo(rules.timezone)).date()
    rows = parse_customers(path, rules, today, progress.read if progress else None)
    await order_queries.stage_customers(session, rows, progress.written if progress else None)
    counts = await order_queries.apply_staged_customers(
        session,
        now,
        language=general.customers.default_language,
        timezone=general.customers.default_timezone,
        country=general.customers.default_country,
    )
    await care_queries.reschedule_updated_customers(session, now)  # time zones may have moved
    return counts


async def import_orders(
    session: AsyncSession,
    path: Path,
    rules: OrderConfig,
    now: datetime,
    progress: ImportProgress | None = None,
) -> ImportCounts:
    """Validate the whole file (unknown customers included), then upsert it and queue the
    customers whose orders changed; raises ImportRejected with nothing written (the caller
    rolls back the transaction)."""
    rows, problems = parse_orders(path, rules, now, progress.read if progress else None)
    # The good rows are staged even when some are bad, to find unknown customers too: every
    # problem of the file is reported at once. The caller rolls the staging back.
    await order_queries.stage_orders(session, rows, progress.written if progress else None)
    column = _column_of(path, "customer_id")
    problems += [
        Problem(str(path), line, column, f"customer_id: unknown customer {customer!r}")
        for line, customer in await order_queries.unknown_customer_lines(session)
    ]
    if problems:
        raise ImportRejected(sorted(problems, key=lambda p: (p.line, p.column)))
    return await order_queries.apply_staged_orders(session, now)


def _column_of(path: Path, name: str) -> int:
    first_line = _decode(path).split("\n", 1)[0]
    header = next(csv.reader([first_line], delimiter=_delimiter(first_line)))
    return [cell.strip().lower() for cell in header].index(name) + 1
