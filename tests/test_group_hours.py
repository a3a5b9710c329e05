"""End to end, with the injected clock, through the local Bot API server: two staff groups with
their own business hours (``main`` on China's, ``intl`` on London's, ``[groups.intl.hours]``)
give their tickets deadlines and out-of-hours replies by their own calendar; ``/move`` keeps a
ticket's deadlines and says so; auto-assignment skips a member outside their duty hours
(``[[staff]]`` ``hours``, in the group's zone) and ``/duty`` says when each one's hours end or
begin. On both databases."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from bot.kernel.texts import Markup
from bot.sandbox.records import FakeUser
from handlers.tickets.lifecycle import open_ticket
from scheduler import sla
from scheduler.dispatcher.telegram import stored_failure
from storage.models import Customer, Ticket
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    lanes_idle,
    ticket,
    wait_message,
    wait_stored,
    wait_text,
)

INTL = -1003000000002
BOSS = 7400
SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")
CHINA_HOURS = {"enabled": True, "timezone": "Asia/Shanghai", "country": "CN"}
LONDON_HOURS = {
    "timezone": "Europe/London",
    "country": "GB",
    **{day: "09:00-17:30" for day in ("mon", "tue", "wed", "thu", "fri")},
}


def sh(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


def ld(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=LONDON)  # type: ignore[misc]


def _rules(harness: Harness, **tickets: Any) -> None:
    """``main`` on China's hours, ``intl`` (English customers) on London's, plus ``tickets``."""
    data = harness.rules.tickets.model_dump()
    groups = tickets.pop("groups", {})
    groups.setdefault("intl", {})["hours"] = LONDON_HOURS
    harness.use_ticket_rules(
        type(harness.rules.tickets).model_validate(
            {
                **data,
                "hours": CHINA_HOURS,
                "groups": groups,
                "routing": [{"group": "intl", "language": "en"}],
                **tickets,
            }
        )
    )


async def _set_up_intl(harness: Harness) -> None:
    api = harness.api
    api.add_group(INTL, "International desk", forum=True)
    boss = api.add_user(BOSS, "Boss")
    api.add_member(INTL, boss, "creator")
    await api.send_text(boss, "/setup intl", chat_id=INTL)
    await wait_text(api, INTL, harness.text("en", "setup_done_named", name="intl"))


async def _open(harness: Harness, user: FakeUser) -> str:
    """A registered customer opens a ticket; its number."""
    api = harness.api
    before = len(api.sent(user.id))
    await api.send_text(user, "/start")
    await api.wait_for_sent(user.id, before + 1)
    async with harness.sessionmaker.begin() as session:
        customer = (
            await session.execute(select(Customer).where(Customer.telegram_user_id == user.id))
        ).scalar_one()
        opened, _ = await open_ticket(
            session,
            harness.desk,
            customer,
            source="complaint",
            category="delivery",
            now=now(harness),
        )
        number = opened.number
    assert harness.dispatcher is not None
    harness.dispatcher.wake()
    return number


def now(harness: Harness) -> datetime:
    return harness.clock.now()


async def _topic(harness: Harness, number: str) -> tuple[int, int]:
    """(chat, thread) of the ticket's topic once its card is there and nothing is under way."""
    found: list[Ticket] = []
    for _ in range(250):
        found[:] = [await ticket(harness, number)]
        if found[0].card_message_id and found[0].topic_thread_id:
            break
        await harness.api.wait_for(lambda: True, timeout=0.02)
    assert found[0].staff_chat_id and found[0].topic_thread_id, number
    await lanes_idle(harness, number)
    return found[0].staff_chat_id, found[0].topic_thread_id


async def _write(harness: Harness, user: FakeUser, number: str, text: str, count: int) -> None:
    """The customer writes into their ticket (its ``count``-th message in) and all is sent."""
    await harness.api.send_text(user, text)
    await wait_stored(harness, number, "in", count)
    await harness.barrier(user, "zh" if (user.language_code or "").startswith("zh") else "en")
    await lanes_idle(harness, number)


def after_hours(harness: Harness, language: str, when_key: str, **params: object) -> str:
    def text(key: str, **values: object) -> str:
        return harness.text(language, key, **values)

    if "weekday" in params:
        params["weekday"] = text(f"weekday_{params['weekday']}")
    return text("ticket_after_hours", when=text(when_key, **params))


def replies_like(harness: Harness, user: FakeUser, language: str) -> list[str]:
    """What the customer got of the out-of-hours reply."""
    start = harness.text(language, "ticket_after_hours", when="@").split("@")[0]
    return [m.body or "" for m in harness.api.sent(user.id) if (m.body or "").startswith(start)]


