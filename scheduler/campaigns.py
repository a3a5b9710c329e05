"""Campaigns (README: Campaigns): a message of ``campaigns/<name>.toml`` to a segment of
customers, through the outbox like care messages.

``preview`` reads only: the segment's count by tier and the message rendered in both
languages. ``send`` queues one outbox row per customer of the segment not queued yet (the
recipients' unique key and the row's ``campaign:<id>:<customer>`` key: running it again adds
nobody twice, only customers who joined the segment since), each with its coupon when the
campaign has one, all in the caller's transaction. Each row is due at the window's ``from``
hour of the customer's day (today, or the window's first day); the dispatcher then applies
consent, quiet hours, the daily cap and Telegram's limits as for care, and what is still
unsent at ``until`` on the window's last day is dropped by the care planner's stale check.
``cancel`` cancels what is still queued; a cancelled campaign is never sent again.

Every message carries care's "stop these messages" button keyed with the recipient
(``care:stop:<recipient>``): the one press the bot can count. Link buttons open in the
browser and Telegram does not tell the bot, so they are not counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.kernel.campaign_config import Campaign
from bot.kernel.care_config import CARE_LANGUAGES, RECOMMENDATIONS
from bot.kernel.clock import LocalZones
from bot.kernel.config import Config
from bot.kernel.replies import TextRef
from bot.kernel.texts import Texts
from scheduler.care import STOP_DATA, CarePlanner, planner_for
from storage import campaigns as campaign_queries
from storage import care as care_queries
from storage import outbox
from storage.campaigns import CAMPAIGN_KIND, SegmentFilter
from storage.care import CareCustomer, coupon_code
from storage.models import CampaignRun
from storage.payloads import CareTag, OutboxButton, ReadyText
from storage.recommend import recommended_products

SAMPLE_COUPON = "CB-XXXX-XXXX"
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


class CampaignError(Exception):
    """A campaign that cannot be sent or cancelled as asked; nothing was changed. ``key``
    names the catalogue text that says why (``cli_campaign_*``), with ``params``."""

    def __init__(self, key: str, **params: str) -> None:
        super().__init__(key, params)
        self.key = key
        self.params = params


def dedupe_prefix(run_id: int) -> str:
    """The outbox keys of a campaign's rows start with this (then the customer's id)."""
    return f"campaign:{run_id}:"


@dataclass(frozen=True)
class Recipient:
    """One customer a send will queue the campaign for."""

    customer: CareCustomer
    tier: str
    day: date
    due_at: datetime


@dataclass
class Preview:
    counts: dict[str, int]
    samples: dict[str, str]
    """The message in each language, for the segment's first customer reading it (a sample
    customer when none does)."""


@dataclass
class SendReport:
    queued: int = 0
    coupons: int = 0
    window_over: int = 0
    """Customers of the segment whose local window has already closed."""
    skipped: list[int] = field(default_factory=list)
    """Customers left for the next send (a coupon code was taken: very rare)."""


class Campaigns:
    """Previews, sends and cancels the campaigns of ``rules.campaigns``."""

    def __init__(
        self,
        rules: Config,
        texts: Texts | None = None,
        *,
        new_code: Callable[[], str] = coupon_code,
    ) -> None:
        self.rules = rules
        self.care: CarePlanner = planner_for(rules, texts)
        self._zones = LocalZones(rules.general.customers.default_timezone)
        self._shop = ZoneInfo(rules.tiers.orders.timezone)
        self._new_code = new_code

    def campaign(self, name: str) -> Campaign:
        """The campaign of ``campaigns/<name>.toml``; CampaignError naming the known ones."""
        found = self.rules.campaigns.get(name)
        if found is None:
            known = ", ".join(sorted(self.rules.campaigns)) or "-"
            raise CampaignError("cli_campaign_unknown", name=name, known=known)
        return found

    def segment(self, campaign: Campaign) -> SegmentFilter:
        """The campaign's segment in database terms (days in the shop's time zone)."""
        rules = campaign.segment

        def shop_midnight(day: date | None) -> datetime | None:
            if day is None:
                return None
            return datetime.combine(day, time(0, 0), tzinfo=self._shop).astimezone(UTC)

        return SegmentFilter(
            tiers=rules.tiers,
            stages=rules.stages,
            languages=rules.languages,
            last_order_after=shop_midnight(rules.last_order_after),
            last_order_before=shop_midnight(rules.last_order_before),
            categories=rules.bought_categories,
            points_at_least=rules.points_at_least,
        )

    def _local(self, zone: ZoneInfo, day: date, at: time) -> datetime:
        return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)

    def recipient(
        self, campaign: Campaign, customer: CareCustomer, now: datetime
    ) -> Recipient | None:
        """When the campaign falls due for ``customer`` (the window's ``from`` on their first
        day in the window not past ``until``); None once their window closed."""
        window = campaign.window
        zone = self._zones.get(customer.timezone)
        local = now.astimezone(zone)
        day = max(local.date(), window.start)
        if day == local.date() and local.time() >= window.until:
            day += timedelta(days=1)
        if day > window.end:
            return None
        due = max(now, self._local(zone, day, window.from_))
        return Recipient(customer, customer.tier, day, due)

    def expires_at(self, campaign: Campaign, customer: CareCustomer) -> datetime:
        """When the customer's window closes: ``until`` on its last day."""
        zone = self._zones.get(customer.timezone)
        return self._local(zone, campaign.window.end, campaign.window.until)

    def coupon_values(self, campaign: Campaign, recipient: Recipient) -> dict[str, Any]:
        """The ``coupons`` row of a recipient's coupon (without its code)."""
        offer = campaign.coupon
        assert offer is not None
        zone = self._zones.get(recipient.customer.timezone)
        last_day = recipient.day + timedelta(days=offer.valid_days)
        valid_until = self._local(zone, last_day + timedelta(days=1), time(0, 0))
        return {
            "customer_id": recipient.customer.id,
            "tier": recipient.tier,
            "kind": CAMPAIGN_KIND,
            "discount_percent": offer.discount_percent,
            "min_spend_cents": int((offer.min_spend * 100).to_integral_value()),
            "issued_day": recipient.day.isoformat(),
            "valid_until": valid_until - timedelta(seconds=1),
        }

    def render(
        self,
        campaign: Campaign,
        customer: CareCustomer | None,
        language: str,
        *,
        coupon: str | None = None,
        day: date | None = None,
        recommendations: str = "",
    ) -> str:
        """The message in ``language`` with its placeholders filled; an empty
        ``{recommendations}`` leaves no blank lines behind."""
        language = "zh" if language == "zh" else "en"
        name = customer.name if customer is not None else None
        params: dict[str, str] = {
            "name": name or self.care.rules.anonymous_name.get(language),
            RECOMMENDATIONS: recommendations,
        }
        offer = campaign.coupon
        if offer is not None:
            first = day or campaign.window.start
            params |= {
                "coupon": coupon or SAMPLE_COUPON,
                "discount": str(offer.discount_percent),
                "min_spend": f"{_amount(offer.min_spend)} {self.care.currency}",
                "valid_until": (first + timedelta(days=offer.valid_days)).isoformat(),
            }
        text = campaign.message.get(language).format(**params)
        if campaign.uses(RECOMMENDATIONS):
            text = _BLANK_LINES.sub("\n\n", text).strip()
        return text

    async def _recommendations(
        self, session: AsyncSession, campaign: Campaign, customers: list[CareCustomer]
    ) -> dict[int, str]:
        """Each customer's ``{recommendations}`` list in their language ("" when unused)."""
        if not campaign.uses(RECOMMENDATIONS) or not customers:
            return {}
        products = await recommended_products(session, {c.id for c in customers})
        return {
            c.id: self.care.recommendation_list(products[c.id], _language(c.language))
            for c in customers
        }

    async def preview(self, session: AsyncSession, campaign: Campaign) -> Preview:
        """The segment's count by tier and the message in both languages (read only)."""
        segment = self.segment(campaign)
        counts = await campaign_queries.counts_by_tier(session, segment)
        samples = {}
        for language in CARE_LANGUAGES:
            customer = await campaign_queries.first_of_language(session, segment, language)
            lists = await self._recommendations(session, campaign, [customer] if customer else [])
            samples[language] = self.render(
                campaign,
                customer,
                language,
                recommendations=lists.get(customer.id, "") if customer else "",
            )
        return Preview(counts, samples)

    async def send(self, session: AsyncSession, campaign: Campaign, now: datetime) -> SendReport:
        """Queue the campaign for the customers of its segment not queued yet (see the module
        docstring); CampaignError when it was cancelled or its window is over."""
        if now.astimezone(self._shop).date() > campaign.window.end:
            raise CampaignError(
                "cli_campaign_window_ended", name=campaign.name, day=str(campaign.window.end)
            )
        existing = await campaign_queries.find_run(session, campaign.name)
        if existing is not None and existing.cancelled_at is not None:
            raise CampaignError("cli_campaign_was_cancelled", name=campaign.name)
        run = existing or await campaign_queries.start_run(session, campaign.name, now)
        report = SendReport()
        due: list[Recipient] = []
        for customer in await campaign_queries.not_yet_queued(
            session, run.id, self.segment(campaign)
        ):
            found = self.recipient(campaign, customer, now)
            if found is None:
                report.window_over += 1
            else:
                due.append(found)
        ids = await campaign_queries.add_recipients(
            session,
            [
                {
                    "campaign_id": run.id,
                    "customer_id": item.customer.id,
                    "tier": item.tier,
                    "queued_at": now,
                }
                for item in due
            ],
        )
        due = [item for item in due if item.customer.id in ids]
        codes = await self._issue_coupons(session, campaign, due, ids, now, report)
        due = [item for item in due if item.customer.id not in report.skipped]
        await self._enqueue(session, campaign, run, due, ids, codes, now)
        report.queued = len(due)
        return report

    async def _issue_coupons(
        self,
        session: AsyncSession,
        campaign: Campaign,
        due: list[Recipient],
        ids: dict[int, int],
        now: datetime,
        report: SendReport,
    ) -> dict[int, str]:
        """A coupon per recipient when the campaign has one: {customer: code}. A recipient
        whose code was taken is forgotten (``report.skipped``: the next send retries them)."""
        if campaign.coupon is None or not due:
            return {}
        codes = {item.customer.id: self._new_code() for item in due}
        issued = await care_queries.issue_coupons(
            session,
            [
                {
                    **self.coupon_values(campaign, item),
                    "code": codes[item.customer.id],
                    "issued_at": now,
                }
                for item in due
            ],
        )
        report.skipped = [item.customer.id for item in due if item.customer.id not in issued]
        await campaign_queries.drop_recipients(session, [ids[c] for c in report.skipped])
        by_code = await campaign_queries.coupon_ids(session, [codes[c] for c in issued])
        await campaign_queries.set_coupons(session, {ids[c]: by_code[codes[c]] for c in issued})
        report.coupons = len(issued)
        return {c: codes[c] for c in issued}

    async def _enqueue(
        self,
        session: AsyncSession,
        campaign: Campaign,
        run: CampaignRun,
        due: list[Recipient],
        ids: dict[int, int],
        codes: dict[int, str],
        now: datetime,
    ) -> None:
        """The recipients' outbox rows, linked to their recipient rows."""
        lists = await self._recommendations(session, campaign, [item.customer for item in due])
        rows = []
        for item in due:
            customer = item.customer
            language = _language(customer.language)
            text = self.render(
                campaign,
                customer,
                language,
                coupon=codes.get(customer.id),
                day=item.day,
                recommendations=lists.get(customer.id, ""),
            )
            buttons = [[OutboxButton(b.label(language), url=b.url)] for b in campaign.buttons]
            stop = f"{STOP_DATA}:{ids[customer.id]}"
            buttons.append([OutboxButton(TextRef("care_button_stop"), data=stop)])
            payload = ReadyText(
                text,
                buttons=buttons,
                care=CareTag(CAMPAIGN_KIND, item.day.isoformat(), item.tier),
                expires_at=self.expires_at(campaign, customer),
            )
            rows.append(
                {
                    "dedupe_key": f"{dedupe_prefix(run.id)}{customer.id}",
                    "chat_id": customer.chat_id,
                    "kind": CAMPAIGN_KIND,
                    "payload": payload,
                    "due_at": item.due_at,
                    "now": now,
                    "customer_id": customer.id,
                    "priority": outbox.Priority.CARE,
                }
            )
        for start in range(0, len(rows), 5000):
            await outbox.enqueue_many(session, rows[start : start + 5000])
        await campaign_queries.link(session, run.id, dedupe_prefix(run.id))

    async def cancel(self, session: AsyncSession, campaign: Campaign, now: datetime) -> int:
        """Stop the campaign (see the module docstring); the rows cancelled. CampaignError
        when it was never sent."""
        run = await campaign_queries.find_run(session, campaign.name)
        if run is None:
            raise CampaignError("cli_campaign_never_sent", name=campaign.name)
        return await campaign_queries.cancel(session, run, now)


def _language(language: str) -> str:
    return "zh" if language == "zh" else "en"


def _amount(value: Decimal) -> str:
    return f"{value:.2f}".removesuffix(".00")
