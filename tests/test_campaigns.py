"""Campaigns end to end, on SQLite and PostgreSQL: customers on the local Bot API server,
orders, products and order lines imported by the real importers, a campaign file in the
config directory, and ``carebot campaign`` run at the harness's clock. Previewed (counts by
tier, the message in both languages, nothing queued), sent to exactly its segment (consent,
blocked, unlinked, other tiers and other categories excluded) through the outbox with a coupon
each, sent again adding nobody, cancelled while one customer's message is still queued (it is
never sent, and the campaign is never sent again), its "stop" press counted, a coupon used by
an imported order, and its statistics by tier; ``/forget`` erases the customer's recipient
rows. Also: the campaign files' validation and each segment condition."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner, Result

from bot import catalog_import, cli_tools, importer
from bot.cli import app as cli_app
from bot.kernel.campaign_config import load_campaigns
from bot.kernel.config import load_config
from bot.kernel.files import ConfigError
from bot.sandbox.records import FakeUser, SentMessage
from bot.settings import EXAMPLE_CONFIG_DIR
from scheduler.campaigns import Campaigns
from storage import care as care_queries
from storage.campaigns import SegmentFilter, counts_by_tier
from storage.models import CampaignRecipient, Coupon, Customer, Outbox, PointsMovement
from tests.auxil.harness import START, Harness
from tests.auxil.outbox import add_customer, queue_text
from tests.auxil.waiting import eventually

FILES = itertools.count(1)
CAMPAIGN = """
title = { en = "Spring tea", zh = "春茶" }

[segment]
tiers = ["vip", "important"]
bought_categories = ["tea"]
last_order_after = 2026-06-01

[coupon]
discount_percent = 10
min_spend = 100
valid_days = 14

[message]
en = "Hello {name}, take {discount}% off over {min_spend} with {coupon} until {valid_until}."
zh = "{name}，您好！满 {min_spend} 用 {coupon} 立减 {discount}%，有效期至 {valid_until}。"

[[buttons]]
en = "See the teas"
zh = "看看新茶"
url = "https://shop.example/spring"

