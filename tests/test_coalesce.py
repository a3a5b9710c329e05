"""End to end: within a group's 20 messages a minute, without loss (issue 20, part 4). The local
Bot API server enforces the limit, scaled down (a few messages per a few seconds), and the
dispatcher keeps to it. When a topic's copies queue behind the limit, the customer's
consecutive texts go as one message, each line with its time, every text exactly once and in
order; media and edits keep their own message; no message beyond 4,096 characters; nothing is
merged while the group has room; renames and card edits give way to copies; a merged message
that fails takes its texts along; /forget cancels one still waiting. On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

from sqlalchemy import select

from bot.sandbox.records import FakeUser, SentMessage
from handlers.tickets.coalesce import TEXT_LIMIT, telegram_length
from handlers.tickets.desk import Staff
from handlers.tickets.lifecycle import claim, set_status
from storage.models import Outbox, TicketDelivery
from storage.tickets.rows import lock_ticket
from storage.tickets.statuses import WAITING_CUSTOMER
from tests.auxil.harness import Harness
from tests.auxil.tickets import (
    STAFF,
    desk_ticket,
    lanes_idle,
    messages,
    ticket,
    wait_stored,
)

LINE = re.compile(r"^\[\d\d:\d\d\] (.*)$")


async def _queued_texts(
    harness: Harness, user_id: int, texts: list[str], *, photo_at: int | None = None
) -> tuple[FakeUser, str, int, list[int]]:
    """A customer with a ticket writes ``texts`` (a photo before ``texts[photo_at]``) while
    the dispatcher is paused: the first waits in the outbox, the rest in the topic's lane.
    Returns the customer, the ticket, its topic and the messages' ids."""
    api = harness.api
    rules = harness.rules.tickets
    flood = rules.flood.model_copy(update={"max_messages": 1000})
    harness.use_ticket_rules(rules.model_copy(update={"flood": flood}))
    user = api.add_user(user_id, f"Customer {user_id}")
    number, thread = await desk_ticket(harness, user)
    await harness.pause_dispatcher()
    sent = []
    for index, text in enumerate(texts):
        if index == photo_at:
            update = await api.send_photo(user)
            sent.append(int(update["message"]["message_id"]))
        update = await api.send_text(user, text)
        sent.append(int(update["message"]["message_id"]))
    await wait_stored(harness, number, "in", len(sent))
    return user, number, thread, sent


def _topic(harness: Harness, thread: int, after: int) -> list[SentMessage]:
    """What the bot sent into the topic after its first ``after`` messages."""
    return harness.api.sent(STAFF, thread_id=thread)[after:]


def _shown(harness: Harness, user_id: int, message: SentMessage) -> list[str]:
    """The customer's texts a message in the topic shows: a copy's, or a merged one's lines."""
    if message.copied_from is not None:
        assert message.copied_from[0] == user_id
        original = harness.api.message(user_id, message.copied_from[1])
        return [original.get("text") or "<media>"]
    lines = (message.text or "").split("\n")
    found = [LINE.match(line) for line in lines]
    assert all(found), message.text
    return [match.group(1) for match in found if match]


def _texts_in(harness: Harness, user_id: int, thread: int) -> list[str]:
    """The customer's texts a topic shows (copies and merged lines), in order."""
    return [
        text
        for m in harness.api.sent(STAFF, thread_id=thread)
        if m.copied_from is not None or LINE.match((m.text or "").split("\n")[0])
        for text in _shown(harness, user_id, m)
    ]


def _merged(messages: list[SentMessage]) -> list[SentMessage]:
    return [m for m in messages if m.copied_from is None and m.method == "sendMessage"]


async def _settled(harness: Harness, number: str, count: int) -> None:
    await lanes_idle(harness, number)
    inbound = [m for m in await messages(harness, number) if m.direction == "in"]
    assert len(inbound) == count
    assert all(m.state == "relayed" and m.copy_message_id for m in inbound)


async def test_texts_queued_behind_the_limit_go_as_one_message(harness: Harness) -> None:
    """Twelve texts wait; the group takes 3 messages per 2 s: the first goes as a copy, the
    next ten as one message, the last as a copy. Each text once, in order, with its time; the
    merged ones all point at the one message (an edit of any answers it)."""
    texts = [f"message {index}" for index in range(12)]
    _user, number, thread, _ = await _queued_texts(harness, 8201, texts)
    before = len(harness.api.sent(STAFF, thread_id=thread))
    await harness.limit_groups(3, 2.0)
    await harness.api.wait_for(
        lambda: len(_topic(harness, thread, before)) >= 3, timeout=10, description="3 sends"
    )
    await _settled(harness, number, len(texts))

    topic = _topic(harness, thread, before)
    shown = [text for message in topic for text in _shown(harness, 8201, message)]
    assert shown == texts
    assert [len(_shown(harness, 8201, m)) for m in topic] == [1, 10, 1]
    [merged] = _merged(topic)
    stored = [m for m in await messages(harness, number) if m.direction == "in"]
    assert {m.copy_message_id for m in stored[1:11]} == {merged.message_id}
    assert not [call for call in harness.api.calls if call.status == 429]
    async with harness.sessionmaker() as session:
        found = await ticket(harness, number)
        rows = (
            await session.execute(
                select(TicketDelivery).where(TicketDelivery.ticket_id == found.id)
            )
        ).scalars()
        assert {row.state for row in rows} <= {"sent", "skipped"}


