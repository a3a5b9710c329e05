"""The SLA planner with the injected clock: reminders in the ticket's topic before a deadline,
escalations in the General topic after it, deadlines by tier; unconfirmed resolutions close
by themselves. End to end through the dispatcher and the local Bot API server."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from bot.kernel.texts import Markup
from bot.runner import build_background
from handlers.tickets.desk import KIND_TOPIC, OUTBOX_KINDS
from scheduler import sla
from scheduler.dispatcher.telegram import stored_failure
from storage import outbox as outbox_queries
from storage.engine import BotDatabase
from storage.models import Outbox, TicketDelivery
from storage.payloads import ReadyText
from storage.tickets.lanes import add_delivery
from storage.tickets.rows import ticket_by_number
from tests.auxil.harness import STAFF_CHAT_ID, Harness
from tests.auxil.tickets import (
    STAFF,
    desk_ticket,
    general,
    lanes_idle,
    open_ticket_for,
    staff_member,
    staff_reply_text,
    staff_says,
    ticket,
    topic_of,
    wait_message,
    wait_stored,
    wait_text,
)


class Clock:
    """Moves the harness clock to ``start + minutes`` and runs the planner there."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.start = harness.clock.now()

    def at(self, minutes: float) -> datetime:
        return self.start + timedelta(minutes=minutes)

    async def tick(self, minutes: float) -> sla.SlaRun:
        self.harness.clock.set(self.at(minutes))
        return await sla.plan(
            self.harness.sessionmaker, self.harness.desk, self.at(minutes), stored_failure
        )


def _counts(run: sla.SlaRun) -> tuple[int, int, int]:
    return run.reminders, run.escalations, run.closed


async def test_reminders_and_escalations_come_at_each_tiers_deadlines(harness: Harness) -> None:
    api = harness.api
    vip_user = api.add_user(9001, "Vivian")
    plain_user = api.add_user(9002, "Norm")
    anna = staff_member(api, 7301, "Anna")
    clock = Clock(harness)
    vip = await open_ticket_for(harness, vip_user, tier="vip")
    plain = await open_ticket_for(harness, plain_user, tier="normal")
    vip_thread = await topic_of(harness, vip.number)
    plain_thread = await topic_of(harness, plain.number)
    await staff_says(api, anna, vip_thread, "/claim")
    await wait_text(
        api, STAFF, harness.text("en", "ticket_claimed", name="Anna"), thread_id=vip_thread
    )
    desk = harness.desk
    nobody = harness.text("en", "ticket_sla_unassigned")
    anna_mention = Markup('<a href="tg://user?id=7301">Anna</a>')

    # VIP: first reply within 15 minutes, reminded 10 minutes before.
    assert _counts(await clock.tick(4)) == (0, 0, 0)
    assert _counts(await clock.tick(5)) == (1, 0, 0)
    await wait_text(
        api,
        STAFF,
        harness.text(
            "en",
            "ticket_sla_reminder_first_response",
            mention=anna_mention,
            due=desk.when(clock.at(15)),
            minutes=10,
        ),
        thread_id=vip_thread,
    )
    assert _counts(await clock.tick(5)) == (0, 0, 0)  # planning twice changes nothing
    assert _counts(await clock.tick(14)) == (0, 0, 0)
    assert _counts(await clock.tick(15)) == (0, 1, 0)
    link = harness.text(
        "en", "ticket_sla_link", url=f"https://t.me/c/{str(STAFF_CHAT_ID)[4:]}/{vip_thread}"
    )
    escalation = harness.text(
        "en",
        "ticket_sla_escalation_first_response",
        number=vip.number,
        tier="VIP",
        due=desk.when(clock.at(15)),
        assignee=anna_mention,
        link=Markup(link),
    )
    await wait_message(api, STAFF, lambda m: m.body == escalation and m.message_thread_id is None)

    # Normal: an hour; nothing else happened to it so far.
    assert [m for m in api.sent(STAFF, thread_id=plain_thread) if "⏰" in (m.body or "")] == []
    assert _counts(await clock.tick(49)) == (0, 0, 0)
    assert _counts(await clock.tick(50)) == (1, 0, 0)
    await wait_text(
        api,
        STAFF,
        harness.text(
            "en",
            "ticket_sla_reminder_first_response",
            mention=nobody,
            due=desk.when(clock.at(60)),
            minutes=10,
        ),
        thread_id=plain_thread,
    )
    assert _counts(await clock.tick(60)) == (0, 1, 0)
    await api.wait_for(lambda: len(general(api)) == 2)
    assert plain.number in (general(api)[-1].body or "")

    # Resolution: 8 hours for VIP (reminded at 7:50), 48 hours for normal.
    assert _counts(await clock.tick(7 * 60 + 49)) == (0, 0, 0)
    assert _counts(await clock.tick(7 * 60 + 50)) == (1, 0, 0)
    assert _counts(await clock.tick(8 * 60)) == (0, 1, 0)
    assert _counts(await clock.tick(47 * 60 + 50)) == (1, 0, 0)
    assert _counts(await clock.tick(48 * 60)) == (0, 1, 0)
    await api.wait_for(lambda: len(general(api)) == 4)
    assert [m.message_thread_id for m in general(api)] == [None] * 4
    found = await ticket(harness, vip.number)
    assert found.first_response_escalated_at == clock.at(15)
    assert found.resolution_reminded_at == clock.at(7 * 60 + 50)


