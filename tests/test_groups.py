"""End to end: several staff groups. ``/setup <name>`` makes a group a named desk; routing rules
(``tickets.toml`` ``[[routing]]``) send each ticket to its group by category, customer language,
tier and source, a group not set up falling back to ``main`` with one WARNING; ``/move`` takes a
ticket's topic to another group with its card and history; groups that assign by themselves
hand tickets out among the staff on duty (round robin, least open), reassign a ticket whose
first reply is late and call the group's leads; an agent may not assign to someone else. Through
the real Application and the local Bot API server, on both databases."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from bot.kernel.texts import Markup
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser
from scheduler import sla
from scheduler.dispatcher.telegram import stored_failure
from storage.models import Ticket
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    lanes_idle,
    open_ticket_for,
    staff_reply_text,
    ticket,
    wait_message,
    wait_text,
)

VIP = -1003000000001
INTL = -1003000000002
BOSS = 7400


def _mention(user_id: int, name: str) -> Markup:
    return Markup(f'<a href="tg://user?id={user_id}">{name}</a>')


async def _set_up(harness: Harness, chat_id: int, name: str, title: str) -> None:
    """A forum group made the staff desk ``name`` by its creator."""
    api = harness.api
    api.add_group(chat_id, title, forum=True)
    boss = _user(api, BOSS, "Boss")
    api.add_member(chat_id, boss, "creator")
    await api.send_text(boss, f"/setup {name}", chat_id=chat_id)
    await wait_text(api, chat_id, harness.text("en", "setup_done_named", name=name))


def _rules(harness: Harness, **tickets: Any) -> None:
    """Run the rest of the test with these ``tickets.toml`` keys on top of the shipped ones."""
    data = harness.rules.tickets.model_dump()
    harness.use_ticket_rules(type(harness.rules.tickets).model_validate({**data, **tickets}))


async def _open(
    harness: Harness,
    user: FakeUser,
    *,
    tier: str = "normal",
    category: str = "delivery",
    source: str = "complaint",
) -> str:
    """A registered customer of ``tier`` opens a ticket (``source``); its number."""
    opened = await open_ticket_for(harness, user, tier=tier, category=category, source=source)
    return opened.number


async def _topic(harness: Harness, number: str) -> tuple[int, int]:
    """(chat, thread) of the ticket's topic once its card is there and nothing is under way."""
    found: list[Ticket] = []

    async def ready() -> bool:
        found[:] = [await ticket(harness, number)]
        return bool(found[0].card_message_id and found[0].topic_thread_id)

    for _ in range(250):
        if await ready():
            break
        await harness.api.wait_for(lambda: True, timeout=0.02)
    assert found and found[0].staff_chat_id and found[0].topic_thread_id, number
    await lanes_idle(harness, number)
    return found[0].staff_chat_id, found[0].topic_thread_id


def _user(api: LocalBotApi, user_id: int, name: str, username: str = "") -> FakeUser:
    """The sandbox's user ``user_id``, added the first time."""
    try:
        return api.user(user_id)
    except KeyError:
        return api.add_user(user_id, name, username=username or None)


def _member(
    api: LocalBotApi, user_id: int, name: str, *chats: int, username: str = ""
) -> FakeUser:
    user = _user(api, user_id, name, username)
    for chat in chats:
        api.add_member(chat, user, "member")
    return user


async def _say(
    api: LocalBotApi, user: FakeUser, chat: int, text: str, thread: int | None = None
) -> None:
    await api.send_text(user, text, chat_id=chat, message_thread_id=thread)


