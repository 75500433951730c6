"""Day-count conventions: how many days, and what fraction of a year, lie between two dates.

Three conventions, each exact (`Fraction`, never a float):

- `ACT_365F` — actual days / 365, whatever the year (ISDA 2006 §4.16(d), "Actual/365 (Fixed)").
- `ACT_360` — actual days / 360 (ISDA 2006 §4.16(e), "Actual/360").
- `THIRTY_360` — 30-day months / 360, with the day adjustments of ISDA 2006 §4.16(h) "30E/360 (ISDA)"
  applied to every date alike: day 31, and the last day of February, count as day 30. The adjustment
  depends on the date alone, never on the other end of the period, so the count is *additive*:
  `days(a, c) == days(a, b) + days(b, c)` for any a <= b <= c. That is what lets the servicing engine
  accrue one day at a time and still arrive at exactly the scheduled interest of a period. The US
  "bond basis" (ISDA §4.16(f): an end date on the 31st becomes the 30th only when the start is the 30th
  or 31st) is not additive and is therefore not offered. Every whole month between two due dates on
  the same (clamped) day counts 30 days: 31 Jan → 28 Feb → 31 Mar is 30 + 30, and so is 15 Jan → 15 Feb —
  for every due day except the 28th and 29th, whose February periods come out uneven (28 Jan → 28 Feb
  → 28 Mar 2023 is 32 + 28, 29 Jan → 28 Feb → 29 Mar is 31 + 29; the two still sum to 60). No rule that
  looks at the date alone can count 28 Feb as the 28th for one loan and as the 30th for another.

The period convention is half-open: a period from `start` to `end` covers the days start, start+1, …,
end−1. A day's share of interest is the year fraction of (day, day+1).

>>> DayCount.ACT_365F.year_fraction(date(2024, 1, 31), date(2024, 2, 29))
Fraction(29, 365)
>>> DayCount.THIRTY_360.days(date(2023, 1, 31), date(2023, 2, 28))
30
"""

from __future__ import annotations

import calendar as _calendar
import enum
from datetime import date, timedelta
from fractions import Fraction

from creditstack.lending.math_errors import InvalidDateRange, InvalidLoanTerms

_ONE_DAY = timedelta(days=1)


def _is_month_end(day: date) -> bool:
    return day.day == _calendar.monthrange(day.year, day.month)[1]


def _thirty_360_serial(day: date) -> int:
    """A day number on the 30/360 clock: 360 per year, 30 per month; day 31 and the end of February are 30."""
    dd = day.day
    if dd == 31 or (day.month == 2 and _is_month_end(day)):
        dd = 30
    return day.year * 360 + (day.month - 1) * 30 + (dd - 1)


class DayCount(enum.Enum):
    """A day-count convention: `days(start, end)` and `year_fraction(start, end)` (exact)."""

    ACT_365F = "ACT/365F"
    ACT_360 = "ACT/360"
    THIRTY_360 = "30/360"

    @property
    def days_per_year(self) -> int:
        return 365 if self is DayCount.ACT_365F else 360

    def days(self, start: date, end: date) -> int:
        """Days from `start` to `end` under this convention (half-open: `end` itself is not counted)."""
        if end < start:
            raise InvalidDateRange(f"period ends {end} before it starts {start}", field="end")
        if self is DayCount.THIRTY_360:
            return _thirty_360_serial(end) - _thirty_360_serial(start)
        return (end - start).days

    def year_fraction(self, start: date, end: date) -> Fraction:
        """The exact fraction of a year from `start` to `end`."""
        return Fraction(self.days(start, end), self.days_per_year)

    def day_fraction(self, day: date) -> Fraction:
        """The year fraction of the single day `day` (from `day` to the next day); sums to `year_fraction`."""
        return self.year_fraction(day, day + _ONE_DAY)

    @classmethod
    def parse(cls, value: str | DayCount) -> DayCount:
        """The convention for "ACT/365F", "ACT/360" or "30/360" (or the member itself)."""
        if isinstance(value, DayCount):
            return value
        try:
            return cls(value)
        except ValueError as exc:
            raise InvalidLoanTerms(f"unknown day-count convention {value!r}", field="day_count") from exc
