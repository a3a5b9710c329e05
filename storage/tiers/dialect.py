"""Where SQLite and PostgreSQL differ for tier runs, outside the SQL of the run itself:
temporary tables, null-safe comparison, statistics and session tuning. (The median gap and the
quintile edges differ too; each sits beside the one statement that needs it.)
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def temp_name(session: AsyncSession, name: str) -> str:
    """The qualified name of a temporary table."""
    return f"{'pg_temp' if dialect_name(session) == 'postgresql' else 'temp'}.{name}"


def distinct(session: AsyncSession, left: str, right: str) -> str:
    """Null-safe "differs" (SQLite spells IS DISTINCT FROM as IS NOT before 3.39)."""
    operator = "IS DISTINCT FROM" if dialect_name(session) == "postgresql" else "IS NOT"
    return f"{left} {operator} {right}"


async def create_temp_table(session: AsyncSession, name: str, columns: str) -> str:
    """A fresh temporary table for this run (a leftover of a failed run is dropped first)."""
    qualified = temp_name(session, name)
    await session.execute(text(f"DROP TABLE IF EXISTS {qualified}"))
    suffix = " ON COMMIT DROP" if dialect_name(session) == "postgresql" else ""
    await session.execute(text(f"CREATE TEMPORARY TABLE {name} ({columns}){suffix}"))
    return qualified


async def analyze(session: AsyncSession, table: str) -> None:
    """PostgreSQL plans joins on a temporary table blind unless it is analysed."""
    if dialect_name(session) == "postgresql":
        await session.execute(text(f"ANALYZE {table}"))


async def tune_session(session: AsyncSession, *, full: bool) -> None:
    """PostgreSQL, this transaction only: sorts stay in memory; no JIT, no parallel workers and
    no hash aggregates (nor, on a full run, hash joins). The per-customer aggregates are meant
    to stream from the covering index in customer order; the planner underestimates the number
    of customers (hundreds of thousands of groups) and would hash them instead, 3-4 times
    slower at 5 M orders, and on a full run then hash-join them to ``rfm_scores`` (a
    500,000-row hash built in memory) where a merge join reads both in customer order: the
    window recount took 1.6 s instead of 2.0-2.4 s, and copying changes to ``customers`` 0.4 s
    instead of 0.6-0.9 s. (An incremental run joins a small batch: the planner's choice is
    right there.) Compiling expressions or starting workers costs more than it saves in these
    single passes (a parallel window aggregate took as long as a serial one on this 2-core
    machine).
    """
    if dialect_name(session) == "postgresql":
        settings = [
            "work_mem = '256MB'",
            "jit = off",
            "max_parallel_workers_per_gather = 0",
            "enable_hashagg = off",
        ]
        if full:
            settings.append("enable_hashjoin = off")
        for setting in settings:
            await session.execute(text(f"SET LOCAL {setting}"))
