"""Business days, rolling conventions and month arithmetic with month-end clamping.

- `due_date(year, month, day)`: the due day of a month; days 29–31 clamp to the month's last day
  (a loan due on the 31st is due on 30 April, 28 February, 29 February in a leap year).
- `add_months(day, months, anchor_day=None)`: the same day `months` later, clamped; `anchor_day` keeps a
  series on its day (31 Jan + 1 → 28 Feb, 31 Jan + 2 → 31 Mar, not 28 Mar).
- `BusinessCalendar(weekend_days, holidays)`: `is_business_day`, `roll(day, convention)` and
  `add_business_days`. Weekdays are numbered as `date.weekday()`: Monday 0 … Sunday 6.

Rolling conventions (ISDA 2006 §4.12): `FOLLOWING` (next business day), `MODIFIED_FOLLOWING` (next, unless
that leaves the month, then previous), `PRECEDING` (previous), `NONE` (no adjustment).
"""

from __future__ import annotations

import calendar as _calendar
import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from creditstack.lending.math_errors import InvalidCalendar, InvalidLoanTerms

_ONE_DAY = timedelta(days=1)
#: Saturday and Sunday, as `date.weekday()` numbers.
WEEKEND_SATURDAY_SUNDAY: frozenset[int] = frozenset({5, 6})
#: Business days searched before a roll gives up (a calendar with a longer run of holidays is an error).
ROLL_DAYS_MAX = 366
#: Largest |n| for `add_business_days`.
BUSINESS_DAYS_MAX = 36_600


def days_in_month(year: int, month: int) -> int:
    return _calendar.monthrange(year, month)[1]


def is_month_end(day: date) -> bool:
    return day.day == days_in_month(day.year, day.month)


def due_date(year: int, month: int, day: int) -> date:
    """The date of due day `day` (1–31) in `year`-`month`, clamped to the month's last day."""
    if not 1 <= day <= 31:
        raise InvalidLoanTerms(f"due day must be 1–31, got {day}", field="due_day")
    return date(year, month, min(day, days_in_month(year, month)))


def month_index(day: date) -> int:
    """Months since year 0: consecutive months have consecutive indices."""
    return day.year * 12 + day.month - 1


def add_months(day: date, months: int, anchor_day: int | None = None) -> date:
    """`day` moved by `months` (may be negative), on `anchor_day` (default `day.day`) clamped to month end."""
    index = month_index(day) + months
    year, month0 = divmod(index, 12)
    return due_date(year, month0 + 1, anchor_day if anchor_day is not None else day.day)


class RollConvention(enum.Enum):
    """How a date that is not a business day moves (ISDA 2006 §4.12)."""

    NONE = "none"
    FOLLOWING = "following"
    MODIFIED_FOLLOWING = "modified_following"
    PRECEDING = "preceding"


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Weekend days (0 = Monday … 6 = Sunday) and holidays; every other day is a business day."""

    weekend_days: frozenset[int] = WEEKEND_SATURDAY_SUNDAY
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        weekend = frozenset(self.weekend_days)
        if any(not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6 for d in weekend):
            raise InvalidCalendar("weekend days are weekday numbers 0 (Monday) to 6 (Sunday)", field="weekend_days")
        if len(weekend) == 7:
            raise InvalidCalendar("a calendar needs at least one business weekday", field="weekend_days")
        object.__setattr__(self, "weekend_days", weekend)
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    @classmethod
    def of(
        cls, holidays: Iterable[date] = (), weekend_days: Iterable[int] = WEEKEND_SATURDAY_SUNDAY
    ) -> BusinessCalendar:
        return cls(frozenset(weekend_days), frozenset(holidays))

    def is_business_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend_days and day not in self.holidays

    def _step(self, day: date, step: timedelta) -> date:
        for _ in range(ROLL_DAYS_MAX):
            if self.is_business_day(day):
                return day
            day += step
        raise InvalidCalendar(f"no business day within {ROLL_DAYS_MAX} days", field="holidays")

    def following(self, day: date) -> date:
        return self._step(day, _ONE_DAY)

    def preceding(self, day: date) -> date:
        return self._step(day, -_ONE_DAY)

    def roll(self, day: date, convention: RollConvention) -> date:
        """`day` adjusted to a business day by `convention` (unchanged if it is one, or for `NONE`)."""
        if convention is RollConvention.NONE or self.is_business_day(day):
            return day
        if convention is RollConvention.FOLLOWING:
            return self.following(day)
        if convention is RollConvention.PRECEDING:
            return self.preceding(day)
        rolled = self.following(day)
        return rolled if rolled.month == day.month else self.preceding(day)

    def add_business_days(self, day: date, count: int) -> date:
        """The `count`-th business day after `day` (before it if negative); `count == 0` rolls forward."""
        if abs(count) > BUSINESS_DAYS_MAX:
            raise InvalidCalendar(f"|count| must be at most {BUSINESS_DAYS_MAX}", field="count")
        if count == 0:
            return self.following(day)
        step = _ONE_DAY if count > 0 else -_ONE_DAY
        remaining = abs(count)
        while remaining:
            day = self._step(day + step, step)
            remaining -= 1
        return day


#: A calendar with Saturday/Sunday weekends and no holidays.
WEEKDAYS = BusinessCalendar()
