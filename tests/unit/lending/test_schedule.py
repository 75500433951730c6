"""Instalment schedules: published worked examples to the cent, calendar cases, and exact properties.

Sources:
- numpy-financial 1.0.0 documentation, `numpy_financial.pmt` example ("What is the monthly payment needed
  to pay off a $200,000 loan in 15 years at an annual interest rate of 7.5%?" → -1854.0247200054619,
  "a monthly payment of $1,854.02") — https://numpy.org/numpy-financial/latest/pmt.html
- numpy-financial 1.0.0 documentation, `numpy_financial.ipmt` example (amortisation of a 1-year $2,500
  loan at 8.24 % compounded monthly: the printed principal/interest/balance table and total interest
  -112.98) — https://numpy.org/numpy-financial/latest/ipmt.html
- Sapling, "How to Calculate Reducing Balance Interest Rate", amortisation table: $1,000 at 2 % a month
  for 6 months, instalment $178.53, month 1 interest $20 and principal $158.53, balance $841.47, month 2
  interest $16.83 and principal $161.70, total interest $71.15, total paid $1,071.15 —
  https://www.sapling.com/8703730/calculate-reducing-balance-interest-rate

A periodic (per-month) model is the 30/360 day count on monthly due dates: every period is exactly 1/12
of a year, so these examples are reproduced by the same schedule builder used on actual dates.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from creditstack.core.money import CNY, JPY, USD, Money
from creditstack.lending.calendar import BusinessCalendar, RollConvention
from creditstack.lending.daycount import DayCount
from creditstack.lending.math_errors import (
    DateOutsideSchedule,
    InvalidLoanTerms,
    PrepaymentBelowAccruedInterest,
    PrepaymentExceedsPayoff,
)
from creditstack.lending.schedule import (
    AmortisationMethod,
    PrepaymentMode,
    Schedule,
    build_schedule,
    daily_accrual,
    level_instalment_exact,
    payoff_quote,
    reschedule_after_prepayment,
)


def _cents(value: Fraction) -> str:
    """Format like numpy's '{:8.2f}' (round half even on the exact binary value is not needed: no ties here)."""
    return f"{Decimal(value.numerator) / Decimal(value.denominator):.2f}"


# --- published examples ------------------------------------------------------------------------------


def test_numpy_financial_pmt_example_200000_at_7_5_percent_over_15_years() -> None:
    # numpy-financial docs, pmt: npf.pmt(0.075/12, 12*15, 200000) == -1854.0247200054619 → $1,854.02.
    schedule = build_schedule(
        Money(200_000_00, USD), Decimal("0.075"), 180, date(2024, 1, 15), day_count=DayCount.THIRTY_360
    )
    assert schedule.level_instalment == Money(1_854_02, USD)
    rate = Fraction(Decimal("0.075")) / 12
    exact = level_instalment_exact(200_000_00, [1 + rate] * 180)
    assert abs(exact - Fraction("185402.47200054619")) < Fraction(1, 10**6)  # the documented -1854.0247200054619
    assert all(row.instalment == Money(1_854_02, USD) for row in schedule.rows[:-1])
    assert schedule.rows[-1].balance_after.is_zero()
    assert sum(row.principal.amount_minor for row in schedule.rows) == 200_000_00


# numpy-financial docs, ipmt: (period, ppmt, ipmt, balance) as printed with '{:8.2f}'.
NUMPY_IPMT_TABLE = [
    (1, "-200.58", "-17.17", "2299.42"),
    (2, "-201.96", "-15.79", "2097.46"),
    (3, "-203.35", "-14.40", "1894.11"),
    (4, "-204.74", "-13.01", "1689.37"),
    (5, "-206.15", "-11.60", "1483.22"),
    (6, "-207.56", "-10.18", "1275.66"),
    (7, "-208.99", "-8.76", "1066.67"),
    (8, "-210.42", "-7.32", "856.25"),
    (9, "-211.87", "-5.88", "644.38"),
    (10, "-213.32", "-4.42", "431.05"),
    (11, "-214.79", "-2.96", "216.26"),
    (12, "-216.26", "-1.49", "-0.00"),
]


