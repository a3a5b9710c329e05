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

from bot.kernel.texts import LANGUAGES, Markup, Texts

PAGES = ("overview", "tickets", "satisfaction", "customers", "outbox")
PAGE_PATHS = {
    "overview": "/dashboard/",
    "tickets": "/dashboard/tickets",
    "satisfaction": "/dashboard/satisfaction",
    "customers": "/dashboard/customers",
    "outbox": "/dashboard/outbox",
}
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
    """The catalogue in one language, with a fallback for values that have no label."""

    texts: Texts
    language: str
    zone: ZoneInfo

    def __call__(self, key: str, **params: Any) -> str:
        return self.texts.render(self.language, key, **params)

    def label(self, prefix: str, value: str | None) -> str:
        """``status_open``, ``state_dead``, ...: the translated name of a stored value, or the
        value itself when the catalogue has none (operator-named tiers, new kinds)."""
        if value is None:
            return "—"
        key = f"{prefix}_{value}".replace(".", "_")
        return self(key) if key in self.texts.key_set() else esc(value)

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        return moment.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")


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
    """Cells are HTML already (escape values with ``esc`` or build them with ``figure``)."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body and empty:
        body = f'<tr><td class="empty" colspan="{len(headers)}">{empty}</td></tr>'
    head = "".join(f"<th>{header}</th>" for header in headers)
    return f'<table class="{esc(css)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def chart(name: str, config: dict[str, Any], *, tall: bool = False) -> str:
    """A canvas that ``static/dashboard.js`` turns into a Chart.js chart."""
    options = config.setdefault("options", {})
    options.setdefault("responsive", True)
    options.setdefault("maintainAspectRatio", False)
    options.setdefault("animation", False)
    data = esc(json.dumps(config, ensure_ascii=False))
    css = "chart tall" if tall else "chart"
    canvas = f'<canvas data-chart-name="{esc(name)}" data-chart="{data}"></canvas>'
    return f'<div class="{css}">{canvas}</div>'


def bar_chart(
    name: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    stacked: bool = False,
    kind: str = "bar",
    y_max: float | None = None,
    y_min: float | None = None,
) -> str:
    datasets = [
        {
            "label": label,
            "data": list(values),
            "backgroundColor": PALETTE[index % len(PALETTE)],
            "borderColor": PALETTE[index % len(PALETTE)],
            "spanGaps": True,
        }
        for index, (label, values) in enumerate(series)
    ]
    y_axis: dict[str, Any] = {"stacked": stacked, "beginAtZero": True, "ticks": {"precision": 0}}
    if y_max is not None:
        y_axis["max"] = y_max
    if y_min is not None:
        y_axis["min"] = y_min
    return chart(
        name,
        {
            "type": kind,
            "data": {"labels": list(labels), "datasets": datasets},
            "options": {"scales": {"x": {"stacked": stacked}, "y": y_axis}},
        },
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
            "options": {"plugins": {"legend": {"position": "right"}}},
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
<link rel="stylesheet" href="/dashboard/static/dashboard.css"></head>
<body data-page="{status_name}"><main class="bare">
<p class="languages">{_languages(tr)}</p>
<h1>{title}</h1><p>{message}</p>{extra}</main></body>
</html>"""