async def test_a_long_burst_waits_for_the_limit_and_loses_nothing(harness: Harness) -> None:
    """Thirty texts against 2 messages per 1.5 s: merged windows of ten, the later ones wait
    for the group's window, none is refused (no 429), each text once and in order."""
    texts = [f"burst {index}" for index in range(30)]
    _user, number, thread, _ = await _queued_texts(harness, 8202, texts)
    before = len(harness.api.sent(STAFF, thread_id=thread))
    await harness.limit_groups(2, 1.5)
    await harness.api.wait_for(
        lambda: sum(len(_shown(harness, 8202, m)) for m in _topic(harness, thread, before)) >= 30,
        timeout=30,
        description="all thirty texts in the topic",
    )
    await _settled(harness, number, len(texts))
    topic = _topic(harness, thread, before)
    assert [text for m in topic for text in _shown(harness, 8202, m)] == texts
    assert len(topic) <= 5
    assert not [call for call in harness.api.calls if call.status == 429]


async def test_media_and_edits_keep_their_own_message(harness: Harness) -> None:
    """A photo and an edit between texts are not merged: the texts around them are, each
    run on its side."""
    api = harness.api
    texts = ["first", "a", "b", "c", "d"]
    user, number, thread, sent = await _queued_texts(harness, 8203, texts, photo_at=3)
    await api.edit_message(user, sent[1], "a, edited")
    await api.send_text(user, "last")
    await wait_stored(harness, number, "in", len(sent) + 2)
    before = len(api.sent(STAFF, thread_id=thread))
    await harness.limit_groups(2, 2.0)
    await api.wait_for(
        lambda: any((m.text or "").endswith("last") for m in _topic(harness, thread, before)),
        timeout=15,
        description="the last text in the topic",
    )
    await lanes_idle(harness, number)
    topic = _topic(harness, thread, before)
    photo = next(m for m in topic if m.copied_from == (8203, sent[3]))
    edit = next(m for m in topic if "a, edited" in (m.text or ""))
    assert not LINE.match(edit.text or "")  # the edit marker, on its own
    merged = _merged([m for m in topic if m is not edit])
    assert [_shown(harness, 8203, m) for m in merged] == [["a", "b"], ["c", "d"]]
    order = [m.message_id for m in topic]
    assert order.index(merged[0].message_id) < order.index(photo.message_id)
    assert order.index(photo.message_id) < order.index(merged[1].message_id)


async def test_no_merged_message_beyond_4096_characters(harness: Harness) -> None:
    """Texts of 1,500 characters: two fit in one message, a third does not."""
    texts = ["short"] + [f"{index}:" + "x" * 1500 for index in range(5)]
    _user, number, thread, _ = await _queued_texts(harness, 8204, texts)
    before = len(harness.api.sent(STAFF, thread_id=thread))
    await harness.limit_groups(2, 1.0)
    await harness.api.wait_for(
        lambda: sum(len(_shown(harness, 8204, m)) for m in _topic(harness, thread, before)) >= 6,
        timeout=15,
        description="every text in the topic",
    )
    await _settled(harness, number, len(texts))
    topic = _topic(harness, thread, before)
    assert [text for m in topic for text in _shown(harness, 8204, m)] == texts
    assert [len(_shown(harness, 8204, m)) for m in topic] == [1, 2, 2, 1]
    for message in _merged(topic):
        assert telegram_length(message.text or "") <= TEXT_LIMIT


async def test_nothing_is_merged_while_the_group_has_room(harness: Harness) -> None:
    """The same twelve texts with the group allowing 20 a minute: twelve copies."""
    texts = [f"message {index}" for index in range(12)]
    _, number, thread, sent = await _queued_texts(harness, 8205, texts)
    before = len(harness.api.sent(STAFF, thread_id=thread))
    await harness.limit_groups(20, 60.0)
    await _settled(harness, number, len(texts))
    topic = _topic(harness, thread, before)
    assert [m.copied_from for m in topic] == [(8205, message_id) for message_id in sent]
    async with harness.sessionmaker() as session:
        rows = (await session.execute(select(Outbox.payload).where(Outbox.chat_id == STAFF))).all()
    assert not [payload for (payload,) in rows if payload.get("merged")]