def test_numpy_financial_ipmt_table_is_reproduced_by_the_exact_amortisation() -> None:
    # The documented table amortises with the unrounded payment; so does this exact recursion, built on the
    # schedule's own period fractions (30/360 monthly dates: 1/12 each).
    schedule = build_schedule(
        Money(2_500_00, USD), Decimal("0.0824"), 12, date(2024, 1, 15), day_count=DayCount.THIRTY_360
    )
    rate = Fraction(Decimal("0.0824"))
    fractions = [DayCount.THIRTY_360.year_fraction(r.accrual_start, r.accrual_end) for r in schedule.rows]
    assert fractions == [Fraction(1, 12)] * 12
    growth = [1 + rate * f for f in fractions]
    payment = level_instalment_exact(2_500_00, growth) / 100
    balance = Fraction(2_500)
    for (number, ppmt, ipmt, printed_balance), factor in zip(NUMPY_IPMT_TABLE, growth, strict=True):
        interest = balance * (factor - 1)
        principal = payment - interest
        balance -= principal
        assert (number, _cents(-principal), _cents(-interest)) == (number, ppmt, ipmt)
        assert _cents(balance) in (printed_balance, printed_balance.lstrip("-"))


def test_numpy_financial_ipmt_example_as_a_cent_schedule() -> None:
    # In whole cents the instalment is round(217.7457...) = 217.75 and the last instalment absorbs the
    # rounding; the total interest is the documented np.round(np.sum(ipmt), 2) == -112.98, the first row is
    # identical, every principal and interest is within one cent of the documented table, and the balances
    # drift from it by no more than the 0.43 cent a month the rounded instalment pays above 217.7457….
    schedule = build_schedule(
        Money(2_500_00, USD), Decimal("0.0824"), 12, date(2024, 1, 15), day_count=DayCount.THIRTY_360
    )
    assert schedule.level_instalment == Money(217_75, USD)
    assert schedule.total_interest == Money(112_98, USD)
    first = schedule.rows[0]
    assert (first.principal, first.interest, first.balance_after) == (
        Money(200_58, USD),
        Money(17_17, USD),
        Money(2_299_42, USD),
    )
    excess = 217_75 - level_instalment_exact(2_500_00, [1 + Fraction(Decimal("0.0824")) / 12] * 12)
    for row, (number, ppmt, ipmt, printed_balance) in zip(schedule.rows, NUMPY_IPMT_TABLE, strict=True):
        assert abs(row.principal.amount_minor + int(Decimal(ppmt) * 100)) <= 1
        assert abs(row.interest.amount_minor + int(Decimal(ipmt) * 100)) <= 1
        drift = abs(row.balance_after.amount_minor - abs(int(Decimal(printed_balance) * 100)))
        assert drift <= 1 + number * excess
    assert schedule.rows[-1].balance_after.is_zero()


def test_sapling_reducing_balance_table_1000_at_2_percent_a_month_for_6_months() -> None:
    schedule = build_schedule(
        Money(1_000_00, USD), Decimal("0.24"), 6, date(2024, 1, 15), day_count=DayCount.THIRTY_360
    )
    rows = schedule.rows
    assert schedule.level_instalment == Money(178_53, USD)
    assert (rows[0].interest, rows[0].principal, rows[0].balance_after) == (
        Money(20_00, USD),
        Money(158_53, USD),
        Money(841_47, USD),
    )
    assert (rows[1].interest, rows[1].principal) == (Money(16_83, USD), Money(161_70, USD))
    assert schedule.total_interest == Money(71_15, USD)
    assert schedule.total_instalments == Money(1_071_15, USD)
    assert rows[-1].instalment == Money(178_50, USD)  # the last instalment absorbs the rounding


# --- calendar cases ----------------------------------------------------------------------------------


