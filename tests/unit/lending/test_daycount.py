"""Day-count conventions: exact day counts and year fractions, leap years, February, additivity."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditstack.lending.daycount import DayCount
from creditstack.lending.math_errors import InvalidDateRange, InvalidLoanTerms

dates = st.dates(min_value=date(1999, 1, 1), max_value=date(2041, 12, 31))


def test_act_365f_counts_actual_days_over_a_fixed_365() -> None:
    # 2024 is a leap year: 31 Jan → 29 Feb is 29 actual days, and the whole year is 366/365.
    assert DayCount.ACT_365F.days(date(2024, 1, 31), date(2024, 2, 29)) == 29
    assert DayCount.ACT_365F.year_fraction(date(2024, 1, 31), date(2024, 2, 29)) == Fraction(29, 365)
    assert DayCount.ACT_365F.year_fraction(date(2024, 1, 1), date(2025, 1, 1)) == Fraction(366, 365)
    assert DayCount.ACT_365F.year_fraction(date(2023, 1, 1), date(2024, 1, 1)) == 1


def test_act_360_counts_actual_days_over_360() -> None:
    assert DayCount.ACT_360.year_fraction(date(2024, 1, 1), date(2025, 1, 1)) == Fraction(366, 360)
    assert DayCount.ACT_360.year_fraction(date(2023, 2, 1), date(2023, 3, 1)) == Fraction(28, 360)


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (date(2023, 1, 15), date(2023, 2, 15), 30),  # a plain month
        (date(2023, 1, 31), date(2023, 2, 28), 30),  # month end to the end of a short February
        (date(2023, 2, 28), date(2023, 3, 31), 30),  # end of February to month end
        (date(2024, 1, 31), date(2024, 2, 29), 30),  # leap February
        (date(2024, 2, 29), date(2024, 3, 31), 30),
        (date(2024, 2, 28), date(2024, 2, 29), 2),  # the last day of February counts as the 30th
        (date(2023, 2, 28), date(2023, 3, 1), 1),
        (date(2023, 3, 30), date(2023, 3, 31), 0),  # the 31st is the 30th
        (date(2023, 1, 1), date(2024, 1, 1), 360),
        (date(2024, 1, 1), date(2025, 1, 1), 360),
    ],
)
def test_thirty_360_gives_30_days_to_every_whole_month(start: date, end: date, days: int) -> None:
    assert DayCount.THIRTY_360.days(start, end) == days
    assert DayCount.THIRTY_360.year_fraction(start, end) == Fraction(days, 360)


@given(st.sampled_from(list(DayCount)), st.lists(dates, min_size=3, max_size=3).map(sorted))
def test_every_convention_is_additive(convention: DayCount, points: list[date]) -> None:
    a, b, c = points
    assert convention.days(a, c) == convention.days(a, b) + convention.days(b, c)
    assert convention.year_fraction(a, c) == convention.year_fraction(a, b) + convention.year_fraction(b, c)


@given(st.sampled_from(list(DayCount)), dates, st.integers(min_value=0, max_value=120))
def test_day_fractions_sum_to_the_period_fraction(convention: DayCount, start: date, length: int) -> None:
    end = start + timedelta(days=length)
    total = sum((convention.day_fraction(start + timedelta(days=k)) for k in range(length)), Fraction(0))
    assert total == convention.year_fraction(start, end)


def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(InvalidDateRange) as caught:
        DayCount.ACT_365F.days(date(2024, 3, 1), date(2024, 2, 1))
    assert caught.value.code == "lending.invalid_date_range"


def test_conventions_parse_from_their_names() -> None:
    assert DayCount.parse("ACT/365F") is DayCount.ACT_365F
    assert DayCount.parse("30/360") is DayCount.THIRTY_360
    with pytest.raises(InvalidLoanTerms):
        DayCount.parse("ACT/ACT")