async def test_routing_sends_each_ticket_to_its_group_by_every_key(harness: Harness) -> None:
    api = harness.api
    await _set_up(harness, VIP, "vip", "VIP desk")
    await _set_up(harness, INTL, "intl", "International desk")
    _rules(
        harness,
        routing=[
            {"group": "vip", "tier": "vip"},
            {"group": "vip", "source": "survey"},
            {"group": "intl", "category": ["billing"]},
            {"group": "intl", "language": "zh", "source": ["complaint", "question"]},
        ],
    )
    cases = [  # (customer, tier, category, source) → group (Li and Wu write Chinese)
        (api.add_user(8101, "Vera"), "vip", "delivery", "complaint", VIP),
        (api.add_user(8102, "Sam"), "normal", "quality", "survey", VIP),
        (api.add_user(8103, "Bill"), "normal", "billing", "complaint", INTL),
        (api.add_user(8104, "Li", language_code="zh"), "normal", "delivery", "complaint", INTL),
        (api.add_user(8105, "Wu", language_code="zh"), "normal", "delivery", "follow_up", STAFF),
        (api.add_user(8106, "Norm"), "normal", "delivery", "complaint", STAFF),
    ]
    numbers = [
        await _open(harness, user, tier=tier, category=category, source=source)
        for user, tier, category, source, _ in cases
    ]
    topics = [await _topic(harness, number) for number in numbers]
    assert [chat for chat, _ in topics] == [chat for *_, chat in cases]
    for number, (chat, thread), case in zip(numbers, topics, cases, strict=True):
        found = await ticket(harness, number)
        assert found.staff_group == {VIP: "vip", INTL: "intl", STAFF: "main"}[case[-1]]
        assert thread in [topic.message_thread_id for topic in api.topics(chat)]

    # A reply in each group's topic reaches that ticket's customer: topics are per chat.
    anna = _member(api, 7401, "Anna", STAFF, VIP, INTL)
    for (user, *_), (chat, thread) in zip(cases, topics, strict=True):
        await _say(api, anna, chat, f"Hello {user.first_name}", thread)
    for user, *_ in cases:  # each got their reply, and nobody another customer's
        said = staff_reply_text(
            harness, user.language_code or "en", "Anna", f"Hello {user.first_name}"
        )
        await wait_text(api, user.id, said)
        assert [m.text for m in api.sent(user.id) if "Anna" in (m.text or "")] == [said]


