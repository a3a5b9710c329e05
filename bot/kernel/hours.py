"""Business hours: the ``[hours]`` table of ``tickets.toml`` and business-time arithmetic.

SLA deadlines count only the time the desk is open (``BusinessHours.add``), reports time staff
in the same way (``BusinessHours.between``), and a customer who writes while the desk is closed
is told when it opens (``BusinessHours.next_open``). Open time is real elapsed time inside the
open periods of each local day, so a day on which the clocks change counts its true length.

``[hours]`` is the desk's table; ``[groups.<name>.hours]`` (``GroupHoursConfig``, the same
schema) gives one staff group its own. A staff member's duty hours (``[[staff]]`` ``hours``,
``DutyHoursConfig``) are a week of the same spans, read in their group's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOSED = "closed"
SEARCH_DAYS = 2 * 366
"""How far ahead the arithmetic looks for open time before it gives up (a calendar with no
open day in two years is a mistake the start-up check lets through only via ``dates``)."""

_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_SPANS_EXPECTED = (
    'expected "HH:MM-HH:MM", several separated by commas (e.g. "09:00-12:00, 13:00-18:00"), '
    'or "closed"'
)

Span = tuple[time, time | None]
"""An open period of a day in local time; ``None`` as the end is midnight at the day's end."""


def parse_spans(text: str) -> tuple[Span, ...]:
    """``"09:00-12:00, 13:00-18:00"`` as spans in order, ``"closed"`` (or "") as none; raises
    ValueError saying what was expected."""
    if text.strip().lower() in (CLOSED, ""):
        return ()
    spans: list[Span] = []
    for part in text.split(","):
        match = _SPAN.match(part)
        if match is None:
            raise ValueError(f"{part.strip()!r}: {_SPANS_EXPECTED}")
        start_h, start_m, end_h, end_m = (int(value) for value in match.groups())
        if start_h > 23 or start_m > 59 or end_m > 59 or (end_h, end_m) > (24, 0):
            raise ValueError(f"{part.strip()!r}: expected times from 00:00 to 24:00")
        start = time(start_h, start_m)
        end = None if end_h == 24 else time(end_h, end_m)
        if end is not None and end <= start:
            raise ValueError(
                f"{part.strip()!r}: expected the end after the start "
                "(split hours past midnight over two days)"
            )
        if spans and (spans[-1][1] is None or start < spans[-1][1]):
            raise ValueError(f"{part.strip()!r}: expected periods in order, not overlapping")
        spans.append((start, end))
    return tuple(spans)


def _checked_spans(value: str) -> str:
    parse_spans(value)
    return value


Spans = Annotated[str, AfterValidator(_checked_spans)]
"""Opening hours as the file writes them, checked by ``parse_spans``."""


