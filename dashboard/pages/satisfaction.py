"""Satisfaction: CSAT and per-dimension means per week, the NPS trend, and all of it by tier,
over the last ``SATISFACTION_WEEKS`` weeks of surveys sent (``surveys.analytics``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from dashboard import auth
from dashboard.core import Dashboard
from dashboard.html import Tr, bar_chart, card, esc, figure, section, table
from dashboard.pages.guard import signed_in
from dashboard.pages.respond import page_response
from surveys import analytics

SATISFACTION_WEEKS = 12


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _dimension(tr: Tr, name: str) -> str:
    """A dimension's display name (plain text: ``esc`` it in HTML)."""
    return tr.dimension(name)


@dataclass(frozen=True)
class _Scores:
    """The period's scores as the page lays them out: overall, per week, per tier, and the
    mean of each dimension per week and per tier."""

    overall: analytics.SatisfactionRow | None
    weekly: list[analytics.SatisfactionRow]
    by_tier: list[analytics.SatisfactionRow]
    dimensions: list[str]
    """Dimensions with a 1-5 answer, per week or per tier."""
    week_means: dict[tuple[str, str], float | None]
    """(week, dimension) -> mean score."""
    tier_means: dict[tuple[str, str], float | None]
    """(tier, dimension) -> mean score."""

    @classmethod
    def of(
        cls,
        total: list[analytics.SatisfactionRow],
        weekly: list[analytics.SatisfactionRow],
        weekly_dimensions: list[analytics.SatisfactionRow],
        by_tier: list[analytics.SatisfactionRow],
        tier_dimensions: list[analytics.SatisfactionRow],
    ) -> _Scores:
        return cls(
            overall=total[0] if total else None,
            weekly=weekly,
            by_tier=by_tier,
            dimensions=sorted(
                {row.group[1] for row in weekly_dimensions if row.scale_answers}
                | {row.group[1] for row in tier_dimensions if row.scale_answers}
            ),
            week_means={(row.group[0], row.group[1]): row.mean_score for row in weekly_dimensions},
            tier_means={(row.group[0], row.group[1]): row.mean_score for row in tier_dimensions},
        )

    @property
    def weeks(self) -> list[str]:
        return [row.group[0] for row in self.weekly]

    @property
    def week_rows(self) -> dict[str, analytics.SatisfactionRow]:
        return {row.group[0]: row for row in self.weekly}

    @property
    def tiers(self) -> list[str]:
        return [row.group[0] for row in self.by_tier]


async def _load_scores(dashboard: Dashboard) -> _Scores:
    """The scores of surveys sent in the last ``SATISFACTION_WEEKS`` weeks, in one session."""
    now = dashboard.clock.now()
    since = now - timedelta(weeks=SATISFACTION_WEEKS)
    until = now + timedelta(seconds=1)
    async with dashboard.sessionmaker() as session:

        async def scores(*group_by: str) -> list[analytics.SatisfactionRow]:
            return await analytics.satisfaction_by(
                session, since=since, until=until, group_by=group_by
            )

        total = await scores()
        weekly = await scores("week")
        weekly_dimensions = await scores("week", "dimension")
        by_tier = await scores("tier")
        tier_dimensions = await scores("tier", "dimension")
    return _Scores.of(total, weekly, weekly_dimensions, by_tier, tier_dimensions)


def _cards(tr: Tr, overall: analytics.SatisfactionRow | None) -> str:
    """The period's CSAT, mean score, NPS and number of answers."""
    return "".join(
        [
            card(tr("csat"), "csat", _score(overall.csat_percent if overall else None)),
            card(tr("mean_score"), "mean", _score(overall.mean_score if overall else None)),
            card(tr("nps"), "nps", _score(overall.nps if overall else None)),
            card(
                tr("answers"),
                "answers",
                (overall.scale_answers + overall.nps_answers) if overall else 0,
            ),
        ]
    )


