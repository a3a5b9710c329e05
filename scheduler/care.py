"""Care planners (README: Care plans): birthday and holiday greetings, follow-up visits,
retention offers.

One periodic job (``care.plan``) runs ``CarePlanner.run``: it plans *today's* occasions, where
today is each customer's local day, and writes each as an outbox row keyed
``care:<occasion>:<customer>:<local date>``. The outbox's unique key makes the job safe to run
every few minutes, twice, or in two processes; the dispatcher applies consent, quiet hours and
the daily cap when it sends.

Catch-up: a greeting missed while the bot was down is planned by the first run after it comes
back, as long as the customer's day has not reached ``send.end``; a greeting still unsent at
``send.end`` (the bot was down, or the dispatcher deferred it past the day) is cancelled, never
sent late. Nothing is planned for a past day.

At most one care message per customer and local day is planned, in this order: birthday,
holiday, retention offer, follow-up after a delivery, follow-up after a resolved ticket. At send
time a greeting also goes before survey invitations and everything else (``scheduler.policy``).
``preview`` (``carebot plan --date``) runs ``collect`` at moments covering a local day in every
zone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from lunardate import LunarDate
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.kernel.care_config import CARE_LANGUAGES, RECOMMENDATIONS, CareConfig, TierCare
from bot.kernel.clock import LocalZones
from bot.kernel.config import Config
from bot.kernel.replies import TextRef
from bot.kernel.texts import Texts
from scheduler.wiring import PeriodicJob
from storage import care as care_queries
from storage import outbox
from storage.campaigns import CAMPAIGN_KIND
from storage.care import CareCustomer, TierRange, VisitCandidate, coupon_code
from storage.models import Product
from storage.payloads import CareTag, OutboxButton, ReadyText
from storage.recommend import recommended_products

logger = logging.getLogger(__name__)

OCCASION_ORDER = ("birthday", "holiday", "retention", "followup", "after_ticket")
KINDS = {
    "birthday": "care.birthday",
    "holiday": "care.holiday",
    "retention": "care.retention",
    "followup": "care.followup",
    "after_ticket": "care.followup",
}
GREETING_OCCASIONS = ("birthday", "holiday")  # first in a customer's day (scheduler.policy)
GREETING_KINDS = tuple(KINDS[occasion] for occasion in GREETING_OCCASIONS)
EXPIRING_KINDS = (*GREETING_KINDS, CAMPAIGN_KIND)
"""Rows dropped once past their ``expires_at``: greetings after their day, campaigns after
their window (``scheduler.campaigns``)."""
STOP_DATA = "care:stop"
FOLLOWUP_GOOD = "care:good:"
FOLLOWUP_PROBLEM = "care:problem:"
PLAN_EVERY = timedelta(minutes=10)
DST_SLACK = timedelta(hours=2)  # more than any clock change (the planner re-checks each day)
DST_CHANGE = timedelta(hours=1)  # the most a day's clocks move (Lord Howe's half hour is less)
EARLIEST_OFFSET = timedelta(hours=14)  # UTC+14 (Kiribati): the first zone to start a day
LATEST_OFFSET = timedelta(hours=12)  # UTC-12: the last zone to end it
MIN_PREVIEW_STEP = timedelta(minutes=15)
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def dedupe_key(occasion: str, customer_id: int, day: date) -> str:
    """The outbox key of a care message: one per customer, occasion and local day (a follow-up
    after a delivery and one after a ticket share ``followup``)."""
    kind = "followup" if occasion == "after_ticket" else occasion
    return f"care:{kind}:{customer_id}:{day.isoformat()}"


@dataclass(frozen=True)
class Planned:
    """One message a planner decided on, before it is written."""

    occasion: str
    customer: CareCustomer
    day: date
    tier: str
    params: dict[str, Any]
    due_at: datetime
    expires_at: datetime | None
    reference_id: int | None = None
    coupon: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return dedupe_key(self.occasion, self.customer.id, self.day)

    @property
    def kind(self) -> str:
        return KINDS[self.occasion]


@dataclass
class PlanReport:
    """What one run did."""

    planned: list[Planned] = field(default_factory=list)
    coupons_used: int = 0
    stale_cancelled: int = 0
    coupons_skipped: int = 0


def _language(language: str) -> str:
    return "zh" if language == "zh" else "en"


@lru_cache(maxsize=256)
def _holiday_table(country: str, year: int, language: str) -> dict[date, list[str]]:
    """A country's public holidays of one year, names in ``language`` when the package has
    them (English otherwise)."""
    table = holidays.country_holidays(country, years=year)
    supported = table.supported_languages
    wanted = {"zh": ("zh_CN", "zh_TW"), "en": ("en_US", "en_GB")}[language]
    chosen = next((code for code in wanted if code in supported), None)
    if chosen is None:
        chosen = next((code for code in ("en_US", "en_GB") if code in supported), None)
    if chosen is not None:
        table = holidays.country_holidays(country, years=year, language=chosen)
    return {day: table.get_list(day) for day in sorted(table.keys())}


def lunar_pairs(day: date) -> set[tuple[int, int]]:
    """The lunar (month, day) birthdays celebrated on ``day``: its lunar date, and the 30th
    on the 29th of a 29-day month. A leap month celebrates nothing (birthdays in a month
    recur in its regular month)."""
    try:
        lunar = LunarDate.from_solar_date(day.year, day.month, day.day)
        following = LunarDate.from_solar_date(*_ymd(day + timedelta(days=1)))
    except ValueError:  # outside the package's range (1900-2099)
        return set()
    if lunar.is_leap_month:
        return set()
    pairs = {(lunar.month, lunar.day)}
    if lunar.day == 29 and following.day == 1:
        pairs.add((lunar.month, 30))
    return pairs


def solar_pairs(day: date) -> set[tuple[int, int]]:
    """The Gregorian (month, day) birthdays celebrated on ``day`` (Feb 29 on Feb 28 in a common
    year)."""
    pairs = {(day.month, day.day)}
    if (day.month, day.day) == (2, 28) and not _leap(day.year):
        pairs.add((2, 29))
    return pairs


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _ymd(day: date) -> tuple[int, int, int]:
    return day.year, day.month, day.day


class CarePlanner:
    """Plans and writes today's care messages (see the module docstring)."""

    def __init__(
        self,
        rules: CareConfig,
        *,
        default_timezone: str,
        currency: str = "CNY",
        new_code: Callable[[], str] = coupon_code,
        texts: Texts | None = None,
    ) -> None:
        self.rules = rules
        self.currency = currency
        self._new_code = new_code
        self._zones = LocalZones(default_timezone)
        self.texts = texts or Texts.load()
        # Per tier, the occasions whose template lists the customer's recommendations.
        self._recommending = {
            name: frozenset(tier.templates.using(RECOMMENDATIONS))
            for name, tier in rules.tiers.items()
        }

    def zone(self, name: str | None) -> ZoneInfo:
        """The customer's zone; the default when it is missing or unknown."""
        return self._zones.get(name)

    def today_of(self, customer: CareCustomer, now: datetime) -> date | None:
        """The customer's local date, or None once their day reached ``send.end`` (nothing more
        is planned for it)."""
        local = now.astimezone(self.zone(customer.timezone))
        if local.time() >= self.rules.send.end:
            return None
        return local.date()

    def _moment(self, customer: CareCustomer, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=self.zone(customer.timezone)).astimezone(UTC)

    def _planned(
        self,
        occasion: str,
        customer: CareCustomer,
        day: date,
        now: datetime,
        params: dict[str, Any],
        **extra: Any,
    ) -> Planned:
        start = self._moment(customer, day, self.rules.send.start)
        expires = None
        if occasion in ("birthday", "holiday"):
            expires = self._moment(customer, day, self.rules.send.end)
        return Planned(
            occasion=occasion,
            customer=customer,
            day=day,
            tier=self._tier_name(customer.tier),
            params=params,
            due_at=max(now, start),
            expires_at=expires,
            **extra,
        )

    def _tier_name(self, tier: str) -> str:
        return tier if tier in self.rules.tiers else self.rules.fallback_tier

    def _tier(self, tier: str) -> TierCare:
        return self.rules.tier(tier)

    def candidate_days(self, now: datetime) -> list[date]:
        """The local dates some time zone (UTC-12 to UTC+14) is on at ``now`` before its send
        window closed: at most two, often one."""
        utc = now.astimezone(UTC).replace(tzinfo=None)
        days = {
            local.date()
            for minutes in range(-12 * 60, 14 * 60 + 1, 15)
            if (local := utc + timedelta(minutes=minutes)).time() < self.rules.send.end
        }
        return sorted(days)

    # --- the planners: each returns its candidates for today, unfiltered by the others ---

    async def birthdays(self, session: AsyncSession, now: datetime) -> list[Planned]:
        """Customers whose (solar or lunar) birthday is their local today."""
        days = self.candidate_days(now)
        solar = {day: solar_pairs(day) for day in days}
        lunar = {day: lunar_pairs(day) for day in days}
        customers = await care_queries.birthday_customers(
            session,
            solar=(pair for pairs in solar.values() for pair in pairs),
            lunar=(pair for pairs in lunar.values() for pair in pairs),
        )
        planned = []
        for customer in customers:
            today = self.today_of(customer, now)
            if today is None or today not in solar:
                continue
            pairs = lunar[today] if customer.birthday_lunar else solar[today]
            if (customer.birth_month, customer.birth_day) in pairs:
                planned.append(self._planned("birthday", customer, today, now, {}))
        return planned

    def holiday_names(self, country: str, day: date) -> dict[str, str] | None:
        """The greeted holiday starting on ``day`` in ``country``, as {language: name}; None
        when there is none (or ``day`` is not its first day)."""
        config = self.rules.holidays.countries.get(country)
        if config is None:
            return None
        english = _holiday_table(country, day.year, "en")
        names = english.get(day, [])
        before = english.get(day - timedelta(days=1), [])
        for index, name in enumerate(names):
            if name in config.names and name not in before:
                chinese = _holiday_table(country, day.year, "zh").get(day, [])
                zh = chinese[index] if index < len(chinese) else name
                return {"en": name, "zh": zh}
        return None

    async def holidays(self, session: AsyncSession, now: datetime) -> list[Planned]:
        """Customers whose country has a greeted holiday on their local today."""
        wanted: dict[tuple[str, date], dict[str, str]] = {}
        for country in self.rules.holidays.countries:
            for day in self.candidate_days(now):
                names = self.holiday_names(country, day)
                if names is not None:
                    wanted[(country, day)] = names
        if not wanted:
            return []
        countries = sorted({country for country, _day in wanted})
        planned = []
        for customer in await care_queries.customers_in_countries(session, countries):
            today = self.today_of(customer, now)
            names = wanted.get((customer.country, today)) if today else None
            if today is not None and names is not None:
                planned.append(self._planned("holiday", customer, today, now, {"holiday": names}))
        return planned

    async def retention(self, session: AsyncSession, now: datetime) -> list[Planned]:
        """At-risk customers without an offer in the period: an offer with a new coupon."""
        since = now - timedelta(days=self.rules.retention.period_days)
        planned = []
        for customer in await care_queries.at_risk_customers(session, offered_since=since):
            today = self.today_of(customer, now)
            if today is not None:
                planned.append(self._offer(customer, today, now))
        return planned

    def _offer(self, customer: CareCustomer, today: date, now: datetime) -> Planned:
        """A retention offer of the customer's tier, made on their local ``today``."""
        offer = self._tier(customer.tier).offer
        last_day = today + timedelta(days=offer.valid_days)
        valid_until = self._moment(customer, last_day + timedelta(days=1), time(0, 0))
        coupon = {
            "discount_percent": offer.discount_percent,
            "min_spend_cents": int((offer.min_spend * 100).to_integral_value()),
            "valid_until": valid_until - timedelta(seconds=1),
        }
        params = {
            "discount": str(offer.discount_percent),
            "min_spend": f"{_amount(offer.min_spend)} {self.currency}",
            "valid_until": last_day.isoformat(),
        }
        return self._planned("retention", customer, today, now, params, coupon=coupon)

    def _visit_ranges(
        self,
        now: datetime,
        offsets_of: Callable[[TierCare], Iterable[int]],
        before: timedelta,
        after: timedelta,
    ) -> list[TierRange]:
        """Time ranges (``now`` minus each cadence offset, widened by ``before`` and ``after``)
        and the tiers that have a visit at that offset."""
        by_offset: dict[int, list[str]] = {}
        for name, tier in self.rules.tiers.items():
            for offset in offsets_of(tier):
                by_offset.setdefault(offset, []).append(name)
        known = tuple(sorted(self.rules.tiers))
        return [
            TierRange(
                start=now - timedelta(days=offset) - before,
                end=now - timedelta(days=offset) + after,
                tiers=tuple(sorted(tiers)),
                others=self.rules.fallback_tier in tiers,
                known=known,
            )
            for offset, tiers in sorted(by_offset.items())
        ]

    def _visits(
        self,
        occasion: str,
        candidates: list[VisitCandidate],
        now: datetime,
        offsets_of: Callable[[TierCare], Iterable[int]],
    ) -> list[Planned]:
        planned = []
        for candidate in candidates:
            customer = candidate.customer
            today = self.today_of(customer, now)
            if today is None:
                continue
            start = candidate.at.astimezone(self.zone(customer.timezone)).date()
            if (today - start).days not in set(offsets_of(self._tier(customer.tier))):
                continue
            name = "order" if occasion == "followup" else "ticket"
            planned.append(
                self._planned(
                    occasion,
                    customer,
                    today,
                    now,
                    {name: candidate.reference},
                    reference_id=candidate.reference_id,
                )
            )
        return planned

    async def followups(self, session: AsyncSession, now: datetime) -> list[Planned]:
        """Visits after the latest delivery on the tier's cadence (no open ticket)."""

        def offsets(tier: TierCare) -> list[int]:
            return tier.followup.visit_offsets()

        # The schedule holds when each delivery's local day began. A customer still plans
        # today while their local time is before ``send.end``, so today began within
        # ``send.end`` before now; ``DST_SLACK`` either side covers a clock change in between
        # (``_visits`` then checks the exact local day).
        window_end = timedelta(hours=self.rules.send.end.hour, minutes=self.rules.send.end.minute)
        ranges = self._visit_ranges(now, offsets, window_end + DST_SLACK, DST_SLACK)
        candidates = await care_queries.delivered_orders(session, ranges)
        return self._visits("followup", candidates, now, offsets)

    async def after_tickets(self, session: AsyncSession, now: datetime) -> list[Planned]:
        """A visit ``after_ticket_days`` after a ticket was resolved (no open ticket now)."""

        def offsets(tier: TierCare) -> list[int]:
            days = tier.followup.after_ticket_days
            return [days] if days else []

        one_day = timedelta(days=1)
        ranges = self._visit_ranges(now, offsets, one_day, one_day)
        candidates = await care_queries.resolved_tickets(session, ranges)
        return self._visits("after_ticket", candidates, now, offsets)

    # --- putting it together ---

    async def collect(self, session: AsyncSession, now: datetime) -> list[Planned]:
        """Today's messages, at most one per customer and local day (read only)."""
        if not self.rules.enabled or not self.rules.tiers:
            return []
        found = {
            "birthday": await self.birthdays(session, now),
            "holiday": await self.holidays(session, now),
            "retention": await self.retention(session, now),
            "followup": await self.followups(session, now),
            "after_ticket": await self.after_tickets(session, now),
        }
        # An offer issued earlier today keeps the day's slot (the customer is no longer a
        # retention candidate once the coupon exists).
        since = now - timedelta(days=2)
        offered = await care_queries.coupon_days_since(session, since)
        taken: set[tuple[int, date]] = {
            (customer_id, date.fromisoformat(day)) for customer_id, day in offered
        }
        chosen: list[Planned] = []
        for occasion in OCCASION_ORDER:
            for item in found[occasion]:
                slot = (item.customer.id, item.day)
                if slot in taken:
                    continue
                taken.add(slot)
                chosen.append(item)
        return await self.with_recommendations(session, chosen)

    async def with_recommendations(
        self, session: AsyncSession, items: list[Planned]
    ) -> list[Planned]:
        """``items`` with the ``{recommendations}`` list, in both languages, for those whose
        template uses it (the customer's recommended products, still active)."""
        wanted = [
            index
            for index, item in enumerate(items)
            if item.occasion in self._recommending.get(self._tier_name(item.customer.tier), ())
        ]
        if not wanted:
            return items
        products = await recommended_products(session, {items[i].customer.id for i in wanted})
        found = list(items)
        for index in wanted:
            item = items[index]
            lists = {
                language: self.recommendation_list(products[item.customer.id], language)
                for language in CARE_LANGUAGES
            }
            found[index] = replace(item, params={**item.params, RECOMMENDATIONS: lists})
        return found

    def recommendation_list(self, products: list[Product], language: str) -> str:
        """The ``{recommendations}`` block: a heading and one line per product with its link,
        in ``language`` (plain text: Telegram makes the links clickable); "" for none."""
        if not products:
            return ""
        lines = [self.texts.raw(language, "care_recommendations_heading")]
        for product in products:
            key = "care_recommendation_item" if product.url else "care_recommendation_item_no_link"
            line = self.texts.raw(language, key)
            lines.append(line.format(name=product.name(language), url=product.url or ""))
        return "\n".join(lines)

    def preview_moments(self, day: date) -> list[datetime]:
        """Moments at which running the planner sees every customer's local ``day`` (UTC-12
        to UTC+14) before ``send.end``: from ``day``'s start at UTC+14 to its ``send.end`` at
        UTC-12, closer together than the shortest window a customer has (``send.end`` after
        local midnight, an hour less on the day clocks go forward)."""
        end = timedelta(hours=self.rules.send.end.hour, minutes=self.rules.send.end.minute)
        step = max(end - DST_CHANGE, MIN_PREVIEW_STEP)
        moment = datetime.combine(day, time(0, 0), UTC) - EARLIEST_OFFSET
        last = datetime.combine(day, time(0, 0), UTC) + end + LATEST_OFFSET
        moments = []
        while moment < last:
            moments.append(moment)
            moment += step
        return moments

    async def preview(self, session: AsyncSession, day: date) -> list[Planned]:
        """What the periodic job plans for ``day`` in every zone, read only (``carebot plan
        --date``): the real ``collect`` at each of ``preview_moments``, keeping the messages of
        customers for whom it is ``day``, the first found for each customer, and the retention
        offers already made that day."""
        chosen: dict[int, Planned] = {}
        moments = self.preview_moments(day)
        for now in moments:
            for item in await self.collect(session, now):
                if item.day == day:
                    chosen.setdefault(item.customer.id, item)
        if self.rules.enabled and self.rules.tiers:
            # Offers the job already made that day (in a zone that is further on) are no
            # longer candidates, and they were that customer's message of the day.
            for customer in await care_queries.offered_on(session, day.isoformat()):
                chosen[customer.id] = self._offer(customer, day, moments[0])
        return sorted(
            chosen.values(),
            key=lambda item: (OCCASION_ORDER.index(item.occasion), item.customer.id),
        )

    def render(self, item: Planned, language: str) -> str:
        """The message text in ``language`` (templates are per tier, inline in care.toml); an
        empty ``{recommendations}`` leaves no blank lines behind."""
        language = _language(language)
        template = getattr(self._tier(item.customer.tier).templates, item.occasion).get(language)
        params = {
            key: value[language] if isinstance(value, dict) else value
            for key, value in item.params.items()
        }
        params["name"] = item.customer.name or self.rules.anonymous_name.get(language)
        params.setdefault(RECOMMENDATIONS, "")
        text = str(template.format(**params))
        if "{" + RECOMMENDATIONS + "}" in template:
            text = _BLANK_LINES.sub("\n\n", text).strip()
        return text

    def _row(self, item: Planned, now: datetime, coupon: str | None = None) -> dict[str, Any]:
        buttons: list[list[OutboxButton]] = []
        if item.occasion == "followup":
            buttons.append(
                [
                    OutboxButton(
                        TextRef("care_button_good"), data=f"{FOLLOWUP_GOOD}{item.reference_id}"
                    ),
                    OutboxButton(
                        TextRef("care_button_problem"),
                        data=f"{FOLLOWUP_PROBLEM}{item.reference_id}",
                    ),
                ]
            )
        buttons.append([OutboxButton(TextRef("care_button_stop"), data=STOP_DATA)])
        params = dict(item.params)
        if coupon is not None:
            params["coupon"] = coupon
        text = self.render(replace(item, params=params), item.customer.language)
        payload = ReadyText(
            text,
            buttons=buttons,
            care=CareTag(item.occasion, item.day.isoformat(), item.tier),
            expires_at=item.expires_at,
        )
        return {
            "dedupe_key": item.key,
            "chat_id": item.customer.chat_id,
            "kind": item.kind,
            "payload": payload,
            "due_at": item.due_at,
            "now": now,
            "customer_id": item.customer.id,
            "priority": outbox.Priority.CARE,
        }

    async def write(self, session: AsyncSession, items: list[Planned], now: datetime) -> int:
        """Queue ``items`` (existing keys are skipped); retention offers get their coupon in the
        same transaction. Returns the coupons issued."""
        rows = [self._row(item, now) for item in items if item.coupon is None]
        for start in range(0, len(rows), 5000):
            await outbox.enqueue_many(session, rows[start : start + 5000])
        offers = [item for item in items if item.coupon is not None]
        codes = {item.customer.id: self._new_code() for item in offers}
        issued = await care_queries.issue_coupons(
            session,
            [
                {
                    **(item.coupon or {}),
                    "code": codes[item.customer.id],
                    "customer_id": item.customer.id,
                    "tier": item.tier,
                    "issued_day": item.day.isoformat(),
                    "issued_at": now,
                }
                for item in offers
            ],
        )
        rows = [
            self._row(item, now, codes[item.customer.id])
            for item in offers
            if item.customer.id in issued
        ]
        for start in range(0, len(rows), 5000):
            await outbox.enqueue_many(session, rows[start : start + 5000])
        return len(issued)

    async def expire_stale(self, session: AsyncSession, now: datetime) -> int:
        """Cancel greetings that can no longer go out on their day: past ``send.end``, or
        deferred by the dispatcher (quiet hours, the daily cap) beyond it; campaign messages
        likewise past their window."""
        stale = []
        for row in await care_queries.open_care_rows(session, EXPIRING_KINDS):
            moment = row.expires_at
            if moment is None:
                continue
            if now >= moment or row.due_at >= moment:
                stale.append(row.id)
        return await care_queries.cancel_rows(
            session, stale, reason="stale: past its day", now=now
        )

    async def run(self, session: AsyncSession, now: datetime) -> PlanReport:
        """One planning pass: coupons redeemed, stale greetings dropped, today's rows queued."""
        report = PlanReport()
        report.coupons_used = await care_queries.mark_coupons_used(session, now)
        report.stale_cancelled = await self.expire_stale(session, now)
        report.planned = await self.collect(session, now)
        issued = await self.write(session, report.planned, now)
        offers = sum(1 for item in report.planned if item.coupon is not None)
        report.coupons_skipped = offers - issued
        return report