async def tick(harness: Harness, moment: datetime) -> tuple[int, int]:
    harness.clock.set(moment)
    run = await sla.plan(harness.sessionmaker, harness.desk, moment, stored_failure)
    return run.reminders, run.escalations


async def test_each_group_times_its_tickets_and_answers_out_of_hours_by_its_own_hours(
    harness: Harness,
) -> None:
    api = harness.api
    await _set_up_intl(harness)
    _rules(harness)
    # Friday 27 November 2026, 17:30 in Shanghai, 9:30 in London: both desks open.
    harness.clock.set(sh(2026, 11, 27, 17, 30))
    wang = api.add_user(9201, "Wang", language_code="zh")
    emma = api.add_user(9202, "Emma")  # English: intl; her time zone is the default, Shanghai
    in_main, in_intl = await _open(harness, wang), await _open(harness, emma)
    assert [(await _topic(harness, n))[0] for n in (in_main, in_intl)] == [STAFF, INTL]
    main_ticket, intl_ticket = await ticket(harness, in_main), await ticket(harness, in_intl)
    # First reply within 60 business minutes, resolution within 48 business hours.
    assert main_ticket.first_response_due == sh(2026, 11, 30, 9, 30)  # 30 min Fri, 30 min Mon
    assert main_ticket.resolution_due == sh(2026, 12, 7, 11, 30)  # 0.5 + 5 x 9 + 2.5 hours
    assert intl_ticket.first_response_due == ld(2026, 11, 27, 10, 30)
    assert intl_ticket.resolution_due == ld(2026, 12, 4, 15, 0)  # 8 + 4 x 8.5 + 6 hours
    assert replies_like(harness, wang, "zh") == replies_like(harness, emma, "en") == []

    # Escalations come by each ticket's own clock: intl's on Friday morning (main's on Monday,
    # below).
    assert await tick(harness, ld(2026, 11, 27, 10, 20)) == (1, 0)
    assert await tick(harness, ld(2026, 11, 27, 10, 30)) == (0, 1)
    # intl's staff read its times by London's clock, main's by the shop's.
    desk = harness.desk
    assert desk.when(intl_ticket.first_response_due, "intl") == "2026-11-27 10:30"
    assert desk.when(main_ticket.first_response_due, "main") == "2026-11-30 09:30"
    escalation = await wait_message(
        api, INTL, lambda m: m.message_thread_id is None and "🚨" in (m.text or "")
    )
    assert "(2026-11-27 10:30)" in escalation.body and in_intl in escalation.body

    # Friday 19:00 in Shanghai, 11:00 in London: main is closed (back on Monday at 9:00),
    # intl is open and says nothing.
    harness.clock.set(sh(2026, 11, 27, 19, 0))
    await _write(harness, wang, in_main, "还没到", 1)
    await _write(harness, emma, in_intl, "Still waiting", 1)
    monday = after_hours(harness, "zh", "hours_when_weekday", weekday=0, time="9:00")
    assert replies_like(harness, wang, "zh") == [monday]
    assert replies_like(harness, emma, "en") == []
    # Saturday 2:00 in Shanghai, Friday 18:00 in London: intl is closed too; it opens on Monday
    # at 9:00 in London, which is 17:00 in Emma's time zone.
    harness.clock.set(ld(2026, 11, 27, 18, 0))
    await _write(harness, emma, in_intl, "Hello?", 2)
    assert replies_like(harness, emma, "en") == [
        after_hours(harness, "en", "hours_when_weekday", weekday=0, time="17:00")
    ]
    assert (await ticket(harness, in_intl)).after_hours_until == ld(2026, 11, 30, 9, 0)
    assert await tick(harness, sh(2026, 11, 29, 12, 0)) == (0, 0)
    assert await tick(harness, sh(2026, 11, 30, 9, 20)) == (1, 0)
    assert await tick(harness, sh(2026, 11, 30, 9, 30)) == (0, 1)
    escalation = await wait_message(
        api, STAFF, lambda m: m.message_thread_id is None and "🚨" in (m.text or "")
    )
    assert "(2026-11-30 09:30)" in escalation.body and in_main in escalation.body