[window]
start = 2026-11-20
end = 2026-11-30
from = 10:00:00
until = 20:00:00
"""
PRODUCTS = "sku,name_zh,name_en,category,url,active\nT,绿茶,Green tea,tea,,1\nM,杯,Mug,cups,,1\n"
# (user id, shop id, name, language, tier, other columns): the segment is the first four.
PEOPLE: list[tuple[int, str, str, str, str, dict[str, Any]]] = [
    (8101, "C1", "Ann", "en", "vip", {}),
    (8102, "C2", "王芳", "zh", "important", {}),
    (8103, "C3", "Lee", "en", "vip", {"timezone": "America/Los_Angeles"}),  # 01:00 there
    (8104, "C4", "Bob", "en", "vip", {}),  # blocks the bot on Telegram, unknown to us
    (8105, "C5", "Nora", "en", "vip", {"consent": False}),
    (8106, "C6", "Ray", "en", "vip", {"reachable": False}),  # blocked the bot before
    (8107, "C7", "Uma", "en", "vip", {"chat_id": None, "telegram_user_id": None}),
    (8108, "C8", "Sam", "en", "normal", {}),
    (8109, "C9", "Cai", "en", "vip", {}),  # bought a mug only
]


def cli(*args: str) -> Result:
    return CliRunner().invoke(cli_app, list(args))


async def run_cli(*args: str) -> Result:
    """``carebot …`` off the event loop (the command runs its own)."""
    return await asyncio.to_thread(cli, *args)


@pytest.fixture
def operator(harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Harness:
    """The ``carebot`` commands on the harness's database and clock, with the shipped rules
    and ``campaigns/spring.toml``."""
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG_DIR, config)
    (config / "campaigns" / "spring.toml").write_text(CAMPAIGN, encoding="utf-8")
    monkeypatch.setenv("CAREBOT_DATABASE_URL", harness.settings.database_url)
    monkeypatch.setenv("CAREBOT_CONFIG_DIR", str(config))
    monkeypatch.setattr(cli_tools, "clock", harness.clock)
    return harness


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"file-{next(FILES)}.csv"
    path.write_text(text, encoding="utf-8")
    return path


async def import_orders(harness: Harness, tmp_path: Path, lines: str) -> None:
    """Orders (``order_id,customer_id,amount,placed_at,status,coupon`` rows) by the importer."""
    header = "order_id,customer_id,amount,placed_at,status,coupon\n"
    async with harness.sessionmaker.begin() as session:
        await importer.import_orders(
            session,
            write(tmp_path, header + lines),
            harness.rules.tiers.orders,
            harness.clock.now(),
        )


async def the_shop(harness: Harness, tmp_path: Path) -> dict[str, FakeUser]:
    """``PEOPLE`` on Telegram and in the database, each with an order in October: tea for all
    but Cai (a mug)."""
    users = {}
    async with harness.sessionmaker.begin() as session:
        for user_id, shop_id, name, language, tier, extra in PEOPLE:
            code = "zh-hans" if language == "zh" else "en"
            users[shop_id] = harness.api.add_user(user_id, name, language_code=code)
            await add_customer(
                session,
                user_id,
                **{"external_id": shop_id, "name": name, "language": language, "tier": tier}
                | extra,
            )
        await catalog_import.import_products(session, write(tmp_path, PRODUCTS), START)
    await import_orders(
        harness,
        tmp_path,
        "".join(f"O{n},C{n},50,2026-10-{n:02},completed,\n" for n in range(1, 10)),
    )
    lines = "order_id,sku,quantity,unit_price\n" + "".join(
        f"O{n},{'M' if n == 9 else 'T'},1,50\n" for n in range(1, 10)
    )
    async with harness.sessionmaker.begin() as session:
        await catalog_import.import_order_lines(
            session, write(tmp_path, lines), harness.rules.tiers.orders, START
        )
    return users


async def campaign_rows(harness: Harness) -> dict[str, Outbox]:
    """The campaign's outbox rows by the customer's shop id."""
    async with harness.sessionmaker() as session:
        result = await session.execute(
            select(Customer.external_id, Outbox)
            .join(Outbox, Outbox.customer_id == Customer.id)
            .where(Outbox.kind == "campaign")
        )
        return {str(shop_id): row for shop_id, row in result}


async def coupon_of(harness: Harness, shop_id: str) -> str:
    async with harness.sessionmaker() as session:
        code = await session.scalar(
            select(Coupon.code)
            .join(Customer, Customer.id == Coupon.customer_id)
            .where(Customer.external_id == shop_id, Coupon.kind == "campaign")
        )
    assert code is not None
    return code


async def recipient_ids(harness: Harness) -> dict[str, int]:
    async with harness.sessionmaker() as session:
        result = await session.execute(
            select(Customer.external_id, CampaignRecipient.id).join(
                Customer, Customer.id == CampaignRecipient.customer_id
            )
        )
        return {str(shop_id): int(id_) for shop_id, id_ in result}


def output(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


class TestCampaign:
    async def test_previewed_sent_to_the_segment_cancelled_midway_and_counted(
        self, operator: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        harness = operator
        api = harness.api
        users = await the_shop(harness, tmp_path)
        api.block(users["C4"])

        assert output(await run_cli("campaign", "preview", "spring")) == [
            "campaign spring: Spring tea (window 2026-11-20 to 2026-11-30, 10:00–20:00 the "
            "customer's local time)",
            "segment: 4 customers (Important 1, VIP 3); nothing was queued",
            "message in en:",
            "    Hello Ann, take 10% off over 100 CNY with CB-XXXX-XXXX until 2026-12-04.",
            "message in zh:",
            "    王芳，您好！满 100 CNY 用 CB-XXXX-XXXX 立减 10%，有效期至 2026-12-04。",
            "Link buttons open in the browser and Telegram does not tell the bot: their presses "
            "cannot be counted.",
        ]
        monkeypatch.setenv("CAREBOT_CLI_LANGUAGE", "zh")
        assert output(await run_cli("campaign", "preview", "spring"))[1] == (
            "目标客户：4 位客户（重要客户 1，VIP 客户 3）；未排队任何消息"
        )
        monkeypatch.setenv("CAREBOT_CLI_LANGUAGE", "en")
        assert await campaign_rows(harness) == {}

        assert output(await run_cli("campaign", "send", "spring")) == [
            "spring: queued for 4 customers, with 4 coupons; the outbox sends them (consent, "
            "quiet hours, the daily cap)"
        ]
        assert sorted(await campaign_rows(harness)) == ["C1", "C2", "C3", "C4"]
        ids = await recipient_ids(harness)
        [to_ann] = await api.wait_for_sent(users["C1"].id, 1)
        ann_code = await coupon_of(harness, "C1")
        assert to_ann.text == (
            f"Hello Ann, take 10% off over 100 CNY with {ann_code} until 2026-12-07."
        )
        stop = harness.text("en", "care_button_stop")
        assert to_ann.buttons() == [
            ("See the teas", "https://shop.example/spring"),
            (stop, f"care:stop:{ids['C1']}"),
        ]
        [to_fang] = await api.wait_for_sent(users["C2"].id, 1)
        fang_code = await coupon_of(harness, "C2")
        assert to_fang.text == (
            f"王芳，您好！满 100 CNY 用 {fang_code} 立减 10%，有效期至 2026-12-07。"
        )
        assert to_fang.buttons()[0] == ("看看新茶", "https://shop.example/spring")

        async def bob_failed() -> bool:
            return (await campaign_rows(harness))["C4"].state == "failed"

        await eventually(bob_failed, description="Bob's message refused (403)")
        lee_row = (await campaign_rows(harness))["C3"]
        assert (lee_row.state, lee_row.due_at) == (
            "pending",
            datetime(2026, 11, 23, 18, 0, tzinfo=UTC),  # 10:00 in Los Angeles
        )
        # Sent again: nobody twice.
        assert output(await run_cli("campaign", "send", "spring"))[0].startswith(
            "spring: queued for 0 customers, with 0 coupons"
        )
        assert len(await campaign_rows(harness)) == 4

        await self._cancel_and_nothing_more(harness, users["C3"])
        await self._stop_pressed_and_a_coupon_used(harness, tmp_path, to_ann, fang_code)
        assert output(await run_cli("campaign", "stats", "spring")) == [
            "spring: Spring tea — cancelled 2026-11-23 17:00 Asia/Shanghai",
            "  Important: 1 queued, 1 sent, 0 waiting, 0 blocked, 0 cancelled, 0 pressed "
            "“stop”, coupons 1 of 1 used, revenue 300.00 CNY",
            "  VIP: 3 queued, 1 sent, 0 waiting, 1 blocked, 1 cancelled, 1 pressed “stop”, "
            "coupons 0 of 3 used, revenue 0.00 CNY",
            "  all tiers: 4 queued, 2 sent, 0 waiting, 1 blocked, 1 cancelled, 1 pressed "
            "“stop”, coupons 1 of 4 used, revenue 300.00 CNY",
            "Link buttons open in the browser and Telegram does not tell the bot: their presses "
            "cannot be counted.",
        ]

        # /forget: 王芳's recipient row goes (her anonymous order stays).
        fang = users["C2"]
        before = len(api.sent(fang.id))
        await api.send_text(fang, "/forget")
        confirm = (await api.wait_for_sent(fang.id, before + 1))[-1]
        await api.press_button(fang, confirm, "forget:yes")
        await api.wait_for_sent(fang.id, before + 2)
        assert sorted(await recipient_ids(harness)) == ["C1", "C3", "C4"]
        assert output(await run_cli("campaign", "stats", "spring"))[1].startswith("  VIP: 3")

    async def _cancel_and_nothing_more(self, harness: Harness, lee: FakeUser) -> None:
        """Cancelled while Lee's message waits for 10:00 in Los Angeles: it never goes, and
        the campaign is never sent again."""
        assert output(await run_cli("campaign", "cancel", "spring")) == [
            "spring: cancelled; 1 message still queued will not be sent, and it is never sent "
            "again"
        ]
        assert (await campaign_rows(harness))["C3"].state == "cancelled"
        refused = await run_cli("campaign", "send", "spring")
        assert (refused.exit_code, refused.output) == (
            2,
            "carebot: spring: it was cancelled and is never sent again; nothing was queued\n",
        )
        # An hour after Lee's message would have been due, a message queued behind it arrives
        # alone.
        harness.clock.set(datetime(2026, 11, 23, 19, 0, tzinfo=UTC))
        async with harness.sessionmaker.begin() as session:
            customer = await session.scalar(
                select(Customer.id).where(Customer.external_id == "C3")
            )
            await queue_text(
                session,
                "marker",
                lee.id,
                now=harness.clock.now(),
                customer_id=customer,
                text="after the campaign",
                transactional=True,
            )
        assert harness.dispatcher is not None
        harness.dispatcher.wake()
        sent = await harness.api.wait_for_sent(lee.id, 1)
        assert [message.text for message in sent] == ["after the campaign"]
        assert (await campaign_rows(harness))["C3"].state == "cancelled"

    async def _stop_pressed_and_a_coupon_used(
        self, harness: Harness, tmp_path: Path, to_ann: SentMessage, fang_code: str
    ) -> None:
        """Ann presses "stop" (counted); 王芳's coupon is used by an imported order."""
        ann = harness.api.user(8101)
        ids = await recipient_ids(harness)
        await harness.api.press_button(ann, to_ann, f"care:stop:{ids['C1']}")
        said = (await harness.api.wait_for_sent(ann.id, 2))[-1]
        assert said.text == harness.text("en", "care_stopped")
        await import_orders(
            harness, tmp_path, f"O20,C2,300.00,2026-11-24 02:00,completed,{fang_code}\n"
        )
        async with harness.sessionmaker.begin() as session:
            assert await care_queries.mark_coupons_used(session, harness.clock.now()) == 1