def test_month_end_disbursement_in_a_leap_year_is_due_at_each_month_end() -> None:
    schedule = build_schedule(Money(12_000_00, CNY), Decimal("0.18"), 6, date(2024, 1, 31))
    assert [row.due_date for row in schedule.rows] == [
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
        date(2024, 5, 31),
        date(2024, 6, 30),
        date(2024, 7, 31),
    ]
    first = schedule.rows[0]
    assert (first.accrual_start, first.accrual_end, first.days) == (date(2024, 1, 31), date(2024, 2, 29), 29)
    # ACT/365F: 12,000.00 × 18 % × 29/365 = 171.6164… → 171.62, remainder carried.
    assert first.interest == Money(171_62, CNY)
    assert first.carry_after == Fraction(1_200_000 * 18 * 29, 100 * 365) - 17_162
    assert schedule.rows[-1].balance_after.is_zero()


def test_the_february_period_of_a_leap_year_has_29_days_under_act_365f() -> None:
    leap = build_schedule(Money(10_000_00, CNY), Decimal("0.12"), 3, date(2024, 1, 15))
    plain = build_schedule(Money(10_000_00, CNY), Decimal("0.12"), 3, date(2023, 1, 15))
    assert leap.rows[1].days == 29 and plain.rows[1].days == 28
    assert leap.rows[1].interest > plain.rows[1].interest


@pytest.mark.parametrize(
    ("due_day", "year", "february_due"),
    [
        (29, 2023, date(2023, 2, 28)),
        (29, 2024, date(2024, 2, 29)),
        (30, 2023, date(2023, 2, 28)),
        (31, 2024, date(2024, 2, 29)),
    ],
)
def test_due_days_29_to_31_clamp_in_february_and_return_afterwards(due_day: int, year: int, february_due: date) -> None:
    schedule = build_schedule(Money(5_000_00, USD), Decimal("0.10"), 3, date(year, 1, 10), due_day=due_day)
    assert schedule.rows[0].nominal_due_date == date(year, 1, due_day)  # 19+ days after 10 January
    dues = [row.nominal_due_date for row in schedule.rows]
    assert february_due in dues
    march = dues[dues.index(february_due) + 1]
    assert march == date(year, 3, due_day)


def test_a_due_date_on_a_holiday_rolls_and_accrual_runs_to_the_rolled_date() -> None:
    # Due on the 4th; 4 July 2024 is a holiday (Thursday) → Friday 5 July. 4 August 2024 is a Sunday → Monday 5.
    calendar = BusinessCalendar.of(holidays=[date(2024, 7, 4)])
    schedule = build_schedule(
        Money(3_000_00, USD),
        Decimal("0.15"),
        3,
        date(2024, 6, 4),
        calendar=calendar,
        roll=RollConvention.FOLLOWING,
    )
    july, august, september = schedule.rows
    assert (july.nominal_due_date, july.due_date) == (date(2024, 7, 4), date(2024, 7, 5))
    assert (august.nominal_due_date, august.due_date) == (date(2024, 8, 4), date(2024, 8, 5))
    assert september.due_date == date(2024, 9, 4)  # a Wednesday
    assert (july.days, august.accrual_start, august.days, september.days) == (31, date(2024, 7, 5), 31, 30)
    preceding = build_schedule(
        Money(3_000_00, USD), Decimal("0.15"), 3, date(2024, 6, 4), calendar=calendar, roll=RollConvention.PRECEDING
    )
    assert [row.due_date for row in preceding.rows] == [date(2024, 7, 3), date(2024, 8, 2), date(2024, 9, 4)]


def test_equal_principal_splits_the_principal_by_largest_remainder() -> None:
    schedule = build_schedule(
        Money(1_000_00, USD),
        Decimal("0.12"),
        3,
        date(2024, 1, 15),
        method=AmortisationMethod.EQUAL_PRINCIPAL,
        day_count=DayCount.THIRTY_360,
    )
    assert [row.principal.amount_minor for row in schedule.rows] == [33_334, 33_333, 33_333]
    assert [row.interest.amount_minor for row in schedule.rows] == [10_00, 6_67, 3_33]
    assert schedule.level_instalment is None