async def test_move_keeps_the_deadlines_and_the_new_groups_hours_answer_from_then(
    harness: Harness,
) -> None:
    api = harness.api
    await _set_up_intl(harness)
    _rules(harness, routing=[])  # every ticket opens in main
    harness.clock.set(sh(2026, 11, 27, 17, 30))
    lucy = api.add_user(9301, "Lucy")
    number = await _open(harness, lucy)
    _, thread = await _topic(harness, number)
    opened = await ticket(harness, number)
    anna = api.add_user(7401, "Anna")
    api.add_member(STAFF, anna, "member")
    api.add_member(INTL, anna, "member")

    await api.send_text(anna, "/move intl", chat_id=STAFF, message_thread_id=thread)
    desk = harness.desk
    moved = harness.text("en", "ticket_moved", name="intl", by="Anna")
    kept = harness.text(
        "en",
        "ticket_move_deadlines_kept",
        name="intl",
        first_response=desk.when(sh(2026, 11, 30, 9, 30)),
        resolution=desk.when(sh(2026, 12, 7, 11, 30)),
    )
    await wait_text(api, STAFF, f"{moved}\n{kept}", thread_id=thread)
    assert (await _topic(harness, number))[0] == INTL
    found = await ticket(harness, number)
    assert (found.first_response_due, found.resolution_due) == (
        opened.first_response_due,
        opened.resolution_due,
    )
    # Monday 9:00 in Shanghai, 1:00 in London: main would be open, intl is not; Lucy hears
    # when intl opens (9:00 London, 17:00 her time).
    harness.clock.set(sh(2026, 11, 30, 9, 0))
    await _write(harness, lucy, number, "Any news?", 1)
    assert replies_like(harness, lucy, "en") == [
        after_hours(harness, "en", "hours_when_today", time="17:00")
    ]


async def _duty(harness: Harness, user: FakeUser, word: str, answer: str, **params: Any) -> None:
    await harness.api.send_text(user, f"/duty {word}".strip(), chat_id=INTL)
    await wait_text(harness.api, INTL, harness.text("en", answer, **params))


def _when(harness: Harness, key: str, **params: Any) -> Markup:
    if "weekday" in params:
        params["weekday"] = harness.text("en", f"weekday_{params['weekday']}")
    return Markup(harness.text("en", key, **params))


async def test_round_robin_skips_a_member_outside_their_duty_hours(harness: Harness) -> None:
    api = harness.api
    await _set_up_intl(harness)
    _rules(
        harness,
        groups={"intl": {"assign": "round_robin"}},
        staff=[
            {"user_id": 7501, "hours": "mon-fri 09:00-17:00"},
            {"user_id": 7503, "hours": {"fri": "13:00-21:00", "sat": "10:00-14:00"}},
        ],
    )
    amy, ben, cat = (api.add_user(7501 + i, name) for i, name in enumerate(("Amy", "Ben", "Cat")))
    for member in (amy, ben, cat):
        api.add_member(INTL, member, "member")
    harness.clock.set(ld(2026, 11, 27, 10, 0))  # Friday 10:00 in London (18:00 in Shanghai)
    await _duty(harness, amy, "on", "duty_on", name="Amy", group="intl")
    await _duty(harness, ben, "on", "duty_on", name="Ben", group="intl")
    today_13 = _when(harness, "hours_when_today", time="13:00")
    await _duty(harness, cat, "on", "duty_on_later", name="Cat", group="intl", when=today_13)

    def roll(on: list[str], waiting: list[str]) -> str:
        text = harness.text("en", "duty_list", group="intl", names=Markup(", ".join(on)))
        if waiting:
            text += "\n" + harness.text("en", "duty_waiting", names=Markup(", ".join(waiting)))
        return text

    def until(name: str, text_key: str, when_key: str, **when: Any) -> str:
        return harness.text("en", text_key, name=name, when=_when(harness, when_key, **when))

    amy_until = until("Amy", "duty_member_until", "hours_when_today", time="17:00")
    await api.send_text(amy, "/duty", chat_id=INTL)
    cat_from = until("Cat", "duty_member_from", "hours_when_today", time="13:00")
    await wait_text(api, INTL, roll([amy_until, "Ben"], [cat_from]))

    customers = iter(api.add_user(9400 + i, f"C{i}") for i in range(20))

    async def assignees(count: int) -> list[str | None]:
        names = []
        for _ in range(count):
            number = await _open(harness, next(customers))
            await _topic(harness, number)
            names.append((await ticket(harness, number)).assignee_name)
        return names

    assert await assignees(3) == ["Amy", "Ben", "Amy"]  # Cat's hours have not begun
    harness.clock.set(ld(2026, 11, 27, 14, 0))
    assert await assignees(3) == ["Cat", "Ben", "Amy"]  # Cat is in, served longest ago
    harness.clock.set(ld(2026, 11, 27, 17, 30))  # Amy's hours are over
    assert await assignees(3) == ["Cat", "Ben", "Cat"]
    await api.send_text(ben, "/duty", chat_id=INTL)
    cat_until = until("Cat", "duty_member_until", "hours_when_today", time="21:00")
    amy_from = until("Amy", "duty_member_from", "hours_when_weekday", weekday=0, time="9:00")
    await wait_text(api, INTL, roll(["Ben", cat_until], [amy_from]))
    # A member off duty stays off whatever their hours say.
    await _duty(harness, cat, "off", "duty_off", name="Cat", group="intl")
    assert await assignees(2) == ["Ben", "Ben"]
