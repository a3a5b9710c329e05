"""End to end: a ticket lane's window (several of its deliveries in the outbox at once) keeps
the lane's promises when a send in the middle of it fails: the topic was deleted, staff closed
it, Telegram answered 500, the message to copy is gone. The copies behind the failed one are
taken back out of the outbox and follow it, in order, each once, never into a dead topic; and
a lane nothing pumps any more is resumed by the SLA job. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from scheduler import sla
from scheduler.dispatcher.telegram import stored_failure
from storage.models import Outbox, TicketDelivery
from storage.tickets.lanes import add_delivery
from storage.tickets.rows import ticket_by_number
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    desk_ticket,
    lanes_idle,
    messages,
    wait_message,
    wait_stored,
    wait_text,
    wait_topics,
)

BURST = 12
FAILING = 4
"""The burst's first copy goes alone (its lane was empty), the next ten as one window: the
fourth copy fails in the middle of it."""


async def _burst_behind_a_window(harness: Harness, user_id: int) -> tuple[str, int, list[int]]:
    """A customer with a ticket sends ``BURST`` messages while the dispatcher is paused, so
    that they wait in the lane together; returns the ticket number, its topic and the
    messages' ids. The caller sets a fault up, then resumes the dispatcher."""
    api = harness.api
    rules = harness.rules.tickets
    flood = rules.flood.model_copy(update={"max_messages": 1000})
    harness.use_ticket_rules(rules.model_copy(update={"flood": flood}))
    user = api.add_user(user_id, f"Customer {user_id}")
    number, thread = await desk_ticket(harness, user)
    await lanes_idle(harness, number)
    assert harness.desk.lane_window > FAILING
    await harness.pause_dispatcher()
    sent = []
    for index in range(BURST):
        update = await api.send_text(user, f"message {index}")
        sent.append(int(update["message"]["message_id"]))
    await wait_stored(harness, number, "in", BURST)
    return number, thread, sent


async def _copied(harness: Harness, user_id: int, message_id: int, thread: int) -> None:
    await wait_message(
        harness.api, STAFF, lambda m: m.copied_from == (user_id, message_id), thread_id=thread
    )


def _copies(harness: Harness, user_id: int, thread: int) -> list[int]:
    """The ids of the customer's messages copied into the topic, in the order they arrived."""
    return [
        m.copied_from[1]
        for m in harness.api.sent(STAFF, thread_id=thread)
        if m.copied_from is not None and m.copied_from[0] == user_id
    ]


def _copy_calls(harness: Harness, message_id: int) -> list[tuple[int | None, int]]:
    """Every copyMessage of one of the customer's messages: (the topic, Telegram's status)."""
    return [
        (call.params.get("message_thread_id"), call.status)
        for call in harness.api.calls_of("copyMessage")
        if call.params.get("message_id") == message_id
    ]


async def _all_relayed(harness: Harness, number: str) -> None:
    await lanes_idle(harness, number)
    inbound = [m for m in await messages(harness, number) if m.direction == "in"]
    assert len(inbound) == BURST
    assert all(m.state == "relayed" and m.copy_message_id for m in inbound)


async def test_a_topic_deleted_in_the_middle_of_a_window(harness: Harness) -> None:
    """The copies behind the one that found the topic gone never go to it: they follow it into
    the new topic, after its card and the history."""
    number, old, sent = await _burst_behind_a_window(harness, 8101)
    harness.api.fail(
        "copyMessage",
        error_code=400,
        description="Bad Request: message thread not found",
        chat_id=STAFF,
        after=FAILING - 1,
    )
    harness.resume_dispatcher()
    new = (await wait_topics(harness.api, 2))[-1]
    thread = new.message_thread_id
    assert thread != old
    await wait_message(
        harness.api, STAFF, lambda m: m.copied_from == (8101, sent[-1]), thread_id=thread
    )
    await _all_relayed(harness, number)

    assert _copies(harness, 8101, old) == sent[: FAILING - 1]
    assert _copies(harness, 8101, thread) == sent[FAILING - 1 :]
    assert _copy_calls(harness, sent[FAILING - 1]) == [(old, 400), (thread, 200)]
    for later in sent[FAILING:]:
        assert _copy_calls(harness, later) == [(thread, 200)]
    card, summary = harness.api.sent(STAFF, thread_id=thread)[:2]
    assert card.text is not None and card.text.startswith(f"🎫 <b>{number}</b>")
    assert "message 0" in (summary.text or "")


