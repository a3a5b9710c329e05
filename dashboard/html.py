"""Small HTML builders for the pages: the layout, tables, figures and charts.

Pages are plain server-rendered HTML (no template engine to install): every value from the
database goes through ``esc``; catalogue strings are the project's own and inserted as they are.
Figures a test reads carry ``data-figure="<name>"``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.kernel.config import CannedReply, Config, readable_name
from bot.kernel.survey_config import DEFAULT_DIMENSIONS
from bot.kernel.texts import LANGUAGES, Markup, Texts

PAGES = ("overview", "tickets", "satisfaction", "customers", "staff", "campaigns", "outbox")
PAGE_PATHS = {
    "overview": "/dashboard/",
    "tickets": "/dashboard/tickets",
    "satisfaction": "/dashboard/satisfaction",
    "customers": "/dashboard/customers",
    "staff": "/dashboard/staff",
    "campaigns": "/dashboard/campaigns",
    "outbox": "/dashboard/outbox",
}
FAVICON_LINK = '<link rel="icon" href="/dashboard/static/favicon.svg" type="image/svg+xml">'
"""Every page names its icon (served with the static files), so no browser asks for a missing
``/favicon.ico`` (the bot's web app serves that too: ``bot.web``)."""
PALETTE = (
    "#2563eb",
    "#f59e0b",
    "#10b981",
    "#ef4444",
    "#8b5cf6",
    "#06b6d4",
    "#84cc16",
    "#f97316",
    "#64748b",
)


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Tr:
    """The catalogue in one language, with a fallback for values that have no label, and the
    display names the operator's rule files give (``rules``: tiers, categories, dimensions,
    canned replies). Those names are plain text: escape them (``esc``) in HTML."""

    texts: Texts
    language: str
    zone: ZoneInfo
    rules: Config | None = None

    def __call__(self, key: str, **params: Any) -> str:
        return self.texts.render(self.language, key, **params)

    def label(self, prefix: str, value: str | None) -> str:
        """``status_open``, ``state_dead``, ...: the translated name of a stored value, or the
        value itself when the catalogue has none (operator-named tiers, new kinds)."""
        if value is None:
            return "—"
        key = f"{prefix}_{value}".replace(".", "_")
        return self(key) if key in self.texts.key_set() else esc(value)

    def tier(self, name: str | None) -> str:
        """A tier's display name (``tiers.toml``: ``en``/``zh``), else its name made readable."""
        if name is None:
            return "—"
        rules = self.rules.tiers.tiers if self.rules is not None else []
        found = next((tier for tier in rules if tier.name == name), None)
        return found.label(self.language) if found is not None else readable_name(name)

    def tiers_in_order(self, names: Iterable[str]) -> list[str]:
        """``names`` best tier first, as ``tiers.toml`` lists them (unknown ones last)."""
        order = [tier.name for tier in self.rules.tiers.tiers] if self.rules is not None else []

        def rank(name: str) -> tuple[int, str]:
            return (order.index(name), "") if name in order else (len(order), name)

        return sorted(set(names), key=rank)

    def category(self, code: str | None) -> str:
        """A ticket category's display name (``tickets.toml``; "question" for knowledge-base
        hand-offs from the catalogue), else its code made readable."""
        if code is None:
            return "—"
        rules = self.rules.tickets.categories if self.rules is not None else []
        found = next((category for category in rules if category.code == code), None)
        if found is not None:
            return found.label(self.language)
        key = f"category_{code}"
        return self(key) if key in self.texts.key_set() else readable_name(code)

    def dimension(self, name: str) -> str:
        """A survey dimension's display name (``surveys/settings.toml`` ``[dimensions]``)."""
        if self.rules is not None:
            label = self.rules.surveys.dimension_label(name, self.language)
        else:
            label = DEFAULT_DIMENSIONS.get(name, {}).get(self.language)
        return label or readable_name(name)

    def canned(self, code: str) -> CannedReply | None:
        """The canned reply ``code`` names (``tickets.toml`` ``[[canned]]``), if still there."""
        return self.rules.tickets.canned_reply(code) if self.rules is not None else None

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")

    def duration(self, seconds: float | None) -> str:
        """A length of time as people read it, to the minute ("1h 05m", "2d 03h")."""
        if seconds is None:
            return "—"
        minutes = round(seconds / 60)
        days, minutes = divmod(minutes, 24 * 60)
        hours, minutes = divmod(minutes, 60)
        if days:
            return self("duration_days", days=days, hours=f"{hours:02d}")
        if hours:
            return self("duration_hours", hours=hours, minutes=f"{minutes:02d}")
        return self("duration_minutes", minutes=minutes)


def figure(name: str, value: object, css: str = "") -> Markup:
    """A number a test can find: ``<span data-figure=name>`` (HTML, also inside a catalogue
    string's placeholder)."""
    return Markup(f'<span class="{esc(css)}" data-figure="{esc(name)}">{esc(value)}</span>')


def card(label: str, name: str, value: object, *, alert: bool = False) -> str:
    css = "card alert" if alert and value else "card"
    return (
        f'<div class="{css}"><div class="card-label">{label}</div>'
        f'<div class="card-value">{figure(name, value)}</div></div>'
    )


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, css: str = "", empty: str = ""
) -> str:
    """Cells are HTML already (escape values with ``esc`` or build them with ``figure``). The
    table scrolls sideways in its own box when it is wider than the screen (a phone), so the
    page itself never does."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body and empty:
        body = f'<tr><td class="empty" colspan="{len(headers)}">{empty}</td></tr>'
    head = "".join(f"<th>{header}</th>" for header in headers)
    return (
        f'<div class="scroll"><table class="{esc(css)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def chart(
    name: str, config: dict[str, Any], *, tall: bool = False, zero_line: bool = False
) -> str:
    """A canvas that ``static/dashboard.js`` turns into a Chart.js chart; ``zero_line`` draws
    the y axis's 0 as a darker line (a scale running below zero, like NPS)."""
    options = config.setdefault("options", {})
    options.setdefault("responsive", True)
    options.setdefault("maintainAspectRatio", False)
    options.setdefault("animation", False)
    data = esc(json.dumps(config, ensure_ascii=False))
    css = "chart tall" if tall else "chart"
    zero = " data-zero-line" if zero_line else ""
    canvas = f'<canvas data-chart-name="{esc(name)}" data-chart="{data}"{zero}></canvas>'
    return f'<div class="{css}">{canvas}</div>'


