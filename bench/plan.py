"""Benchmark: planning one day of care messages over 1,000,000 customers (SQLite, PostgreSQL).

    python bench/plan.py                       # both databases, full size
    python bench/plan.py --customers 100000 --only sqlite
    python bench/plan.py --holiday             # also a national holiday

The customers are seeded (the same on both databases): 85 % in Shanghai (CN), the rest in
Singapore (SG), Hong Kong, New York and London; 5 % VIP, 15 % important, 80 % normal; 90 %
with a birthday (a real calendar date, Feb 29 as rare as in life; 8 % of the Chinese ones
lunar), 90 % consented, 97 % reachable, 8 % at risk. 40 % have a delivered order within the
last 150 days. Data is loaded in bulk into a throwaway file / database; the follow-up schedule
is then written by carebot's own ``storage.care.schedule_followups`` for every customer (what
migration 0008 does for orders delivered before it; an import does it for the customers whose
orders it changed), and everything is timed through carebot's own code
(``scheduler.care.CarePlanner`` with the shipped ``care.toml``):

1. each planner's read (birthdays, holidays, follow-ups after delivery and after tickets,
   retention offers), on an ordinary day (2027-03-10, 11:00 in Shanghai);
2. the whole run (reads + writing the outbox rows and coupons, one transaction);
3. the same run again (idempotent: nothing new is written);
4. with ``--holiday``: National Day (2027-10-01), when every Chinese customer is greeted.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.settings import EXAMPLE_CONFIG_DIR
from scheduler.care import CarePlanner, planner_for
from storage.care import schedule_followups
from storage.engine import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models import Coupon, Outbox

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DAY = datetime(2027, 3, 10, 3, 0, tzinfo=UTC)  # 11:00 in Asia/Shanghai
HOLIDAY = datetime(2027, 10, 1, 3, 0, tzinfo=UTC)
BATCH = 100_000
ZONES = [  # (time zone, country, share)
    ("Asia/Shanghai", "CN", 0.85),
    ("Asia/Singapore", "SG", 0.05),
    ("Asia/Hong_Kong", "HK", 0.03),
    ("America/New_York", "US", 0.04),
    ("Europe/London", "GB", 0.03),
]
CUSTOMER_COLUMNS = [
    "id", "telegram_user_id", "chat_id", "name", "language", "language_chosen", "timezone",
    "country", "birth_month", "birth_day", "birthday_lunar", "consent", "consent_answered",
    "reachable", "tier", "tier_pinned", "stage", "created_at", "updated_at",
]  # fmt: skip
ORDER_COLUMNS = [
    "id", "external_id", "customer_id", "amount_cents", "currency", "value_cents", "status",
    "placed_at", "placed_day", "delivered_at", "created_at", "updated_at",
]  # fmt: skip


def customer_rows(customers: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    zones = [zone for zone, _country, _share in ZONES]
    weights = [share for _zone, _country, share in ZONES]
    country_of = {zone: country for zone, country, _share in ZONES}
    first_day = date(1960, 1, 1)
    span = (date(2008, 12, 31) - first_day).days
    for customer_id in range(1, customers + 1):
        zone = rng.choices(zones, weights)[0]
        lunar = country_of[zone] == "CN" and rng.random() < 0.08
        month: int | None
        day: int | None
        if rng.random() < 0.10:
            month = day = None
        elif lunar:
            month, day = rng.randint(1, 12), rng.randint(1, 30)
        else:
            born = first_day + timedelta(days=rng.randint(0, span))
            month, day = born.month, born.day
        draw = rng.random()
        tier = "vip" if draw < 0.05 else "important" if draw < 0.20 else "normal"
        yield (
            customer_id,
            10_000_000 + customer_id,
            10_000_000 + customer_id,
            f"Customer {customer_id}",
            "zh" if country_of[zone] in ("CN", "HK") else "en",
            False,
            zone,
            country_of[zone],
            month,
            day,
            lunar,
            rng.random() < 0.90,
            True,
            rng.random() < 0.97,
            tier,
            False,
            "at_risk" if rng.random() < 0.08 else "active",
        )


def order_rows(customers: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed + 1)
    order_id = 0
    for customer_id in range(1, customers + 1):
        if rng.random() >= 0.40:
            continue
        order_id += 1
        delivered = DAY - timedelta(days=rng.randint(0, 150), minutes=rng.randint(0, 1439))
        placed = delivered - timedelta(days=rng.randint(1, 6))
        cents = rng.randint(2_000, 200_000)
        yield (
            order_id,
            f"O{order_id:09d}",
            customer_id,
            cents,
            "CNY",
            cents,
            "delivered",
            placed,
            (placed.date() - date(1970, 1, 1)).days,
            delivered,
        )


def _sqlite_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def load_sqlite(path: Path, customers: int, seed: int) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    stamp = "2026-01-01 00:00:00.000000"
    marks = ", ".join("?" for _ in CUSTOMER_COLUMNS)
    rows = customer_rows(customers, seed)
    while batch := list(itertools.islice(rows, BATCH)):
        with connection:
            connection.executemany(
                f"INSERT INTO customers ({', '.join(CUSTOMER_COLUMNS)}) VALUES ({marks})",
                ((*row, stamp, stamp) for row in batch),
            )
    marks = ", ".join("?" for _ in ORDER_COLUMNS)
    orders = order_rows(customers, seed)
    while batch := list(itertools.islice(orders, BATCH)):
        with connection:
            connection.executemany(
                f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) VALUES ({marks})",
                (
                    (*row[:7], _sqlite_time(row[7]), row[8], _sqlite_time(row[9]), stamp, stamp)
                    for row in batch
                ),
            )
    connection.execute("ANALYZE")
    connection.close()


async def load_postgres(url: str, customers: int, seed: int) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        rows = customer_rows(customers, seed)
        while batch := list(itertools.islice(rows, BATCH)):
            await connection.copy_records_to_table(
                "customers", records=[(*row, stamp, stamp) for row in batch],
                columns=CUSTOMER_COLUMNS,
            )  # fmt: skip
        orders = order_rows(customers, seed)
        while batch := list(itertools.islice(orders, BATCH)):
            await connection.copy_records_to_table(
                "orders", records=[(*row, stamp, stamp) for row in batch], columns=ORDER_COLUMNS
            )
        await connection.execute("VACUUM ANALYZE customers")
        await connection.execute("VACUUM ANALYZE orders")
    finally:
        await connection.close()


async def timed(url: str, holiday: bool) -> list[str]:
    rules = load_config(EXAMPLE_CONFIG_DIR)
    planner = planner_for(rules)
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    lines: list[str] = []
    try:
        started = time.perf_counter()
        async with sessionmaker.begin() as session:
            scheduled = await schedule_followups(session)
        elapsed = time.perf_counter() - started
        lines.append(f"  follow-up schedule written: {scheduled} customers in {elapsed:.1f} s")
        for temperature in ("cold", "warm"):
            lines.append(f"  reads ({temperature}):")
            lines.extend(await _reads(sessionmaker, planner))
        moments = [
            ("2027-03-10 (first run: every at-risk customer gets an offer)", DAY),
            ("2027-03-11 (a day later: the steady state)", DAY + timedelta(days=1)),
        ]
        if holiday:
            moments.append(("2027-10-01 (National Day: every Chinese customer)", HOLIDAY))
        for label, moment in moments:
            lines.append(f"  {label}:")
            for attempt in ("run", "run again"):
                started = time.perf_counter()
                async with sessionmaker.begin() as session:
                    report = await planner.run(session, moment)
                elapsed = time.perf_counter() - started
                async with sessionmaker() as session:
                    rows = await session.scalar(select(func.count()).select_from(Outbox))
                    coupons = await session.scalar(select(func.count()).select_from(Coupon))
                kinds = Counter(item.occasion for item in report.planned)
                lines.append(
                    f"    {attempt:<9} {elapsed * 1000:8.1f} ms  {len(report.planned):>7} planned "
                    f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
                    f"outbox rows now {rows}, coupons {coupons}"
                )
    finally:
        await engine.dispose()
    return lines


async def _reads(
    sessionmaker: async_sessionmaker[AsyncSession], planner: CarePlanner
) -> list[str]:
    lines = []
    total = 0.0
    async with sessionmaker() as session:
        for name, step in (
            ("birthdays", planner.birthdays),
            ("holidays", planner.holidays),
            ("follow-ups (delivery)", planner.followups),
            ("follow-ups (tickets)", planner.after_tickets),
            ("retention offers", planner.retention),
        ):
            started = time.perf_counter()
            found = await step(session, DAY)
            elapsed = time.perf_counter() - started
            total += elapsed if name != "retention offers" else 0.0
            lines.append(f"    {name:<22} {elapsed * 1000:8.1f} ms  {len(found):>7} found")
    lines.append(f"    birthday + holiday + follow-up reads: {total * 1000:.1f} ms")
    return lines


async def bench(kind: str, customers: int, seed: int, holiday: bool) -> list[str]:
    if kind == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="carebot-bench-plan-"))
        path = directory / "plan.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(upgrade, url)
        started = time.perf_counter()
        await asyncio.to_thread(load_sqlite, path, customers, seed)
        loaded = time.perf_counter() - started
        try:
            return [f"sqlite (loaded in {loaded:.0f} s):", *await timed(url, holiday)]
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    name = f"carebot_bench_plan_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        started = time.perf_counter()
        await load_postgres(url, customers, seed)
        loaded = time.perf_counter() - started
        return [f"postgresql (loaded in {loaded:.0f} s):", *await timed(url, holiday)]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--holiday", action="store_true", help="also time National Day")
    args = parser.parse_args()
    print(f"care planning, {args.customers:,} customers")
    for kind in ("sqlite", "postgresql"):
        if args.only in (None, kind):
            for line in asyncio.run(bench(kind, args.customers, args.seed, args.holiday)):
                print(line, flush=True)


if __name__ == "__main__":
    main()
