"""``/forget`` end to end, on SQLite and PostgreSQL: a customer who went through everything the
bot stores (profile, phone, birthday, a question to the knowledge base, a ticket with an edit
and a staff reply, a CSAT survey with a comment and its recovery ticket) erases their data,
and a dump of the whole database (SQLite's ``iterdump`` and its files byte by byte, write-ahead
log included; ``pg_dump``) holds nothing of what they sent or who they are. A table added later
that forgets to erase fails here."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from bot import cli_tools
from bot.cli import app as cli_app
from bot.sandbox.records import FakeUser, SentMessage
from storage.models import (
    CampaignRecipient,
    CampaignRun,
    Customer,
    Product,
    Recommendation,
    SurveyResponse,
    Ticket,
)
from tests.auxil.harness import STAFF_CHAT_ID, START, Harness
from tests.auxil.tickets import desk_ticket, lanes_idle, staff_member, staff_says, wait_message
from tests.test_onboarding import _open_profile_field
from tests.test_surveys import close_ticket, give_consent, plan

STAFF = STAFF_CHAT_ID
USER_ID = 7345550123
SECRETS = (
    "Zedfirst",
    "Zedlast",
    "测试",
    "zedhandle",
    "13955556666",
    "Zedkbq",
    "Zedcomplaint",
    "Zededited",
    "Zedsurveycomment",
    str(USER_ID),
)


def _forms(secret: str) -> list[str]:
    """The secret as text, and as JSON writes it with non-ASCII escaped."""
    escaped = json.dumps(secret)[1:-1]
    return [secret] if escaped == secret else [secret, escaped]


def database_dump(database_url: str) -> str:
    """The whole database as SQL text (data and schema)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        with sqlite3.connect(url.database) as connection:
            return "\n".join(connection.iterdump())
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(
        ["pg_dump", "--no-owner", libpq], check=True, capture_output=True, text=True
    ).stdout


def sqlite_files(database_url: str) -> bytes:
    """The SQLite database's files as they are on disk (the write-ahead log too)."""
    database = make_url(database_url).database
    assert database is not None
    return b"".join(
        path.read_bytes() for path in (Path(database), Path(f"{database}-wal")) if path.exists()
    )


async def live_customer_journey(harness: Harness, zed: FakeUser) -> tuple[str, str]:
    """Everything a customer can leave behind; returns the numbers of their two tickets."""
    api = harness.api
    anna = staff_member(api, 9001, "Anna")
    await _open_profile_field(harness, zed, "birthday")
    before = len(api.sent(zed.id))
    await api.send_text(zed, "1987-04-23")
    await api.wait_for_sent(zed.id, before + 1)
    await api.send_contact(zed, "+8613955556666", contact_user_id=zed.id)
    await api.wait_for_sent(zed.id, before + 2)
    await api.send_text(zed, "how can I return an item Zedkbq")
    await api.wait_for_sent(zed.id, before + 3)

    number, thread = await desk_ticket(harness, zed)
    sent = await api.send_text(zed, "Zedcomplaint: the parcel is broken")
    message_id = sent["message"]["message_id"]
    await wait_message(
        api, STAFF, lambda m: m.copied_from == (zed.id, message_id), thread_id=thread
    )
    await api.edit_message(zed, message_id, "Zededited: the parcel is broken, second version")
    await staff_says(api, anna, thread, "We are sorry, a new one is on its way")
    await api.wait_for(lambda: len(api.sent(zed.id)) >= before + 5, description="staff reply")
    await lanes_idle(harness, number)
    await close_ticket(harness, zed, number, thread)

    await give_consent(harness, zed)
    await plan(harness)

    def invitations() -> list[SentMessage]:
        return [m for m in api.sent(zed.id) if any(d.startswith("sv:") for _, d in m.buttons())]

    await api.wait_for(lambda: bool(invitations()), description="the CSAT invitation")
    [invitation] = invitations()
    async with harness.sessionmaker() as session:
        response = (await session.execute(select(SurveyResponse))).scalar_one()
    count = len(api.sent(zed.id))
    await api.press_button(zed, invitation, f"sv:{response.id}:0:2")
    await api.wait_for_sent(zed.id, count + 1)
    await api.send_text(zed, "Zedsurveycomment: the courier was rude")
    await api.wait_for_sent(zed.id, count + 2)
    async with harness.sessionmaker() as session:
        done = await session.get(SurveyResponse, response.id)
        assert done is not None and done.recovery_ticket_id is not None
        recovery = await session.get(Ticket, done.recovery_ticket_id)
    assert recovery is not None
    await lanes_idle(harness, recovery.number)
    return number, recovery.number


