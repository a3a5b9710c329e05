"""Recommendations in SQL, the same statements on SQLite and PostgreSQL (README:
Recommendations).

A run (``recompute``, the nightly job's and ``carebot recommend run``'s) is a few ``INSERT ...
SELECT`` statements over temporary tables, in the caller's transaction:

1. ``rec_lines``: the lines of counted orders (not refunded or cancelled), with the order's
   customer and day; ``rec_bought``: every (customer, product) ever ordered, and whether a
   counted order has it; ``rec_buyers``: customers per product.
2. ``product_pairs``: for products a and b, ``support`` = customers who bought both together
   (in one order, or within ``window_days`` of each other), ``confidence`` = support / buyers
   of a; only pairs over both thresholds, the ``neighbours`` best per product, b active.
3. ``rec_candidates``: per customer, the active products they never bought, scored by the sum
   of the confidences from what they bought; a customer with fewer than ``top_k`` gets the
   best sellers they never bought after them (``fill_with_bestsellers``).
4. ``recommendations``: each customer's ``top_k`` candidates, rewritten whole; erased customers
   get none.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import COUNTED_ORDERS, Product, Recommendation, RecommendRun
from storage.tiers.dialect import analyze, create_temp_table, dialect_name

# pg_advisory_xact_lock key of recommendation runs ("recom" in ASCII).
RUN_LOCK_KEY = 0x7265636F6D
BESTSELLERS_SPARE = 20
"""Best sellers considered beyond ``top_k`` to fill a list (some are already bought)."""


@dataclass(frozen=True)
class RecommendSpec:
    """``recommend.toml`` as the plain values a run needs."""

    window_days: int = 0
    min_support: int = 2
    min_confidence: float = 0.05
    neighbours: int = 20
    top_k: int = 3
    fill_with_bestsellers: bool = True


@dataclass(frozen=True)
class RunSummary:
    """What a run found: counted order lines read, pairs kept, customers with a list."""

    run_id: int
    lines: int
    pairs: int
    customers: int
    duration_ms: int


async def lock_runs(session: AsyncSession) -> None:
    """Serialise runs until this transaction ends (several processes on one PostgreSQL)."""
    if dialect_name(session) == "postgresql":
        await session.execute(text(f"SELECT pg_advisory_xact_lock({RUN_LOCK_KEY})"))


async def last_run(session: AsyncSession) -> RecommendRun | None:
    """The latest run."""
    result = await session.execute(select(RecommendRun).order_by(RecommendRun.id.desc()).limit(1))
    return result.scalar_one_or_none()


async def _count(session: AsyncSession, table: str) -> int:
    return int((await session.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one())


async def _collect_lines(session: AsyncSession, spec: RecommendSpec) -> dict[str, str]:
    """Steps 1: the temporary tables every later step reads; their qualified names."""
    # Same-order pairs join lines by order; windowed pairs by customer and day.
    key = (
        "order_id, product_id"
        if spec.window_days == 0
        else "customer_id, day, order_id, product_id"
    )
    lines = await create_temp_table(
        session,
        "rec_lines",
        "customer_id BIGINT NOT NULL, order_id BIGINT NOT NULL, day INTEGER NOT NULL, "
        f"product_id BIGINT NOT NULL, PRIMARY KEY ({key})",
    )
    await session.execute(
        text(
            f"""
            INSERT INTO {lines} (customer_id, order_id, day, product_id)
            SELECT o.customer_id, o.id, o.placed_day, l.product_id
            FROM order_lines AS l JOIN orders AS o ON o.id = l.order_id
            WHERE o.{COUNTED_ORDERS}
            """
        )
    )
    bought = await create_temp_table(
        session,
        "rec_bought",
        "customer_id BIGINT NOT NULL, product_id BIGINT NOT NULL, counted SMALLINT NOT NULL, "
        "PRIMARY KEY (customer_id, product_id)",
    )
    await session.execute(
        text(
            f"""
            INSERT INTO {bought} (customer_id, product_id, counted)
            SELECT o.customer_id, l.product_id,
                   MAX(CASE WHEN o.{COUNTED_ORDERS} THEN 1 ELSE 0 END)
            FROM order_lines AS l JOIN orders AS o ON o.id = l.order_id
            GROUP BY o.customer_id, l.product_id
            """
        )
    )
    buyers = await create_temp_table(
        session, "rec_buyers", "product_id BIGINT PRIMARY KEY, buyers INTEGER NOT NULL"
    )
    await session.execute(
        text(
            f"""
            INSERT INTO {buyers} (product_id, buyers)
            SELECT product_id, COUNT(*) FROM {bought} WHERE counted = 1 GROUP BY product_id
            """
        )
    )
    for table in (lines, bought, buyers):
        await analyze(session, table)
    return {"lines": lines, "bought": bought, "buyers": buyers}


async def _compute_pairs(session: AsyncSession, spec: RecommendSpec, temp: dict[str, str]) -> int:
    """Step 2: ``product_pairs`` rewritten; how many pairs were kept."""
    if spec.window_days == 0:
        together = "x.order_id = a.order_id"
    else:
        together = (
            "x.customer_id = a.customer_id AND x.day BETWEEN a.day - :days AND a.day + :days"
        )
    await session.execute(text("DELETE FROM product_pairs"))
    result = await session.execute(
        text(
            f"""
            INSERT INTO product_pairs (product_id, other_id, support, confidence)
            SELECT product_id, other_id, support, confidence FROM (
                SELECT t.product_id, t.other_id, t.support,
                       CAST(t.support AS FLOAT) / b.buyers AS confidence,
                       ROW_NUMBER() OVER (
                           PARTITION BY t.product_id ORDER BY t.support DESC, t.other_id
                       ) AS position
                FROM (
                    SELECT a.product_id, x.product_id AS other_id,
                           COUNT(DISTINCT a.customer_id) AS support
                    FROM {temp["lines"]} AS a
                    JOIN {temp["lines"]} AS x
                      ON {together} AND x.product_id <> a.product_id
                    GROUP BY a.product_id, x.product_id
                ) AS t
                JOIN {temp["buyers"]} AS b ON b.product_id = t.product_id
                JOIN products AS p ON p.id = t.other_id
                WHERE p.active AND t.support >= :min_support
                  AND t.support >= CAST(:min_confidence AS FLOAT) * b.buyers
            ) AS ranked
            WHERE position <= :neighbours
            """
        ),
        {
            "days": spec.window_days,
            "min_support": spec.min_support,
            "min_confidence": spec.min_confidence,
            "neighbours": spec.neighbours,
        },
    )
    await analyze(session, "product_pairs")  # rewritten: PostgreSQL's statistics are stale
    return max(int(result.rowcount), 0)  # type: ignore[attr-defined]


async def _candidates(session: AsyncSession, spec: RecommendSpec, temp: dict[str, str]) -> str:
    """Step 3: every live customer's scored candidates (kind 0: bought together; 1: a best
    seller filling a short list)."""
    candidates = await create_temp_table(
        session,
        "rec_candidates",
        "customer_id BIGINT NOT NULL, product_id BIGINT NOT NULL, kind SMALLINT NOT NULL, "
        "score FLOAT NOT NULL, PRIMARY KEY (customer_id, product_id)",
    )
    bought = temp["bought"]
    not_bought = f"""NOT EXISTS (
        SELECT 1 FROM {bought} AS b
        WHERE b.customer_id = c.customer_id AND b.product_id = c.product_id
    )"""
    await session.execute(
        text(
            f"""
            INSERT INTO {candidates} (customer_id, product_id, kind, score)
            SELECT c.customer_id, c.product_id, 0, c.score FROM (
                SELECT s.customer_id, p.other_id AS product_id, SUM(p.confidence) AS score
                FROM {bought} AS s
                JOIN customers AS cu ON cu.id = s.customer_id AND cu.erased_at IS NULL
                JOIN product_pairs AS p ON p.product_id = s.product_id
                WHERE s.counted = 1
                GROUP BY s.customer_id, p.other_id
            ) AS c
            WHERE {not_bought}
            """
        )
    )
    await analyze(session, candidates)
    if spec.fill_with_bestsellers:
        await _fill_with_bestsellers(session, spec, temp, candidates, not_bought)
        await analyze(session, candidates)
    return candidates


async def _fill_with_bestsellers(
    session: AsyncSession,
    spec: RecommendSpec,
    temp: dict[str, str],
    candidates: str,
    not_bought: str,
) -> None:
    """Best sellers (most buyers, active) for the live customers with fewer than ``top_k``
    candidates, scored by their share of buyers."""
    top = await create_temp_table(
        session, "rec_top", "product_id BIGINT PRIMARY KEY, share FLOAT NOT NULL"
    )
    await session.execute(
        text(
            f"""
            INSERT INTO {top} (product_id, share)
            SELECT b.product_id, CAST(b.buyers AS FLOAT) / (SELECT COUNT(*) + 1 FROM customers)
            FROM {temp["buyers"]} AS b JOIN products AS p ON p.id = b.product_id
            WHERE p.active
            ORDER BY b.buyers DESC, b.product_id
            LIMIT :spare
            """
        ),
        {"spare": spec.top_k + BESTSELLERS_SPARE},
    )
    await session.execute(
        text(
            f"""
            INSERT INTO {candidates} (customer_id, product_id, kind, score)
            SELECT c.customer_id, c.product_id, 1, c.score FROM (
                SELECT s.customer_id, t.product_id, t.share AS score
                FROM (
                    SELECT b.customer_id FROM {temp["bought"]} AS b
                    JOIN customers AS cu ON cu.id = b.customer_id AND cu.erased_at IS NULL
                    WHERE b.counted = 1
                    GROUP BY b.customer_id
                    HAVING (
                        SELECT COUNT(*) FROM {candidates} AS k WHERE k.customer_id = b.customer_id
                    ) < :top_k
                ) AS s CROSS JOIN {top} AS t
            ) AS c
            WHERE {not_bought} AND NOT EXISTS (
                SELECT 1 FROM {candidates} AS k
                WHERE k.customer_id = c.customer_id AND k.product_id = c.product_id
            )
            """
        ),
        {"top_k": spec.top_k},
    )


async def _write_recommendations(
    session: AsyncSession, spec: RecommendSpec, candidates: str
) -> int:
    """Step 4: ``recommendations`` rewritten with each customer's best ``top_k``; how many
    customers have a list."""
    await session.execute(delete(Recommendation))
    await session.execute(
        text(
            f"""
            INSERT INTO recommendations (customer_id, rank, product_id, score, reason)
            SELECT customer_id, position, product_id, score,
                   CASE WHEN kind = 0 THEN 'together' ELSE 'popular' END
            FROM (
                SELECT customer_id, product_id, score, kind,
                       ROW_NUMBER() OVER (
                           PARTITION BY customer_id ORDER BY kind, score DESC, product_id
                       ) AS position
                FROM {candidates}
            ) AS ranked
            WHERE position <= :top_k
            """
        ),
        {"top_k": spec.top_k},
    )
    count = select(func.count()).where(Recommendation.rank == 1)
    return int((await session.execute(count)).scalar_one())


async def recompute(
    session: AsyncSession, spec: RecommendSpec, *, day: int, now: datetime
) -> RunSummary:
    """Pairs and every customer's recommendations from all order lines, recorded as a run of
    shop ``day``; the caller commits (and holds ``lock_runs`` when runs may race)."""
    started = time.perf_counter()
    if dialect_name(session) == "postgresql":
        # This transaction only: compiling these one-off statements costs more than it saves.
        # (A larger work_mem made the planner hash the candidates and took 3-5x longer.)
        await session.execute(text("SET LOCAL jit = off"))
    temp = await _collect_lines(session, spec)
    pairs = await _compute_pairs(session, spec, temp)
    candidates = await _candidates(session, spec, temp)
    customers = await _write_recommendations(session, spec, candidates)
    lines = await _count(session, temp["lines"])
    duration_ms = int((time.perf_counter() - started) * 1000)
    run = RecommendRun(
        day=day,
        started_at=now,
        duration_ms=duration_ms,
        lines=lines,
        pairs=pairs,
        customers=customers,
    )
    session.add(run)
    await session.flush()
    return RunSummary(run.id, lines, pairs, customers, duration_ms)


async def recommended_products(
    session: AsyncSession, customer_ids: Collection[int]
) -> dict[int, list[Product]]:
    """The customers' recommended products, best first, still active (a product switched off
    since the run is left out)."""
    found: dict[int, list[Product]] = {customer_id: [] for customer_id in customer_ids}
    ids = sorted(found)
    for start in range(0, len(ids), 1000):
        result = await session.execute(
            select(Recommendation.customer_id, Product)
            .join(Product, Product.id == Recommendation.product_id)
            .where(Recommendation.customer_id.in_(ids[start : start + 1000]), Product.active)
            .order_by(Recommendation.customer_id, Recommendation.rank)
        )
        for customer_id, product in result.all():
            found[customer_id].append(product)
    return found


async def erase_recommendations(session: AsyncSession, customer_id: int) -> None:
    """``/forget``: the customer's recommendations (what they bought shows through them)."""
    await session.execute(delete(Recommendation).where(Recommendation.customer_id == customer_id))
