"""When a queued message may go out: consent, reachability, quiet hours and the daily cap.

Judged by the dispatcher at send time (not when a planner queues the row), with the customer's
settings of that moment and the injected clock: a time zone changed in /profile, a /stop, or a
backlog that pushed a greeting into the evening are all taken into account.

Three kinds of rows:

- **transactional** rows (staff replies, answers to the customer's own ticket) go out whenever
  they are due, even without consent to care messages and even to a customer marked
  unreachable (they just wrote to us, so they unblocked the bot; a 403 marks them again);
- rows **without a customer** (messages to the staff group) go out whenever they are due;
- everything else addressed to a customer is **proactive care**: it needs consent and a
  reachable customer (otherwise it fails for good, without an API call), waits out the quiet
  hours in the customer's local time (default 21:00-09:00) and counts against a cap per customer
  and *customer-local* day (default one). A message over the cap waits for the first allowed
  minute of the customer's next day.

One order across proactive messages for a customer's day (``ahead_of``): **greetings first**
(birthday, then holiday; the care planner queues at most one of them a day, from the customer's
local midnight, due at ``send.start``), then everything else in the order it falls due (survey
invitations, retention offers, follow-ups, reminders). A message that would take the day's last
slot while a greeting of that day is still queued yields it: it waits for the customer's next
day like a message over the cap, and goes on the next day with a free slot (a survey invitation
as long as its response is open: the survey job cancels it when the response expires). So a
greeting is never crowded out by a survey that fell due earlier the same morning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.kernel.clock import LocalZones
from bot.kernel.config import OutboxConfig
from scheduler.care import GREETING_KINDS, GREETING_OCCASIONS, dedupe_key
from storage.outbox import OutboxMessage, Recipient

SKIP_ERASED = "customer erased"
SKIP_NO_CONSENT = "no consent to care messages"
SKIP_UNREACHABLE = "customer unreachable"


@dataclass(frozen=True)
class Send:
    care_day: str | None = None
    """The customer-local day (ISO date) a proactive message counts against; None if exempt."""


@dataclass(frozen=True)
class Defer:
    until: datetime
    reason: str


@dataclass(frozen=True)
class Skip:
    reason: str


Verdict = Send | Defer | Skip


class SendPolicy:
    """Applies ``outbox.toml``'s quiet hours and cap to one message at a time."""

    def __init__(self, rules: OutboxConfig, *, default_timezone: str) -> None:
        self._quiet = rules.quiet_hours
        self.max_per_day = rules.care.max_per_day
        self._zones = LocalZones(default_timezone)

    def zone(self, name: str | None) -> ZoneInfo:
        """The customer's zone; the configured default when it is missing or unknown."""
        return self._zones.get(name)

    def judge(self, message: OutboxMessage, recipient: Recipient | None, now: datetime) -> Verdict:
        """Send now, wait until a moment, or give up for good; see the module docstring."""
        if message.customer_id is None:
            return Send()
        if recipient is None or recipient.erased:
            return Skip(SKIP_ERASED)
        if message.transactional:
            return Send()
        if not recipient.consent:
            return Skip(SKIP_NO_CONSENT)
        if not recipient.reachable:
            return Skip(SKIP_UNREACHABLE)
        zone = self.zone(recipient.timezone)
        local = now.astimezone(zone)
        quiet_end = self.quiet_end(local)
        if quiet_end is not None:
            return Defer(quiet_end, "quiet hours")
        return Send(care_day=local.date().isoformat())

    @staticmethod
    def ahead_of(message: OutboxMessage, day: str) -> tuple[str, ...]:
        """The outbox keys of the messages that take the customer's last slot of ``day`` before
        ``message`` (see the module docstring): that day's greetings, unless it is one."""
        if message.customer_id is None or message.kind in GREETING_KINDS:
            return ()
        local_day = date.fromisoformat(day)
        return tuple(
            dedupe_key(occasion, message.customer_id, local_day) for occasion in GREETING_OCCASIONS
        )

    def quiet_end(self, local: datetime) -> datetime | None:
        """When the quiet hours around ``local`` (an aware local time) end, in UTC; None when
        ``local`` is outside them."""
        if not self._quiet.enabled:
            return None
        start, end = self._quiet.start, self._quiet.end
        moment = local.time().replace(tzinfo=None)
        today = local.date()
        if start < end:
            if not start <= moment < end:
                return None
            end_day = today
        elif moment >= start:
            end_day = today + timedelta(days=1)
        elif moment < end:
            end_day = today
        else:
            return None
        return _local_moment(end_day, end, local).astimezone(UTC)

    def next_day_opening(self, now: datetime, zone: ZoneInfo) -> datetime:
        """The first allowed moment of the customer's next local day (for a message over the
        day's cap), in UTC."""
        tomorrow = now.astimezone(zone).date() + timedelta(days=1)
        midnight = _local_moment(tomorrow, time(0, 0), now.astimezone(zone))
        quiet_end = self.quiet_end(midnight)
        return quiet_end if quiet_end is not None else midnight.astimezone(UTC)


def _local_moment(day: date, at: time, like: datetime) -> datetime:
    """``day`` at ``at`` in ``like``'s zone (a time skipped by a DST change maps forward)."""
    assert like.tzinfo is not None
    return datetime.combine(day, at, tzinfo=like.tzinfo)