async def test_a_reply_in_time_stops_the_first_reply_clock(harness: Harness) -> None:
    api = harness.api
    user = api.add_user(9003, "Quick")
    bo = staff_member(api, 7302, "Bo")
    clock = Clock(harness)
    opened = await open_ticket_for(harness, user, tier="vip")
    thread = await topic_of(harness, opened.number)
    harness.clock.set(clock.at(3))
    await staff_says(api, bo, thread, "Hello, looking into it")
    await wait_text(api, user.id, staff_reply_text(harness, "en", "Bo", "Hello, looking into it"))
    assert _counts(await clock.tick(5)) == (0, 0, 0)
    assert _counts(await clock.tick(15)) == (0, 0, 0)
    found = await ticket(harness, opened.number)
    assert found.first_response_at == clock.at(3)
    assert found.first_response_reminded_at is None


async def test_an_unconfirmed_resolution_closes_by_itself(harness: Harness) -> None:
    api = harness.api
    user = api.add_user(9004, "Silent")
    cy = staff_member(api, 7303, "Cy")
    clock = Clock(harness)
    opened = await open_ticket_for(harness, user)
    thread = await topic_of(harness, opened.number)
    await staff_says(api, cy, thread, "/close")
    await wait_text(
        api, user.id, harness.text("en", "ticket_resolved_question", number=opened.number)
    )
    hours = harness.rules.tickets.reopen.auto_close_resolved_hours
    assert _counts(await clock.tick(hours * 60 - 1)) == (0, 0, 0)
    assert _counts(await clock.tick(hours * 60)) == (0, 0, 1)
    await wait_text(
        api, STAFF, harness.text("en", "ticket_auto_closed", hours=hours), thread_id=thread
    )
    await lanes_idle(harness, opened.number)
    closed = await ticket(harness, opened.number)
    assert closed.status == "closed" and closed.closed_at == clock.at(hours * 60)
    assert api.topics(STAFF)[0].closed


def test_the_job_runs_at_the_configured_interval(harness: Harness) -> None:
    [job] = sla.sla_jobs(harness.sessionmaker, harness.desk, stored_failure)
    assert job.id == "tickets.sla"
    assert job.every == timedelta(seconds=harness.rules.tickets.sla.check_seconds)


async def test_the_running_bot_registers_the_job_the_hooks_and_the_wake_up(
    harness: Harness,
) -> None:
    """What ``carebot run`` starts beside the handlers (``bot.runner.build_background``)."""
    assert harness.engine is not None
    database = BotDatabase(harness.sessionmaker, harness.sessionmaker)
    background = build_background(
        harness.application,
        database,
        rules=harness.rules,
        texts=harness.texts,
        clock=harness.clock,
    )
    await background.start()
    try:
        assert background.scheduler is not None
        job = background.scheduler.get_job("tickets.sla")
        assert job is not None
        wake = harness.application.bot_data.wake
        dispatcher = wake.__self__
        assert set(dispatcher.hooks) == set(OUTBOX_KINDS)
        assert dispatcher.hooks[KIND_TOPIC].desk is harness.desk
    finally:
        await background.stop()


async def test_a_lane_whose_hook_never_ran_is_resumed(harness: Harness) -> None:
    """An outbox row recorded as sent without its outcome hook (the hook raised) would leave
    the ticket's topic lane waiting forever; the SLA job replays the outcome."""
    api = harness.api
    user = api.add_user(9005, "Stuck")
    number, thread = await desk_ticket(harness, user)
    now = harness.clock.now()
    async with harness.sessionmaker.begin() as session:
        found = await ticket_by_number(session, number)
        assert found is not None
        stranded = await add_delivery(
            session,
            ticket_id=found.id,
            lane="topic",
            action="text",
            payload={"html": "a notice"},
            front=False,
            state="outbox",
            tries=1,
            created_at=now,
            updated_at=now,
        )
        key = f"tk:{stranded.id}:1"
        await outbox_queries.enqueue(
            session,
            dedupe_key=key,
            chat_id=STAFF,
            kind=KIND_TOPIC,
            payload=ReadyText("a notice", delivery=stranded.id, ticket=found.id),
            due_at=now,
            now=now,
        )
        await session.execute(update(Outbox).where(Outbox.dedupe_key == key).values(state="sent"))
    sent = (await api.send_text(user, "hello?"))["message"]["message_id"]
    # Stored, and its copy queued behind the stranded delivery (not in the outbox): it cannot
    # go out before the lane moves.
    await wait_stored(harness, number, "in", 1)
    async with harness.sessionmaker() as session:
        copy_states = await session.execute(
            select(TicketDelivery.state).where(
                TicketDelivery.ticket_id == found.id, TicketDelivery.action == "copy"
            )
        )
        assert list(copy_states.scalars()) == ["queued"]
    assert not [m for m in api.sent(STAFF, thread_id=thread) if m.copied_from == (user.id, sent)]

    harness.clock.advance(timedelta(minutes=2))
    run = await sla.plan(harness.sessionmaker, harness.desk, harness.clock.now(), stored_failure)
    assert run.recovered == 1
    await wait_message(api, STAFF, lambda m: m.copied_from == (user.id, sent), thread_id=thread)