def _weekly_trends(tr: Tr, scores: _Scores) -> str:
    """CSAT and NPS per week, as lines."""
    weeks, week_rows = scores.weeks, scores.week_rows
    return section(
        tr("csat_weekly"),
        bar_chart(
            "csat-weekly",
            weeks,
            [(tr("csat"), [week_rows[week].csat_percent for week in weeks])],
            kind="line",
            y_max=100,
        ),
    ) + section(
        tr("nps_weekly"),
        bar_chart(
            "nps-weekly",
            weeks,
            [(tr("nps"), [week_rows[week].nps for week in weeks])],
            kind="line",
            y_min=-100,
            y_max=100,
            y_step=50,
        ),
    )


def _dimension_trends(tr: Tr, scores: _Scores) -> str:
    """Each dimension's mean per week (lines) and per tier (bars)."""
    weeks, tiers = scores.weeks, tr.tiers_in_order(scores.tiers)
    return section(
        tr("dimensions_weekly"),
        bar_chart(
            "dimensions-weekly",
            weeks,
            [
                (_dimension(tr, name), [scores.week_means.get((week, name)) for week in weeks])
                for name in scores.dimensions
            ],
            kind="line",
            y_max=5,
        ),
    ) + section(
        tr("dimensions_by_tier"),
        bar_chart(
            "tier-dimensions",
            [tr.tier(tier) for tier in tiers],
            [
                (_dimension(tr, name), [scores.tier_means.get((tier, name)) for tier in tiers])
                for name in scores.dimensions
            ],
            y_max=5,
        ),
    )


def _tier_table(tr: Tr, scores: _Scores) -> str:
    """Per tier: CSAT, mean score, each dimension's mean, NPS."""
    dimensions = scores.dimensions
    order = tr.tiers_in_order(scores.tiers)
    return table(
        [
            tr("tier"),
            tr("csat"),
            tr("mean_score"),
            *(esc(_dimension(tr, name)) for name in dimensions),
            tr("nps"),
        ],
        [
            [
                esc(tr.tier(row.group[0])),
                figure(f"tier.{row.group[0]}.csat", _score(row.csat_percent)),
                figure(f"tier.{row.group[0]}.mean", _score(row.mean_score)),
                *(
                    figure(
                        f"tier.{row.group[0]}.{name}",
                        _score(scores.tier_means.get((row.group[0], name))),
                    )
                    for name in dimensions
                ),
                figure(f"tier.{row.group[0]}.nps", _score(row.nps)),
            ]
            for row in sorted(scores.by_tier, key=lambda row: order.index(row.group[0]))
        ],
        css="figures",
        empty=tr("no_answers"),
    )


def _week_table(tr: Tr, scores: _Scores) -> str:
    """Per week: CSAT, each dimension's mean, NPS."""
    dimensions, week_rows = scores.dimensions, scores.week_rows
    return table(
        [tr("week"), tr("csat"), *(esc(_dimension(tr, name)) for name in dimensions), tr("nps")],
        [
            [
                esc(week),
                figure(f"week.{week}.csat", _score(week_rows[week].csat_percent)),
                *(
                    figure(f"week.{week}.{name}", _score(scores.week_means.get((week, name))))
                    for name in dimensions
                ),
                figure(f"week.{week}.nps", _score(week_rows[week].nps)),
            ]
            for week in scores.weeks
        ],
        css="figures",
        empty=tr("no_answers"),
    )


@signed_in
async def satisfaction(
    request: web.Request, dashboard: Dashboard, tr: Tr, staff: auth.StaffSession
) -> web.StreamResponse:
    scores = await _load_scores(dashboard)
    body = (
        f"<p>{tr('satisfaction_period', weeks=SATISFACTION_WEEKS)}</p>"
        + f'<div class="cards">{_cards(tr, scores.overall)}</div>'
        + '<div class="grid">'
        + _weekly_trends(tr, scores)
        + _dimension_trends(tr, scores)
        + "</div>"
        + section(tr("by_tier"), _tier_table(tr, scores))
        + section(tr("by_week"), _week_table(tr, scores))
    )
    return page_response(
        request, dashboard, tr, staff, "satisfaction", tr("nav_satisfaction"), body
    )
