"""Outbox queries on SQLite and PostgreSQL: dedupe, claims and leases, the operator's view."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.kernel.replies import TextRef
from storage import outbox as outbox_queries
from storage.engine import create_engine, create_sessionmaker
from storage.models import Outbox
from storage.outbox import Priority, State
from storage.payloads import CatalogueText, OutboxButton, ReadyText, from_json
from storage.staff_group import set_staff_group
from tests.auxil import databases
from tests.auxil.outbox import NOW, add_customer, count_rows, queue_text, rows

LEASE = timedelta(minutes=2)


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], limit: int = 10, *, at: timedelta = LEASE * 0
) -> list[str]:
    now = NOW + at
    async with sessionmaker.begin() as session:
        claimed = await outbox_queries.claim_due(
            session, now=now, lease_until=now + LEASE, limit=limit
        )
    return [message.dedupe_key for message in claimed]


class TestEnqueue:
    async def test_the_same_dedupe_key_twice_makes_one_row(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            assert await queue_text(session, "greeting:1:2026-11-23", 1, text="first")
        async with sessionmaker.begin() as session:
            assert not await queue_text(session, "greeting:1:2026-11-23", 1, text="second")
            await outbox_queries.enqueue_many(
                session,
                [
                    {
                        "dedupe_key": key,
                        "chat_id": 1,
                        "kind": "care",
                        "payload": ReadyText(key),
                        "due_at": NOW,
                        "now": NOW,
                    }
                    for key in ("greeting:1:2026-11-23", "offer:1", "offer:1", "offer:2")
                ],
            )
        stored = await rows(sessionmaker)
        assert sorted(stored) == ["greeting:1:2026-11-23", "offer:1", "offer:2"]
        assert stored["greeting:1:2026-11-23"].payload["text"] == "first"

    async def test_a_rolled_back_transaction_queues_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        with pytest.raises(RuntimeError):
            async with sessionmaker.begin() as session:
                await queue_text(session, "reply:1", 1)
                raise RuntimeError("the handler failed after queueing")
        assert await count_rows(sessionmaker) == 0

    async def test_payload_round_trips_keys_buttons_and_threads(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        payload = CatalogueText(
            TextRef("welcome", {"name": "小丽", "nested": TextRef("language_name")}),
            buttons=[[OutboxButton(TextRef("consent_yes_button"), data="consent:yes")]],
            thread_id=77,
        )
        async with sessionmaker.begin() as session:
            await outbox_queries.enqueue(
                session,
                dedupe_key="k",
                chat_id=-100,
                kind="relay",
                payload=payload,
                due_at=NOW,
                now=NOW,
                priority=Priority.REPLY,
                transactional=True,
            )
        stored = (await rows(sessionmaker))["k"].payload
        assert stored == {
            "key": "welcome",
            "params": {"name": "小丽", "nested": {"key": "language_name", "params": {}}},
            "buttons": [[{"key": "consent_yes_button", "data": "consent:yes"}]],
            "thread_id": 77,
        }
        assert from_json(stored) == payload

    async def test_only_known_priorities(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            with pytest.raises(ValueError):
                await queue_text(session, "k", 1, priority=5)  # type: ignore[arg-type]


class TestClaim:
    async def test_replies_go_before_older_care_messages_and_future_rows_wait(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await queue_text(session, "care-old", 1, due_at=NOW - timedelta(hours=2))
            await queue_text(session, "care-new", 2, due_at=NOW - timedelta(hours=1))
            await queue_text(session, "care-future", 3, due_at=NOW + timedelta(minutes=1))
            await queue_text(session, "survey", 4, priority=Priority.SURVEY)
            await queue_text(session, "reply", 5, priority=Priority.REPLY)
        assert await _claim(sessionmaker, limit=3) == ["reply", "survey", "care-old"]
        assert await _claim(sessionmaker) == ["care-new"]
        assert await _claim(sessionmaker, at=timedelta(minutes=1)) == ["care-future"]

    async def test_a_claimed_row_comes_back_only_when_its_lease_runs_out(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await queue_text(session, "a", 1)
        assert await _claim(sessionmaker) == ["a"]
        assert (await rows(sessionmaker))["a"].state == State.CLAIMED
        assert await _claim(sessionmaker, at=LEASE - timedelta(seconds=1)) == []
        assert await _claim(sessionmaker, at=LEASE) == ["a"]  # its dispatcher died

    async def test_a_sent_row_records_its_telegram_id(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            await queue_text(session, "a", 1)
        async with sessionmaker.begin() as session:
            (message,) = await outbox_queries.claim_due(
                session, now=NOW, lease_until=NOW + LEASE, limit=5
            )
            await outbox_queries.mark_sent(
                session, message.id, telegram_message_id=555, now=NOW + timedelta(seconds=1)
            )
        row = (await rows(sessionmaker))["a"]
        assert (row.state, row.telegram_message_id, row.attempts) == (State.SENT, 555, 1)
        assert row.sent_at == NOW + timedelta(seconds=1) and row.claimed_until is None
        assert await _claim(sessionmaker, at=LEASE * 2) == []

    async def test_the_claim_query_can_use_the_due_index(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            for n in range(50):
                await queue_text(session, f"k{n}", n)
            statement = outbox_queries.claim_candidates(session, now=NOW, priority=0, limit=10)
            sql = str(
                statement.compile(
                    dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
                )
            )
            if session.get_bind().dialect.name == "postgresql":
                await session.execute(text("SET LOCAL enable_seqscan = off"))
                plan = await session.execute(text(f"EXPLAIN {sql}"))
            else:
                plan = await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))
            lines = " ".join(str(row) for row in plan)
        assert "ix_outbox_due" in lines


async def test_postgresql_claims_skip_rows_another_claim_holds(
    sessionmaker: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks are PostgreSQL's; SQLite runs one dispatcher per file")
    async with sessionmaker.begin() as session:
        for n in range(6):
            await queue_text(session, f"k{n}", n)
    async with sessionmaker.begin() as first:
        mine = await outbox_queries.claim_due(first, now=NOW, lease_until=NOW + LEASE, limit=4)
        # ``first`` has not committed: its rows are locked, the other claim skips them.
        theirs = await _claim(sessionmaker, limit=10)
    assert [m.dedupe_key for m in mine] == ["k0", "k1", "k2", "k3"]
    assert theirs == ["k4", "k5"]


class TestCareSlots:
    async def test_the_daily_cap_counts_per_customer_and_local_day(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            ann = await add_customer(session, 101)
            bob = await add_customer(session, 102)
            for key, customer, chat in (("a1", ann, 101), ("a2", ann, 101), ("b1", bob, 102)):
                await queue_text(session, key, chat, customer_id=customer)
        async with sessionmaker.begin() as session:
            claimed = {
                m.dedupe_key: m
                for m in await outbox_queries.claim_due(
                    session, now=NOW, lease_until=NOW + LEASE, limit=5
                )
            }

        async def reserve(key: str, day: str, per_day: int = 1) -> bool:
            async with sessionmaker.begin() as session:
                return await outbox_queries.reserve_care_slot(
                    session, claimed[key], day=day, per_day=per_day
                )

        assert await reserve("a1", "2026-11-23")
        assert not await reserve("a2", "2026-11-23")
        assert await reserve("a2", "2026-11-23", per_day=2)
        assert await reserve("b1", "2026-11-23")
        assert await reserve("a2", "2026-11-24")


class TestOperatorView:
    async def test_stats_dead_retry_and_cancel(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            for n in range(3):
                await queue_text(session, f"greeting:{n}", n, kind="greeting")
            await queue_text(session, "offer:1", 10, kind="offer")
            await queue_text(session, "offer:2", 11, kind="offer")
        ids = {key: row.id for key, row in (await rows(sessionmaker)).items()}
        async with sessionmaker.begin() as session:
            for key in ("greeting:0", "greeting:1"):
                await outbox_queries.finish(
                    session, ids[key], state=State.DEAD, error="NetworkError: 500", now=NOW
                )
        async with sessionmaker.begin() as session:
            stats = await outbox_queries.stats(session)
            dead = await outbox_queries.list_dead(session)
        assert stats.counts == {
            ("dead", "greeting"): 2,
            ("pending", "greeting"): 1,
            ("pending", "offer"): 2,
        }
        assert stats.oldest_due == NOW
        assert {row.id for row in dead} == {ids["greeting:0"], ids["greeting:1"]}
        assert dead[0].last_error == "NetworkError: 500"

        async with sessionmaker.begin() as session:
            assert await outbox_queries.retry(session, now=NOW, message_ids=[ids["greeting:0"]])
            assert await outbox_queries.cancel_kind(session, "offer", now=NOW) == 2
            assert await outbox_queries.retry(session, now=NOW) == 1  # every dead row
        states = {
            key: (row.state, row.attempts) for key, row in (await rows(sessionmaker)).items()
        }
        assert states == {
            "greeting:0": ("pending", 0),
            "greeting:1": ("pending", 0),
            "greeting:2": ("pending", 0),
            "offer:1": ("cancelled", 0),
            "offer:2": ("cancelled", 0),
        }
        async with sessionmaker.begin() as session:  # a cancelled row keeps its key
            assert not await queue_text(session, "offer:1", 10, kind="offer")

    async def test_prune_deletes_only_old_sent_rows(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            for key in ("old", "recent", "pending"):
                await queue_text(session, key, 1)
        ids = {key: row.id for key, row in (await rows(sessionmaker)).items()}
        async with sessionmaker.begin() as session:
            await outbox_queries.mark_sent(
                session, ids["old"], telegram_message_id=1, now=NOW - timedelta(days=100)
            )
            await outbox_queries.mark_sent(session, ids["recent"], telegram_message_id=2, now=NOW)
        async with sessionmaker.begin() as session:
            removed = await outbox_queries.prune_sent(session, before=NOW - timedelta(days=90))
        assert removed == 1
        assert sorted(await rows(sessionmaker)) == ["pending", "recent"]
        assert await count_rows(sessionmaker, Outbox.state == State.SENT) == 1


class TestCli:
    """``carebot outbox …`` in-process (the dispatcher tests also run ``dead`` as a process)."""

    def _invoke(self, database_url: str, *args: str) -> Result:
        return CliRunner().invoke(
            app, ["outbox", *args], env={"CAREBOT_DATABASE_URL": database_url}
        )

    def test_stats_cancel_and_retry(self, database_url: str) -> None:
        async def fill() -> None:
            engine = create_engine(database_url)
            async with create_sessionmaker(engine).begin() as session:
                for n in range(3):
                    await queue_text(session, f"greeting:{n}", n, kind="greeting")
                await queue_text(session, "offer:1", 9, kind="offer")
            await engine.dispose()

        databases.run_coroutine(fill)
        stats = self._invoke(database_url, "stats")
        assert stats.exit_code == 0, stats.output
        assert re.search(r"pending\s+greeting\s+3", stats.output)
        assert re.search(r"pending\s+offer\s+1", stats.output)
        assert "oldest waiting row due 2026-11-23T09:00:00+00:00" in stats.output

        cancelled = self._invoke(database_url, "cancel", "--kind", "greeting")
        assert "cancelled 3 messages of kind greeting" in cancelled.output
        assert re.search(r"cancelled\s+greeting\s+3", self._invoke(database_url, "stats").output)
        assert "requeued 1 message" in self._invoke(database_url, "retry", "1").output
        assert "no dead messages" in self._invoke(database_url, "dead").output
        refused = self._invoke(database_url, "retry")
        assert refused.exit_code == 2 and "give row ids or --all-dead" in refused.output

    def test_stats_show_each_groups_queue_and_its_oldest_wait(self, database_url: str) -> None:
        """Rows due for a group and not sent yet, per group (a staff group by its name), the
        longest waiting first; private chats, sent rows and rows not due yet are left out."""

        async def fill() -> None:
            engine = create_engine(database_url)
            async with create_sessionmaker(engine).begin() as session:
                await set_staff_group(
                    session,
                    expected=None,
                    chat_id=-1001,
                    title="VIP",
                    user_id=1,
                    now=NOW,
                    name="vip",
                )
                for n in range(3):
                    await queue_text(session, f"vip:{n}", -1001, due_at=NOW + timedelta(minutes=n))
                await queue_text(session, "other:0", -2002, due_at=NOW - timedelta(minutes=5))
                await queue_text(session, "later", -2002, due_at=NOW + timedelta(days=3650))
                await queue_text(session, "private", 42)
                await queue_text(session, "sent", -1001)
                sent = (
                    await session.execute(text("SELECT id FROM outbox WHERE dedupe_key = 'sent'"))
                ).scalar_one()
                await outbox_queries.mark_sent(session, sent, telegram_message_id=1, now=NOW)
            async with create_sessionmaker(engine)() as session:
                queues = await outbox_queries.group_queues(session, NOW + timedelta(minutes=10))
            await engine.dispose()
            assert [(q.chat_id, q.name, q.waiting) for q in queues] == [
                (-2002, None, 1),
                (-1001, "vip", 3),
            ]
            assert queues[0].oldest_due == NOW - timedelta(minutes=5)
            assert queues[1].oldest_due == NOW

        databases.run_coroutine(fill)
        stats = self._invoke(database_url, "stats")
        assert stats.exit_code == 0, stats.output
        lines = stats.output.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("group"))
        assert re.fullmatch(r"-\s+-2002\s+1\s+\d+ \w+", lines[start + 1])
        assert re.fullmatch(r"vip\s+-1001\s+3\s+\d+ \w+", lines[start + 2])
