"""Benchmark: recommendations on a generated shop; hit rate @3 against a popularity baseline,
and the nightly job's time for 1,000,000 order lines on SQLite and PostgreSQL.

    python bench/recommend.py                      # both databases, 1,000,000 order lines
    python bench/recommend.py --lines 100000 --only sqlite

The shop (seeded, the same on both databases):

- 5,000 products in 100 categories of 50. Categories come in complementary pairs (kettles and
  filters, phones and cases: category 2i with 2i+1). Popularity follows a Zipf law twice: the
  categories (exponent 0.8) and the products within a category (1.1).
- Each product has two complements in the paired category, drawn by that category's Zipf law
  (a kettle goes with one of the popular filter packs).
- Each customer has two favourite categories (drawn by category popularity) and 1 + a geometric
  number of orders (mean 3.3, at most 30), about 45 days apart. An order's first product comes
  from a favourite category (85 %) or from anywhere (15 %), each Zipf-weighted; each of its two
  complements joins the order with probability 0.45; one more product of a favourite category
  with probability 0.25. 3 % of orders are refunded.

Each customer's last order is held out; customers are generated until the rest, which is what
the database holds, has ``--lines`` order lines. The job runs through carebot's own code path
(``storage.recommend.recompute`` with the shipped ``recommend.toml``). A customer counts when
the held-out order has a product they had not bought before; a hit is one of those among their
top 3. The baseline, in the same run on the same data: the 3 products most customers bought,
less those the customer already has.

Time: wall clock of the job's transaction (commit included), the CPU of this process (all of
it on SQLite, where the database runs in-process), and on PostgreSQL the CPU of the server
backend that ran it (read from /proc when the server is on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench._databases import scratch_database
from bot.kernel.files import load_config_file
from bot.kernel.recommend_config import RecommendConfig
from bot.settings import EXAMPLE_CONFIG_DIR
from scheduler.recommend import build_spec
from storage import recommend as recommend_queries
from storage.engine import create_engine, create_sessionmaker
from storage.recommend import RecommendSpec

CATEGORIES = 100
PER_CATEGORY = 50
NOW = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)  # 04:00 in Shanghai
TODAY = (NOW.date() - datetime(1970, 1, 1, tzinfo=UTC).date()).days
STAMP = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 100_000


def _cumulative(weights: list[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _zipf(count: int, exponent: float) -> list[float]:
    return _cumulative([1 / (rank + 1) ** exponent for rank in range(count)])


@dataclass
class Shop:
    """The generated shop: training orders (in the database) and each customer's held-out
    last order."""

    seed: int
    complements: dict[int, list[int]] = field(default_factory=dict)
    orders: list[tuple[int, int, int, str, list[int]]] = field(default_factory=list)
    """(order id, customer id, day, status, product ids)"""
    held_out: dict[int, set[int]] = field(default_factory=dict)
    lines: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.category_weights = _zipf(CATEGORIES, 0.8)
        self.product_weights = _zipf(PER_CATEGORY, 1.1)
        for category in range(CATEGORIES):
            partner = category ^ 1
            for product in self._products_of(category):
                self.complements[product] = [self._pick(partner) for _ in range(2)]

    def _products_of(self, category: int) -> range:
        return range(category * PER_CATEGORY + 1, (category + 1) * PER_CATEGORY + 1)

    def _pick(self, category: int) -> int:
        """A product of ``category`` by its Zipf law (ids from 1)."""
        rank = bisect.bisect(self.product_weights, self.rng.random() * self.product_weights[-1])
        return category * PER_CATEGORY + 1 + rank

    def _category(self) -> int:
        return bisect.bisect(self.category_weights, self.rng.random() * self.category_weights[-1])

    def _basket(self, favourites: list[int]) -> list[int]:
        rng = self.rng
        anchor_category = rng.choice(favourites) if rng.random() < 0.85 else self._category()
        anchor = self._pick(anchor_category)
        basket = [anchor]
        basket += [item for item in self.complements[anchor] if rng.random() < 0.45]
        if rng.random() < 0.25:
            basket.append(self._pick(rng.choice(favourites)))
        return list(dict.fromkeys(basket))

    def generate(self, lines: int) -> None:
        """Customers until the training orders have ``lines`` order lines."""
        rng, order_id, customer = self.rng, 0, 0
        while self.lines < lines:
            customer += 1
            favourites = [self._category(), self._category()]
            count = min(30, 1 + int(rng.expovariate(1 / 2.3)))
            day = TODAY - rng.randint(30, 730)
            baskets = []
            for _ in range(count):
                baskets.append((day, self._basket(favourites)))
                day = min(TODAY, day + 1 + int(rng.expovariate(1 / 45)))
            if count > 1:
                self.held_out[customer] = set(baskets.pop()[1])
            for day, basket in baskets:
                order_id += 1
                status = "refunded" if rng.random() < 0.03 else "completed"
                self.orders.append((order_id, customer, day, status, basket))
                self.lines += len(basket)
        self.customers = customer


def _customer_rows(shop: Shop) -> Iterator[tuple[Any, ...]]:
    for customer in range(1, shop.customers + 1):
        yield (customer, f"C{customer:08d}", "zh", "Asia/Shanghai", "CN", "normal", "active")


def _product_rows() -> Iterator[tuple[Any, ...]]:
    for product in range(1, CATEGORIES * PER_CATEGORY + 1):
        category = (product - 1) // PER_CATEGORY
        yield (
            product,
            f"SKU{product:05d}",
            f"商品{product}",
            f"Product {product}",
            f"cat{category}",
            f"https://shop.example/p/{product}",
        )


def _line_rows(shop: Shop) -> Iterator[tuple[int, int, int]]:
    line_id = 0
    for order_id, _customer, _day, _status, basket in shop.orders:
        for product in basket:
            line_id += 1
            yield line_id, order_id, product


async def load_sqlite(url: str, shop: Shop) -> None:
    """Bulk load with sqlite3 (executemany in big transactions)."""
    connection = sqlite3.connect(str(make_url(url).database))
    connection.execute("PRAGMA synchronous=OFF")
    stamp = STAMP.strftime("%Y-%m-%d %H:%M:%S.%f")
    with connection:
        connection.executemany(
            "INSERT INTO customers (id, external_id, language, timezone, country, tier, stage,"
            " language_chosen, birthday_lunar, consent, consent_answered, reachable,"
            " tier_pinned, created_at, updated_at)"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 1, 1, 1, 0, '{stamp}', '{stamp}')",
            _customer_rows(shop),
        )
        connection.executemany(
            "INSERT INTO products (id, sku, name_zh, name_en, category, url, active, created_at,"
            f" updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, '{stamp}', '{stamp}')",
            _product_rows(),
        )
        connection.executemany(
            "INSERT INTO orders (id, external_id, customer_id, amount_cents, currency,"
            " value_cents, status, placed_at, placed_day, created_at, updated_at)"
            f" VALUES (?, ?, ?, 10000, 'CNY', 10000, ?, '{stamp}', ?, '{stamp}', '{stamp}')",
            ((o, f"O{o:09d}", c, s, d) for o, c, d, s, _ in shop.orders),
        )
    rows = _line_rows(shop)
    while batch := list(itertools.islice(rows, BATCH)):
        with connection:
            connection.executemany(
                "INSERT INTO order_lines (id, order_id, product_id, quantity, unit_price_cents,"
                f" currency, created_at, updated_at) VALUES (?, ?, ?, 1, 5000, 'CNY',"
                f" '{stamp}', '{stamp}')",
                batch,
            )
    connection.execute("ANALYZE")
    connection.close()


async def load_postgres(url: str, shop: Shop) -> None:
    """Bulk load with COPY, then VACUUM ANALYZE (what autovacuum would have done)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "customers",
            records=((*row, False, False, True, True, True, False, STAMP, STAMP)
                     for row in _customer_rows(shop)),
            columns=["id", "external_id", "language", "timezone", "country", "tier", "stage",
                     "language_chosen", "birthday_lunar", "consent", "consent_answered",
                     "reachable", "tier_pinned", "created_at", "updated_at"],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "products",
            records=((*row, True, STAMP, STAMP) for row in _product_rows()),
            columns=["id", "sku", "name_zh", "name_en", "category", "url", "active",
                     "created_at", "updated_at"],
        )  # fmt: skip
        await connection.copy_records_to_table(
            "orders",
            records=((o, f"O{o:09d}", c, 10000, "CNY", 10000, s, STAMP, d, STAMP, STAMP)
                     for o, c, d, s, _ in shop.orders),
            columns=["id", "external_id", "customer_id", "amount_cents", "currency",
                     "value_cents", "status", "placed_at", "placed_day", "created_at",
                     "updated_at"],
        )  # fmt: skip
        rows = _line_rows(shop)
        while batch := list(itertools.islice(rows, BATCH)):
            await connection.copy_records_to_table(
                "order_lines",
                records=[(i, o, p, 1, 5000, "CNY", STAMP, STAMP) for i, o, p in batch],
                columns=["id", "order_id", "product_id", "quantity", "unit_price_cents",
                         "currency", "created_at", "updated_at"],
            )  # fmt: skip
        for table in ("customers", "products", "orders", "order_lines"):
            await connection.execute(f"VACUUM ANALYZE {table}")
    finally:
        await connection.close()


