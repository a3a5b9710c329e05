"""Loyalty points end to end, on SQLite and PostgreSQL: customers imported and linked on
Telegram, orders imported by the real importer, the points jobs run at the harness's clock.
Points earned on a delivered order (tier multiplier), taken back on a refund, nothing added
twice by a second run or a re-import, ``/points`` in English and Chinese, ``/redeem`` (bad
amounts refused with nothing changed, the buttons, a coupon) and the imported order that uses
the coupon, ``carebot points show|adjust``, the balance on the staff card, the expiry reminder
through the outbox and the expiry on the day, ``/forget``; ``loyalty.toml`` validation and
the ledger's arithmetic."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner, Result

from bot import cli_tools, importer
from bot.cli import app as cli_app
from bot.kernel.config import load_config
from bot.kernel.files import ConfigError, load_config_file
from bot.kernel.loyalty_config import LoyaltyConfig
from bot.kernel.render import render_ref
from bot.kernel.replies import TextRef
from bot.sandbox.records import FakeUser, SentMessage
from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.loyalty.ledger import replay
from scheduler.points import ExpireReport, SettleReport, points_jobs
from storage.models import Coupon, Customer, Order, Outbox, PointsMovement
from storage.points import Movement
from tests.auxil.harness import STAFF_CHAT_ID, Harness
from tests.auxil.tickets import desk_ticket

SHOP = ZoneInfo("Asia/Shanghai")
CUSTOMERS = "customer_id,name,language\nC1,Lin Ann,en\nC2,王芳,zh\n"
FILE_NUMBERS = itertools.count(1)
ORDERS_HEADER = "order_id,customer_id,amount,placed_at,status,delivered_at,coupon\n"


def shop_time(text: str) -> datetime:
    """A shop-local time (``2027-12-02 10:00``) as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=SHOP).astimezone(UTC)


async def import_file(harness: Harness, tmp_path: Path, kind: str, text: str) -> str:
    """Import a CSV with the real importer at the harness's time; the counts, as a line."""
    path = tmp_path / f"{kind}-{next(FILE_NUMBERS)}.csv"
    path.write_text(text, encoding="utf-8")
    rules = harness.rules
    now = harness.clock.now()
    async with harness.sessionmaker.begin() as session:
        if kind == "customers":
            counts = await importer.import_customers(
                session, path, rules.tiers.orders, rules.general, now
            )
        else:
            counts = await importer.import_orders(session, path, rules.tiers.orders, now)
    return f"{counts.inserted} new, {counts.updated} changed, {counts.unchanged} unchanged"


async def settle(harness: Harness) -> SettleReport:
    """The ``points.settle`` job, at the harness's time."""
    job = points_jobs(harness.sessionmaker, harness.rules)[0]
    report = await job.run(harness.clock.now())
    assert isinstance(report, SettleReport)
    return report


async def expire(harness: Harness) -> ExpireReport:
    """The ``points.expire`` job, at the harness's time."""
    job = points_jobs(harness.sessionmaker, harness.rules)[1]
    report = await job.run(harness.clock.now())
    assert isinstance(report, ExpireReport)
    return report


async def ledger(harness: Harness) -> list[tuple[str, str, int]]:
    """(customer's shop id, kind, points) of every movement, in order."""
    async with harness.sessionmaker() as session:
        result = await session.execute(
            select(Customer.external_id, PointsMovement.kind, PointsMovement.points)
            .join(Customer, Customer.id == PointsMovement.customer_id)
            .order_by(PointsMovement.id)
        )
        return [(str(shop_id), kind, points) for shop_id, kind, points in result]


async def link(harness: Harness, user: FakeUser, shop_id: str) -> None:
    """The customer opens the shop's deep link (``/start CODE``) and agrees to care messages."""
    api = harness.api
    async with harness.sessionmaker() as session:
        code = await session.scalar(
            select(Customer.link_code).where(Customer.external_id == shop_id)
        )
    await api.send_text(user, f"/start {code}")
    sent = await api.wait_for_sent(user.id, 3)
    link_done = harness.text(user_language(user), "link_done")
    assert [m.text for m in sent][1] == link_done, api.dump(user.id)
    await api.press_button(user, sent[-1], "consent:yes")
    await api.wait_for_sent(user.id, 4)