class TestRules:
    def _campaigns(self, tmp_path: Path, text: str, name: str = "spring") -> None:
        directory = tmp_path / "campaigns"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.toml").write_text(text, encoding="utf-8")
        load_campaigns(directory, tiers=["vip", "important", "normal"], recommendations=False)

    def test_the_shipped_example_loads(self) -> None:
        rules = load_config(EXAMPLE_CONFIG_DIR)
        assert list(rules.campaigns) == ["spring_tea"]
        assert rules.campaigns["spring_tea"].coupon is not None

    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            (("{coupon} until", "{code} until"), "message: en: unknown placeholder {code}"),
            (('tiers = ["vip", "important"]', 'tiers = ["gold"]'), "segment.tiers.0: unknown"),
            (("end = 2026-11-30", "end = 2026-11-01"), "window: end must not be before start"),
            (("discount_percent = 10", "discount_percent = 0"), "coupon.discount_percent:"),
            (("https://shop.example/spring", "shop.example"), "buttons.0.url:"),
            (("[segment]", '[segment]\nstages = ["gone"]'), "segment.stages: unknown stage"),
            (("[segment]", "[segment]\nlanguage = 'zh'"), "segment.language: unknown key"),
            (("title = {", 'name = "x"\ntitle = {'), "name: unknown key"),
            (
                ('until {valid_until}."', 'until {valid_until}.\\n{recommendations}"'),
                "recommend.toml has enabled = false",
            ),
        ],
    )
    def test_a_mistake_names_the_file_and_the_key(
        self, tmp_path: Path, change: tuple[str, str], expected: str
    ) -> None:
        text = CAMPAIGN.replace(*change, 1)
        assert text != CAMPAIGN
        with pytest.raises(ConfigError) as raised:
            self._campaigns(tmp_path, text)
        assert str(raised.value).startswith(str(tmp_path / "campaigns" / "spring.toml") + ": ")
        assert expected in str(raised.value)

    def test_coupon_placeholders_need_a_coupon_and_names_are_file_names(
        self, tmp_path: Path
    ) -> None:
        without = CAMPAIGN.replace("[coupon]\ndiscount_percent = 10\nmin_spend = 100\n", "")
        without = without.replace("valid_days = 14\n", "")
        with pytest.raises(ConfigError, match=r"the coupon.s need a \[coupon\] section"):
            self._campaigns(tmp_path, without)
        with pytest.raises(ConfigError, match=r"Spring Tea\.toml: file name: expected"):
            self._campaigns(tmp_path / "other", CAMPAIGN, name="Spring Tea")