def _backend_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) of a PostgreSQL backend on this machine, else None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (100/s)


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float
    server_cpu_s: float | None
    summary: recommend_queries.RunSummary


async def run_job(url: str, spec: RecommendSpec) -> tuple[Timing, dict[int, list[int]]]:
    """The job in one transaction, timed; then every customer's list."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker.begin() as session:
            pid = None
            if url.startswith("postgresql"):
                pid = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            server_before = _backend_cpu(pid)
            wall, cpu = time.perf_counter(), time.process_time()
            summary = await recommend_queries.recompute(session, spec, day=TODAY, now=NOW)
            await session.commit()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            server_after = _backend_cpu(pid)
        server = None
        if server_before is not None and server_after is not None:
            server = server_after - server_before
        lists: dict[int, list[int]] = {}
        async with sessionmaker() as session:
            result = await session.execute(
                text("SELECT customer_id, product_id FROM recommendations ORDER BY 1, rank")
            )
            for customer, product in result:
                lists.setdefault(int(customer), []).append(int(product))
    finally:
        await engine.dispose()
    return Timing(wall, cpu, server, summary), lists


def hit_rates(shop: Shop, lists: dict[int, list[int]], k: int = 3) -> tuple[int, float, float]:
    """(customers evaluated, recommender hit rate @k, popularity baseline hit rate @k)."""
    bought: dict[int, set[int]] = {}
    buyers: Counter[int] = Counter()
    for _order, customer, _day, status, basket in shop.orders:
        mine = bought.setdefault(customer, set())
        for product in basket:
            if status == "completed" and product not in mine:
                buyers[product] += 1
            mine.add(product)
    ranked = [product for product, _count in buyers.most_common()]
    evaluated = hits = baseline = 0
    for customer, held in shop.held_out.items():
        mine = bought.get(customer, set())
        new = held - mine
        if not new:
            continue
        evaluated += 1
        hits += bool(new & set(lists.get(customer, [])[:k]))
        popular = list(itertools.islice((p for p in ranked if p not in mine), k))
        baseline += bool(new & set(popular))
    return evaluated, hits / evaluated, baseline / evaluated


async def bench(kind: str, shop: Shop, spec: RecommendSpec) -> None:
    with tempfile.TemporaryDirectory(prefix="carebot-bench-") as directory:
        async with scratch_database(kind, Path(directory), "recommend") as url:
            started = time.perf_counter()
            await (load_sqlite if kind == "sqlite" else load_postgres)(url, shop)
            load_s = time.perf_counter() - started
            timing, lists = await run_job(url, spec)
    evaluated, rate, baseline = hit_rates(shop, lists)
    summary = timing.summary
    server = "" if timing.server_cpu_s is None else f", server {timing.server_cpu_s:.1f} s"
    print(
        f"{kind:<10} load {load_s:5.1f} s | job: wall {timing.wall_s:5.1f} s, CPU this process"
        f" {timing.cpu_s:.1f} s{server} | {summary.lines:,} lines read, {summary.pairs:,}"
        f" pairs, {summary.customers:,} customers with a list | hit rate @3 on {evaluated:,}"
        f" customers: recommender {rate:.1%}, popularity {baseline:.1%}"
        f" ({rate / baseline:.2f}x)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--window-days", type=int, help="override recommend.toml [together] window_days"
    )
    parser.add_argument("--neighbours", type=int, help="override [together] neighbours")
    parser.add_argument("--no-fill", action="store_true", help="fill_with_bestsellers = false")
    args = parser.parse_args()
    spec = build_spec(load_config_file(EXAMPLE_CONFIG_DIR / "recommend.toml", RecommendConfig))
    if args.window_days is not None:
        spec = replace(spec, window_days=args.window_days)
    if args.neighbours is not None:
        spec = replace(spec, neighbours=args.neighbours)
    if args.no_fill:
        spec = replace(spec, fill_with_bestsellers=False)
    shop = Shop(args.seed)
    shop.generate(args.lines)
    print(
        f"recommend benchmark: {shop.lines:,} order lines in {len(shop.orders):,} orders of"
        f" {shop.customers:,} customers (+ {len(shop.held_out):,} held-out last orders),"
        f" {CATEGORIES * PER_CATEGORY:,} products, seed {args.seed}; {spec}",
        flush=True,
    )
    for kind in [args.only] if args.only else ["sqlite", "postgresql"]:
        asyncio.run(bench(kind, shop, spec))


if __name__ == "__main__":
    main()