def user_language(user: FakeUser) -> str:
    return "zh" if (user.language_code or "").startswith("zh") else "en"


async def ask(harness: Harness, user: FakeUser, text: str) -> SentMessage:
    """Send ``text`` and wait for the one answer."""
    before = len(harness.api.sent(user.id))
    await harness.api.send_text(user, text)
    return (await harness.api.wait_for_sent(user.id, before + 1))[-1]


def render(harness: Harness, language: str, key: str, **params: object) -> str:
    """A catalogue text with nested texts (``TextRef``, lists of them), as the bot renders."""
    return render_ref(harness.texts, language, TextRef(key, dict(params)))


def line(day: str, points: str, what: str, **params: object) -> TextRef:
    """One movement line of ``/points``."""
    return TextRef(
        "points_movement", {"date": day, "points": points, "what": TextRef(what, params)}
    )


def cli(*args: str) -> Result:
    return CliRunner().invoke(cli_app, list(args))


@pytest.fixture
def operator(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Harness:
    """The ``carebot`` commands on the harness's database and clock."""
    monkeypatch.setenv("CAREBOT_DATABASE_URL", harness.settings.database_url)
    monkeypatch.setattr(cli_tools, "clock", harness.clock)
    return harness


async def shop_with_two_customers(harness: Harness, tmp_path: Path) -> tuple[FakeUser, FakeUser]:
    """C1 (Ann, English, normal tier) and C2 (王芳, Chinese, VIP), imported and linked."""
    await import_file(harness, tmp_path, "customers", CUSTOMERS)
    ann = harness.api.add_user(7100, "Ann", language_code="en")
    fang = harness.api.add_user(7200, "芳", language_code="zh-hans")
    await link(harness, ann, "C1")
    await link(harness, fang, "C2")
    async with harness.sessionmaker.begin() as session:
        await session.execute(
            update(Customer).where(Customer.external_id == "C2").values(tier="vip")
        )
    return ann, fang


class TestEarning:
    async def test_earned_on_delivery_taken_back_on_refund_never_twice_shown_in_both_languages(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        ann, fang = await shop_with_two_customers(harness, tmp_path)
        orders = (
            ORDERS_HEADER
            + "A-1,C1,500.00,2026-11-10 10:00,delivered,2026-11-12 15:00,\n"
            + "A-2,C1,120.50,2026-11-20 10:00,shipped,,\n"
            + "B-1,C2,300.00,2026-11-15 10:00,delivered,2026-11-18 12:00,\n"
        )
        assert await import_file(harness, tmp_path, "orders", orders) == (
            "3 new, 0 changed, 0 unchanged"
        )
        assert await settle(harness) == SettleReport(
            earned=2, reversed=0, welcomed=2, coupons_used=0
        )
        assert await ledger(harness) == [
            ("C1", "earn", 500),
            ("C2", "earn", 600),  # VIP: twice the points
            ("C1", "welcome", 100),
            ("C2", "welcome", 100),
        ]
        # A second run, a re-import of the same file and a run after it add nothing.
        assert await settle(harness) == SettleReport(0, 0, 0, 0)
        assert await import_file(harness, tmp_path, "orders", orders) == (
            "0 new, 0 changed, 3 unchanged"
        )
        assert await settle(harness) == SettleReport(0, 0, 0, 0)
        assert len(await ledger(harness)) == 4

        said = await ask(harness, ann, "/points")
        assert said.text == render(
            harness,
            "en",
            "points_card",
            balance=600,
            tier="Normal",
            expiring=TextRef("points_expiring", {"points": 600, "date": "2027-12-31"}),
            movements=[
                line("2026-11-23", "+100", "points_kind_welcome"),
                line("2026-11-23", "+500", "points_kind_earn", order="A-1"),
            ],
            benefits=harness.rules.loyalty.tiers["normal"].benefits.en,
            minimum=500,
            rate=TextRef("points_rate", {"points": 100, "value": "5 CNY"}),
        )
        assert "⭐ Your points: 600" in said.text and "order A-1 delivered" in said.text
        said = await ask(harness, fang, "/points")
        assert said.text == render(
            harness,
            "zh",
            "points_card",
            balance=700,
            tier="VIP 客户",
            expiring=TextRef("points_expiring", {"points": 700, "date": "2027-12-31"}),
            movements=[
                line("2026-11-23", "+100", "points_kind_welcome"),
                line("2026-11-23", "+600", "points_kind_earn", order="B-1"),
            ],
            benefits=harness.rules.loyalty.tiers["vip"].benefits.zh,
            minimum=500,
            rate=TextRef("points_rate", {"points": 100, "value": "5 CNY"}),
        )
        assert "我的积分：700" in said.text and "订单 B-1 已签收" in said.text

        # A-1 is refunded, A-2 delivered: the one's points go, the other's come (floor).
        harness.clock.advance(timedelta(days=1))
        changed = (
            ORDERS_HEADER
            + "A-1,C1,500.00,2026-11-10 10:00,refunded,2026-11-12 15:00,\n"
            + "A-2,C1,120.50,2026-11-20 10:00,delivered,2026-11-24 12:00,\n"
        )
        assert await import_file(harness, tmp_path, "orders", changed) == (
            "0 new, 2 changed, 0 unchanged"
        )
        assert await settle(harness) == SettleReport(1, 1, 0, 0)
        assert await settle(harness) == SettleReport(0, 0, 0, 0)
        assert (await ledger(harness))[4:] == [("C1", "earn", 120), ("C1", "reverse", -500)]
        said = await ask(harness, ann, "/points")
        assert "⭐ Your points: 220" in (said.text or "")
        refunded = render(
            harness, "en", "points_movement", date="2026-11-24", points="-500",
            what=TextRef("points_kind_reverse", {"order": "A-1"}),
        )  # fmt: skip
        assert refunded in (said.text or ""), said.text

    async def test_a_chat_not_linked_to_the_shop_has_no_points_and_cannot_redeem(
        self, harness: Harness
    ) -> None:
        stranger = harness.api.add_user(7300, "Sam")
        said = await ask(harness, stranger, "/points")
        assert said.text == harness.text("en", "points_not_linked")
        said = await ask(harness, stranger, "/redeem 500")
        assert said.text == harness.text("en", "points_not_linked")
        async with harness.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Coupon)) == 0