async def test_card_edits_and_renames_give_way_to_customer_copies(harness: Harness) -> None:
    """Behind a limit of one message per 1.5 s: the card's edit (a claim) queued between the
    customer's texts goes after them, and the topic's rename (a status change), queued before
    the texts that follow it, goes last."""
    api = harness.api
    user, number, thread, _ = await _queued_texts(harness, 8206, ["t0", "t1", "t2"])
    now = harness.clock.now()
    async with harness.sessionmaker.begin() as session:
        found = await ticket(harness, number)
        locked = await lock_ticket(session, found.id)
        assert locked is not None
        await claim(session, harness.desk, locked, Staff(9206, "Sam"), now)
        await set_status(session, harness.desk, locked, WAITING_CUSTOMER, now)
    for text in ("t3", "t4"):
        await api.send_text(user, text)
    await wait_stored(harness, number, "in", 5)
    first_call = len(api.calls)
    before = len(api.sent(STAFF, thread_id=thread))
    await harness.limit_groups(1, 1.5)
    await api.wait_for(
        lambda: any(c.method == "editForumTopic" and c.ok for c in api.calls[first_call:]),
        timeout=20,
        description="the rename",
    )
    await _settled(harness, number, 5)
    to_group = [
        call.method
        for call in api.calls[first_call:]
        if call.ok and call.params.get("chat_id") == STAFF
    ]
    assert to_group == ["copyMessage", "sendMessage", "editMessageText", "editForumTopic"]
    [merged] = _merged(_topic(harness, thread, before))
    assert _shown(harness, 8206, merged) == ["t1", "t2", "t3", "t4"]
    assert not [call for call in api.calls if call.status == 429]


async def test_forget_cancels_a_merged_message_still_waiting(harness: Harness) -> None:
    """``/forget`` while a merged message waits behind the limit: it is cancelled and its
    texts erased, and every text it carried ends with it (none left waiting)."""
    api = harness.api
    texts = [f"secret {index}" for index in range(4)]
    user, number, thread, _ = await _queued_texts(harness, 8207, texts)
    await harness.limit_groups(1, 60.0)

    async def merged_rows() -> list[tuple[str, dict]]:
        async with harness.sessionmaker() as session:
            result = await session.execute(
                select(Outbox.state, Outbox.payload).where(Outbox.chat_id == STAFF)
            )
            return [(state, payload) for state, payload in result.all() if "merged" in payload]

    for _ in range(250):
        if await merged_rows():
            break
        await asyncio.sleep(0.02)
    [(state, payload)] = await merged_rows()
    assert state in ("pending", "claimed") and "secret 3" in payload["text"]

    before = len(api.sent(user.id))
    await api.send_text(user, "/forget")
    confirm = (await api.wait_for_sent(user.id, before + 1))[-1]
    await api.press_button(user, confirm, "forget:yes")
    await api.wait_for_sent(user.id, before + 2)
    async with harness.sessionmaker() as session:
        found = await ticket(harness, number)
        deliveries = (
            await session.execute(
                select(TicketDelivery).where(TicketDelivery.ticket_id == found.id)
            )
        ).scalars()
        states = Counter(delivery.state for delivery in deliveries)
        rows = (await session.execute(select(Outbox).where(Outbox.chat_id == STAFF))).scalars()
        cancelled = [row for row in rows if row.state == "cancelled"]
    assert states["merged"] == 0 and states["skipped"] >= 3
    assert cancelled and all("secret" not in str(row.payload) for row in cancelled)
    shown = [m.body or "" for m in api.sent(STAFF, thread_id=thread)]
    assert not [body for body in shown if "secret 1" in body]


async def test_a_merged_message_that_fails_takes_its_texts_along(harness: Harness) -> None:
    """The merged message finds the topic deleted: its texts are queued again with it, and
    after the new topic (its card and the history) each arrives exactly once, in order; a 500
    on it is retried with all its texts."""
    api = harness.api
    texts = [f"message {index}" for index in range(6)]
    _user, number, old, _ = await _queued_texts(harness, 8208, texts)
    api.fail("sendMessage", error_code=500, times=1, chat_id=STAFF)
    api.fail(
        "sendMessage",
        error_code=400,
        description="Bad Request: message thread not found",
        chat_id=STAFF,
    )  # once the 500 has been answered: the rules apply in turn
    await harness.limit_groups(3, 1.0)
    await api.wait_for(
        lambda: len(api.topics(STAFF)) >= 2, timeout=15, description="the new topic"
    )
    new = api.topics(STAFF)[-1].message_thread_id
    await _settled(harness, number, len(texts))
    assert _texts_in(harness, 8208, old) == texts[:1]
    assert _texts_in(harness, 8208, new) == texts[1:]
    merged = [
        c.status
        for c in api.calls_of("sendMessage")
        if "[" in str(c.params.get("text", ""))[:1] and c.params.get("chat_id") == STAFF
    ]
    assert merged[:3] == [500, 400, 200]
