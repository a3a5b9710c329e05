"""What was bought and what to suggest (issue 21, parts 1 and 3), on SQLite and PostgreSQL:
``carebot import products|order-lines`` (every problem as file:line:column, nothing written,
re-importing changes nothing), the recommendations job on a small shop worked out by hand
(same order and within N days), ``recommend.toml`` and ``{recommendations}`` validation, and a
follow-up carrying its recommendations in English and Chinese through the local Bot API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot import catalog_import, cli_tools, importer
from bot.cli import app as cli_app
from bot.importer import ImportRejected
from bot.kernel.care_config import CareConfig
from bot.kernel.config import GeneralConfig, OrderConfig, load_config
from bot.kernel.files import ConfigError, load_config_file
from bot.kernel.recommend_config import RecommendConfig
from bot.settings import EXAMPLE_CONFIG_DIR
from scheduler import recommend as recommend_job
from scheduler.care import planner_for
from storage import recommend as recommend_queries
from storage.models import Customer, Order, OrderLine, Product, ProductPair, Recommendation
from storage.recommend import RecommendSpec
from tests.auxil.harness import Harness
from tests.auxil.outbox import add_customer
from tests.auxil.shop import NOW

RULES = OrderConfig(currency="CNY", timezone="Asia/Shanghai", rates={"USD": 7.1})
SHANGHAI_DAY = 24 * 3600

PRODUCTS = (
    "sku,name_zh,name_en,category,url,active\n"
    "A,手冲壶,Pour-over kettle,brewing,https://shop.example/p/kettle,true\n"
    "B,滤纸,Paper filters,brewing,https://shop.example/p/filter,yes\n"
    "C,马克杯,Mug,cups,https://shop.example/p/mug,\n"
    "D,绿茶,Green tea,tea,,1\n"
    'E,旧款滤杯,"Old dripper, v1",brewing,,下架\n'
    "F,茶匙,Tea spoon,tea,https://shop.example/p/spoon,是\n"
)
CUSTOMERS = "customer_id\n" + "".join(f"C{n}\n" for n in range(1, 10))
# C3 and C6 had their kettle delivered on 2026-11-20, 10:00 in Shanghai (follow-ups 3 days
# later); C1 bought again 10 days after its first order (a pair only within N days); C7's
# refunded spoon counts for nothing but is not recommended to C7; C9 will be erased.
ORDERS = (
    "order_id,customer_id,amount,placed_at,status,delivered_at\n"
    "O1,C1,100,2026-10-01,completed,\n"
    "O2,C1,30,2026-10-11,completed,\n"
    "O3,C2,130,2026-10-05,completed,\n"
    "O4,C3,100,2026-11-18,delivered,2026-11-20 10:00\n"
    "O5,C4,60,2026-10-06,completed,\n"
    "O6,C5,60,2026-10-07,completed,\n"
    "O7,C6,80,2026-11-18,delivered,2026-11-20 10:00\n"
    "O8,C7,50,2026-10-08,completed,\n"
    "O9,C7,10,2026-10-09,refunded,\n"
    "O10,C8,50,2026-10-10,completed,\n"
    "O11,C9,80,2026-10-11,completed,\n"
    "O12,C1,20,2026-10-12,completed,\n"  # no lines: fine
)
LINES = (
    "order_id,sku,quantity,unit_price\n"
    "O1,A,1,80\nO1,B,2,10\n"
    "O2,C,1,30\n"
    "O3,A,1,80\nO3,B,1,20\nO3,C,1,30\n"
    "O4,A,1,80\nO4,B,1,20\n"
    "O5,C,1,30\nO5,D,1,30\n"
    "O6,C,1,30\nO6,D,1,30\n"
    "O7,A,1,80\n"
    "O8,D,1,30\nO8,E,1,20\n"
    "O9,F,1,10\n"
    "O10,E,1,20\nO10,D,1,30\n"
    "O11,A,1,80\n"
)
# Worked out by hand (same order, at least 2 customers): buyers A 5 (C1 C2 C3 C6 C9), B 3,
# C 4, D 4, E 2 (inactive), F none (refunded only). Pairs: A->B 3/5, B->A 3/3, C->D 2/4,
# D->C 2/4, E->D 2/2 (D->E: E is inactive). Best sellers: A, C, D (4 buyers, by id), B.
PAIRS = {
    ("A", "B"): (3, 0.6),
    ("B", "A"): (3, 1.0),
    ("C", "D"): (2, 0.5),
    ("D", "C"): (2, 0.5),
    ("E", "D"): (2, 1.0),
}
SAME_ORDER = {
    "C1": [("D", "together")],  # bought A B C; nothing else sells
    "C2": [("D", "together")],
    "C3": [("C", "popular"), ("D", "popular")],  # A B: their partners are each other
    "C4": [("A", "popular"), ("B", "popular")],
    "C5": [("A", "popular"), ("B", "popular")],
    "C6": [("B", "together"), ("C", "popular"), ("D", "popular")],
    "C7": [("C", "together"), ("A", "popular"), ("B", "popular")],  # not F: bought, refunded
    "C8": [("C", "together"), ("A", "popular"), ("B", "popular")],
}


def write(directory: Path, name: str, content: str) -> Path:
    path = directory / name
    path.write_text(content, encoding="utf-8")
    return path


async def import_shop(
    sessionmaker: async_sessionmaker[AsyncSession], directory: Path, now: datetime = NOW
) -> None:
    """The known shop, imported as an operator would (customers, orders, products, lines)."""
    async with sessionmaker.begin() as session:
        await importer.import_customers(
            session, write(directory, "customers.csv", CUSTOMERS), RULES, GeneralConfig(), now
        )
        await importer.import_orders(session, write(directory, "orders.csv", ORDERS), RULES, now)
        await catalog_import.import_products(session, write(directory, "p.csv", PRODUCTS), now)
        await catalog_import.import_order_lines(
            session, write(directory, "lines.csv", LINES), RULES, now
        )
        await session.execute(
            update(Customer).where(Customer.external_id == "C9").values(erased_at=now)
        )


async def rows(sessionmaker: async_sessionmaker[AsyncSession], model: Any) -> list[Any]:
    columns = [getattr(model, column.key) for column in model.__table__.columns]
    async with sessionmaker() as session:
        result = await session.execute(select(*columns).order_by(*columns[:2]))
        return [tuple(row) for row in result.all()]


async def lines_of(
    sessionmaker: async_sessionmaker[AsyncSession], order: str
) -> list[tuple[str, int, int]]:
    """An order's lines: (sku, quantity, unit price in cents), by sku."""
    async with sessionmaker() as session:
        result = await session.execute(
            select(Product.sku, OrderLine.quantity, OrderLine.unit_price_cents)
            .join(Product, Product.id == OrderLine.product_id)
            .join(Order, Order.id == OrderLine.order_id)
            .where(Order.external_id == order)
            .order_by(Product.sku)
        )
        return [(str(sku), int(quantity), int(cents)) for sku, quantity, cents in result.all()]