class TestRedeeming:
    async def test_bad_amounts_change_nothing_then_a_coupon_that_an_imported_order_uses(
        self, operator: Harness, tmp_path: Path
    ) -> None:
        harness = operator
        ann, _fang = await shop_with_two_customers(harness, tmp_path)
        orders = ORDERS_HEADER + "A-1,C1,500.00,2026-11-10 10:00,delivered,2026-11-12 15:00,\n"
        await import_file(harness, tmp_path, "orders", orders)
        await settle(harness)  # Ann: 500 + 100 welcome

        refusals = {
            "/redeem 1000": harness.text("en", "points_redeem_too_few", balance=600, minimum=500),
            "/redeem abc": harness.text(
                "en", "points_redeem_invalid", value="abc", minimum=500, step=100
            ),
            "/redeem 450": harness.text(
                "en", "points_redeem_invalid", value="450", minimum=500, step=100
            ),
            "/redeem 550": harness.text(
                "en", "points_redeem_invalid", value="550", minimum=500, step=100
            ),
        }
        for command, refusal in refusals.items():
            assert (await ask(harness, ann, command)).text == refusal, command
        async with harness.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Coupon)) == 0
        assert len(await ledger(harness)) == 3

        choose = await ask(harness, ann, "/redeem")
        assert choose.text == render(
            harness,
            "en",
            "points_redeem_choose",
            balance=600,
            rate=TextRef("points_rate", {"points": 100, "value": "5 CNY"}),
        )
        button = "points_redeem_button"
        assert choose.buttons() == [
            (harness.text("en", button, points=500, value="25 CNY"), "pts:redeem:500"),
            (harness.text("en", button, points=600, value="30 CNY"), "pts:redeem:600"),
        ]
        await harness.api.press_button(ann, choose, "pts:redeem:500")
        async with harness.sessionmaker() as session:
            await harness.api.wait_for(
                lambda: "CB-" in (harness.api.message(ann, choose.message_id).get("text") or ""),
                description="the choice replaced by the coupon",
            )
            coupon = (await session.execute(select(Coupon))).scalar_one()
        assert (coupon.kind, coupon.value_cents, coupon.discount_percent) == ("points", 2500, 0)
        assert harness.api.message(ann, choose.message_id)["text"] == harness.text(
            "en",
            "points_redeemed",
            points=500,
            value="25 CNY",
            code=coupon.code,
            valid_until="2027-02-21",
            balance=100,
        ).replace("<code>", "").replace("</code>", "")
        # The old buttons again: 600 is more than is left now; nothing changes.
        before = len(harness.api.sent(ann.id))
        await harness.api.press_button(ann, choose, "pts:redeem:600")
        refused = (await harness.api.wait_for_sent(ann.id, before + 1))[-1]
        assert refused.text == harness.text(
            "en", "points_redeem_too_few", balance=100, minimum=500
        )
        assert (await ledger(harness))[-1] == ("C1", "redeem", -500)

        # The next day an order uses the code: the redemption is linked to it.
        harness.clock.advance(timedelta(days=1))
        with_coupon = orders + f"A-3,C1,80.00,2026-11-24 10:00,paid,,{coupon.code}\n"
        await import_file(harness, tmp_path, "orders", with_coupon)
        assert (await settle(harness)).coupons_used == 1
        shown = await asyncio.to_thread(cli, "points", "show", "C1", "--by", "shop")
        assert shown.exit_code == 0, shown.output
        lines = shown.output.splitlines()
        assert lines[0].endswith("tier normal: 100 points")
        assert lines[1] == "  100 expire after 2027-12-31"
        assert lines[-1] == (
            f"2026-11-23     -500  redeem   coupon {coupon.code}, used by order A-3"
        )

    async def test_operators_adjust_with_a_reason_and_staff_see_the_balance_on_the_card(
        self, operator: Harness, tmp_path: Path
    ) -> None:
        harness = operator
        ann, _fang = await shop_with_two_customers(harness, tmp_path)
        await settle(harness)  # the welcome bonus: 100

        no_reason = await asyncio.to_thread(cli, "points", "adjust", "C1", "50", "--by", "shop")
        assert no_reason.exit_code == 2 and "--reason" in no_reason.output
        too_much = await asyncio.to_thread(
            cli, "points", "adjust", "C1", "-150", "--reason", "typo", "--by", "shop"
        )
        assert (too_much.exit_code, too_much.output.strip()) == (
            2,
            "carebot: customer 1 has 100 points; cannot take 150; nothing was changed",
        )
        for bad in ("0", "ten"):
            refused = await asyncio.to_thread(
                cli, "points", "adjust", "C1", bad, "--reason", "x", "--by", "shop"
            )
            assert refused.exit_code == 2, refused.output
        unknown = await asyncio.to_thread(
            cli, "points", "adjust", "C9", "5", "--reason", "x", "--by", "shop"
        )
        assert unknown.output.strip() == "carebot: no customer with shop C9"
        assert await ledger(harness) == [("C1", "welcome", 100), ("C2", "welcome", 100)]

        added = await asyncio.to_thread(
            cli, "points", "adjust", "C1", "250", "--reason", "parcel lost, sorry", "--by", "shop"
        )
        assert added.output.strip() == "customer 1: +250 points (parcel lost, sorry); balance 350"
        taken = await asyncio.to_thread(
            cli, "points", "adjust", "C1", "-50", "--reason", "double entry", "--by", "shop"
        )
        assert taken.output.strip() == "customer 1: -50 points (double entry); balance 300"
        shown = await asyncio.to_thread(cli, "points", "show", "C1", "--by", "shop")
        assert (
            "+250  adjust   reason: parcel lost, sorry, expires after 2027-12-31" in shown.output
        )
        said = await ask(harness, ann, "/points")
        assert harness.text("en", "points_kind_adjust") in (said.text or "")

        _number, thread = await desk_ticket(harness, ann)
        card = harness.api.sent(STAFF_CHAT_ID, thread_id=thread)[0]
        assert harness.desk.staff_text("ticket_card_points", balance=300) in (card.text or "")


