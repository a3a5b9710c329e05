"""The complaint flow's rules (``handlers.complaints.flow``) without Telegram, on SQLite and
PostgreSQL: each step's answer and the draft row it leaves, a confirmed complaint becoming one
ticket with its description in order, ``/cancel`` leaving nothing, and what is refused or
expired at each step."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.config import load_config
from bot.kernel.replies import Alert, Reply
from bot.kernel.texts import Texts
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.complaints import flow
from handlers.complaints.flow import (
    STEP_CATEGORY,
    STEP_CONFIRM,
    STEP_DESCRIPTION,
    STEP_ORDER,
    FlowResult,
)
from handlers.onboarding.registration import Person, ensure_customer
from handlers.tickets.desk import Incoming
from handlers.tickets.lifecycle import TicketDesk, open_ticket
from storage.models import ComplaintDraft, Order, Ticket, TicketMessage
from storage.tickets.bans import ban
from storage.tickets.messages import IN

CONFIG = load_config(EXAMPLE_CONFIG_DIR)
DESK = TicketDesk.from_config(CONFIG, Texts.load(), -1001000000001)
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
EVE = Person(user_id=7101, chat_id=7101, first_name="Eve", language_code="en")

Sessions = async_sessionmaker[AsyncSession]


def text(message_id: int, words: str) -> Incoming:
    return Incoming(EVE.chat_id, message_id, "text", text=words, html=words)


def photo(message_id: int, group: str | None = None) -> Incoming:
    return Incoming(
        chat_id=EVE.chat_id,
        message_id=message_id,
        kind="photo",
        media_group_id=group,
        file_id=f"photo-{message_id}",
    )


async def customer_id(sessionmaker: Sessions) -> int:
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, EVE, CONFIG.general, NOW)
        return customer.id


async def add_orders(sessionmaker: Sessions, *references: str) -> dict[str, int]:
    """Eve's orders, the first given the oldest; their ids by reference."""
    owner = await customer_id(sessionmaker)
    async with sessionmaker.begin() as session:
        orders = [
            Order(
                external_id=reference,
                customer_id=owner,
                amount_cents=12_850,
                currency="CNY",
                value_cents=12_850,
                status="delivered",
                placed_at=NOW - timedelta(days=30 - index),
                placed_day=20_000 + index,
                created_at=NOW,
                updated_at=NOW,
            )
            for index, reference in enumerate(references)
        ]
        session.add_all(orders)
        await session.flush()
        return {order.external_id: order.id for order in orders}


async def start(sessionmaker: Sessions) -> FlowResult:
    async with sessionmaker.begin() as session:
        return await flow.start(session, EVE, DESK, CONFIG.general, NOW)


async def press(sessionmaker: Sessions, data: str, desk: TicketDesk = DESK) -> FlowResult:
    async with sessionmaker.begin() as session:
        return await flow.press(session, EVE.user_id, data, desk, NOW)


async def send(sessionmaker: Sessions, item: Incoming, desk: TicketDesk = DESK) -> FlowResult:
    async with sessionmaker.begin() as session:
        return await flow.message(session, EVE.user_id, item, desk, NOW)


async def done(sessionmaker: Sessions) -> FlowResult:
    async with sessionmaker.begin() as session:
        return await flow.done(session, EVE.user_id, DESK, NOW)


async def draft(sessionmaker: Sessions) -> tuple[str, str | None, str | None, list[int]] | None:
    """Eve's draft: (step, category, order reference, the description's message ids)."""
    async with sessionmaker() as session:
        row = (await session.execute(select(ComplaintDraft))).scalar_one_or_none()
    if row is None:
        return None
    return row.step, row.category, row.order_ref, [item["message_id"] for item in row.items]


async def count(sessionmaker: Sessions, model: type) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


def only(result: FlowResult) -> Reply:
    [reply] = result.replies
    return reply


def button_data(reply: Reply) -> list[str]:
    return [button.data for row in reply.buttons for button in row]