async def recommendations(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, list[tuple[str, str]]]:
    async with sessionmaker() as session:
        result = await session.execute(
            select(Customer.external_id, Product.sku, Recommendation.reason)
            .join(Customer, Customer.id == Recommendation.customer_id)
            .join(Product, Product.id == Recommendation.product_id)
            .order_by(Customer.external_id, Recommendation.rank)
        )
        found: dict[str, list[tuple[str, str]]] = {}
        for customer, sku, reason in result.all():
            found.setdefault(str(customer), []).append((sku, reason))
        return found


class TestImport:
    async def test_a_shop_imports_and_reimporting_it_changes_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_shop(sessionmaker, tmp_path)
        products = await rows(sessionmaker, Product)
        assert [(p[1], p[3], p[5], p[6]) for p in products] == [
            ("A", "Pour-over kettle", "https://shop.example/p/kettle", True),
            ("B", "Paper filters", "https://shop.example/p/filter", True),
            ("C", "Mug", "https://shop.example/p/mug", True),  # empty: active
            ("D", "Green tea", None, True),
            ("E", "Old dripper, v1", None, False),
            ("F", "Tea spoon", "https://shop.example/p/spoon", True),
        ]
        lines = await rows(sessionmaker, OrderLine)
        assert len(lines) == 19
        assert await lines_of(sessionmaker, "O1") == [("A", 1, 8000), ("B", 2, 1000)]

        later = NOW + timedelta(days=1)
        async with sessionmaker.begin() as session:
            again_products = await catalog_import.import_products(
                session, tmp_path / "p.csv", later
            )
            again_lines = await catalog_import.import_order_lines(
                session, tmp_path / "lines.csv", RULES, later
            )
        assert (again_products.inserted, again_products.updated, again_products.unchanged) == (
            0,
            0,
            6,
        )
        assert (again_lines.inserted, again_lines.updated, again_lines.removed) == (0, 0, 0)
        assert await rows(sessionmaker, Product) == products  # updated_at included
        assert await rows(sessionmaker, OrderLine) == lines

    async def test_the_file_is_the_truth_for_the_orders_it_names(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_shop(sessionmaker, tmp_path)
        changed = write(
            tmp_path, "changed.csv", "order_id,sku,quantity,unit_price\nO3,A,2,75\nO3,D,1,30\n"
        )
        async with sessionmaker.begin() as session:
            counts = await catalog_import.import_order_lines(session, changed, RULES, NOW)
        # O3 had A B C: A changed, D is new, B and C are gone; other orders keep their lines.
        assert (counts.inserted, counts.updated, counts.removed) == (1, 1, 2)
        assert await lines_of(sessionmaker, "O3") == [("A", 2, 7500), ("D", 1, 3000)]
        assert len(await rows(sessionmaker, OrderLine)) == 18

    async def test_bad_rows_are_listed_with_line_and_column_and_nothing_is_written(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_shop(sessionmaker, tmp_path)
        before = await rows(sessionmaker, OrderLine)
        path = write(
            tmp_path,
            "bad.csv",
            "sku,order_id,quantity,unit_price\n"
            "A,O12,1,80\n"  # fine
            "A,O99,1,80\n"  # line 3, column 2: unknown order
            "Z,O12,1,80\n"  # line 4, column 1: unknown product
            "B,O12,0,10\n"  # line 5, column 3: no items
            "A,O12,1,80\n"  # line 6: the pair again
            "C,O12,1,-3\n"  # line 7, column 4: negative
            "Q,O98,1,1\n",  # line 8: unknown product and unknown order
        )
        with pytest.raises(ImportRejected) as rejected:
            async with sessionmaker.begin() as session:
                await catalog_import.import_order_lines(session, path, RULES, NOW)
        assert [str(problem) for problem in rejected.value.problems] == [
            f"{path}:3:2: order_id: unknown order 'O99'",
            f"{path}:4:1: sku: unknown product 'Z'",
            f"{path}:5:3: quantity: '0': expected a whole number from 1 to 1,000,000",
            f"{path}:6:2: order_id 'O12' and sku 'A' also on line 2",
            f"{path}:7:4: unit_price: '-3' is negative: refunds are orders with status refunded",
            f"{path}:8:1: sku: unknown product 'Q'",
            f"{path}:8:2: order_id: unknown order 'O98'",
        ]
        assert await rows(sessionmaker, OrderLine) == before

    def test_bad_products_are_listed_with_line_and_column(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "products.csv",
            "sku,name_zh,name_en,url,active\n"
            "A,壶,Kettle,https://shop.example/a,true\n"
            "B,,Filters,,\n"  # line 3, column 2: no Chinese name
            "C,杯,Mug,shop.example/c,maybe\n"  # line 4: not a link (4), not a yes/no (5)
            "A,壶,Kettle,,\n",  # line 5: sku again
        )
        with pytest.raises(ImportRejected) as rejected:
            catalog_import.parse_products(path)
        assert [str(problem) for problem in rejected.value.problems] == [
            f"{path}:3:2: name_zh: missing value",
            f"{path}:4:4: url: 'shop.example/c' is not a web address "
            "(e.g. https://shop.example/p/123)",
            f"{path}:4:5: active: 'maybe': expected true or false (also yes/no, 1/0, 是/否)",
            f"{path}:5:1: sku 'A' also on line 2",
        ]


SPEC = RecommendSpec(window_days=0, min_support=2, min_confidence=0.05, neighbours=20, top_k=3)


async def run_job(sessionmaker: async_sessionmaker[AsyncSession], spec: RecommendSpec) -> Any:
    async with sessionmaker.begin() as session:
        return await recommend_queries.recompute(session, spec, day=20_415, now=NOW)


class TestJob:
    async def test_pairs_and_recommendations_of_a_small_shop_worked_out_by_hand(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_shop(sessionmaker, tmp_path)
        summary = await run_job(sessionmaker, SPEC)
        assert (summary.lines, summary.pairs, summary.customers) == (18, 5, 8)
        async with sessionmaker() as session:
            skus = dict((await session.execute(select(Product.id, Product.sku))).all())
            pairs = (await session.execute(select(ProductPair))).scalars().all()
        assert {
            (skus[p.product_id], skus[p.other_id]): (p.support, round(p.confidence, 3))
            for p in pairs
        } == PAIRS
        assert await recommendations(sessionmaker) == SAME_ORDER  # nothing for erased C9
        # Twice gives the same; without best sellers only the pairs speak.
        await run_job(sessionmaker, SPEC)
        assert await recommendations(sessionmaker) == SAME_ORDER
        await run_job(
            sessionmaker,
            RecommendSpec(min_support=2, top_k=3, fill_with_bestsellers=False),
        )
        assert await recommendations(sessionmaker) == {
            name: [item for item in items if item[1] == "together"]
            for name, items in SAME_ORDER.items()
            if any(item[1] == "together" for item in items)
        }

    async def test_within_n_days_pairs_orders_of_one_customer(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_shop(sessionmaker, tmp_path)
        # C1's mug came 10 days after the kettle and filters: within 30 days, A-C and B-C have
        # 2 customers (C1, C2). C3 (A B) now gets the mug for what it bought: 2/5 + 2/3.
        await run_job(sessionmaker, RecommendSpec(window_days=30, min_support=2, top_k=3))
        found = await recommendations(sessionmaker)
        assert found["C3"] == [("C", "together"), ("D", "popular")]
        assert found["C4"] == [("A", "together"), ("B", "together")]  # C->A, C->B 2/4 each
        assert found["C6"] == [("B", "together"), ("C", "together"), ("D", "popular")]
        # Within 9 days the mug is too late: as in one order.
        await run_job(sessionmaker, RecommendSpec(window_days=9, min_support=2, top_k=3))
        assert await recommendations(sessionmaker) == SAME_ORDER

    async def test_the_daily_job_runs_once_a_day_after_its_hour(
        self, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        await import_shop(sessionmaker, tmp_path)
        rules = load_config(EXAMPLE_CONFIG_DIR)
        [job] = recommend_job.recommend_jobs(sessionmaker, rules)
        assert (job.id, job.every) == ("recommend.compute", timedelta(minutes=15))
        night = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)  # 03:00 on the 24th in Shanghai
        assert await job.run(night) is None
        first = await job.run(night + timedelta(hours=1, minutes=5))  # 04:05
        assert first is not None and first.customers == 8
        assert await job.run(night + timedelta(hours=10)) is None  # done today
        assert await job.run(night + timedelta(days=1, hours=1)) is not None

    async def test_forget_erases_the_customers_recommendations(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        api = harness.api
        zed = api.add_user(4601, "Zed", language_code="en")
        async with harness.sessionmaker.begin() as session:
            await add_customer(session, zed.id, external_id="C6", name="Zed")
        await import_shop(harness.sessionmaker, tmp_path)
        await run_job(harness.sessionmaker, SPEC)
        assert "C6" in await recommendations(harness.sessionmaker)
        await api.send_text(zed, "/forget")
        confirm = (await api.wait_for_sent(zed.id, 1))[-1]
        await api.press_button(zed, confirm, "forget:yes")
        await api.wait_for_sent(zed.id, 2)
        found = await recommendations(harness.sessionmaker)
        assert "C6" not in found and "C3" in found


class TestRules:
    def test_the_shipped_rules_load(self) -> None:
        rules = load_config(EXAMPLE_CONFIG_DIR)
        assert rules.recommend.top_k == 3
        assert "tiers.vip.templates.followup" in rules.care.templates_using("recommendations")

    def test_a_bad_key_names_the_file_and_the_key(self, tmp_path: Path) -> None:
        text = (EXAMPLE_CONFIG_DIR / "recommend.toml").read_text(encoding="utf-8")
        path = write(
            tmp_path, "recommend.toml", text.replace("min_confidence = 0.05", "min_confidence = 2")
        )
        with pytest.raises(ConfigError) as caught:
            load_config_file(path, RecommendConfig)
        assert str(caught.value) == (
            f"{path}: together.min_confidence: Input should be less than or equal to 1"
        )

    @pytest.mark.parametrize(
        ("before", "after", "message"),
        [
            (
                "How is everything?\\n\\n{recommendations}",
                "How is everything? {recommendations}",
                "tiers.vip.templates: followup.en: {recommendations} must stand once on a line "
                "of its own (it is a list)",
            ),
            (
                '"Happy {holiday}, {name}!"',
                '"Happy {holiday}, {name}!\\n{recommendations}"',
                "tiers.important.templates: holiday.en: unknown placeholder {recommendations} "
                "(allowed: {holiday}, {name})",
            ),
        ],
    )
    def test_templates_using_the_list_are_checked(
        self, tmp_path: Path, before: str, after: str, message: str
    ) -> None:
        text = (EXAMPLE_CONFIG_DIR / "care.toml").read_text(encoding="utf-8")
        assert before in text
        path = write(tmp_path, "care.toml", text.replace(before, after, 1))
        with pytest.raises(ConfigError) as caught:
            load_config_file(path, CareConfig)
        assert str(caught.value) == f"{path}: {message}"

    def test_the_list_needs_the_job(self, tmp_path: Path) -> None:
        for source in EXAMPLE_CONFIG_DIR.rglob("*"):
            if source.is_file():
                target = tmp_path / source.relative_to(EXAMPLE_CONFIG_DIR)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read_bytes())
        path = tmp_path / "recommend.toml"
        path.write_text(path.read_text().replace("enabled = true", "enabled = false"))
        with pytest.raises(ConfigError) as caught:
            load_config(tmp_path)
        assert str(caught.value) == (
            f"{tmp_path / 'care.toml'}: tiers.vip.templates.birthday: uses {{recommendations}} "
            "but recommend.toml has enabled = false"
        )


class TestEndToEnd:
    async def test_follow_ups_carry_recommendations_in_english_and_chinese(
        self, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        api = harness.api
        mei = api.add_user(4501, "Mei", language_code="en")
        wang = api.add_user(4502, "王芳", language_code="zh")
        async with harness.sessionmaker.begin() as session:
            await add_customer(session, mei.id, external_id="C6", name="Mei", tier="vip")
            await add_customer(
                session, wang.id, external_id="C3", name="王芳", tier="vip", language="zh"
            )
        monkeypatch.setenv("CAREBOT_DATABASE_URL", harness.settings.database_url)
        monkeypatch.setattr(cli_tools, "clock", harness.clock)
        files = {
            "customers": CUSTOMERS,
            "orders": ORDERS,
            "products": PRODUCTS,
            "order-lines": LINES,
        }
        for kind, content in files.items():
            path = write(tmp_path, f"{kind}.csv", content)
            # Tiers stay as they are (both customers are VIPs: a follow-up 3 days after delivery).
            extra = ["--no-recompute"] if kind == "orders" else []
            result = await asyncio.to_thread(cli, "import", kind, str(path), *extra)
            assert result.exit_code == 0, result.output
        assert "19 rows: 19 new, 0 changed, 0 unchanged; 0 line(s)" in result.output
        result = await asyncio.to_thread(cli, "recommend", "run")
        assert result.exit_code == 0, result.output
        assert ": 18 order line(s), 9 pair(s), 9 customer(s) with a list" in result.output
        result = await asyncio.to_thread(cli, "recommend", "show", "C3")
        assert result.output.splitlines() == [
            "1. C  Mug / 马克杯  https://shop.example/p/mug",
            "2. D  Green tea / 绿茶",
        ]

        async with harness.sessionmaker.begin() as session:
            report = await planner_for(harness.rules).run(session, harness.clock.now())
        assert sorted(item.occasion for item in report.planned) == ["followup", "followup"]
        assert harness.dispatcher is not None
        harness.dispatcher.wake()
        [to_mei] = await api.wait_for_sent(mei.id, 1)
        assert to_mei.text == (
            "Hello Mei, this is your personal check-in about order O7. How is everything?\n\n"
            "You may also like:\n"
            "• Paper filters: https://shop.example/p/filter\n"
            "• Mug: https://shop.example/p/mug\n"
            "• Green tea"
        )
        [to_wang] = await api.wait_for_sent(wang.id, 1)
        assert to_wang.text == (
            "王芳您好，专属客服回访：订单 O4 使用得怎么样？\n\n"
            "猜您还喜欢：\n"
            "• 马克杯：https://shop.example/p/mug\n"
            "• 绿茶"
        )
        # The stop button is still there.
        assert to_mei.buttons()[-1][1] == "care:stop"


def cli(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args))