class TestExpiry:
    async def test_a_reminder_before_and_what_is_left_expires_on_the_day(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        ann, _fang = await shop_with_two_customers(harness, tmp_path)
        orders = ORDERS_HEADER + "A-1,C1,500.00,2026-11-10 10:00,delivered,2026-11-12 15:00,\n"
        await import_file(harness, tmp_path, "orders", orders)
        await settle(harness)
        await ask(harness, ann, "/redeem 500")  # 100 of the 600 are left

        harness.clock.set(shop_time("2027-12-01 10:00"))  # 31 days before: too early
        assert await expire(harness) == ExpireReport(expired=0, reminders=0)
        harness.clock.set(shop_time("2027-12-02 10:00"))
        before = len(harness.api.sent(ann.id))
        # Ann's 100 left, and 王芳's welcome bonus (her order's points expire a year later).
        assert await expire(harness) == ExpireReport(expired=0, reminders=2)
        assert await expire(harness) == ExpireReport(expired=0, reminders=0)
        reminder = harness.text("en", "points_expiry_reminder", points=100, date="2027-12-31")
        sent = (await harness.api.wait_for_sent(ann.id, before + 1))[-1]
        assert sent.text == reminder
        assert sent.buttons() == [(harness.text("en", "care_button_stop"), "care:stop")]
        async with harness.sessionmaker() as session:
            row = (
                await session.execute(
                    select(Outbox).where(Outbox.kind == "points.expiry", Outbox.customer_id == 1)
                )
            ).scalar_one()
        assert (row.transactional, row.care_day) == (False, "2027-12-02")  # a care message

        harness.clock.set(shop_time("2027-12-31 23:59"))  # the last day: still there
        assert await expire(harness) == ExpireReport(expired=0, reminders=0)
        assert "⭐ Your points: 100" in ((await ask(harness, ann, "/points")).text or "")
        harness.clock.set(shop_time("2028-01-01 00:00"))  # the day after: gone
        assert await expire(harness) == ExpireReport(expired=2, reminders=0)
        assert await expire(harness) == ExpireReport(expired=0, reminders=0)
        assert [row for row in await ledger(harness) if row[1] == "expire"] == [
            ("C1", "expire", -100),
            ("C2", "expire", -100),
        ]
        said = await ask(harness, ann, "/points")
        assert "⭐ Your points: 0" in (said.text or "")
        assert harness.text("en", "points_nothing_expiring") in (said.text or "")
        assert render(
            harness, "en", "points_movement", date="2028-01-01", points="-100",
            what=TextRef("points_kind_expire"),
        ) in (said.text or "")  # fmt: skip


class TestForget:
    async def test_forget_erases_the_ledger_and_nothing_is_earned_again(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        ann, _fang = await shop_with_two_customers(harness, tmp_path)
        orders = ORDERS_HEADER + "A-1,C1,500.00,2026-11-10 10:00,delivered,2026-11-12 15:00,\n"
        await import_file(harness, tmp_path, "orders", orders)
        await settle(harness)
        assert [row[0] for row in await ledger(harness)] == ["C1", "C1", "C2"]

        confirm = await ask(harness, ann, "/forget")
        before = len(harness.api.sent(ann.id))
        await harness.api.press_button(ann, confirm, "forget:yes")
        await harness.api.wait_for_sent(ann.id, before + 1)
        assert await ledger(harness) == [("C2", "welcome", 100)]
        assert await settle(harness) == SettleReport(0, 0, 0, 0)
        async with harness.sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Order)) == 1


