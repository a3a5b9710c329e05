"""The staff report: per staff member, tickets handled, median and p90 first reply and resolution
in business hours, SLA breaches and CSAT of their tickets, on a small dataset worked out by
hand; as figures (``storage.tickets.staff_report``), as ``carebot report staff`` in English and
Chinese, and on the dashboard's staff page in a real browser — on both databases."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Page
from rich.console import Console
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot import cli_report, cli_tools
from bot.cli import app as cli_app
from bot.kernel.clock import ManualClock
from bot.kernel.config import load_config
from bot.kernel.hours import BusinessHours, HoursConfig
from bot.settings import EXAMPLE_CONFIG_DIR
from bot.web import dashboard_secret
from dashboard.auth import mint_login_path
from dashboard.core import Dashboard
from dashboard.pages.routes import mount
from storage.models import StaffMember, SurveyResponse, Ticket
from storage.tickets.messages import NOTE, OUT, RELAYED, add_message
from storage.tickets.staff_report import StaffFigures, median, nearest_rank, staff_report
from tests import test_dashboard
from tests.auxil.harness import TOKEN
from tests.auxil.outbox import add_customer
from tests.auxil.surveys import answered_survey
from tests.test_dashboard import open_page, sign_in
from tests.test_metrics import serving

# The dashboard tests' browser: one Chromium per module, a fresh context per test.
chromium = test_dashboard.chromium
browser = test_dashboard.browser
screenshots = test_dashboard.screenshots

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=SHANGHAI)
SINCE = datetime(2026, 11, 23, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
HOURS = HoursConfig(enabled=True, country="CN")  # Monday to Friday 9:00-18:00, Shanghai
ANNA, BO, CY = 7301, 7302, 7303
MINUTE = 60


def sh(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


# (number, assignee, opened, first reply (by), resolved, status, CSAT scores); deadlines as the
# desk computes them: a first reply within 60 business minutes, resolution within 8 hours.
TICKETS = [
    # Anna: 80 min (20 late), 2 h; CSAT 5 and 4.
    (
        "C-1",
        ANNA,
        sh(2026, 11, 23, 10, 0),
        (sh(2026, 11, 23, 11, 20), ANNA),
        sh(2026, 11, 23, 12, 0),
        "closed",
        [5, 4],
    ),
    # Anna: Friday 17:30 -> Monday 9:30 is one business hour; resolved 11:30 (3 h); CSAT 2.
    (
        "C-2",
        ANNA,
        sh(2026, 11, 27, 17, 30),
        (sh(2026, 11, 30, 9, 30), ANNA),
        sh(2026, 11, 30, 11, 30),
        "closed",
        [2],
    ),
    # Anna: 10 min, never resolved: its resolution (Tuesday 17:00) is past at NOW.
    (
        "C-3",
        ANNA,
        sh(2026, 11, 24, 9, 0),
        (sh(2026, 11, 24, 9, 10), ANNA),
        None,
        "waiting_customer",
        [],
    ),
    # Never assigned, Bo replied first (Anna only left a note): 10 + 5 min, resolved in 2 h.
    (
        "C-4",
        None,
        sh(2026, 11, 25, 17, 50),
        (sh(2026, 11, 26, 9, 5), BO),
        sh(2026, 11, 26, 10, 50),
        "closed",
        [],
    ),
    # Nobody: unanswered and unresolved, both deadlines past.
    ("C-5", None, sh(2026, 11, 26, 10, 0), None, None, "open", []),
    # Bo, opened before the period: not counted.
    (
        "C-6",
        BO,
        sh(2026, 11, 20, 10, 0),
        (sh(2026, 11, 20, 10, 5), BO),
        sh(2026, 11, 20, 11, 0),
        "closed",
        [1],
    ),
]
NAMES = {ANNA: "Anna Li", BO: "Bo Chen", CY: "Cy"}


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    hours = HOURS.calendar()
    async with sessionmaker.begin() as session:
        for user_id in (ANNA, BO):  # Cy was never seen by a membership check
            session.add(
                StaffMember(user_id=user_id, name=NAMES[user_id], is_staff=True, checked_at=SINCE)
            )
        for index, (number, assignee, opened, reply, resolved, status, scores) in enumerate(
            TICKETS
        ):
            customer = await add_customer(session, 5000 + index)
            ticket = Ticket(
                number=number,
                customer_id=customer,
                open_customer_id=customer if status != "closed" else None,
                source="complaint",
                category="delivery",
                status=status,
                priority=1,
                tier="normal",
                assignee_user_id=assignee,
                assignee_name=NAMES[assignee].split()[0] if assignee else None,
                topic_closed=False,
                opened_at=opened,
                first_response_at=reply[0] if reply else None,
                resolved_at=resolved,
                closed_at=resolved if status == "closed" else None,
                first_response_due=hours.add(opened, timedelta(minutes=60)),
                resolution_due=hours.add(opened, timedelta(hours=8)),
                reopen_count=0,
                lock_version=0,
                updated_at=opened,
            )
            session.add(ticket)
            await session.flush()
            if number == "C-4":
                await _message(session, ticket.id, NOTE, ANNA, opened + timedelta(minutes=1))
            if reply is not None:
                await _message(session, ticket.id, OUT, reply[1], reply[0])
            if scores:
                response = await answered_survey(
                    session,
                    customer_id=customer,
                    survey="csat",
                    subject=f"ticket:{ticket.id}",
                    tier="normal",
                    at=resolved or opened,
                    scores=[(f"q{index}", "scale", score) for index, score in enumerate(scores)],
                )
                await session.execute(
                    update(SurveyResponse)
                    .where(SurveyResponse.id == response)
                    .values(ticket_id=ticket.id)
                )


async def _message(
    session: AsyncSession, ticket_id: int, direction: str, author: int, at: datetime
) -> None:
    await add_message(
        session,
        ticket_id=ticket_id,
        direction=direction,
        author_user_id=author,
        author_name=NAMES[author].split()[0],
        kind="text",
        text="…",
        state=RELAYED,
        created_at=at,
    )


def test_median_and_nearest_rank_p90() -> None:
    assert median([]) is None and nearest_rank([], 0.9) is None
    assert median([3, 1, 2, 10]) == 2.5
    assert nearest_rank([3, 1, 2], 0.9) == 3
    assert nearest_rank(list(range(1, 11)), 0.9) == 9
    assert nearest_rank(list(range(1, 12)), 0.9) == 10


async def test_the_figures_per_staff_member(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await seed(sessionmaker)
    async with sessionmaker() as session:
        rows = await staff_report(session, SINCE, UNTIL, NOW, HOURS.calendar().between)
        plain = await staff_report(session, SINCE, UNTIL, NOW, BusinessHours().between)
        # A group with its own hours ([groups.<name>.hours]) times its tickets by them.
        always, business = BusinessHours().between, HOURS.calendar().between
        by_group = await staff_report(session, SINCE, UNTIL, NOW, always, {"main": business})
        other_group = await staff_report(session, SINCE, UNTIL, NOW, always, {"vip": business})
    assert (by_group, other_group) == (rows, plain)
    assert rows == [
        StaffFigures(
            ANNA,
            "Anna Li",
            tickets=3,
            first_reply=[10 * MINUTE, 60 * MINUTE, 80 * MINUTE],
            resolution=[120 * MINUTE, 180 * MINUTE],
            breaches=2,  # C-1's first reply, C-3's resolution
            csat_answers=3,
            csat_satisfied=2,
        ),
        StaffFigures(
            BO,
            "Bo Chen",
            tickets=1,
            first_reply=[15 * MINUTE],
            resolution=[120 * MINUTE],
            breaches=0,
        ),
        StaffFigures(None, "", tickets=1, breaches=2),
    ]
    anna = rows[0]
    assert median(anna.first_reply) == 60 * MINUTE
    assert nearest_rank(anna.first_reply, 0.9) == 80 * MINUTE
    assert median(anna.resolution) == 150 * MINUTE
    assert anna.csat_percent == pytest.approx(200 / 3)
    # Counted around the clock, the weekend would weigh on Anna's Friday-evening ticket.
    assert plain[0].first_reply[-1] == (2 * 24 * 60 + 16 * 60) * MINUTE


@pytest.fixture
def hours_config(tmp_path: Path) -> Path:
    """The shipped rule files with business hours on (and Saturdays closed)."""
    folder = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG_DIR, folder)
    path = folder / "tickets.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("enabled = false", "enabled = true", 1)
    text = text.replace('sat = "10:00-16:00"', 'sat = "closed"', 1)
    path.write_text(text, encoding="utf-8")
    assert load_config(folder).tickets.hours.enabled
    return folder


def _row(output: str, name: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(f"│ {name}"))
    return [cell.strip() for cell in line.split("│")[1:-1]]


async def test_the_command_prints_the_table_in_english_and_chinese(
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    hours_config: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed(sessionmaker)
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    monkeypatch.setenv("CAREBOT_CONFIG_DIR", str(hours_config))
    monkeypatch.setattr(cli_report, "out", Console(width=250))
    monkeypatch.setattr(cli_tools, "clock", ManualClock(NOW))
    period = ["--since", "2026-11-23", "--until", "2026-12-01"]

    async def run(*args: str) -> str:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["report", "staff", *period, *args]
        )
        assert result.exit_code == 0, result.output
        return result.output

    english = await run()
    assert "Staff: tickets opened from 2026-11-23 00:00 to 2026-12-01 00:00 UTC" in english
    assert _row(english, "Anna Li") == [
        "Anna Li", "3", "1h 00m", "1h 20m", "2h 30m", "3h 00m", "2", "66.7", "3",
    ]  # fmt: skip
    assert _row(english, "Bo Chen") == [
        "Bo Chen", "1", "15m", "15m", "2h 00m", "2h 00m", "0", "—", "0",
    ]  # fmt: skip
    assert _row(english, "Nobody yet") == ["Nobody yet", "1", "—", "—", "—", "—", "2", "—", "0"]
    assert "business hours" in english

    chinese = await run("--lang", "zh")
    assert "客服：2026-11-23 00:00 至 2026-12-01 00:00 UTC 新开的工单" in chinese
    assert _row(chinese, "Anna Li")[1:6] == [
        "3",
        "1小时00分",
        "1小时20分",
        "2小时30分",
        "3小时00分",
    ]
    assert _row(chinese, "尚无人处理")[6] == "2"

    bad = await asyncio.to_thread(
        CliRunner().invoke, cli_app, ["report", "staff", *period, "--lang", "fr"]
    )
    assert bad.exit_code == 2 and "--lang: expected one of zh, en" in bad.output


@pytest.fixture
async def staff_dashboard(
    database_url: str, browser: BrowserContext, hours_config: Path
) -> AsyncIterator[tuple[str, Page]]:
    """The dashboard on the dataset, signed in, its clock at ``NOW``."""
    from storage.engine import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    await seed(sessionmaker)
    clock = ManualClock(NOW)
    app = web.Application()
    rules = load_config(hours_config)
    mount(
        app,
        Dashboard(
            sessionmaker, dashboard_secret(TOKEN), clock, timezone="Asia/Shanghai", rules=rules
        ),
    )
    try:
        async with serving(app) as root:
            path = await mint_login_path(sessionmaker, user_id=4020, name="Sam", now=clock.now())
            page = await browser.new_page()
            await sign_in(page, root + path)
            yield root, page
    finally:
        await engine.dispose()


async def test_the_staff_page_shows_the_same_figures(
    staff_dashboard: tuple[str, Page], screenshots: Path
) -> None:
    root, page = staff_dashboard
    await open_page(page, f"{root}/dashboard/staff?lang=en", screenshots, "staff", charts=False)

    async def shown(name: str) -> str:
        return await page.locator(f'[data-figure="{name}"]').inner_text()

    expected = {
        f"staff.{ANNA}.staff_tickets": "3",
        f"staff.{ANNA}.staff_first_median": "1h 00m",
        f"staff.{ANNA}.staff_first_p90": "1h 20m",
        f"staff.{ANNA}.staff_resolution_median": "2h 30m",
        f"staff.{ANNA}.staff_breaches": "2",
        f"staff.{ANNA}.staff_csat": "66.7",
        # The page shows the last 30 days: Bo's C-6 of 20 November too (5 min, CSAT 1).
        f"staff.{BO}.staff_tickets": "2",
        f"staff.{BO}.staff_first_median": "10m",
        f"staff.{BO}.staff_csat": "0.0",
        "staff.nobody.staff_tickets": "1",
        "staff.nobody.staff_breaches": "2",
    }
    for name, value in expected.items():
        assert await shown(name) == value, name
    # Display names, not identifiers.
    names = await page.locator("table.staff tbody td:first-child").all_inner_texts()
    assert names == ["Anna Li", "Bo Chen", "Nobody yet"]
    assert "Staff" in await page.locator("nav").inner_text()

    await open_page(page, f"{root}/dashboard/staff?lang=zh", screenshots, "staff-zh", charts=False)
    assert await shown(f"staff.{ANNA}.staff_first_p90") == "1小时20分"
    headers = await page.locator("table.staff th").all_inner_texts()
    assert headers[:3] == ["客服", "工单", "首次回复（中位数）"]