async def test_a_complaint_goes_step_by_step_and_opens_one_ticket_with_its_description(
    sessionmaker: Sessions,
) -> None:
    orders = await add_orders(sessionmaker, "SH-1001", "SH-1002")

    started = await start(sessionmaker)
    assert started.step == STEP_CATEGORY
    assert only(started).key == "complaint_choose_category"
    assert button_data(only(started)) == [
        *(f"cf:cat:{category.code}" for category in DESK.rules.categories),
        "cf:cancel",
    ]
    assert await draft(sessionmaker) == (STEP_CATEGORY, None, None, [])

    picked = await press(sessionmaker, "cf:cat:quality")
    assert (picked.step, only(picked).key) == (STEP_ORDER, "complaint_order_pick")
    # The latest orders first, then skip and cancel.
    assert button_data(only(picked)) == [
        f"cf:order:{orders['SH-1002']}",
        f"cf:order:{orders['SH-1001']}",
        "cf:skip",
        "cf:cancel",
    ]

    chosen = await press(sessionmaker, f"cf:order:{orders['SH-1001']}")
    assert (chosen.step, only(chosen).key) == (STEP_DESCRIPTION, "complaint_describe")
    assert await draft(sessionmaker) == (STEP_DESCRIPTION, "quality", "SH-1001", [])

    first = await send(sessionmaker, text(20, "it arrived broken"))
    assert (only(first).key, only(first).params) == ("complaint_added", {"count": 1})
    album = await send(sessionmaker, photo(21, group="album-1"))
    assert only(album).params == {"count": 2}
    rest_of_album = await send(sessionmaker, photo(22, group="album-1"))
    assert rest_of_album == FlowResult([], STEP_DESCRIPTION)  # one acknowledgement per album

    summary = await done(sessionmaker)
    assert summary.step == STEP_CONFIRM
    assert (only(summary).key, only(summary).params) == (
        "complaint_confirm",
        {"category": "📦 Product quality", "order": "SH-1001", "count": 3},
    )
    assert button_data(only(summary)) == ["cf:send", "cf:cancel"]

    sent = await press(sessionmaker, "cf:send")
    assert sent.step is None
    assert (only(sent).key, only(sent).params) == ("complaint_opened", {"number": "C-000001"})
    assert await draft(sessionmaker) is None
    async with sessionmaker() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
        described = (
            await session.execute(
                select(TicketMessage.chat_message_id, TicketMessage.kind, TicketMessage.text)
                .where(TicketMessage.direction == IN)
                .order_by(TicketMessage.id)
            )
        ).all()
    assert (ticket.number, ticket.source, ticket.category, ticket.status) == (
        "C-000001",
        "complaint",
        "quality",
        "open",
    )
    assert (ticket.order_id, ticket.order_ref) == (orders["SH-1001"], "SH-1001")
    assert ticket.priority == 2  # quality is "high", the normal tier "low": the higher one
    assert [tuple(row) for row in described] == [
        (20, "text", "it arrived broken"),
        (21, "photo", None),
        (22, "photo", None),
    ]


async def test_cancel_leaves_nothing_and_the_flows_buttons_then_expire(
    sessionmaker: Sessions,
) -> None:
    await start(sessionmaker)
    await press(sessionmaker, "cf:cat:delivery")
    await press(sessionmaker, "cf:skip")
    await send(sessionmaker, text(30, "late"))
    async with sessionmaker.begin() as session:
        cancelled = await flow.cancel(session, EVE.user_id, NOW)
    assert (only(cancelled).key, cancelled.step) == ("complaint_cancelled", None)
    assert await draft(sessionmaker) is None

    late_press = await press(sessionmaker, "cf:done")
    assert (late_press.replies, late_press.alert) == ([], Alert("button_expired", "en"))
    late_text = await send(sessionmaker, text(31, "hello?"))
    assert only(late_text).key == "complaint_expired"
    assert (await count(sessionmaker, Ticket), await count(sessionmaker, TicketMessage)) == (0, 0)

    # The cancel button does the same as /cancel.
    await start(sessionmaker)
    pressed = await press(sessionmaker, "cf:cancel")
    assert (only(pressed).key, pressed.step) == ("complaint_cancelled", None)
    assert await draft(sessionmaker) is None


async def test_no_new_complaint_beside_an_open_ticket_or_from_a_banned_customer(
    sessionmaker: Sessions,
) -> None:
    owner = await customer_id(sessionmaker)
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, EVE, CONFIG.general, NOW)
        opened, _ = await open_ticket(
            session, DESK, customer, source="question", category="question", now=NOW
        )
        number = opened.number
    refused = await start(sessionmaker)
    assert (refused.step, only(refused).key, only(refused).params) == (
        None,
        "complaint_already_open",
        {"number": number},
    )
    assert await draft(sessionmaker) is None

    async with sessionmaker.begin() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
        ticket.open_customer_id, ticket.status = None, "closed"
        assert await ban(session, owner, by_user_id=1, by_name="Max", now=NOW)
    banned = await start(sessionmaker)
    assert (banned.step, only(banned).key) == (None, "ticket_banned_notice")
    assert await draft(sessionmaker) is None
    assert await count(sessionmaker, Ticket) == 1


