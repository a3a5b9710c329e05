"""The inbox in one process: a poison update is parked after its attempts while its
conversation goes on, staff are told once, and ``carebot inbox retry`` has it handled once its
cause is fixed; a burst from one customer is relayed in order; ``carebot inbox`` reports."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import KIND_INBOX_PARKED
from bot.inbox import database_away
from bot.sandbox.records import SentMessage
from storage.models import InboxUpdate, Outbox
from tests.auxil.harness import STAFF_CHAT_ID, Harness
from tests.auxil.processes import CAREBOT, carebot_env
from tests.auxil.tickets import desk_ticket, general

SQLITE_POISON = (
    "CREATE TRIGGER poison BEFORE INSERT ON {table} WHEN NEW.{column} LIKE '%poison%' "
    "BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
)
POSTGRES_POISON = (
    "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
    "IF NEW.{column} LIKE '%poison%' THEN "
    "RAISE EXCEPTION 'poisoned' USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END "
    "$$ LANGUAGE plpgsql",
    "CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION poison()",
)


async def _poison(harness: Harness, on: bool, table: str = "ticket_messages") -> None:
    """A fault of the database itself: storing a row whose ``column`` says 'poison' fails."""
    column = "text" if table == "ticket_messages" else "question"
    async with harness.sessionmaker.begin() as session:
        if session.get_bind().dialect.name == "sqlite":
            statements = (
                [SQLITE_POISON.format(table=table, column=column)]
                if on
                else ["DROP TRIGGER IF EXISTS poison"]
            )
        else:
            statements = (
                [POSTGRES_POISON[0].format(column=column), POSTGRES_POISON[1].format(table=table)]
                if on
                else [f"DROP TRIGGER IF EXISTS poison ON {table}", "DROP FUNCTION poison()"]
            )
        for statement in statements:
            await session.execute(text(statement))


async def _cli(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    """``carebot inbox …`` as a real process, beside the running bot: off the event loop, so
    the bot goes on (and lets go of SQLite's write lock) while the command waits for it."""
    return await asyncio.to_thread(
        subprocess.run,
        [*CAREBOT, "inbox", *args],
        env=carebot_env(database_url=harness.settings.database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _states(session: AsyncSession) -> dict[str, int]:
    result = await session.execute(
        select(InboxUpdate.state, func.count()).group_by(InboxUpdate.state)
    )
    return {state: int(count) for state, count in result.all()}


def _notices(harness: Harness) -> list[SentMessage]:
    """What staff were told in the General topic about parked updates."""
    return [m for m in general(harness.api) if "carebot inbox retry" in (m.body or "")]


def _copies(harness: Harness, thread: int) -> list[str]:
    return [
        m.body or ""
        for m in harness.api.sent(STAFF_CHAT_ID, thread_id=thread)
        if m.copied_from is not None
    ]


async def test_a_poison_update_is_parked_its_conversation_goes_on_and_retry_handles_it(
    harness: Harness,
) -> None:
    api = harness.api
    mia = api.add_user(4101, "Mia", language_code="en")
    _, thread = await desk_ticket(harness, mia)
    await _poison(harness, on=True)
    try:
        for body in ("before", "poison", "after"):
            await api.send_text(mia, body)
        await api.wait_for(
            lambda: _copies(harness, thread) == ["before", "after"],
            timeout=15,
            description="the messages around the poison relayed",
        )
        await api.wait_for(
            lambda: bool(_notices(harness)), timeout=10, description="staff told in General"
        )
        async with harness.sessionmaker() as session:
            parked = (
                await session.execute(select(InboxUpdate).where(InboxUpdate.state == "failed"))
            ).scalar_one()
        assert (parked.text, parked.attempts, parked.error) == ("poison", 3, "IntegrityError")
        assert parked.payload is not None  # kept for the retry
        assert f"inbox #{parked.id}" in (_notices(harness)[0].body or "")

        listed = await _cli(harness, "failed")
        assert listed.returncode == 0, listed.stderr
        assert str(parked.id) in listed.stdout and "IntegrityError" in listed.stdout
        assert "poison" not in listed.stdout  # what the customer wrote stays out of it
    finally:
        await _poison(harness, on=False)

    retried = await _cli(harness, "retry", str(parked.id))
    assert retried.returncode == 0, retried.stderr
    assert "1 update back to pending" in retried.stdout
    await api.wait_for(
        lambda: _copies(harness, thread) == ["before", "after", "poison"],
        timeout=10,
        description="the retried update relayed by the running bot",
    )
    # A last message, copied in order behind anything the retry could have queued wrongly.
    await api.send_text(mia, "last")
    await api.wait_for(
        lambda: "last" in _copies(harness, thread), description="the last message relayed"
    )
    assert _copies(harness, thread) == ["before", "after", "poison", "last"]
    assert len(_notices(harness)) == 1
    async with harness.sessionmaker() as session:
        notices = await session.execute(
            select(func.count()).select_from(Outbox).where(Outbox.kind == KIND_INBOX_PARKED)
        )
        assert notices.scalar_one() == 1  # none queued for later either
    async with harness.sessionmaker() as session:
        assert await _states(session) == {"handled": await _count(session)}
    again = await _cli(harness, "retry", str(parked.id))
    assert again.returncode == 1 and "not parked" in again.stderr, again.stderr[-1500:]


async def _count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(InboxUpdate))).scalar())


