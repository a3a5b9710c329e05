"""``carebot report tickets``: counts by category, tier and status, median and p90 times to the
first reply and to resolution, SLA breaches — on both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot import cli_tools
from bot.cli import app as cli_app
from bot.kernel.clock import ManualClock
from storage.models import Ticket
from storage.tickets.reports import ticket_report
from tests.auxil.outbox import add_customer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def _tickets(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Five tickets opened on 2026-11-20 (times in minutes from opening), one the week before."""
    rows = [
        # category, tier, status, first reply, resolved, first-reply SLA, resolution SLA (min)
        ("delivery", "vip", "closed", 10, 120, 15, 480),
        ("delivery", "normal", "closed", 50, 600, 60, 2880),
        ("quality", "normal", "closed", 90, 3000, 60, 2880),  # both deadlines missed
        ("quality", "vip", "waiting_staff", None, None, 15, 480),  # still unanswered: breached
        ("billing", "normal", "open", None, None, 60, 2880),  # unanswered for three days
    ]
    async with sessionmaker.begin() as session:
        customer = await add_customer(session, 4242)
        opened = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
        rows_and_earlier = [*rows, ("other", "normal", "closed", 5, 10, 60, 2880)]
        for index, (category, tier, status, first, resolved, fr_sla, res_sla) in enumerate(
            rows_and_earlier
        ):
            start = opened if index < len(rows) else opened - timedelta(days=7)
            at = start + timedelta(hours=index)
            session.add(
                Ticket(
                    number=f"C-{index + 1:06d}",
                    customer_id=customer,
                    open_customer_id=customer if status != "closed" and index == 4 else None,
                    source="complaint",
                    category=category,
                    status=status,
                    priority=1,
                    tier=tier,
                    topic_closed=False,
                    opened_at=at,
                    first_response_at=at + timedelta(minutes=first) if first else None,
                    resolved_at=at + timedelta(minutes=resolved) if resolved else None,
                    first_response_due=at + timedelta(minutes=fr_sla),
                    resolution_due=at + timedelta(minutes=res_sla),
                    reopen_count=0,
                    lock_version=0,
                    updated_at=at,
                )
            )


async def test_the_report_counts_times_and_breaches(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _tickets(sessionmaker)
    async with sessionmaker() as session:
        report = await ticket_report(
            session, datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC), NOW
        )
    assert report.opened == 5
    assert report.by_category == {"delivery": 2, "quality": 2, "billing": 1}
    assert report.by_tier == {"normal": 3, "vip": 2}
    assert report.by_status == {"closed": 3, "open": 1, "waiting_staff": 1}
    assert report.first_response == [600.0, 3000.0, 5400.0]
    assert report.resolution == [7200.0, 36000.0, 180000.0]
    # C-000003 answered and resolved late; C-000004 and C-000005 still open past both deadlines.
    assert report.first_response_breaches == 3
    assert report.resolution_breaches == 3


async def test_the_command_prints_the_figures(
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _tickets(sessionmaker)
    monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
    monkeypatch.setattr(cli_tools, "clock", ManualClock(NOW))
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["report", "tickets", "--since", "2026-11-20", "--until", "2026-11-21"],
    )
    assert result.exit_code == 0, result.output
    output = result.output
    assert "tickets opened from 2026-11-20 00:00 to 2026-11-21 00:00 UTC: 5" in output
    first_reply = next(
        line for line in output.splitlines() if "first reply" in line and "│" in line
    )
    assert [cell.strip() for cell in first_reply.split("│")[2:5]] == ["3", "50m", "1h 30m"]
    resolution = next(line for line in output.splitlines() if "resolution" in line and "│" in line)
    assert [cell.strip() for cell in resolution.split("│")[2:5]] == ["3", "10h 00m", "2d 02h"]
    assert "SLA breaches: first reply 3, resolution 3" in output

    bad = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["report", "tickets", "--since", "2026-11-21", "--until", "2026-11-20"],
    )
    assert bad.exit_code == 2