class TestRules:
    def test_the_shipped_file_covers_every_tier(self) -> None:
        rules = load_config(EXAMPLE_CONFIG_DIR)
        assert rules.loyalty.enabled
        assert {tier.name for tier in rules.tiers.tiers} == set(rules.loyalty.tiers)

    def test_without_the_file_there_are_no_points(self, tmp_path: Path) -> None:
        for path in EXAMPLE_CONFIG_DIR.glob("*.toml"):
            if path.name != "loyalty.toml":
                (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"))
        (tmp_path / "surveys").symlink_to(EXAMPLE_CONFIG_DIR / "surveys")
        assert not load_config(tmp_path).loyalty.enabled

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (("multiplier = 2", "multiplier = -1"), "tiers.vip.multiplier: Input should be"),
            (
                ("minimum_points = 500", "minimum_points = 550"),
                "redeem: minimum_points (550) must",
            ),
            (('rounding = "floor"', 'rounding = "up"'), "rounding: Input should be"),
            (('reverse_on = ["refunded", "cancelled"]', 'reverse_on = ["lost"]'), "reverse_on.0"),
            (("welcome_bonus = 100", "welcome_bonus = 100\nbonus = 5"), "bonus: unknown key"),
        ],
    )
    def test_a_bad_value_names_the_file_and_the_key(
        self, tmp_path: Path, change: tuple[str, str], message: str
    ) -> None:
        text = (EXAMPLE_CONFIG_DIR / "loyalty.toml").read_text(encoding="utf-8")
        assert change[0] in text
        path = tmp_path / "loyalty.toml"
        path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config_file(path, LoyaltyConfig)
        assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)

    def test_a_tier_unknown_to_tiers_toml_is_refused(self, tmp_path: Path) -> None:
        for path in EXAMPLE_CONFIG_DIR.glob("*.toml"):
            (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"))
        (tmp_path / "surveys").symlink_to(EXAMPLE_CONFIG_DIR / "surveys")
        loyalty = tmp_path / "loyalty.toml"
        loyalty.write_text(
            loyalty.read_text(encoding="utf-8").replace("[tiers.important]", "[tiers.gold]")
        )
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path)
        assert str(caught.value) == (
            f"{loyalty}: tiers.gold: not a tier of tiers.toml (known: vip, important, normal)"
        )