async def test_a_server_error_in_the_middle_of_a_window(harness: Harness) -> None:
    """The failed copy is tried again after its backoff; nothing behind it overtakes it."""
    number, thread, sent = await _burst_behind_a_window(harness, 8102)
    harness.api.fail("copyMessage", error_code=500, times=2, chat_id=STAFF, after=FAILING - 1)
    harness.resume_dispatcher()
    await wait_message(
        harness.api, STAFF, lambda m: m.copied_from == (8102, sent[-1]), thread_id=thread
    )
    await _all_relayed(harness, number)

    assert _copies(harness, 8102, thread) == sent
    assert _copy_calls(harness, sent[FAILING - 1]) == [(thread, 500), (thread, 500), (thread, 200)]
    for other in sent[: FAILING - 1] + sent[FAILING:]:
        assert _copy_calls(harness, other) == [(thread, 200)]


async def test_a_topic_closed_in_the_middle_of_a_window(harness: Harness) -> None:
    """Reopened once, in front of the copy that found it closed and those behind it."""
    number, thread, sent = await _burst_behind_a_window(harness, 8103)
    harness.api.fail(
        "copyMessage",
        error_code=400,
        description="Bad Request: TOPIC_CLOSED",
        chat_id=STAFF,
        after=FAILING - 1,
    )
    harness.resume_dispatcher()
    await wait_message(
        harness.api, STAFF, lambda m: m.copied_from == (8103, sent[-1]), thread_id=thread
    )
    await _all_relayed(harness, number)

    assert _copies(harness, 8103, thread) == sent
    [reopen] = harness.api.calls_of("reopenForumTopic")
    retried = [c for c in harness.api.calls_of("copyMessage") if c.params["message_id"] in sent]
    assert [c.status for c in retried].count(400) == 1
    assert next(c for c in retried if c.status == 400).at < reopen.at
    assert all(c.at > reopen.at for c in retried if c.params["message_id"] in sent[FAILING:])


async def test_a_copy_that_fails_for_good_in_the_middle_of_a_window(harness: Harness) -> None:
    """The customer's message was deleted before it could be copied: its text takes its place
    in the topic, and the copies behind it follow that text."""
    number, thread, sent = await _burst_behind_a_window(harness, 8104)
    harness.api.fail(
        "copyMessage",
        error_code=400,
        description="Bad Request: message to copy not found",
        chat_id=STAFF,
        after=FAILING - 1,
    )
    harness.resume_dispatcher()
    await wait_message(
        harness.api, STAFF, lambda m: m.copied_from == (8104, sent[-1]), thread_id=thread
    )
    await lanes_idle(harness, number)

    fallback = harness.text(
        "en", "ticket_copy_fallback", kind="text", text=f"message {FAILING - 1}"
    )
    await wait_text(harness.api, STAFF, fallback, thread_id=thread)
    in_topic = [
        m.copied_from[1] if m.copied_from is not None else m.text
        for m in harness.api.sent(STAFF, thread_id=thread)
        if m.copied_from is not None or m.text == fallback
    ]
    # Telegram keeps the fallback as plain text: compare what the topic shows.
    assert in_topic == [*sent[: FAILING - 1], in_topic[FAILING - 1], *sent[FAILING:]]
    assert isinstance(in_topic[FAILING - 1], str)
    for later in sent[FAILING:]:
        assert _copy_calls(harness, later) == [(thread, 200)]


async def test_a_lane_nothing_pumps_is_resumed_by_the_sla_job(harness: Harness) -> None:
    """Deliveries queued with none of their lane in the outbox (two outcomes written at once
    that each saw the other still in the outbox, on PostgreSQL) would wait forever; the SLA
    job queues them once they have waited a while."""
    api = harness.api
    user = api.add_user(8105, "Idle")
    number, thread = await desk_ticket(harness, user)
    await lanes_idle(harness, number)
    now = harness.clock.now()
    async with harness.sessionmaker.begin() as session:
        found = await ticket_by_number(session, number)
        assert found is not None
        waiting = await add_delivery(
            session,
            ticket_id=found.id,
            lane="topic",
            action="text",
            payload={"html": "left waiting"},
            front=False,
            state="queued",
            tries=0,
            created_at=now,
            updated_at=now,
        )
    run = await sla.plan(harness.sessionmaker, harness.desk, now, stored_failure)
    assert run.recovered == 0  # not waiting long enough yet: an outcome may be on its way
    async with harness.sessionmaker() as session:
        rows = await session.execute(select(Outbox.id).where(Outbox.dedupe_key.like("tk:%")))
        before = len(list(rows))

    harness.clock.advance(timedelta(minutes=2))
    run = await sla.plan(harness.sessionmaker, harness.desk, harness.clock.now(), stored_failure)
    assert run.recovered == 1
    await wait_text(api, STAFF, "left waiting", thread_id=thread)
    async with harness.sessionmaker() as session:
        rows = await session.execute(select(Outbox.id).where(Outbox.dedupe_key.like("tk:%")))
        assert len(list(rows)) == before + 1
        state = await session.scalar(
            select(TicketDelivery.state).where(TicketDelivery.id == waiting.id)
        )
    await lanes_idle(harness, number)
    assert state in ("outbox", "sent")
