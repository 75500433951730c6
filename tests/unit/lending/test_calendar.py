"""Business calendar, rolling conventions, due-day clamping and month arithmetic."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditstack.lending.calendar import (
    BusinessCalendar,
    RollConvention,
    add_months,
    due_date,
    is_month_end,
)
from creditstack.lending.math_errors import InvalidCalendar, InvalidLoanTerms

# US federal holidays around the dates used below (5 U.S.C. 6103): Independence Day, Labor Day, Christmas.
US_2024 = BusinessCalendar.of(holidays=[date(2024, 7, 4), date(2024, 9, 2), date(2024, 12, 25)])


@pytest.mark.parametrize(
    ("year", "month", "day", "expected"),
    [
        (2023, 2, 29, date(2023, 2, 28)),
        (2023, 2, 30, date(2023, 2, 28)),
        (2023, 2, 31, date(2023, 2, 28)),
        (2024, 2, 29, date(2024, 2, 29)),  # leap year
        (2024, 2, 30, date(2024, 2, 29)),
        (2024, 2, 31, date(2024, 2, 29)),
        (2024, 4, 31, date(2024, 4, 30)),
        (2024, 5, 31, date(2024, 5, 31)),
        (2024, 6, 15, date(2024, 6, 15)),
    ],
)
def test_due_days_29_to_31_clamp_to_month_end(year: int, month: int, day: int, expected: date) -> None:
    assert due_date(year, month, day) == expected


@pytest.mark.parametrize("day", [0, 32, -1])
def test_a_due_day_outside_1_to_31_is_refused(day: int) -> None:
    with pytest.raises(InvalidLoanTerms) as caught:
        due_date(2024, 1, day)
    assert caught.value.code == "lending.invalid_loan_terms"


def test_add_months_clamps_and_an_anchor_keeps_the_series_on_its_day() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2023, 1, 31), 1) == date(2023, 2, 28)
    assert add_months(date(2024, 2, 29), 1) == date(2024, 3, 29)  # no anchor: the 29th
    assert add_months(date(2024, 2, 29), 1, anchor_day=31) == date(2024, 3, 31)
    assert add_months(date(2024, 1, 31), 2) == date(2024, 3, 31)
    assert add_months(date(2024, 3, 31), -1) == date(2024, 2, 29)
    assert add_months(date(2024, 11, 30), 3) == date(2025, 2, 28)
    assert add_months(date(2024, 12, 15), -12) == date(2023, 12, 15)


def test_weekends_and_holidays_are_not_business_days() -> None:
    assert US_2024.is_business_day(date(2024, 7, 3))
    assert not US_2024.is_business_day(date(2024, 7, 4))  # Thursday, a holiday
    assert not US_2024.is_business_day(date(2024, 7, 6))  # Saturday
    assert not US_2024.is_business_day(date(2024, 7, 7))  # Sunday


def test_rolling_conventions_at_a_month_end_weekend_before_a_holiday() -> None:
    saturday = date(2024, 8, 31)  # Sunday 1 Sep, Labor Day Monday 2 Sep follow
    assert US_2024.roll(saturday, RollConvention.NONE) == saturday
    assert US_2024.roll(saturday, RollConvention.FOLLOWING) == date(2024, 9, 3)
    assert US_2024.roll(saturday, RollConvention.MODIFIED_FOLLOWING) == date(2024, 8, 30)  # stays in August
    assert US_2024.roll(saturday, RollConvention.PRECEDING) == date(2024, 8, 30)
    # Modified following equals following when the next business day is in the same month.
    assert US_2024.roll(date(2024, 7, 4), RollConvention.MODIFIED_FOLLOWING) == date(2024, 7, 5)
    # A business day never moves.
    assert US_2024.roll(date(2024, 7, 5), RollConvention.PRECEDING) == date(2024, 7, 5)


def test_add_business_days_skips_weekends_and_holidays_both_ways() -> None:
    assert US_2024.add_business_days(date(2024, 7, 3), 1) == date(2024, 7, 5)
    assert US_2024.add_business_days(date(2024, 7, 3), 2) == date(2024, 7, 8)
    assert US_2024.add_business_days(date(2024, 7, 8), -2) == date(2024, 7, 3)
    assert US_2024.add_business_days(date(2024, 12, 24), 1) == date(2024, 12, 26)
    assert US_2024.add_business_days(date(2024, 7, 6), 0) == date(2024, 7, 8)


def test_other_weekends() -> None:
    friday_saturday = BusinessCalendar.of(weekend_days=[4, 5])  # e.g. a Friday–Saturday weekend
    assert friday_saturday.is_business_day(date(2024, 7, 7))  # Sunday
    assert friday_saturday.roll(date(2024, 7, 5), RollConvention.FOLLOWING) == date(2024, 7, 7)


def test_a_calendar_without_business_days_is_refused() -> None:
    with pytest.raises(InvalidCalendar) as caught:
        BusinessCalendar.of(weekend_days=range(7))
    assert caught.value.code == "lending.invalid_calendar"
    with pytest.raises(InvalidCalendar):
        BusinessCalendar.of(weekend_days=[7])


holidays = st.sets(st.dates(min_value=date(2024, 1, 1), max_value=date(2024, 12, 31)), max_size=40)
days_2024 = st.dates(min_value=date(2024, 1, 1), max_value=date(2024, 12, 31))


@given(holidays, days_2024, st.sampled_from(list(RollConvention)))
def test_a_rolled_date_is_a_business_day_and_modified_following_keeps_the_month(
    holiday_set: set[date], day: date, convention: RollConvention
) -> None:
    calendar = BusinessCalendar.of(holidays=holiday_set)
    rolled = calendar.roll(day, convention)
    if convention is RollConvention.NONE:
        assert rolled == day
        return
    assert calendar.is_business_day(rolled)
    if convention is RollConvention.FOLLOWING:
        assert rolled >= day
    if convention is RollConvention.PRECEDING:
        assert rolled <= day
    if convention is RollConvention.MODIFIED_FOLLOWING:
        month = [d for d in (day.replace(day=1) + timedelta(days=k) for k in range(31)) if d.month == day.month]
        assert rolled.month == day.month or not any(calendar.is_business_day(d) for d in month)
    # Nothing between `day` and the rolled date is a business day.
    low, high = min(day, rolled), max(day, rolled)
    between = [low + timedelta(days=k) for k in range(1, (high - low).days)]
    assert not any(calendar.is_business_day(d) for d in between)


@given(st.integers(min_value=1990, max_value=2060), st.integers(min_value=1, max_value=12))
def test_due_day_31_is_always_the_month_end(year: int, month: int) -> None:
    assert is_month_end(due_date(year, month, 31))
