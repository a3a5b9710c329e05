"""Business hours on the running desk, with the injected clock, through the local Bot API
server: SLA deadlines that skip a weekend and China's National Day week (reminders and
escalations only on business-time deadlines), and the out-of-hours reply, once per ticket and
closed period, in the customer's time zone and language, across a restart."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import update

from bot.kernel.config import TicketConfig
from bot.kernel.hours import HoursConfig
from bot.kernel.texts import Markup
from bot.sandbox.records import FakeUser
from handlers.tickets.desk import Desk
from scheduler import sla
from scheduler.dispatcher.telegram import stored_failure
from storage.models import Customer
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    general,
    lanes_idle,
    open_ticket_for,
    ticket,
    topic_of,
    wait_stored,
    wait_text,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
LONDON = ZoneInfo("Europe/London")

# Monday to Friday 9:00-18:00 in Shanghai, closed on China's public holidays, open on its
# make-up working days; a VIP's first reply is due within one business hour.
HOURS = HoursConfig(
    enabled=True, timezone="Asia/Shanghai", country="CN", make_up_days="09:00-18:00"
)


def with_hours(harness: Harness) -> Desk:
    rules = harness.rules.tickets
    tiers = dict(rules.sla.tiers)
    tiers["vip"] = tiers["vip"].model_copy(update={"first_response_minutes": 60})
    return harness.use_ticket_rules(
        TicketConfig.model_validate(
            {
                **rules.model_dump(),
                "hours": HOURS.model_dump(),
                "sla": {
                    **rules.sla.model_dump(),
                    "tiers": {k: v.model_dump() for k, v in tiers.items()},
                },
            }
        )
    )


def sh(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


async def tick(harness: Harness, moment: datetime) -> tuple[int, int]:
    harness.clock.set(moment)
    run = await sla.plan(harness.sessionmaker, harness.desk, moment, stored_failure)
    return run.reminders, run.escalations


async def test_a_friday_night_vip_ticket_is_due_an_hour_after_monday_opening(
    harness: Harness,
) -> None:
    desk = with_hours(harness)
    api = harness.api
    harness.clock.set(sh(2026, 11, 27, 23, 30))
    opened = await open_ticket_for(harness, api.add_user(9101, "Vera"), tier="vip")
    await topic_of(harness, opened.number)
    found = await ticket(harness, opened.number)
    assert found.first_response_due == sh(2026, 11, 30, 10, 0)
    # Eight business hours: 9 on Monday.
    assert found.resolution_due == sh(2026, 11, 30, 17, 0)

    # The weekend passes without a reminder; the old deadline (Saturday 0:30) means nothing.
    assert await tick(harness, sh(2026, 11, 28, 0, 30)) == (0, 0)
    assert await tick(harness, sh(2026, 11, 29, 23, 0)) == (0, 0)
    assert await tick(harness, sh(2026, 11, 30, 9, 49)) == (0, 0)
    assert await tick(harness, sh(2026, 11, 30, 9, 50)) == (1, 0)
    assert await tick(harness, sh(2026, 11, 30, 10, 0)) == (0, 1)
    await api.wait_for(lambda: len(general(api)) == 1)
    assert desk.when(sh(2026, 11, 30, 10, 0)) in (general(api)[0].body or "")
    assert opened.number in (general(api)[0].body or "")


async def test_national_day_week_holds_the_clock(harness: Harness) -> None:
    """Opened at 17:30 on Wednesday 30 September 2026: National Day closes 1-7 October, Saturday
    10 October is a make-up working day."""
    desk = with_hours(harness)
    api = harness.api
    harness.clock.set(sh(2026, 9, 30, 17, 30))
    opened = await open_ticket_for(harness, api.add_user(9102, "Wang"), tier="normal")
    thread = await topic_of(harness, opened.number)
    found = await ticket(harness, opened.number)
    assert found.first_response_due == sh(2026, 10, 8, 9, 30)
    # 48 business hours: 0.5 on 30 Sept, 9 each on 8, 9, 10 (make-up Saturday), 12 and 13
    # October, 2.5 on the 14th.
    assert found.resolution_due == sh(2026, 10, 14, 11, 30)
    for day in range(1, 8):
        assert await tick(harness, sh(2026, 10, day, 12, 0)) == (0, 0)
    assert await tick(harness, sh(2026, 10, 8, 9, 20)) == (1, 0)
    await wait_text(
        api,
        STAFF,
        harness.text(
            "en",
            "ticket_sla_reminder_first_response",
            mention=Markup(harness.text("en", "ticket_sla_unassigned")),
            due=desk.when(sh(2026, 10, 8, 9, 30)),
            minutes=10,
        ),
        thread_id=thread,
    )
    assert await tick(harness, sh(2026, 10, 8, 9, 30)) == (0, 1)
    assert await tick(harness, sh(2026, 10, 14, 11, 20)) == (1, 0)
    assert await tick(harness, sh(2026, 10, 14, 11, 30)) == (0, 1)
    await api.wait_for(lambda: len(general(api)) == 2)


def after_hours(harness: Harness, language: str, when_key: str, **params: object) -> str:
    def text(key: str, **values: object) -> str:
        return harness.text(language, key, **values)

    if "weekday" in params:
        params["weekday"] = text(f"weekday_{params['weekday']}")
    if "month" in params:
        params["month"] = text(f"month_{params['month']}")
    return text("ticket_after_hours", when=text(when_key, **params))


def replies_like(harness: Harness, user: FakeUser, language: str) -> list[str]:
    """What the customer got of the out-of-hours reply (its first words)."""
    start = harness.text(language, "ticket_after_hours", when="@").split("@")[0]
    return [m.body or "" for m in harness.api.sent(user.id) if (m.body or "").startswith(start)]


async def test_the_out_of_hours_reply_comes_once_per_ticket_and_closed_period(
    harness: Harness,
) -> None:
    with_hours(harness)
    api = harness.api
    user = api.add_user(9103, "Liam")
    harness.clock.set(sh(2026, 11, 28, 12, 0))  # Saturday noon in Shanghai, 4:00 in London
    await api.send_text(user, "/start")
    await api.wait_for_sent(user.id, 1)
    async with harness.sessionmaker.begin() as session:
        await session.execute(
            update(Customer)
            .where(Customer.telegram_user_id == user.id)
            .values(timezone="Europe/London")
        )
    opened = await open_ticket_for(harness, user)  # handed to a person: told at once
    monday = after_hours(harness, "en", "hours_when_weekday", weekday=0, time="1:00")
    await wait_text(api, user.id, monday)

    for count, text in enumerate(("Hello?", "Anyone there?"), start=1):
        await api.send_text(user, text)
        await wait_stored(harness, opened.number, "in", count)
    await harness.barrier(user)
    await lanes_idle(harness, opened.number)
    assert replies_like(harness, user, "en") == [monday]

    await harness.restart()  # what was told is kept with the ticket
    await api.send_text(user, "Still here")
    await wait_stored(harness, opened.number, "in", 3)
    await harness.barrier(user)
    await lanes_idle(harness, opened.number)
    assert replies_like(harness, user, "en") == [monday]

    harness.clock.set(sh(2026, 11, 30, 10, 0))  # open: nothing to say
    await api.send_text(user, "Good morning")
    await wait_stored(harness, opened.number, "in", 4)
    await harness.barrier(user)
    await lanes_idle(harness, opened.number)
    assert replies_like(harness, user, "en") == [monday]

    harness.clock.set(sh(2026, 11, 30, 19, 0))  # closed again: a new period, told again
    await api.send_text(user, "Evening")
    tuesday = after_hours(harness, "en", "hours_when_tomorrow", time="1:00")
    await wait_text(api, user.id, tuesday)
    assert replies_like(harness, user, "en") == [monday, tuesday]
    found = await ticket(harness, opened.number)
    assert found.after_hours_until == sh(2026, 12, 1, 9, 0)
    assert found.first_response_due == sh(2026, 11, 30, 10, 0)  # 60 min from Monday 9:00


async def test_the_reply_is_in_the_customers_language_and_names_a_far_date(
    harness: Harness,
) -> None:
    with_hours(harness)
    api = harness.api
    user = api.add_user(9104, "小王", language_code="zh-hans")
    harness.clock.set(sh(2026, 10, 1, 10, 0))  # National Day: back on Thursday 8 October
    await open_ticket_for(harness, user)
    expected = after_hours(
        harness, "zh", "hours_when_date", weekday=3, day=8, month=10, time="9:00"
    )
    await wait_text(api, user.id, expected)
    assert expected.startswith("🌙 感谢您的留言") and "10月8日（周四）9:00" in expected


async def test_while_open_nobody_is_told_and_always_open_desks_never_tell(
    harness: Harness,
) -> None:
    api = harness.api
    user = api.add_user(9105, "Open")
    harness.clock.set(sh(2026, 11, 28, 12, 0))  # Saturday, but the shipped desk is always open
    opened = await open_ticket_for(harness, user)
    await api.send_text(user, "hi")
    await wait_stored(harness, opened.number, "in", 1)
    with_hours(harness)
    harness.clock.set(sh(2026, 11, 30, 12, 0))
    await api.send_text(user, "hi again")
    await wait_stored(harness, opened.number, "in", 2)
    await harness.barrier(user)
    await lanes_idle(harness, opened.number)
    assert replies_like(harness, user, "en") == []
    assert (await ticket(harness, opened.number)).after_hours_until is None