def test_zero_rate_and_a_zero_exponent_currency() -> None:
    schedule = build_schedule(Money(100_000, JPY), Decimal(0), 3, date(2024, 1, 15))
    assert [row.instalment.amount_minor for row in schedule.rows] == [33_333, 33_333, 33_334]
    assert schedule.total_interest == Money(0, JPY)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"principal": Money(0, USD)}, "principal"),
        ({"term_months": 0}, "term_months"),
        ({"term_months": 481}, "term_months"),
        ({"annual_rate": Decimal("-0.01")}, "annual_rate"),
        ({"annual_rate": 0.1}, "annual_rate"),
        ({"due_day": 32}, "due_day"),
        ({"first_due_date": date(2024, 1, 1)}, "first_due_date"),
        ({"first_due_date": date(2024, 2, 20), "due_day": 15}, "first_due_date"),
    ],
)
def test_bad_terms_are_refused_with_a_stable_code(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {
        "principal": Money(1_000_00, USD),
        "annual_rate": Decimal("0.1"),
        "term_months": 12,
        "disbursement_date": date(2024, 1, 15),
    }
    arguments.update(kwargs)
    with pytest.raises(InvalidLoanTerms) as caught:
        build_schedule(**arguments)  # type: ignore[arg-type]
    assert caught.value.code == "lending.invalid_loan_terms"
    assert caught.value.field == field


# --- properties --------------------------------------------------------------------------------------

loans = st.fixed_dictionaries(
    {
        "principal": st.integers(min_value=100, max_value=10**9).map(lambda v: Money(v, CNY)),
        "annual_rate": st.integers(min_value=0, max_value=60_000).map(lambda bps: Decimal(bps) / 100_000),
        "term_months": st.integers(min_value=3, max_value=24),
        "disbursement_date": st.dates(min_value=date(2023, 1, 1), max_value=date(2026, 12, 31)),
        "due_day": st.one_of(st.none(), st.integers(min_value=1, max_value=31)),
        "method": st.sampled_from(list(AmortisationMethod)),
        "day_count": st.sampled_from(list(DayCount)),
        "roll": st.sampled_from(list(RollConvention)),
    }
)
CALENDAR = BusinessCalendar.of(
    holidays=[date(y, m, d) for y in range(2023, 2030) for m, d in ((1, 1), (5, 1), (10, 1))]
)


def _build(loan: dict[str, object]) -> Schedule:
    return build_schedule(calendar=CALENDAR, **loan)  # type: ignore[arg-type]


def _accrue_daily(schedule: Schedule, balance: int, start: date, end: date, carry: Fraction) -> tuple[int, Fraction]:
    posted_total = 0
    day = start
    while day < end:
        posted, carry = daily_accrual(balance, schedule.annual_rate, schedule.day_count, day, carry)
        posted_total += posted
        day += timedelta(days=1)
    return posted_total, carry


def _check_amortises(schedule: Schedule) -> None:
    balance = schedule.principal.amount_minor
    previous_due = schedule.start_date
    for row in schedule.rows:
        assert row.accrual_start == previous_due and row.accrual_end == row.due_date > previous_due
        assert row.instalment.amount_minor == row.principal.amount_minor + row.interest.amount_minor
        balance -= row.principal.amount_minor
        assert row.balance_after.amount_minor == balance
        previous_due = row.due_date
    assert balance == 0
    assert sum(row.principal.amount_minor for row in schedule.rows) == schedule.principal.amount_minor


def _check_daily_accrual_matches(schedule: Schedule) -> None:
    balance = schedule.principal.amount_minor
    carry = schedule.carry_start
    for row in schedule.rows:
        posted, carry = _accrue_daily(schedule, balance, row.accrual_start, row.accrual_end, carry)
        assert posted == row.interest.amount_minor
        assert carry == row.carry_after
        balance = row.balance_after.amount_minor


@settings(max_examples=150, deadline=None)
@given(loans)
def test_principal_sums_exactly_and_the_balance_ends_at_zero(loan: dict[str, object]) -> None:
    schedule = _build(loan)
    assert len(schedule.rows) == loan["term_months"]
    _check_amortises(schedule)
    assert all(abs(row.carry_after) <= Fraction(1, 2) for row in schedule.rows)
    if schedule.method is AmortisationMethod.EQUAL_INSTALMENT:
        assert {row.instalment for row in schedule.rows[:-1]} <= {schedule.level_instalment}
    else:
        parts = [row.principal.amount_minor for row in schedule.rows]
        assert max(parts) - min(parts) <= 1


@settings(max_examples=100, deadline=None)
@given(loans)
def test_daily_accrual_over_each_period_sums_exactly_to_the_scheduled_interest(loan: dict[str, object]) -> None:
    _check_daily_accrual_matches(_build(loan))


@settings(max_examples=100, deadline=None)
@given(loans, st.data())
def test_prepayment_modes_keep_the_term_or_the_instalment(loan: dict[str, object], data: st.DataObject) -> None:
    schedule = _build(loan)
    on = data.draw(st.dates(min_value=schedule.start_date, max_value=schedule.rows[-2].due_date), label="on")
    quote = payoff_quote(schedule, on)
    position_interest = quote.interest.amount_minor
    due_today = [row for row in schedule.rows if row.due_date == on]
    if due_today:  # the instalment due that day is paid first; the payoff after it is its balance
        payoff_after = due_today[0].balance_after.amount_minor
        position_interest = 0
    else:
        payoff_after = quote.total.amount_minor
    assume(payoff_after - position_interest > 1)
    amount = data.draw(st.integers(min_value=position_interest + 1, max_value=payoff_after - 1), label="amount")
    remaining = [row for row in schedule.rows if row.due_date > on]

    keep_term = reschedule_after_prepayment(schedule, Money(amount, CNY), on, PrepaymentMode.KEEP_TERM)
    new = keep_term.schedule
    assert keep_term.interest_paid.amount_minor == position_interest
    assert keep_term.interest_paid + keep_term.principal_paid == Money(amount, CNY)
    assert [row.due_date for row in new.rows] == [row.due_date for row in remaining]
    assert [row.number for row in new.rows] == [row.number for row in remaining]
    assert new.rows[0].accrual_start == on
    _check_amortises(new)
    _check_daily_accrual_matches(new)
    # Paying early saves interest: the prepayment plus the new instalments cost no more than the old ones
    # (one unit of rounding per row aside), and the level does not grow (one unit of rounding aside; the
    # last instalment still absorbs the rounding of the new level, so it may exceed the old last one).
    old_total = sum(row.instalment.amount_minor for row in remaining)
    new_total = amount + sum(row.instalment.amount_minor for row in new.rows)
    assert new_total <= old_total + len(remaining)
    old_level = max(schedule.level_minor, *(row.instalment.amount_minor for row in remaining))
    if schedule.method is AmortisationMethod.EQUAL_INSTALMENT:
        assert new.level_minor <= old_level + 1

    keep_instalment = reschedule_after_prepayment(schedule, Money(amount, CNY), on, PrepaymentMode.KEEP_INSTALMENT)
    shorter = keep_instalment.schedule
    assert len(shorter.rows) <= len(remaining)
    assert [row.due_date for row in shorter.rows] == [row.due_date for row in remaining[: len(shorter.rows)]]
    _check_amortises(shorter)
    _check_daily_accrual_matches(shorter)
    if schedule.method is AmortisationMethod.EQUAL_INSTALMENT:
        assert shorter.level_minor == schedule.level_minor
        assert all(row.instalment.amount_minor == schedule.level_minor for row in shorter.rows[:-1])
        if len(shorter.rows) < len(remaining):
            assert shorter.rows[-1].instalment.amount_minor <= schedule.level_minor
    else:
        assert all(row.principal.amount_minor == schedule.level_minor for row in shorter.rows[:-1])
    # a prepayment of at least two instalments shortens the term — when there is a term left to shorten (with
    # one row left, that row is the last and absorbs whatever remains; found by hypothesis)
    if len(remaining) > 1 and keep_instalment.principal_paid.amount_minor >= 2 * max(schedule.level_minor, 1) + len(
        remaining
    ):
        assert len(shorter.rows) < len(remaining)


@settings(max_examples=100, deadline=None)
@given(loans, st.data())
def test_payoff_is_principal_plus_interest_accrued_to_the_date(loan: dict[str, object], data: st.DataObject) -> None:
    schedule = _build(loan)
    fees = Money(data.draw(st.integers(min_value=0, max_value=10_000), label="fees"), CNY)
    assert payoff_quote(schedule, schedule.start_date, fees).total == schedule.principal + fees
    row = data.draw(st.sampled_from(schedule.rows), label="row")
    on_due = payoff_quote(schedule, row.due_date)
    assert on_due.total == row.instalment + row.balance_after
    on = data.draw(st.dates(min_value=schedule.start_date, max_value=schedule.maturity_date), label="on")
    quote = payoff_quote(schedule, on, fees)
    paid = [r for r in schedule.rows if r.due_date < on]
    balance = paid[-1].balance_after.amount_minor if paid else schedule.principal.amount_minor
    since = paid[-1].due_date if paid else schedule.start_date
    carry = paid[-1].carry_after if paid else Fraction(0)
    interest, _ = _accrue_daily(schedule, balance, since, on, carry)
    assert (quote.principal.amount_minor, quote.interest.amount_minor) == (balance, interest)
    assert quote.total == quote.principal + quote.interest + fees
    after = payoff_quote(schedule, schedule.maturity_date + timedelta(days=1), fees)
    assert after.total == fees


def test_a_full_prepayment_settles_the_loan() -> None:
    schedule = build_schedule(Money(6_000_00, USD), Decimal("0.12"), 6, date(2024, 1, 15))
    on = date(2024, 3, 1)
    quote = payoff_quote(schedule, on)
    result = reschedule_after_prepayment(schedule, quote.total, on, PrepaymentMode.KEEP_TERM)
    assert result.schedule.rows == ()
    assert result.schedule.principal.is_zero()
    assert result.interest_paid == quote.interest


def test_prepayment_errors_have_stable_codes() -> None:
    schedule = build_schedule(Money(6_000_00, USD), Decimal("0.12"), 6, date(2024, 1, 15))
    on = date(2024, 3, 1)
    quote = payoff_quote(schedule, on)
    with pytest.raises(PrepaymentExceedsPayoff) as too_much:
        reschedule_after_prepayment(schedule, quote.total + Money(1, USD), on, PrepaymentMode.KEEP_TERM)
    assert too_much.value.code == "lending.prepayment_exceeds_payoff"
    with pytest.raises(PrepaymentBelowAccruedInterest) as too_little:
        reschedule_after_prepayment(schedule, quote.interest, on, PrepaymentMode.KEEP_TERM)
    assert too_little.value.code == "lending.prepayment_below_accrued_interest"
    with pytest.raises(DateOutsideSchedule) as before:
        payoff_quote(schedule, date(2024, 1, 1))
    assert before.value.code == "lending.date_outside_schedule"
    with pytest.raises(InvalidLoanTerms):
        reschedule_after_prepayment(schedule, Money(100, CNY), on, PrepaymentMode.KEEP_TERM)


def test_keep_instalment_on_a_worked_case_ends_two_months_early() -> None:
    schedule = build_schedule(
        Money(12_000_00, USD), Decimal("0.12"), 12, date(2024, 1, 15), day_count=DayCount.THIRTY_360
    )
    level = schedule.level_instalment
    assert level == Money(1_066_19, USD)  # npf.pmt(0.01, 12, 12000) = -1066.1854…
    on = schedule.rows[2].due_date  # after the third instalment
    result = reschedule_after_prepayment(schedule, Money(2_000_00, USD), on, PrepaymentMode.KEEP_INSTALMENT)
    assert result.interest_paid.is_zero()  # nothing has accrued since the instalment paid that day
    assert len(result.schedule.rows) == 7  # 9 remaining instalments, 2 fewer
    assert result.schedule.rows[0].instalment == level
    kept = reschedule_after_prepayment(schedule, Money(2_000_00, USD), on, PrepaymentMode.KEEP_TERM)
    assert len(kept.schedule.rows) == 9
    assert kept.schedule.level_instalment is not None and kept.schedule.level_instalment < level
