"""Time: a `Clock` port for instants (UTC) and a business date per service, stored in its database.

Domain code never reads the wall clock: services take a `Clock`. The business date is advanced only by
the end-of-day job or the simulation clock (`advance_business_date`). An external timestamp is converted
with its own stated offset before a date is taken from it (`date_at_offset`).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from creditstack.core.errors import ValidationFailed


class InvalidTimestamp(ValidationFailed):
    """A timestamp has no UTC offset, or a time zone name is not a known IANA zone."""

    code = "time.invalid_timestamp"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The wall clock, for production processes."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that moves only when told to; for tests and the simulation."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise InvalidTimestamp("FixedClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise InvalidTimestamp("FixedClock needs an aware datetime")
        with self._lock:
            self._now = instant.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimestamp(f"unknown IANA time zone {name!r}", field="timezone") from exc


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp that states its offset; a naive one is refused, not guessed."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidTimestamp(f"not an ISO 8601 timestamp: {text!r}") from exc
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidTimestamp(f"timestamp {text!r} has no UTC offset")
    return value


def date_at_offset(value: datetime) -> date:
    """The calendar date in the timestamp's own stated offset (2014-12-31T23:30-05:00 is 31 December)."""
    if value.tzinfo is None:
        raise InvalidTimestamp("timestamp has no UTC offset")
    return value.date()


def local_date(instant: datetime, timezone: str) -> date:
    """The date of `instant` in an IANA zone (e.g. a service's zone, Asia/Shanghai)."""
    if instant.tzinfo is None:
        raise InvalidTimestamp("timestamp has no UTC offset")
    return instant.astimezone(zone(timezone)).date()