async def test_a_route_to_a_group_not_set_up_goes_to_main_with_one_warning(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    api = harness.api
    caplog.set_level(logging.WARNING)
    _rules(harness, routing=[{"group": "vip", "tier": "vip"}])
    first = await _open(harness, api.add_user(8201, "Vera"), tier="vip")
    second = await _open(harness, api.add_user(8202, "Vic"), tier="vip")
    assert [(await _topic(harness, n))[0] for n in (first, second)] == [STAFF, STAFF]
    warned = [r for r in caplog.records if "'vip' is not set up" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    # A chat is one desk only; a name must be a plain word. Neither changes anything.
    boss = _user(api, BOSS, "Boss")
    api.add_member(STAFF, boss, "creator")
    await _say(api, boss, STAFF, "/setup vip")
    await wait_text(api, STAFF, harness.text("en", "setup_other_group", name="main"))
    await _say(api, boss, STAFF, "/setup V.I.P")
    await wait_text(api, STAFF, harness.text("en", "setup_bad_name", name="v.i.p"))
    assert harness.desk.group.chats == {"main": STAFF}
    # Once it is set up, the next VIP ticket goes there.
    await _set_up(harness, VIP, "vip", "VIP desk")
    third = await _open(harness, api.add_user(8203, "Val"), tier="vip")
    assert (await _topic(harness, third))[0] == VIP


async def test_move_recreates_the_topic_in_the_other_group_with_card_and_history(
    harness: Harness,
) -> None:
    api = harness.api
    await _set_up(harness, VIP, "vip", "VIP desk")
    ann = api.add_user(8301, "Ann")
    number = await _open(harness, ann)
    chat, thread = await _topic(harness, number)
    assert chat == STAFF
    await api.send_text(ann, "My parcel is three days late")
    await wait_message(api, STAFF, lambda m: m.copied_from is not None, thread_id=thread)
    anna = _member(api, 7401, "Anna", STAFF, VIP)

    await _say(api, anna, STAFF, "/move", thread)
    await wait_text(
        api, STAFF, harness.text("en", "ticket_move_usage", groups="main, vip"), thread_id=thread
    )
    await _say(api, anna, STAFF, "/move nowhere", thread)
    unknown = harness.text("en", "ticket_move_unknown", name="nowhere", groups="main, vip")
    await wait_text(api, STAFF, unknown, thread_id=thread)
    assert (await ticket(harness, number)).staff_group == "main"

    await _say(api, anna, STAFF, "/move vip", thread)
    moved = harness.text("en", "ticket_moved", name="vip", by="Anna")
    await wait_text(api, STAFF, moved, thread_id=thread)
    new_chat, new_thread = await _topic(harness, number)
    assert (new_chat, (await ticket(harness, number)).staff_group) == (VIP, "vip")
    in_vip = [m.text or "" for m in api.sent(VIP, thread_id=new_thread)]
    assert in_vip[0].startswith("🎫") and number in in_vip[0]  # the card, then the history
    assert "My parcel is three days late" in in_vip[1] and "♻️" in in_vip[1]

    # The conversation goes on there; the old topic no longer reaches the customer.
    await _say(api, anna, STAFF, "written in the old topic", thread)
    await _say(api, anna, VIP, "We are looking into it", new_thread)
    await api.wait_for(lambda: any("looking into it" in (m.text or "") for m in api.sent(ann.id)))
    assert not any("old topic" in (m.text or "") for m in api.sent(ann.id))
    await api.send_text(ann, "Thanks!")
    await wait_message(
        api, VIP, lambda m: m.copied_from is not None and m.body == "Thanks!", thread_id=new_thread
    )
    await _say(api, anna, VIP, "/move vip", new_thread)
    await wait_text(
        api, VIP, harness.text("en", "ticket_move_same", name="vip"), thread_id=new_thread
    )


async def _duty(
    api: LocalBotApi, user: FakeUser, chat: int, word: str, group: str, h: Harness
) -> None:
    await _say(api, user, chat, f"/duty {word}")
    await wait_text(api, chat, h.text("en", f"duty_{word}", name=user.first_name, group=group))


async def test_round_robin_and_least_open_among_three_staff_with_one_off_duty(
    harness: Harness,
) -> None:
    api = harness.api
    await _set_up(harness, VIP, "vip", "VIP desk")
    await _set_up(harness, INTL, "intl", "International desk")
    _rules(
        harness,
        groups={"vip": {"assign": "round_robin"}, "intl": {"assign": "least_open"}},
        routing=[{"group": "vip", "tier": "vip"}, {"group": "intl", "category": "billing"}],
    )
    amy, ben, cat = (
        _member(api, 7501, "Amy", STAFF, VIP, INTL),
        _member(api, 7502, "Ben", STAFF, VIP, INTL),
        _member(api, 7503, "Cat", STAFF, VIP, INTL),
    )
    for chat, group in ((VIP, "vip"), (INTL, "intl")):
        for member in (amy, ben, cat):
            await _duty(api, member, chat, "on", group, harness)
        await _duty(api, cat, chat, "off", group, harness)
    await _say(api, amy, VIP, "/duty")
    await wait_text(api, VIP, harness.text("en", "duty_list", group="vip", names="Amy, Ben"))

    customers: list[FakeUser] = []

    async def assignees(count: int, **kind: str) -> list[str | None]:
        names = []
        for _ in range(count):
            customers.append(api.add_user(8400 + len(customers), f"C{len(customers)}"))
            user = customers[-1]
            number = await _open(harness, user, **kind)
            chat, thread = await _topic(harness, number)
            found = await ticket(harness, number)
            said = harness.text(
                "en",
                "ticket_auto_assigned",
                name=_mention(found.assignee_user_id or 0, found.assignee_name or ""),
            )
            assert said in [m.body for m in api.sent(chat, thread_id=thread)]
            names.append(found.assignee_name)
        return names

    assert await assignees(4, tier="vip") == ["Amy", "Ben", "Amy", "Ben"]  # Cat is off duty
    # Least open: Amy has 2 open tickets, Ben 2; in intl nobody has been given one yet.
    async with harness.sessionmaker.begin() as session:  # Ben's two are closed
        await session.execute(
            update(Ticket)
            .where(Ticket.assignee_user_id == ben.id)
            .values(open_customer_id=None, status="closed")
        )
    assert await assignees(3, category="billing") == ["Ben", "Ben", "Amy"]


async def test_a_late_first_reply_is_reassigned_once_and_the_leads_are_called(
    harness: Harness,
) -> None:
    api = harness.api
    await _set_up(harness, VIP, "vip", "VIP desk")
    _rules(
        harness,
        groups={"vip": {"assign": "round_robin"}},
        routing=[{"group": "vip", "tier": "vip"}],
        staff=[{"user_id": 7603, "role": "lead", "groups": ["vip"]}],
    )
    amy, ben = _member(api, 7601, "Amy", VIP), _member(api, 7602, "Ben", VIP)
    lea = _member(api, 7603, "Lea", VIP)
    for member in (amy, ben):
        await _duty(api, member, VIP, "on", "vip", harness)
    await _duty(api, lea, VIP, "off", "vip", harness)  # a lead, not taking tickets
    number = await _open(harness, api.add_user(8501, "Vera"), tier="vip")
    _, thread = await _topic(harness, number)
    assert (await ticket(harness, number)).assignee_name == "Amy"

    start = harness.clock.now()

    async def tick(minutes: int) -> sla.SlaRun:
        harness.clock.set(start + timedelta(minutes=minutes))
        return await sla.plan(
            harness.sessionmaker, harness.desk, harness.clock.now(), stored_failure
        )

    assert (await tick(14)).escalations == 0  # VIP: first reply due after 15 minutes
    assert (await tick(16)).escalations == 1
    assert (await ticket(harness, number)).assignee_name == "Ben"
    reassigned = harness.text(
        "en", "ticket_reassigned_missed", before="Amy", name=_mention(7602, "Ben")
    )
    await wait_message(api, VIP, lambda m: m.body == reassigned, thread_id=thread)
    leads = harness.text("en", "ticket_sla_escalation_leads", leads=_mention(7603, "Lea"))
    escalation = await wait_message(
        api, VIP, lambda m: m.message_thread_id is None and "🚨" in (m.text or "")
    )
    assert escalation.body.endswith(leads) and number in escalation.body
    assert (await tick(60)).escalations == 0  # once
    await lanes_idle(harness, number)
    assert (await ticket(harness, number)).assignee_name == "Ben"
    assert [m.body for m in api.sent(VIP, thread_id=thread)].count(reassigned) == 1


async def test_an_agent_cannot_assign_to_someone_else_nor_take_over_and_a_lead_can(
    harness: Harness,
) -> None:
    api = harness.api
    _rules(
        harness,
        desk={"default_role": "agent"},
        staff=[{"user_id": 7703, "role": "lead"}],
    )
    amy = _member(api, 7701, "Amy", STAFF, username="amy_cs")
    ben = _member(api, 7702, "Ben", STAFF, username="ben_cs")
    lea = _member(api, 7703, "Lea", STAFF)
    number = await _open(harness, api.add_user(8601, "Fay"))
    _, thread = await _topic(harness, number)
    await _say(api, ben, STAFF, "!I am around", thread)  # the bot now knows @ben_cs
    await _say(api, amy, STAFF, "/assign @ben_cs", thread)
    await wait_text(
        api, STAFF, harness.text("en", "ticket_agent_assign_refused"), thread_id=thread
    )
    assert (await ticket(harness, number)).assignee_user_id is None

    await _say(api, lea, STAFF, "/assign @ben_cs", thread)
    await wait_text(
        api,
        STAFF,
        harness.text("en", "ticket_assigned", name=_mention(7702, "Ben"), by="Lea"),
        thread_id=thread,
    )
    await _say(api, amy, STAFF, "/claim", thread)
    refused = harness.text("en", "ticket_agent_takeover_refused", name="Ben")
    await wait_text(api, STAFF, refused, thread_id=thread)
    assert (await ticket(harness, number)).assignee_user_id == 7702
    await _say(api, ben, STAFF, "/claim", thread)  # his own: fine
    await wait_text(api, STAFF, harness.text("en", "ticket_claimed", name="Ben"), thread_id=thread)