async def test_a_burst_from_one_customer_is_relayed_in_order(harness: Harness) -> None:
    api = harness.api
    ada = api.add_user(4102, "Ada", language_code="en")
    _, thread = await desk_ticket(harness, ada)
    bodies = [f"part {number}" for number in range(8)]  # under the flood throttle
    for body in bodies:
        await api.send_text(ada, body)
    await api.wait_for(
        lambda: len(_copies(harness, thread)) == len(bodies), timeout=10, description="copies"
    )
    assert _copies(harness, thread) == bodies
    async with harness.sessionmaker() as session:
        handled = (
            await session.execute(
                select(InboxUpdate.text, InboxUpdate.payload)
                .where(InboxUpdate.state == "handled", InboxUpdate.text.like("part %"))
                .order_by(InboxUpdate.id)
            )
        ).all()
    assert [row.text for row in handled] == bodies
    assert {row.payload for row in handled} == {None}  # handled: only the record is kept


async def test_inbox_stats(harness: Harness) -> None:
    api = harness.api
    zoe = api.add_user(4103, "Zoe", language_code="en")
    await api.send_text(zoe, "/start")
    await api.wait_for_sent(zoe.id, 1)  # answered once it is marked handled
    result = await _cli(harness, "stats")
    assert result.returncode == 0, result.stderr
    assert "handled" in result.stdout and "nothing pending" in result.stdout
    wrong = await _cli(harness, "retry")
    assert wrong.returncode == 2 and "give inbox ids or --all-failed" in wrong.stderr


async def test_no_answer_goes_out_for_an_attempt_that_rolled_back(harness: Harness) -> None:
    """What a rule answers is sent after its unit of work commits: a question whose storing
    fails is answered by none of its attempts, and the questions around it once each."""
    api = harness.api
    leo = api.add_user(4104, "Leo", language_code="en")
    await api.send_text(leo, "/start")
    greeted = len(await api.wait_for_sent(leo.id, 2))  # the greeting and the consent question
    await _poison(harness, on=True, table="kb_questions")
    try:
        for body in ("where is my parcel", "poison parcel please", "how do I return something"):
            await api.send_text(leo, body)
        await api.wait_for(
            lambda: bool(_notices(harness)), timeout=15, description="the question parked"
        )
    finally:
        await _poison(harness, on=False, table="kb_questions")
    # Once /help is answered, every attempt before it has been answered or rolled back.
    await harness.barrier(leo)
    answers = api.sent(leo.id)[greeted:]
    assert len(answers) == 3, [m.body for m in answers]  # two questions, then /help
    async with harness.sessionmaker() as session:
        parked = (
            await session.execute(select(InboxUpdate).where(InboxUpdate.state == "failed"))
        ).scalar_one()
    assert parked.text == "poison parcel please" and parked.attempts == 3


async def test_forget_leaves_nothing_of_the_customer_in_the_inbox(harness: Harness) -> None:
    """The inbox keeps raw updates (names, usernames, texts) while they wait: after /forget no
    row of it holds anything the customer sent or is, the /forget itself included."""
    api = harness.api
    ida = api.add_user(4105, "Idafirstname", language_code="en", username="idausername")
    await api.send_text(ida, "/start")
    await api.wait_for_sent(ida.id, 1)
    await api.send_text(ida, "my number is 13900001234, secretword")
    before = len(await api.wait_for_sent(ida.id, 3))  # greeting, consent question, answer
    await api.send_text(ida, "/forget")
    confirm = (await api.wait_for_sent(ida.id, before + 1))[-1]
    await api.press_button(ida, confirm, "forget:yes")
    await api.wait_for_sent(ida.id, before + 2)  # the unit's mark "handled" committed first
    async with harness.sessionmaker() as session:
        rows = (await session.execute(select(InboxUpdate))).scalars().all()
    assert rows and {row.state for row in rows} == {"handled"}
    cells = [
        str(getattr(row, column.key))
        for row in rows
        for column in InboxUpdate.__table__.columns
        if column.key not in ("id", "update_id", "customer_id", "received_at", "handled_at")
    ]
    for secret in ("Idafirstname", "idausername", "13900001234", "secretword", str(ida.id)):
        assert not [cell for cell in cells if secret in cell], secret


def test_a_database_that_is_away_is_waited_out_not_held_against_the_update(
    tmp_path: Path,
) -> None:
    """A locked SQLite file (another process writing) is the database being away: the update
    waits without using up its attempts. A constraint a rule breaks is the update's failure."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    engine = create_engine(url, connect_args={"timeout": 0})
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the file
        with pytest.raises(OperationalError) as locked, engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (2)"))
        holder.execute("ROLLBACK")
        with pytest.raises(IntegrityError) as broken, engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        holder.close()
        engine.dispose()
    assert database_away(locked.value)
    assert not database_away(broken.value)
    assert not database_away(ValueError("a rule's own bug"))