async def test_what_a_step_does_not_expect_is_answered_and_changes_nothing(
    sessionmaker: Sessions,
) -> None:
    await start(sessionmaker)
    typed = await send(sessionmaker, text(40, "my parcel"))
    assert (typed.step, only(typed).key) == (STEP_CATEGORY, "complaint_pick_category_first")
    typed_done = await done(sessionmaker)
    assert (typed_done.step, only(typed_done).key) == (
        STEP_CATEGORY,
        "complaint_pick_category_first",
    )
    for data in ("cf:cat:no-such-category", "cf:done", "cf:send", "cf:order:1"):
        early = await press(sessionmaker, data)
        assert (early.replies, early.alert, early.step) == (
            [],
            Alert("button_expired", "en"),
            STEP_CATEGORY,
        ), data
    assert await draft(sessionmaker) == (STEP_CATEGORY, None, None, [])

    await press(sessionmaker, "cf:cat:service")
    await press(sessionmaker, "cf:skip")
    empty = await done(sessionmaker)
    assert (empty.step, only(empty).key) == (STEP_DESCRIPTION, "complaint_empty")
    sticker = await send(sessionmaker, Incoming(EVE.chat_id, 41, "sticker", file_id="sticker-41"))
    assert (sticker.step, only(sticker).key) == (STEP_DESCRIPTION, "complaint_unsupported")
    assert await draft(sessionmaker) == (STEP_DESCRIPTION, "service", None, [])
    assert await count(sessionmaker, Ticket) == 0


async def test_a_typed_order_number_is_matched_or_kept_as_written(
    sessionmaker: Sessions,
) -> None:
    orders = await add_orders(sessionmaker, "SH-2001")
    await start(sessionmaker)
    await press(sessionmaker, "cf:cat:delivery")

    too_long = await send(sessionmaker, text(50, "x" * (flow.ORDER_REF_LIMIT + 1)))
    assert (too_long.step, only(too_long).key) == (STEP_ORDER, "complaint_order_invalid")
    matched = await send(sessionmaker, text(51, "  sh-2001 "))
    assert matched.step == STEP_DESCRIPTION
    async with sessionmaker() as session:
        row = (await session.execute(select(ComplaintDraft))).scalar_one()
    assert (row.order_id, row.order_ref) == (orders["SH-2001"], "SH-2001")

    await start(sessionmaker)  # a fresh draft replaces the old one
    await press(sessionmaker, "cf:cat:delivery")
    await send(sessionmaker, text(52, "TB-77"))
    async with sessionmaker() as session:
        row = (await session.execute(select(ComplaintDraft))).scalar_one()
    assert (row.order_id, row.order_ref, row.items) == (None, "TB-77", [])


async def test_a_full_description_goes_straight_to_the_summary(sessionmaker: Sessions) -> None:
    rules = DESK.rules.model_copy(
        update={"flow": DESK.rules.flow.model_copy(update={"max_description_items": 2})}
    )
    small = dataclasses.replace(DESK, rules=rules)
    await start(sessionmaker)
    await press(sessionmaker, "cf:cat:billing", small)
    await press(sessionmaker, "cf:skip", small)
    await send(sessionmaker, text(60, "charged twice"), small)
    full = await send(sessionmaker, text(61, "see the statement"), small)
    assert full.step == STEP_CONFIRM
    assert [(reply.key, reply.params) for reply in full.replies] == [
        ("complaint_full", {"limit": 2}),
        (
            "complaint_confirm",
            {"category": "💳 Billing", "order": full.replies[1].params["order"], "count": 2},
        ),
    ]
    assert full.replies[1].params["order"].key == "complaint_no_order"
    assert await draft(sessionmaker) == (STEP_CONFIRM, "billing", None, [60, 61])


async def test_a_ticket_opened_meanwhile_takes_the_description(sessionmaker: Sessions) -> None:
    """Confirming while another ticket opened (a handover from the knowledge base): one ticket,
    the description added to it."""
    await start(sessionmaker)
    await press(sessionmaker, "cf:cat:other")
    await press(sessionmaker, "cf:skip")
    await send(sessionmaker, text(70, "and another thing"))
    await done(sessionmaker)
    async with sessionmaker.begin() as session:
        customer, _ = await ensure_customer(session, EVE, CONFIG.general, NOW)
        other, _ = await open_ticket(
            session, DESK, customer, source="question", category="question", now=NOW
        )
        number = other.number
    sent = await press(sessionmaker, "cf:send")
    assert (only(sent).key, only(sent).params) == ("complaint_opened", {"number": number})
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(Ticket.number, TicketMessage.chat_message_id)
                .join(Ticket, Ticket.id == TicketMessage.ticket_id)
                .where(TicketMessage.direction == IN)
            )
        ).all()
    assert [tuple(row) for row in rows] == [(number, 70)]
    assert (await count(sessionmaker, Ticket), await draft(sessionmaker)) == (1, None)