class TestSegment:
    async def test_each_condition(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        """Stages, languages, last order before/after, points: counted by tier."""
        async with sessionmaker.begin() as session:
            a = await add_customer(session, 1, tier="vip", stage="active", language="zh")
            b = await add_customer(session, 2, tier="vip", stage="at_risk", language="en")
            await add_customer(session, 3, tier="normal", stage="active", language="en")
            for customer, points in ((a, 500), (b, 50)):
                session.add(
                    PointsMovement(
                        key=f"test:{customer}",
                        customer_id=customer,
                        kind="adjust",
                        points=points,
                        created_at=START,
                    )
                )
        # Last orders: 1 on 2026-10-01, 2 on 2026-05-01 (and a refunded one in November).
        config = tmp_path / "config"
        shutil.copytree(EXAMPLE_CONFIG_DIR, config)
        rules = load_config(config)
        async with sessionmaker.begin() as session:
            await session.execute(update(Customer).where(Customer.id == a).values(external_id="A"))
            await session.execute(update(Customer).where(Customer.id == b).values(external_id="B"))
            await importer.import_orders(
                session,
                write(
                    tmp_path,
                    "order_id,customer_id,amount,placed_at,status\n"
                    "X1,A,10,2026-10-01,completed\nX2,B,10,2026-05-01,completed\n"
                    "X3,B,10,2026-11-01,refunded\n",
                ),
                rules.tiers.orders,
                START,
            )
        campaigns = Campaigns(rules)
        june = datetime(2026, 5, 31, 16, 0, tzinfo=UTC)  # 2026-06-01 in Shanghai

        async def count(**segment: Any) -> dict[str, int]:
            async with sessionmaker() as session:
                return await counts_by_tier(session, SegmentFilter(**segment))

        assert await count() == {"normal": 1, "vip": 2}
        assert await count(stages=["at_risk"]) == {"vip": 1}
        assert await count(languages=["zh"]) == {"vip": 1}
        assert await count(tiers=["normal"]) == {"normal": 1}
        assert await count(last_order_after=june) == {"vip": 1}
        assert await count(last_order_before=june) == {"vip": 1}  # B; the refund counts not
        assert await count(points_at_least=100) == {"vip": 1}
        assert await count(categories=["tea"]) == {}
        assert campaigns.segment(rules.campaigns["spring_tea"]).last_order_after == june
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Outbox)) == 0