def _y_axis(
    stacked: bool, y_min: float | None, y_max: float | None, y_step: float | None
) -> dict[str, Any]:
    y_axis: dict[str, Any] = {"stacked": stacked, "beginAtZero": True, "ticks": {"precision": 0}}
    if y_max is not None:
        y_axis["max"] = y_max
    if y_min is not None:
        y_axis["min"] = y_min
    if y_step is not None:
        y_axis["ticks"]["stepSize"] = y_step
    return y_axis


def bar_chart(
    name: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    stacked: bool = False,
    kind: str = "bar",
    y_max: float | None = None,
    y_min: float | None = None,
    y_step: float | None = None,
) -> str:
    """Bars (or lines: ``kind="line"``) of named series over ``labels``. Lines keep their
    points off the edges (one week of data is a dot in the middle, not in a corner) and
    unclipped (a 100 % CSAT sits on the top line, whole); an axis going below 0 gets a zero
    line."""
    line = kind == "line"
    datasets = [
        {
            "label": label,
            "data": list(values),
            "backgroundColor": PALETTE[index % len(PALETTE)],
            "borderColor": PALETTE[index % len(PALETTE)],
            "spanGaps": True,
            **({"pointRadius": 4, "pointHoverRadius": 6, "clip": False} if line else {}),
        }
        for index, (label, values) in enumerate(series)
    ]
    x_axis: dict[str, Any] = {"stacked": stacked}
    if line:
        x_axis["offset"] = True
    return chart(
        name,
        {
            "type": kind,
            "data": {"labels": list(labels), "datasets": datasets},
            "options": {
                "scales": {"x": x_axis, "y": _y_axis(stacked, y_min, y_max, y_step)},
            },
        },
        zero_line=y_min is not None and y_min < 0,
    )


def doughnut(name: str, labels: Sequence[str], values: Sequence[int]) -> str:
    return chart(
        name,
        {
            "type": "doughnut",
            "data": {
                "labels": list(labels),
                "datasets": [
                    {
                        "data": list(values),
                        "backgroundColor": [
                            PALETTE[index % len(PALETTE)] for index in range(len(values))
                        ],
                    }
                ],
            },
            # Below the ring: beside it, the legend squeezes the ring on a phone.
            "options": {"plugins": {"legend": {"position": "bottom"}}},
        },
    )


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{title}</h2>{''.join(parts)}</section>"


def _languages(tr: Tr) -> str:
    """Links to this page in each language (``?lang=``, remembered in a cookie)."""
    return " · ".join(
        f'<a href="?lang={code}" class="{"active" if code == tr.language else ""}" '
        f'data-lang="{code}">{tr(f"language_{code}")}</a>'
        for code in LANGUAGES
    )


def layout(tr: Tr, *, page: str, title: str, staff_name: str, body: str, form_token: str) -> str:
    """A signed-in page; signing out is a POST carrying the session's form token."""
    nav = "".join(
        f'<a href="{PAGE_PATHS[name]}" class="{"active" if name == page else ""}" '
        f'data-nav="{name}">{tr(f"nav_{name}")}</a>'
        for name in PAGES
    )
    return f"""<!doctype html>
<html lang="{tr.language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {tr("brand")}</title>
{FAVICON_LINK}
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
<script src="/dashboard/static/chart.umd.min.js" defer></script>
<script src="/dashboard/static/dashboard.js" defer></script>
</head>
<body data-page="{page}">
<header>
<div class="brand">{tr("brand")}</div>
<nav>{nav}</nav>
<div class="who"><span class="languages">{_languages(tr)}</span>
<span data-figure="staff-name">{esc(staff_name)}</span>
<form class="logout" method="post" action="/dashboard/logout">
<input type="hidden" name="form_token" value="{esc(form_token)}">
<button type="submit" data-action="logout">{tr("logout")}</button></form></div>
</header>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>"""


def bare_page(tr: Tr, *, title: str, message: str, status_name: str, extra: str = "") -> str:
    """A page for visitors without a session (sign-in needed or offered, link used up);
    ``extra`` is HTML after the message (the sign-in form)."""
    return f"""<!doctype html>
<html lang="{tr.language}">
<head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {tr("brand")}</title>
{FAVICON_LINK}
<link rel="stylesheet" href="/dashboard/static/dashboard.css"></head>
<body data-page="{status_name}"><main class="bare">
<p class="languages">{_languages(tr)}</p>
<h1>{title}</h1><p>{message}</p>{extra}</main></body>
</html>"""