class HoursConfig(BaseModel):
    """``[hours]``: when the desk is open. Without the table (or with ``enabled = false``) it is
    always open, as before business hours existed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    timezone: str = "Asia/Shanghai"
    mon: Spans = "09:00-18:00"
    tue: Spans = "09:00-18:00"
    wed: Spans = "09:00-18:00"
    thu: Spans = "09:00-18:00"
    fri: Spans = "09:00-18:00"
    sat: Spans = CLOSED
    sun: Spans = CLOSED
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    """Closed on this country's public holidays (the ``holidays`` package); None: no holidays."""
    subdivision: str | None = None
    make_up_days: Spans = CLOSED
    """Hours on the country's weekend working days (China's 调休); "closed": the week's."""
    dates: dict[date, Spans] = {}
    """Dates the calendar does not know: "closed", or their hours (a late opening, a
    special Sunday)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("expected an IANA time zone such as Asia/Shanghai") from None
        return value

    @model_validator(mode="after")
    def _calendar(self) -> HoursConfig:
        if self.subdivision and not self.country:
            raise ValueError("subdivision needs a country")
        if self.country:
            try:
                holidays.country_holidays(self.country, subdiv=self.subdivision or None)
            except NotImplementedError as exc:
                raise ValueError(f"the holidays package does not know this: {exc}") from None
        if self.enabled and not any(parse_spans(getattr(self, day)) for day in WEEKDAYS):
            raise ValueError("expected at least one weekday with opening hours")
        return self

    def calendar(self) -> BusinessHours:
        """The arithmetic for these hours."""
        if not self.enabled:
            return BusinessHours()
        return BusinessHours(
            zone=ZoneInfo(self.timezone),
            week=tuple(parse_spans(getattr(self, day)) for day in WEEKDAYS),
            dates={day: parse_spans(text) for day, text in self.dates.items()},
            public_holidays=(
                holidays.country_holidays(self.country, subdiv=self.subdivision or None)
                if self.country
                else None
            ),
            make_up_days=parse_spans(self.make_up_days),
        )


@dataclass(frozen=True, eq=False)
class BusinessHours:
    """Open periods and business-time arithmetic on aware datetimes (results in UTC). Without
    a ``zone`` the desk is always open and business time is plain elapsed time."""

    zone: ZoneInfo | None = None
    week: tuple[tuple[Span, ...], ...] = ((),) * 7
    dates: dict[date, tuple[Span, ...]] = field(default_factory=dict)
    public_holidays: holidays.HolidayBase | None = None
    make_up_days: tuple[Span, ...] = ()
    _days: dict[date, tuple[tuple[datetime, datetime], ...]] = field(
        default_factory=dict, repr=False
    )

    @property
    def always_open(self) -> bool:
        return self.zone is None

    def spans_on(self, day: date) -> tuple[Span, ...]:
        """The local opening hours of ``day``: its own date entry, else closed on a public
        holiday, the make-up hours on a weekend working day, else its weekday's."""
        if day in self.dates:
            return self.dates[day]
        if self.public_holidays is not None:
            if day in self.public_holidays:
                return ()
            if self.make_up_days and day in self.public_holidays.weekend_workdays:
                return self.make_up_days
        return self.week[day.weekday()]

    def periods_on(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The open periods of local ``day`` in UTC (kept: reports ask for the same days)."""
        found = self._days.get(day)
        if found is None:
            assert self.zone is not None
            next_day = day + timedelta(days=1)
            found = tuple(
                (
                    datetime.combine(day, start, tzinfo=self.zone).astimezone(UTC),
                    datetime.combine(
                        day if end is not None else next_day, end or time(0), tzinfo=self.zone
                    ).astimezone(UTC),
                )
                for start, end in self.spans_on(day)
            )
            self._days[day] = found
        return found

    def _periods_from(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open periods ending after ``moment``, in order (the first may have begun)."""
        assert self.zone is not None
        day = moment.astimezone(self.zone).date()
        for offset in range(SEARCH_DAYS):
            for start, end in self.periods_on(day + timedelta(days=offset)):
                if end > moment:
                    yield start, end
        raise ValueError(f"no open hours within {SEARCH_DAYS} days of {moment.isoformat()}")

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment ``duration`` of open time after ``start``: a deadline of one business
        hour at Friday 23:30 is Monday 10:00 for a desk opening at 9:00. A deadline reached at
        closing time stays there (it does not move to the next opening)."""
        if self.always_open:
            return (start + duration).astimezone(UTC)
        remaining = duration
        for begin, end in self._periods_from(start):
            begin = max(begin, start)
            if begin + remaining <= end:
                return begin + remaining
            remaining -= end - begin
        raise AssertionError("unreachable")  # pragma: no cover - _periods_from raises first

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Open time from ``start`` to ``end`` (zero when ``end`` is not after ``start``)."""
        if end <= start:
            return timedelta(0)
        if self.always_open:
            return end - start
        assert self.zone is not None
        day, last = start.astimezone(self.zone).date(), end.astimezone(self.zone).date()
        total = timedelta(0)
        while day <= last:
            for begin, finish in self.periods_on(day):
                if finish > start and begin < end:
                    total += min(finish, end) - max(begin, start)
            day += timedelta(days=1)
        return total

    def next_open(self, moment: datetime) -> datetime:
        """``moment`` itself when the desk is open then, else when it next opens (UTC)."""
        if self.always_open:
            return moment.astimezone(UTC)
        begin, _ = next(self._periods_from(moment))
        return max(begin, moment).astimezone(UTC)

    def is_open(self, moment: datetime) -> bool:
        return self.next_open(moment) == moment

    def open_until(self, moment: datetime, horizon: timedelta = timedelta(days=8)) -> datetime:
        """When the open time running at ``moment`` ends (periods that meet, such as 22:00-24:00
        and the next day's 00:00-06:00, are one); ``moment`` itself when closed then. Open
        past ``horizon``: the moment ``horizon`` ahead (a week of hours open all along)."""
        if self.always_open:
            return (moment + horizon).astimezone(UTC)
        end = moment
        for begin, finish in self._periods_from(moment):
            if begin > end or end >= moment + horizon:
                break
            end = finish
        return min(end, moment + horizon).astimezone(UTC)


class GroupHoursConfig(HoursConfig):
    """``[groups.<name>.hours]``: a staff group's own business hours, in place of the desk's
    ``[hours]`` for its tickets. The same keys; writing the table turns them on (``enabled =
    false``: the group is always open, whatever ``[hours]`` says)."""

    enabled: bool = True


_DUTY_CLAUSE = re.compile(r"^\s*([a-z,\-]+)\s+(\S.*)$")
_DUTY_EXPECTED = (
    'expected "DAYS HH:MM-HH:MM" such as "mon-fri 09:00-18:00", clauses separated by ";" '
    '(e.g. "mon-fri 09:00-18:00; sat 10:00-14:00"), or a table of weekdays'
)


def _duty_days(text: str) -> list[str]:
    """``"mon-fri"``, ``"sat,sun"``, ``"fri-mon"`` (a range may wrap) as weekday keys."""
    days: list[str] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"{part!r}: expected weekdays {', '.join(WEEKDAYS)} or a range")
        start = WEEKDAYS.index(first)
        count = (WEEKDAYS.index(last) - start) % 7 + 1 if last else 1
        days += [WEEKDAYS[(start + offset) % 7] for offset in range(count)]
    return days