def _amount(value: Decimal) -> str:
    return f"{value:.2f}".removesuffix(".00")


def planner_for(rules: Config, texts: Texts | None = None) -> CarePlanner:
    """The planner configured by the rule files (care.toml, the default time zone, the shop's
    currency) and the text catalogue (the ``{recommendations}`` list)."""
    return CarePlanner(
        rules.care,
        default_timezone=rules.general.customers.default_timezone,
        currency=rules.tiers.orders.currency,
        texts=texts,
    )


def care_jobs(
    sessionmaker: async_sessionmaker[AsyncSession],
    planner: CarePlanner,
    every: timedelta = PLAN_EVERY,
) -> list[PeriodicJob]:
    """The periodic planning job: idempotent, so every few minutes is fine (catch-up)."""

    async def plan(now: datetime) -> PlanReport:
        async with sessionmaker.begin() as session:
            report = await planner.run(session, now)
        if report.planned or report.stale_cancelled or report.coupons_used:
            logger.info(
                "care: %d messages due today (queued once), %d stale greetings dropped, "
                "%d coupons redeemed",
                len(report.planned),
                report.stale_cancelled,
                report.coupons_used,
            )
        return report

    return [PeriodicJob("care.plan", every, plan)]


async def plan_before_dispatch(
    sessionmaker: async_sessionmaker[AsyncSession], planner: CarePlanner, now: datetime
) -> PlanReport:
    """One planning pass before the dispatcher starts (stale greetings dropped first, then
    today's messages queued): after a restart, today's greeting is queued before a survey
    invitation left from the night could take the day's slot (``scheduler.policy``)."""
    async with sessionmaker.begin() as session:
        return await planner.run(session, now)