async def test_forget_leaves_nothing_of_the_customer_in_the_whole_database(
    harness: Harness,
) -> None:
    api = harness.api
    zed = api.add_user(USER_ID, "Zedfirst", last_name="Zedlast测试", username="zedhandle")
    await api.send_text(zed, "/start")
    await api.wait_for_sent(zed.id, 1)
    numbers = await live_customer_journey(harness, zed)
    url = harness.settings.database_url
    stored = database_dump(url)
    assert all(secret in stored or _forms(secret)[-1] in stored for secret in SECRETS), [
        secret for secret in SECRETS if not any(form in stored for form in _forms(secret))
    ]  # the journey really stored each of them

    # What the recommendations job worked out from their purchases, and a campaign.
    customer = await harness.customer(zed.id)
    assert customer is not None
    async with harness.sessionmaker.begin() as session:
        product = Product(
            sku="ZED-1",
            name_zh="壶",
            name_en="Kettle",
            active=True,
            created_at=START,
            updated_at=START,
        )
        session.add(product)
        await session.flush()
        session.add(
            Recommendation(
                customer_id=customer.id,
                rank=1,
                product_id=product.id,
                score=1.0,
                reason="together",
            )
        )
        # A campaign queued for them.
        run = CampaignRun(name="spring", created_at=START)
        session.add(run)
        await session.flush()
        session.add(
            CampaignRecipient(
                campaign_id=run.id, customer_id=customer.id, tier="normal", queued_at=START
            )
        )

    before = len(api.sent(zed.id))
    await api.send_text(zed, "/forget")
    confirm = (await api.wait_for_sent(zed.id, before + 1))[-1]
    await api.press_button(zed, confirm, "forget:yes")
    await api.wait_for_sent(zed.id, before + 2)
    for number in numbers:
        await lanes_idle(harness, number)
    # Each topic is renamed to its ticket number; the recovery ticket, still open, is closed.
    await api.wait_for(
        lambda: sorted(topic.name for topic in api.topics(STAFF)) == sorted(numbers),
        description=f"topics renamed to {numbers}: {[t.name for t in api.topics(STAFF)]}",
    )
    async with harness.sessionmaker() as session:
        tickets = (await session.execute(select(Ticket).order_by(Ticket.id))).scalars().all()
        customers = (await session.execute(select(Customer))).scalars().all()
    assert [(t.number, t.status, t.topic_title) for t in tickets] == [
        (number, "closed", number) for number in numbers
    ]
    assert [c.erased_at is not None for c in customers] == [True]
    async with harness.sessionmaker() as session:
        assert (await session.execute(select(Recommendation))).scalars().all() == []
        assert (await session.execute(select(CampaignRecipient))).scalars().all() == []
    # The checkpoint after the erasure ran once it committed, before "forget_done" went out.

    left = database_dump(url)
    found = {secret for secret in SECRETS if any(form in left for form in _forms(secret))}
    assert not found, [line for line in left.splitlines() if any(s in line for s in found)]
    if make_url(url).get_backend_name() == "sqlite":
        raw = sqlite_files(url)
        on_disk = {s for s in SECRETS[:-1] if s.encode() in raw}  # the id is stored as binary
        assert not on_disk, on_disk


def _cli(*args: str) -> Result:
    return CliRunner().invoke(cli_app, list(args))


async def test_an_operator_exports_then_forgets_a_customer_from_the_cli(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``carebot customer export`` shows what is kept (phone, texts, tickets); ``forget`` erases
    it as /forget does, topic rename included; an unknown customer is one line and exit 2."""
    api = harness.api
    yan = api.add_user(7345550124, "Yanfirst", username="yanhandle")
    await api.send_text(yan, "/start")
    await api.wait_for_sent(yan.id, 1)
    await api.send_contact(yan, "+8613944443333", contact_user_id=yan.id)
    await api.wait_for_sent(yan.id, 2)
    number, thread = await desk_ticket(harness, yan)
    sent = await api.send_text(yan, "Yancomplaint: wrong size")
    message_id = sent["message"]["message_id"]
    await wait_message(
        api, STAFF, lambda m: m.copied_from == (yan.id, message_id), thread_id=thread
    )
    await lanes_idle(harness, number)
    monkeypatch.setenv("CAREBOT_DATABASE_URL", harness.settings.database_url)
    monkeypatch.setenv("CAREBOT_STAFF_CHAT_ID", str(STAFF))
    monkeypatch.setattr(cli_tools, "clock", harness.clock)

    exported = await asyncio.to_thread(_cli, "customer", "export", str(yan.id), "--by", "telegram")
    assert exported.exit_code == 0, exported.output
    record = json.loads(exported.output)
    [customer] = record["tables"]["customers"]
    assert (customer["name"], customer["username"], customer["phone"]) == (
        "Yanfirst",
        "yanhandle",
        "+8613944443333",
    )
    assert [t["number"] for t in record["tables"]["tickets"]] == [number]
    assert "Yancomplaint: wrong size" in [m["text"] for m in record["tables"]["ticket_messages"]]
    assert "Yancomplaint: wrong size" in [u["text"] for u in record["tables"]["inbox"]]

    missing = await asyncio.to_thread(_cli, "customer", "forget", "999999", "--yes")
    assert (missing.exit_code, missing.output.strip()) == (
        2,
        "carebot: no customer with id 999999",
    )
    erased = await asyncio.to_thread(_cli, "customer", "forget", str(customer["id"]), "--yes")
    assert erased.exit_code == 0, erased.output
    assert erased.output.strip() == f"customer {customer['id']} erased"
    harness.dispatcher.wake()  # type: ignore[union-attr]
    await api.wait_for(
        lambda: [topic.name for topic in api.topics(STAFF)] == [number],
        description=f"the topic renamed to {number}",
    )
    left = database_dump(harness.settings.database_url)
    for secret in ("Yanfirst", "yanhandle", "13944443333", "Yancomplaint", str(yan.id)):
        assert secret not in left, secret
    again = await asyncio.to_thread(_cli, "customer", "export", str(customer["id"]))
    assert json.loads(again.output)["tables"]["customers"][0]["erased_at"] is not None