def parse_duty_hours(text: str) -> dict[str, str]:
    """``"mon-fri 09:00-18:00; sat 10:00-14:00"`` as a weekday table (days not named: off; a
    day named in two clauses has both, e.g. a night shift ``"mon-fri 22:00-24:00; tue-sat
    00:00-06:00"``); raises ValueError saying what was expected."""
    parts: dict[str, list[str]] = {}
    for clause in text.lower().split(";"):
        if not clause.strip():
            continue
        match = _DUTY_CLAUSE.match(clause)
        if match is None:
            raise ValueError(f"{clause.strip()!r}: {_DUTY_EXPECTED}")
        days, spans = _duty_days(match.group(1)), match.group(2).strip()
        for span in spans.split(","):
            if parse_spans(span):  # "closed" adds nothing
                for day in days:
                    parts.setdefault(day, []).append(span.strip())
    if not parts:
        raise ValueError(_DUTY_EXPECTED)
    table = {}
    for day, found in parts.items():
        table[day] = ", ".join(sorted(found, key=lambda span: parse_spans(span)[0][0]))
        try:
            parse_spans(table[day])
        except ValueError as exc:
            raise ValueError(f"{day}: {exc}") from None
    return table


class DutyHoursConfig(BaseModel):
    """A staff member's duty hours (``[[staff]]`` ``hours``): their spans per weekday, in the
    time zone of the group they are on duty in; a day not written is off. Written as
    ``"mon-fri 09:00-18:00"`` or as a table (``mon = "09:00-18:00"``…)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mon: Spans = CLOSED
    tue: Spans = CLOSED
    wed: Spans = CLOSED
    thu: Spans = CLOSED
    fri: Spans = CLOSED
    sat: Spans = CLOSED
    sun: Spans = CLOSED

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_duty_hours(value)
        if not isinstance(value, dict | DutyHoursConfig):
            raise ValueError(_DUTY_EXPECTED)
        return value

    @model_validator(mode="after")
    def _some_day(self) -> DutyHoursConfig:
        if not any(parse_spans(getattr(self, day)) for day in WEEKDAYS):
            raise ValueError("expected at least one weekday with hours")
        return self

    def calendar(self, zone: str) -> BusinessHours:
        """The member's hours in ``zone`` (their group's), as business-time arithmetic."""
        return BusinessHours(
            zone=ZoneInfo(zone), week=tuple(parse_spans(getattr(self, day)) for day in WEEKDAYS)
        )
