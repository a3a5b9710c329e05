"""Importing the shop's customers and orders from CSV (``carebot import``), on both databases."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot import cli_tools, importer
from bot.cli import app as cli_app
from bot.importer import CellError, ImportRejected
from bot.kernel.clock import ManualClock
from bot.kernel.config import GeneralConfig, OrderConfig
from storage.models import Customer, Order, RfmPending
from tests.auxil.shop import NOW

RULES = OrderConfig(currency="CNY", timezone="Asia/Shanghai", rates={"USD": 7.1})
GENERAL = GeneralConfig()
SHANGHAI = ZoneInfo("Asia/Shanghai")

CUSTOMERS = (
    "\ufeffcustomer_id,name,phone,language,timezone,country,birthday\n"
    "C1,张伟,138 0013 8000,zh,,,1990/05/17\n"
    'C2,"Tom, Jr.",+44 7911 123456,en,Europe/London,GB,\n'
    "C3,,,,,,05-17\n"
)
ORDERS = (
    "order_id\tcustomer_id\tamount\tplaced_at\tstatus\tdelivered_at\tcoupon\n"
    "O1\tC1\t¥128.50\t2026/11/01\tcompleted\t2026-11-03\t\n"
    "O2\tC1\t1,280.00 CNY\t2026-10-01 14:30\t\t\tWELCOME10\n"
    "O3\tC2\tUSD 12\t2026-09-01T10:00:00+08:00\trefunded\t\t\n"
    "O4\tC2\t50元\t2026-08-01\t已完成\t\t\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def import_customers(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path, now: datetime = NOW
) -> importer.ImportCounts:
    async with sessionmaker.begin() as session:
        return await importer.import_customers(session, path, RULES, GENERAL, now)


async def import_orders(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path, now: datetime = NOW
) -> importer.ImportCounts:
    async with sessionmaker.begin() as session:
        return await importer.import_orders(session, path, RULES, now)


async def table(
    sessionmaker: async_sessionmaker[AsyncSession], model: Any
) -> list[tuple[Any, ...]]:
    """Every row of a table, every column, in id order."""
    columns = [getattr(model, column.key) for column in model.__table__.columns]
    async with sessionmaker() as session:
        result = await session.execute(select(*columns).order_by(columns[0]))
        return [tuple(row) for row in result.all()]


class TestCells:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("128.50", (12850, "CNY", 12850)),
            ("¥128.50", (12850, "CNY", 12850)),
            ("￥128.5", (12850, "CNY", 12850)),  # full-width yen sign
            ("128.50元", (12850, "CNY", 12850)),
            ("128.50 CNY", (12850, "CNY", 12850)),
            ("CNY 128.50", (12850, "CNY", 12850)),
            ("RMB 10", (1000, "CNY", 1000)),
            ("1,280.00", (128000, "CNY", 128000)),
            ("USD 12", (1200, "USD", 8520)),  # 12 x 7.1
            ("$0.99", (99, "USD", 703)),  # 0.99 x 7.1 = 7.029 -> 7.03
            ("0", (0, "CNY", 0)),
        ],
    )
    def test_amounts(self, text: str, expected: tuple[int, str, int]) -> None:
        assert importer.parse_amount(text, RULES) == expected

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("-5", "negative"),
            ("¥-5", "negative"),
            ("1.234", "more than two decimals"),
            ("EUR 3", "neither the shop's (CNY) nor in tiers.toml"),
            ("12.5.3", "not an amount"),
            ("1,28", "not an amount"),
            ("¥5 CNY", "names its currency twice"),
        ],
    )
    def test_bad_amounts_say_why(self, text: str, reason: str) -> None:
        with pytest.raises(CellError, match=re.escape(reason)):
            importer.parse_amount(text, RULES)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2026-03-01", datetime(2026, 3, 1, tzinfo=SHANGHAI)),
            ("2026/3/1", datetime(2026, 3, 1, tzinfo=SHANGHAI)),
            ("2026/03/01 14:30", datetime(2026, 3, 1, 14, 30, tzinfo=SHANGHAI)),
            ("2026-03-01T14:30:05+08:00", datetime(2026, 3, 1, 6, 30, 5, tzinfo=UTC)),
            ("2026-03-01T06:30:00Z", datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
        ],
    )
    def test_dates(self, text: str, expected: datetime) -> None:
        assert importer.parse_moment(text, SHANGHAI) == expected

    @pytest.mark.parametrize("text", ["2026-02-30", "2026-03/01", "01/03/2026", "yesterday"])
    def test_bad_dates(self, text: str) -> None:
        with pytest.raises(CellError):
            importer.parse_moment(text, SHANGHAI)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("+86 138 0013 8000", "+8613800138000"),
            ("0086 13800138000", "+8613800138000"),
            ("138-0013-8000", "+8613800138000"),
            ("(010) 6552 9988", "+861065529988"),  # trunk 0 dropped
        ],
    )
    def test_phones(self, text: str, expected: str) -> None:
        assert importer.normalise_phone(text, "86") == expected


class TestFiles:
    def test_bom_and_tabs_are_read(self, tmp_path: Path) -> None:
        rows, problems = importer.parse_orders(write(tmp_path, "o.csv", ORDERS), RULES, NOW)
        assert problems == []
        assert [(r.line, r.external_id, r.value_cents, r.status) for r in rows] == [
            (2, "O1", 12850, "completed"),
            (3, "O2", 128000, "completed"),  # empty status: completed
            (4, "O3", 1200 * 71 // 10, "refunded"),
            (5, "O4", 5000, "completed"),  # 已完成
        ]
        customers = importer.parse_customers(
            write(tmp_path, "c.csv", CUSTOMERS), RULES, NOW.date()
        )
        assert [(c.external_id, c.name, c.phone, c.birth_month) for c in customers] == [
            ("C1", "张伟", "+8613800138000", 5),
            ("C2", "Tom, Jr.", "+447911123456", None),
            ("C3", None, None, 5),
        ]

    def test_header_problems_are_reported_at_once(self, tmp_path: Path) -> None:
        path = write(tmp_path, "o.csv", "order_id,customer,amount,amount\nO1,C1,1,2\n")
        with pytest.raises(ImportRejected) as rejected:
            importer.parse_orders(path, RULES, NOW)
        assert [str(problem) for problem in rejected.value.problems] == [
            f"{path}:1:2: unknown column 'customer' (expected: order_id, customer_id, amount, "
            "placed_at, status, delivered_at, coupon)",
            f"{path}:1:4: column 'amount' appears twice",
            f"{path}:1:5: missing required column 'customer_id'",
            f"{path}:1:5: missing required column 'placed_at'",
        ]

    def test_a_file_that_is_not_utf8_names_where(self, tmp_path: Path) -> None:
        path = tmp_path / "o.csv"
        path.write_bytes("order_id,customer_id\nO1,张".encode("gbk"))
        with pytest.raises(ImportRejected) as rejected:
            importer.parse_orders(path, RULES, NOW)
        assert [str(problem) for problem in rejected.value.problems] == [
            f"{path}:2:4: not UTF-8 text (save the file as UTF-8)"
        ]


class TestImport:
    async def test_reimporting_the_same_files_changes_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        customers = write(tmp_path, "customers.csv", CUSTOMERS)
        orders = write(tmp_path, "orders.csv", ORDERS)
        first_customers = await import_customers(sessionmaker, customers)
        first_orders = await import_orders(sessionmaker, orders)
        assert (first_customers.inserted, first_orders.inserted) == (3, 4)
        assert first_orders.customers_queued == 2
        async with sessionmaker.begin() as session:
            await session.execute(RfmPending.__table__.delete())  # as a tiers run would
        before = (await table(sessionmaker, Customer), await table(sessionmaker, Order))

        later = NOW + timedelta(days=3)
        again_customers = await import_customers(sessionmaker, customers, later)
        again_orders = await import_orders(sessionmaker, orders, later)

        assert (again_customers.inserted, again_customers.updated, again_customers.unchanged) == (
            0,
            0,
            3,
        )
        assert (again_orders.inserted, again_orders.updated, again_orders.customers_queued) == (
            0,
            0,
            0,
        )
        after = (await table(sessionmaker, Customer), await table(sessionmaker, Order))
        assert after == before  # every column, updated_at and link codes included
        assert await table(sessionmaker, RfmPending) == []

    async def test_a_file_with_three_bad_rows_lists_them_all_and_imports_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_customers(sessionmaker, write(tmp_path, "customers.csv", CUSTOMERS))
        path = write(
            tmp_path,
            "orders.csv",
            "order_id,customer_id,amount,placed_at,status\n"
            "O1,C1,99.00,2026-11-01,completed\n"
            "O2,C1,-12.00,2026-11-02,completed\n"  # line 3, column 3: negative amount
            "O3,C2,15.00,2026-11-03,completed\n"
            "O4,C9,15.00,2026-11-04,completed\n"  # line 5, column 2: unknown customer
            "O5,C2,15.00,2026-11-05,completed\n"
            "O1,C3,15.00,2026-13-01,completed\n"  # line 7: duplicate id (1), bad date (4)
            "O6,C3,1.00,2026-11-06,paid\n",
        )
        with pytest.raises(ImportRejected) as rejected:
            await import_orders(sessionmaker, path)
        assert [str(problem) for problem in rejected.value.problems] == [
            f"{path}:3:3: amount: '-12.00' is negative: refunds are orders with status refunded",
            f"{path}:5:2: customer_id: unknown customer 'C9'",
            f"{path}:7:1: order_id 'O1' also on line 2",
            f"{path}:7:4: placed_at: '2026-13-01' is not a real date or time",
        ]
        assert await table(sessionmaker, Order) == []
        assert await table(sessionmaker, RfmPending) == []

    async def test_changed_rows_update_and_queue_their_customers(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_customers(sessionmaker, write(tmp_path, "customers.csv", CUSTOMERS))
        await import_orders(sessionmaker, write(tmp_path, "orders.csv", ORDERS))
        async with sessionmaker.begin() as session:
            await session.execute(RfmPending.__table__.delete())
        # O1 refunded; O4 moves from C2 to C3 (both C2 and C3 are recomputed); O5 is new.
        changed = write(
            tmp_path,
            "changed.csv",
            "order_id,customer_id,amount,placed_at,status\n"
            "O1,C1,¥128.50,2026/11/01,refunded\n"
            "O4,C3,50元,2026-08-01,completed\n"
            "O5,C3,1.00,2026-11-20,paid\n",
        )
        counts = await import_orders(sessionmaker, changed, NOW + timedelta(days=1))
        assert (counts.inserted, counts.updated, counts.unchanged) == (1, 2, 0)
        async with sessionmaker() as session:
            queued = await session.execute(
                select(Customer.external_id)
                .join(RfmPending, RfmPending.customer_id == Customer.id)
                .order_by(Customer.external_id)
            )
            o1 = (
                await session.execute(select(Order).where(Order.external_id == "O1"))
            ).scalar_one()
        assert list(queued.scalars()) == ["C1", "C2", "C3"]
        assert (o1.status, o1.updated_at) == ("refunded", NOW + timedelta(days=1))

    async def test_empty_cells_keep_values_and_erased_customers_stay_erased(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_customers(sessionmaker, write(tmp_path, "customers.csv", CUSTOMERS))
        async with sessionmaker.begin() as session:
            c3 = (
                await session.execute(select(Customer).where(Customer.external_id == "C3"))
            ).scalar_one()
            c3.erased_at = NOW
        update = write(
            tmp_path,
            "update.csv",
            "customer_id,name,phone\nC1,,+86 139 0000 0000\nC3,Zhang San,+86 137 0000 0000\n",
        )
        counts = await import_customers(sessionmaker, update, NOW + timedelta(hours=1))
        assert (counts.inserted, counts.updated) == (0, 1)
        async with sessionmaker() as session:
            rows = await session.execute(
                select(Customer.external_id, Customer.name, Customer.phone).order_by(
                    Customer.external_id
                )
            )
        assert [tuple(row) for row in rows] == [
            ("C1", "张伟", "+8613900000000"),  # the empty name kept the stored one
            ("C2", "Tom, Jr.", "+447911123456"),
            ("C3", None, None),  # erased: not brought back
        ]

    async def test_new_customers_get_defaults_and_a_link_code(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_customers(sessionmaker, write(tmp_path, "customers.csv", CUSTOMERS))
        async with sessionmaker() as session:
            rows = (
                await session.execute(select(Customer).order_by(Customer.external_id))
            ).scalars()
            found = [
                (c.language, c.timezone, c.country, c.tier, c.stage, len(c.link_code or ""))
                for c in rows
            ]
        assert found == [
            ("zh", "Asia/Shanghai", "CN", "normal", "prospect", 12),
            ("en", "Europe/London", "GB", "normal", "prospect", 12),
            ("en", "Asia/Shanghai", "CN", "normal", "prospect", 12),  # customers.toml defaults
        ]


class TestCli:
    """``carebot import``, ``tiers`` and ``report tiers`` through Typer, as operators run them."""

    def invoke(self, *args: str) -> Any:
        return CliRunner().invoke(cli_app, list(args))

    async def test_import_recompute_show_and_report(
        self, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
        monkeypatch.setattr(cli_tools, "clock", ManualClock(NOW))
        customers = write(tmp_path, "customers.csv", CUSTOMERS)
        orders = write(tmp_path, "orders.csv", ORDERS)
        bad = write(tmp_path, "bad.csv", "order_id,customer_id,amount,placed_at\nO9,C1,x,2026\n")

        result = await asyncio.to_thread(self.invoke, "import", "customers", str(customers))
        assert result.exit_code == 0, result.output
        assert f"{customers}: 3 rows: 3 new, 0 changed, 0 unchanged" in result.output
        result = await asyncio.to_thread(self.invoke, "import", "orders", str(orders))
        assert result.exit_code == 0, result.output
        assert "2 customers to recompute" in result.output
        assert "tiers: full run, 2 scored" in result.output  # no full run yet: a full one
        result = await asyncio.to_thread(self.invoke, "import", "orders", str(bad))
        assert result.exit_code == 1
        assert f"{bad}:2:3: amount: 'x' is not an amount" in result.output
        assert f"{bad}:2:4: placed_at: '2026' is not a date" in result.output
        assert "nothing was imported" in result.output

        result = await asyncio.to_thread(self.invoke, "tiers", "recompute", "--full")
        assert result.exit_code == 0, result.output
        assert "full run #2 on 2026-11-23: 2 customers with orders scored" in result.output
        result = await asyncio.to_thread(self.invoke, "tiers", "show", "C1")
        assert result.exit_code == 0, result.output
        assert "22 days (last order 2026-11-01)" in result.output  # O1 at 2026/11/01
        assert "2 orders in 365 days" in result.output
        assert "1,408.50 CNY in 365 days" in result.output  # 128.50 + 1280.00
        result = await asyncio.to_thread(self.invoke, "tiers", "pin", "C2", "vip")
        assert result.exit_code == 0, result.output
        result = await asyncio.to_thread(self.invoke, "tiers", "show", "C2")
        assert "tier vip (pinned by staff)" in result.output
        assert "pinned: by staff" in result.output
        result = await asyncio.to_thread(self.invoke, "report", "tiers")
        assert result.exit_code == 0, result.output
        assert "customers by tier and stage" in result.output
        result = await asyncio.to_thread(self.invoke, "tiers", "show", "nobody")
        assert result.exit_code == 1

    async def test_link_codes_are_written_for_customers_not_on_telegram(
        self, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
        customers = write(tmp_path, "customers.csv", CUSTOMERS)
        result = await asyncio.to_thread(self.invoke, "import", "customers", str(customers))
        assert result.exit_code == 0, result.output
        output = tmp_path / "codes.csv"
        result = await asyncio.to_thread(
            self.invoke, "import", "link-codes", str(output), "--bot", "@shop_bot"
        )
        assert result.exit_code == 0, result.output
        lines = output.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "customer_id,name,phone,link_code,link"
        assert [line.split(",")[0] for line in lines[1:]] == ["C1", "C2", "C3"]
        code = lines[1].split(",")[3]
        assert lines[1].endswith(f",{code},https://t.me/shop_bot?start={code}")
