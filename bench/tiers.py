"""Benchmark: RFM tiers for 1,000,000 customers and 5,000,000 orders, on SQLite and PostgreSQL.

    python bench/tiers.py                  # both databases, full size
    python bench/tiers.py --customers 100000 --orders 500000 --only sqlite

The data is the same on both databases (seeded): a quarter of the customers never ordered, a
third ordered once, a few heavy buyers (Pareto) hold a large share of the orders; orders spread
over three years, 3 % refunded and 2 % cancelled. It is loaded in bulk (executemany in big
batches on SQLite, COPY on PostgreSQL, into a throwaway file / database) and then timed through
carebot's own code path (``scheduler.tiers.recompute`` with the shipped ``tiers.toml``):

1. the first run: order statistics (first/last order, median gap) for every customer, then the
   full run; after an import carebot does this once;
2. the nightly full run, a day later and two days later: new quintile boundaries, every
   customer scored, tiered, staged and flagged, written where something changed; window counts
   brought forward from the day before (only customers with an order crossing a window edge);
3. the same full run recounting every customer's window counts from all orders (what the
   nightly run would cost without carrying them over);
4. an incremental run after a new order for each of 100 customers.

On PostgreSQL the script runs ``VACUUM ANALYZE`` on the tiers tables before each full run: what
autovacuum does in the day between two nightly runs (the first run rewrites every row).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import TierConfig
from bot.kernel.files import load_config_file
from bot.settings import EXAMPLE_CONFIG_DIR
from scheduler import tiers as tier_job
from storage import orders as order_queries
from storage.engine import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.tiers.spec import RunSummary, day_number, day_of

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 09:00 in Asia/Shanghai
TODAY = day_number(date(2026, 11, 23))
HISTORY_DAYS = 3 * 365
BATCH = 100_000


@dataclass(frozen=True)
class Figures:
    database: str
    load_s: float
    first_s: float
    nightly_s: list[float]
    recount_s: float
    incremental_ms: float
    nightly: RunSummary
    incremental: RunSummary


def order_counts(customers: int, orders: int, rng: random.Random) -> list[int]:
    """Orders per customer with a realistic skew, adjusted to exactly ``orders`` in total."""
    counts = []
    for _ in range(customers):
        u = rng.random()
        if u < 0.25:
            count = 0
        elif u < 0.60:
            count = 1
        elif u < 0.85:
            count = rng.randint(2, 5)
        elif u < 0.97:
            count = rng.randint(6, 20)
        else:
            count = min(int(rng.paretovariate(1.2) * 20), 2000)
        counts.append(count)
    total = sum(counts)
    while total != orders:
        index = rng.randrange(customers)
        if total > orders and counts[index] > 1:
            counts[index] -= 1
            total -= 1
        elif total < orders and counts[index] >= 2:
            counts[index] += 1
            total += 1
    return counts


def order_rows(counts: list[int], seed: int) -> Iterator[tuple[Any, ...]]:
    """(id, external id, customer id, cents, status, placed day) per order, per customer."""
    rng = random.Random(seed + 1)
    order_id = 0
    for customer_id, count in enumerate(counts, start=1):
        if not count:
            continue
        first = TODAY - rng.randint(0, HISTORY_DAYS)
        # Some keep buying until today, others stopped some time ago (they churn).
        last = first + int((TODAY - first) * (1.0 if rng.random() < 0.5 else rng.random()))
        basket = rng.lognormvariate(4.6, 0.6) * 100  # about ¥100 per order, varying per buyer
        days = sorted(rng.randint(first, last) for _ in range(count))
        for day in days:
            order_id += 1
            u = rng.random()
            status = "refunded" if u < 0.03 else "cancelled" if u < 0.05 else "completed"
            cents = max(100, int(basket * rng.lognormvariate(0, 0.5)))
            yield order_id, f"O{order_id:09d}", customer_id, cents, status, day


def customer_rows(customers: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed + 2)
    for customer_id in range(1, customers + 1):
        pinned = rng.random() < 0.001
        yield (
            customer_id,
            f"C{customer_id:08d}",
            f"Customer {customer_id}",
            f"+86138{customer_id:08d}",
            rng.randint(1, 12),
            rng.randint(1, 28),
            "vip" if pinned else "normal",
            pinned,
            f"L{customer_id:09d}",
        )


async def load_sqlite(path: Path, counts: list[int], customers: int, seed: int) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    stamp = "2026-01-01 00:00:00.000000"
    placed = {
        day: f"{day_of(day).isoformat()} 04:00:00.000000"
        for day in range(TODAY - HISTORY_DAYS - 1, TODAY + 2)
    }
    with connection:
        connection.executemany(
            "INSERT INTO customers (id, external_id, name, phone, birth_month, birth_day, tier,"
            " tier_pinned, link_code, language, language_chosen, timezone, country,"
            " birthday_lunar, consent, consent_answered, reachable, stage, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'zh', 0, 'Asia/Shanghai', 'CN',"
            " 0, 1, 1, 1, 'prospect', ?, ?)",
            ((*row, stamp, stamp) for row in customer_rows(customers, seed)),
        )
    rows = order_rows(counts, seed)
    while batch := list(itertools.islice(rows, BATCH)):
        with connection:
            connection.executemany(
                "INSERT INTO orders (id, external_id, customer_id, amount_cents, currency,"
                " value_cents, status, placed_at, placed_day, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'CNY', ?, ?, ?, ?, ?, ?)",
                (
                    (i, ext, cid, cents, cents, status, placed[day], day, stamp, stamp)
                    for i, ext, cid, cents, status, day in batch
                ),
            )
    connection.close()


async def load_postgres(url: str, counts: list[int], customers: int, seed: int) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    placed = {
        day: datetime.combine(day_of(day), datetime.min.time(), UTC) + timedelta(hours=4)
        for day in range(TODAY - HISTORY_DAYS - 1, TODAY + 2)
    }
    try:
        await connection.copy_records_to_table(
            "customers",
            records=(
                (*row, "zh", False, "Asia/Shanghai", "CN", False, True, True, True, "prospect",
                 stamp, stamp)
                for row in customer_rows(customers, seed)
            ),
            columns=[
                "id", "external_id", "name", "phone", "birth_month", "birth_day", "tier",
                "tier_pinned", "link_code", "language", "language_chosen", "timezone",
                "country", "birthday_lunar", "consent", "consent_answered", "reachable",
                "stage", "created_at", "updated_at",
            ],
        )  # fmt: skip
        rows = order_rows(counts, seed)
        while batch := list(itertools.islice(rows, BATCH)):
            await connection.copy_records_to_table(
                "orders",
                records=[
                    (i, ext, cid, cents, "CNY", cents, status, placed[day], day, stamp, stamp)
                    for i, ext, cid, cents, status, day in batch
                ],
                columns=[
                    "id", "external_id", "customer_id", "amount_cents", "currency",
                    "value_cents", "status", "placed_at", "placed_day", "created_at",
                    "updated_at",
                ],
            )  # fmt: skip
        await connection.execute(
            "SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT max(id) FROM orders))"
        )
        await connection.execute("VACUUM ANALYZE customers")
        await connection.execute("VACUUM ANALYZE orders")
    finally:
        await connection.close()


async def vacuum(url: str) -> None:
    """What autovacuum does in the day between two nightly runs (PostgreSQL only)."""
    if not url.startswith("postgresql"):
        return
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("VACUUM ANALYZE rfm_scores, customers, tier_history")
    finally:
        await connection.close()


async def timed(
    sessionmaker: async_sessionmaker[AsyncSession],
    step: Callable[[AsyncSession], Awaitable[RunSummary]],
) -> tuple[float, RunSummary]:
    """One recompute in its own transaction (commit included), on a warm connection."""
    async with sessionmaker() as session:  # connect outside the timing
        await session.execute(text("SELECT 1"))
    started = time.perf_counter()
    async with sessionmaker.begin() as session:
        summary = await step(session)
    return time.perf_counter() - started, summary


async def add_orders_for(url: str, buyers: list[int], when: datetime, day: int) -> None:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await order_queries.add_orders(
                session,
                [
                    order_queries.OrderRow(
                        line=line,
                        external_id=f"N{line:09d}",
                        customer_external_id=f"C{cid:08d}",
                        amount_cents=12_800,
                        currency="CNY",
                        value_cents=12_800,
                        status="completed",
                        placed_at=when,
                        placed_day=day,
                    )
                    for line, cid in enumerate(buyers, start=2)
                ],
                when,
            )
    finally:
        await engine.dispose()


async def timed_runs(url: str, rules: TierConfig, buyers: list[int]) -> dict[str, Any]:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    try:

        def first_run(session: AsyncSession) -> Awaitable[RunSummary]:
            return tier_job.recompute(session, rules, NOW, rebuild=True)

        first_s, _ = await timed(sessionmaker, first_run)
        nightly_s: list[float] = []
        nightly = None
        for day in (1, 2):
            await vacuum(url)
            at = NOW + timedelta(days=day)

            def full_run(session: AsyncSession, at: datetime = at) -> Awaitable[RunSummary]:
                return tier_job.recompute(session, rules, at, full=True)

            seconds, nightly = await timed(sessionmaker, full_run)
            nightly_s.append(seconds)
        await vacuum(url)
        at = NOW + timedelta(days=3)

        def recount_run(session: AsyncSession) -> Awaitable[RunSummary]:
            return tier_job.recompute(session, rules, at, full=True, recount=True)

        recount_s, _ = await timed(sessionmaker, recount_run)
        await add_orders_for(url, buyers, at, tier_job.shop_today(rules, at))  # not timed

        def incremental_run(session: AsyncSession) -> Awaitable[RunSummary]:
            return tier_job.recompute(session, rules, at)

        incremental_s, incremental = await timed(sessionmaker, incremental_run)
    finally:
        await engine.dispose()
    return {
        "first_s": first_s,
        "nightly_s": nightly_s,
        "recount_s": recount_s,
        "incremental_ms": incremental_s * 1000,
        "nightly": nightly,
        "incremental": incremental,
    }


async def bench(kind: str, customers: int, orders: int, seed: int) -> Figures:
    rules = load_config_file(EXAMPLE_CONFIG_DIR / "tiers.toml", TierConfig)
    counts = order_counts(customers, orders, random.Random(seed))
    buyers = random.Random(seed + 3).sample(
        [cid for cid, count in enumerate(counts, start=1) if count], 100
    )
    admin = None
    with tempfile.TemporaryDirectory(prefix="carebot-bench-") as directory:
        if kind == "sqlite":
            path = Path(directory) / "bench.db"
            url = f"sqlite+aiosqlite:///{path}"
            await asyncio.to_thread(upgrade, url)
            started = time.perf_counter()
            await load_sqlite(path, counts, customers, seed)
        else:
            name = f"carebot_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(POSTGRES_ADMIN)
            await admin.execute(f'CREATE DATABASE "{name}"')
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            await asyncio.to_thread(upgrade, url)
            started = time.perf_counter()
            await load_postgres(url, counts, customers, seed)
        load_s = time.perf_counter() - started
        try:
            timings = await timed_runs(url, rules, buyers)
        finally:
            if admin is not None:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
    return Figures(kind, load_s, **timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["sqlite", "postgresql"]
    print(
        f"tiers benchmark: {args.customers:,} customers, {args.orders:,} orders, seed {args.seed}"
    )
    for kind in kinds:
        figures = asyncio.run(bench(kind, args.customers, args.orders, args.seed))
        nightly = figures.nightly
        best = min(figures.nightly_s)
        print(
            f"{kind:<10} load {figures.load_s:6.1f} s | first run {figures.first_s:6.2f} s"
            f" | nightly full runs {' / '.join(f'{s:.2f}' for s in figures.nightly_s)} s"
            f" ({args.orders / best:,.0f} orders/s; {nightly.scored:,} customers with orders"
            f" scored, {nightly.customer_changes:,} changed)"
            f" | full run recounting windows from all orders {figures.recount_s:.2f} s"
            f" ({args.orders / figures.recount_s:,.0f} orders/s)"
            f" | incremental, 100 customers: {figures.incremental_ms:.0f} ms"
            f" ({figures.incremental.scored} scored)",
            flush=True,
        )


if __name__ == "__main__":
    main()
