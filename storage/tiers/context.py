"""The state one run carries through its statements (``Run``), shared by the steps in
``statistics``, ``scoring`` and ``changes``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.columns import UTCDateTime
from storage.tiers.dialect import dialect_name, temp_name
from storage.tiers.spec import TierSpec

WINDOW_COLUMNS = (
    "frequency",
    "monetary_cents",
    "orders_recent",
    "orders_previous",
    "spend_recent_cents",
    "spend_previous_cents",
)
ROW = "rfm_scores."  # how the classifying expressions name the row being updated


@dataclass
class Run:
    """The state of one run while its statements execute."""

    session: AsyncSession
    spec: TierSpec
    today: int
    now: datetime
    full: bool
    everybody: bool
    params: dict[str, Any] = field(default_factory=dict)
    # Where this run's rows are computed before scoring: ``rfm_scores`` itself or, for a
    # rebuild on PostgreSQL, a temporary table whose rows are then written to ``rfm_scores``
    # once, with their scores (see ``staged_rebuild``).
    source: str = "rfm_scores"

    @property
    def batch(self) -> str:
        return temp_name(self.session, "rfm_batch")

    def in_batch(self, column: str) -> str:
        return f"{column} IN (SELECT customer_id FROM {self.batch})"

    def scope(self, column: str) -> str:
        """``AND column IN batch`` for an incremental run, nothing for a full one."""
        return "" if self.full else f"AND {self.in_batch(column)}"

    async def execute(self, sql: str, **params: Any) -> int:
        statement = text(sql)
        if ":now" in sql:
            statement = statement.bindparams(bindparam("now", type_=UTCDateTime()))
        result = await self.session.execute(statement, {**self.params, **params})
        return max(int(result.rowcount), 0)  # type: ignore[attr-defined]


def staged_rebuild(run: Run) -> bool:
    """Whether a rebuild computes its rows in a temporary table first (PostgreSQL).

    Scoring rows inserted by the same transaction rewrites each of them and makes PostgreSQL
    check its foreign key a second time (an update of a row this transaction wrote always
    is): on a first run after a bulk load that was a quarter of the run. SQLite checks a key
    for a few microseconds and picks its quintiles from the indexes of ``rfm_scores``."""
    return run.everybody and dialect_name(run.session) == "postgresql"
