"""The clock is injected everywhere, so tests can move time instead of waiting for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (tests, simulations, ``carebot plan --date``)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self._now = moment.astimezone(UTC)


class LocalZones:
    """Customers' time zones by name, each built once; a missing or unknown name means the
    configured default (a zone stored before its name was validated must not stop a job)."""

    def __init__(self, default: str) -> None:
        self._default = ZoneInfo(default)
        self._zones: dict[str, ZoneInfo] = {}

    def get(self, name: str | None) -> ZoneInfo:
        if not name:
            return self._default
        zone = self._zones.get(name)
        if zone is None:
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                zone = self._default
            self._zones[name] = zone
        return zone


class MovableClock:
    """Another clock's time plus an offset that only grows: time flows, and can be moved
    forward (``carebot demo``'s "next day" runs tomorrow's planners without waiting a day)."""

    def __init__(self, base: Clock) -> None:
        self._base = base
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return self._base.now() + self._offset

    def move_to(self, moment: datetime) -> datetime:
        """Jump to ``moment`` (aware, not in the past) and go on from there."""
        if moment.tzinfo is None:
            raise ValueError("MovableClock needs an aware datetime")
        if moment < self.now():
            raise ValueError("MovableClock only moves forward")
        self._offset = moment.astimezone(UTC) - self._base.now()
        return self.now()