def movement(id_: int, kind: str, points: int, day: int, **extra: object) -> Movement:
    """A ledger row on day ``day`` of 2027 (UTC noon)."""
    values: dict[str, object] = {
        "order_id": None,
        "expires_at": None,
        "order": None,
        "reason": None,
        "coupon": None,
        "coupon_used_by": None,
        "coupon_valid_until": None,
        **extra,
    }
    return Movement(  # type: ignore[arg-type]
        id=id_,
        kind=kind,
        points=points,
        created_at=datetime(2027, 1, 1, 12, tzinfo=UTC) + timedelta(days=day),
        **values,
    )


class TestLedger:
    SOON = datetime(2027, 6, 1, tzinfo=UTC)
    LATE = datetime(2028, 1, 1, tzinfo=UTC)

    def test_spending_takes_the_points_that_expire_first(self) -> None:
        book = replay(
            [
                movement(1, "earn", 300, 0, expires_at=self.LATE, order_id=1),
                movement(2, "welcome", 100, 1, expires_at=self.SOON),
                movement(3, "redeem", -200, 2),
            ]
        )
        now = datetime(2027, 2, 1, tzinfo=UTC)
        assert book.balance(now) == 200
        assert book.expiring(now) == {self.LATE: 200}  # the welcome points were spent first

    def test_a_refund_takes_its_own_points_and_a_debt_is_paid_by_the_next(self) -> None:
        book = replay(
            [
                movement(1, "earn", 300, 0, expires_at=self.SOON, order_id=1),
                movement(2, "earn", 200, 1, expires_at=self.LATE, order_id=2),
                movement(3, "redeem", -400, 2),  # 300 of order 1, 100 of order 2
                movement(4, "reverse", -300, 3, order_id=1),  # 0 left of order 1, then 100
                movement(5, "earn", 250, 4, expires_at=self.LATE, order_id=3),
            ]
        )
        now = datetime(2027, 2, 1, tzinfo=UTC)
        assert (book.balance(now), book.debt) == (50, 0)
        assert book.expiring(now) == {self.LATE: 50}
        assert book.expired(datetime(2028, 2, 1, tzinfo=UTC)) == {self.SOON: 0, self.LATE: 50}
