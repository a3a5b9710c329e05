"""Two ``carebot run`` processes in webhook mode on one PostgreSQL database behind a round-robin
balancer: 2,000 updates from 100 customers, then 100 of them delivered again. Every update is
handled once, every reply sent once, no customer or ticket twice."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bot.kernel.texts import Texts
from bot.sandbox.api import LocalBotApi
from bot.sandbox.records import FakeUser
from storage.engine import create_engine
from storage.models import Customer, InboxUpdate, KbHandoff, Ticket
from tests.auxil import databases
from tests.auxil.cluster import cluster
from tests.auxil.harness import STAFF_CHAT_ID

CUSTOMERS = 100
QUESTIONS = [
    "Where is my parcel?",
    "how do I return something",
    "what payment methods do you accept",
    "can I change my delivery address",
    "how long does shipping take",
    "do you ship abroad",
]
# Per customer: /start (a greeting and the consent question), 18 questions (one answer each),
# then 👎 under the last answer (one reply; a ticket opens): 20 updates, 21 messages back.
ROUNDS = 18
REPLIES = 2 + ROUNDS + 1


async def _converse(api: LocalBotApi, user: FakeUser, sent: list[dict[str, Any]]) -> None:
    """One customer's closed loop: each update once the previous one is answered."""
    sent.append(await api.send_text(user, "/start"))
    await api.wait_for_sent(user.id, 2, timeout=60)
    for number in range(ROUNDS):
        last = number == ROUNDS - 1
        question = QUESTIONS[0 if last else (user.id + number) % len(QUESTIONS)]
        sent.append(await api.send_text(user, question))
        await api.wait_for_sent(user.id, 3 + number, timeout=60)
    answer = api.sent(user.id)[-1]
    down = next(data for _, data in answer.buttons() if data.startswith("kb:down:"))
    sent.append(await api.press_button(user, answer, down))
    await api.wait_for_sent(user.id, REPLIES, timeout=60)


async def _counts(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:

            async def count(model: Any) -> int:
                statement = select(func.count()).select_from(model)
                return int((await connection.execute(statement)).scalar_one())

            ticket_owners = (
                await connection.execute(select(func.count(func.distinct(Ticket.customer_id))))
            ).scalar_one()
            return {
                "customers": await count(Customer),
                "tickets": await count(Ticket),
                "ticket owners": ticket_owners,
                "inbound": await count(InboxUpdate),
                "handoffs": await count(KbHandoff),
            }
    finally:
        await engine.dispose()


async def test_two_processes_share_the_webhook_and_handle_each_update_once(
    postgres_url: str, tmp_path: Path
) -> None:
    databases.truncate_all(postgres_url)
    api = LocalBotApi("123456:SCALE-OUT-test")
    await api.start()
    api.add_group(STAFF_CHAT_ID, "Staff", forum=True)
    users = [api.add_user(8000 + n, f"Customer {n}", language_code="en") for n in range(CUSTOMERS)]
    sent: dict[int, list[dict[str, Any]]] = {user.id: [] for user in users}
    try:
        async with cluster(
            api,
            replicas=2,
            database_url=postgres_url,
            workdir=tmp_path,
            staff_chat_id=STAFF_CHAT_ID,
        ) as (balancer, bots):
            await asyncio.gather(*(_converse(api, user, sent[user.id]) for user in users))
            await api.wait_for(
                lambda: len(api.calls_of("createForumTopic")) >= CUSTOMERS, timeout=120
            )
            replies = {user.id: [m.message_id for m in api.sent(user.id)] for user in users}

            # Telegram delivers 100 of them again (as after a timeout it could not tell apart
            # from a failure); the balancer spreads the copies over both processes too.
            updates = [update for user in users for update in sent[user.id]]
            copies = random.Random(7).sample(updates, 100)
            for update in copies:
                await api.send_raw_update(update)
            await api.wait_for(lambda: not api.pending_updates, timeout=60)
            # Each customer who got a copy then sends /help: their conversation is handled in
            # order (whichever process takes it), so a copy handled wrongly would have been
            # answered before /help is.
            copied = [user for user in users if any(u in copies for u in sent[user.id])]
            help_text = Texts.load().render("en", "help")
            for user in copied:
                await api.send_text(user, "/help")
            await api.wait_for(
                lambda: all(api.sent(user.id)[-1].text == help_text for user in copied),
                timeout=60,
                description="every /help answered",
            )

            assert len(updates) == 2_000
            assert all(count > 900 for count in balancer.forwarded.values()), balancer.forwarded
            assert len(balancer.forwarded) == 2
            for user in users:
                assert len(replies[user.id]) == REPLIES, user.id
                answered = [m.message_id for m in api.sent(user.id)]
                assert answered[:REPLIES] == replies[user.id], user.id
                assert len(answered) == REPLIES + (user in copied), user.id
            topics = api.calls_of("createForumTopic")
            assert len(topics) == CUSTOMERS
            assert await _counts(postgres_url) == {
                "customers": CUSTOMERS,
                "tickets": CUSTOMERS,
                "ticket owners": CUSTOMERS,
                "inbound": 2_000 + len(copied),
                "handoffs": CUSTOMERS,
            }
            for bot in bots:
                assert "Traceback" not in bot.output(), bot.output()[-3000:]
    finally:
        await api.stop()
