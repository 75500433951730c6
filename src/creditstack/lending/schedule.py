"""Instalment schedules, daily accrual, prepayment and payoff: exact, on actual dates, no I/O.

**One accrual rule for the schedule and for the servicing engine.** Interest on a balance B at annual rate
r over a period is B × r × year_fraction(period) under the product's day count, computed exactly
(`Fraction`). It is posted in whole minor units by one rule, `round_half_up`: the exact amount plus the
carried remainder, rounded to the nearest unit (halves up, i.e. ⌊x + ½⌋); the new remainder (in [−½, ½))
is carried to the next posting. The schedule applies the rule once per period; the servicing engine
applies it once per day (`daily_accrual`). Because the day count is additive (see `daycount`) and ⌊x + ½⌋
commutes with adding whole units, the daily postings over a period sum to *exactly* the scheduled
interest of that period, and both leave the same remainder — for a loan paid exactly on schedule the
interest accrued and the interest due agree to the unit. (Half-even rounding does not commute with
adding whole units — 0.5 → 0 but 1.5 → 2 — which is why this is the one place that names another mode.)
The remainder left after the last period (at most half a unit) is neither charged nor refunded.

**Dates.** Payments and disbursements take effect at the start of their day: a period from `start` to
`end` accrues the days start … end−1 on the balance after any payment dated `start`. Due dates fall on the
due day of each month, clamped to the month's end (29–31), then rolled to a business day by the
product's convention; accrual runs to the rolled date, which is the date the borrower actually pays.

**Amortisation.** Equal instalment: the level instalment is solved exactly so that the schedule amortises
to zero on its actual periods — X* = P·Π(1+gₖ) / Σⱼ Πₖ₌ⱼ₊₁..ₙ(1+gₖ) with gₖ = r × year_fractionₖ — then
rounded half up to a unit; the last instalment absorbs the rounding (it is the remaining balance plus its
interest). Equal principal: the principal is split into equal parts by largest remainder
(`core.money.allocate`), each instalment is its part plus the period's interest.

**Prepayment** (`reschedule_after_prepayment`) pays the interest accrued to its date first, the rest
reduces principal, and the remaining due dates are kept: `KEEP_TERM` recomputes a lower instalment over
the same dates, `KEEP_INSTALMENT` keeps the instalment (equal instalment) or the principal part (equal
principal) and ends earlier. **Payoff** (`payoff_quote`) on any date is the outstanding principal plus
interest accrued to that date plus the fees passed in.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction

from creditstack.core.money import Currency, Money, allocate
from creditstack.lending.calendar import BusinessCalendar, RollConvention, add_months, is_month_end
from creditstack.lending.daycount import DayCount
from creditstack.lending.math_errors import (
    DateOutsideSchedule,
    InvalidLoanTerms,
    PrepaymentBelowAccruedInterest,
    PrepaymentExceedsPayoff,
)

#: Longest schedule the mathematics builds (products restrict further: the cash loan is 3–24 months).
TERM_MONTHS_MAX = 480
#: Highest annual rate accepted (as a fraction: 10 = 1,000 % a year).
ANNUAL_RATE_MAX = Decimal(10)
#: Default shortest first period: the first due date is the first due day at least this many days out.
FIRST_PERIOD_DAYS_MIN_DEFAULT = 15

_HALF = Fraction(1, 2)


class AmortisationMethod(enum.Enum):
    """How principal is repaid: a level instalment, or equal principal parts plus interest."""

    EQUAL_INSTALMENT = "equal_instalment"
    EQUAL_PRINCIPAL = "equal_principal"


class PrepaymentMode(enum.Enum):
    """After a partial prepayment: keep the term (lower instalments) or the instalment (shorter term)."""

    KEEP_TERM = "keep_term"
    KEEP_INSTALMENT = "keep_instalment"


def round_half_up(value: Fraction) -> int:
    """⌊value + ½⌋: nearest integer, halves toward +∞. Commutes with adding integers (see module doc)."""
    return math.floor(value + _HALF)


def _rate(annual_rate: Decimal) -> Fraction:
    if not isinstance(annual_rate, Decimal) or not annual_rate.is_finite():
        raise InvalidLoanTerms("annual_rate must be a finite Decimal (a fraction: 0.12 = 12 %)", field="annual_rate")
    if not Decimal(0) <= annual_rate <= ANNUAL_RATE_MAX:
        raise InvalidLoanTerms(f"annual_rate must be between 0 and {ANNUAL_RATE_MAX}", field="annual_rate")
    return Fraction(annual_rate)


def accrue(
    balance_minor: int, annual_rate: Decimal, day_count: DayCount, start: date, end: date, carry: Fraction
) -> tuple[int, Fraction]:
    """Interest on `balance_minor` from `start` to `end` (half-open) plus `carry`: (posted units, new carry)."""
    exact = balance_minor * _rate(annual_rate) * day_count.year_fraction(start, end) + carry
    posted = round_half_up(exact)
    return posted, exact - posted


def daily_accrual(
    balance_minor: int, annual_rate: Decimal, day_count: DayCount, day: date, carry: Fraction
) -> tuple[int, Fraction]:
    """One day's interest as the servicing engine posts it: (units posted for `day`, carry for tomorrow).

    `balance_minor` is the balance during `day` (after any payment dated `day`). Summed over the days of a
    schedule period, the postings equal the period's scheduled interest exactly.
    """
    exact = balance_minor * _rate(annual_rate) * day_count.day_fraction(day) + carry
    posted = round_half_up(exact)
    return posted, exact - posted


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One instalment: its dates, its split into principal and interest, and the balance after it."""

    number: int
    due_date: date  # rolled to a business day; the end of the accrual period
    nominal_due_date: date  # the due day of the month, clamped, before rolling
    accrual_start: date
    accrual_end: date
    days: int  # actual calendar days in the accrual period
    principal: Money
    interest: Money
    instalment: Money
    balance_after: Money
    carry_after: Fraction  # the interest remainder (a fraction of a unit) carried to the next period


@dataclass(frozen=True, slots=True)
class Schedule:
    """A repayment schedule from `start_date` (disbursement, or the prepayment it follows) to maturity."""

    principal: Money  # balance at `start_date`
    annual_rate: Decimal
    method: AmortisationMethod
    day_count: DayCount
    start_date: date
    rows: tuple[ScheduleRow, ...]
    carry_start: Fraction = Fraction(0)
    #: The level instalment (equal instalment) or the level principal part (equal principal) rows keep.
    level_minor: int = 0

    @property
    def currency(self) -> Currency:
        return self.principal.currency

    @property
    def maturity_date(self) -> date:
        return self.rows[-1].due_date if self.rows else self.start_date

    @property
    def total_interest(self) -> Money:
        return Money(sum(row.interest.amount_minor for row in self.rows), self.currency)

    @property
    def total_instalments(self) -> Money:
        return Money(sum(row.instalment.amount_minor for row in self.rows), self.currency)

    @property
    def level_instalment(self) -> Money | None:
        """The level instalment of an equal-instalment schedule (every row but the last pays it)."""
        if self.method is AmortisationMethod.EQUAL_INSTALMENT:
            return Money(self.level_minor, self.currency)
        return None


@dataclass(frozen=True, slots=True)
class _Period:
    nominal_due: date
    due: date
    start: date


def nominal_due_dates(
    disbursement_date: date,
    term_months: int,
    *,
    due_day: int | None = None,
    first_due_date: date | None = None,
    first_period_days_min: int = FIRST_PERIOD_DAYS_MIN_DEFAULT,
) -> list[date]:
    """The unrolled due dates: the due day of consecutive months, clamped to month end.

    Without `first_due_date`, the first due date is the first date on the due day at least
    `first_period_days_min` days after disbursement. Without `due_day`, it is the day of `first_due_date`,
    or else of the disbursement — 31 (month end) if the disbursement falls on a month's last day.
    """
    if due_day is None:
        anchor = first_due_date if first_due_date is not None else disbursement_date
        due_day = 31 if first_due_date is None and is_month_end(anchor) else anchor.day
    if not isinstance(due_day, int) or isinstance(due_day, bool) or not 1 <= due_day <= 31:
        raise InvalidLoanTerms(f"due day must be 1–31, got {due_day!r}", field="due_day")
    if first_due_date is None:
        if not 0 <= first_period_days_min <= 366:
            raise InvalidLoanTerms("first_period_days_min must be 0–366", field="first_period_days_min")
        first = add_months(disbursement_date, 0, due_day)
        while (first - disbursement_date).days < max(first_period_days_min, 1):
            first = add_months(first, 1, due_day)
    else:
        first = first_due_date
        if add_months(first, 0, due_day) != first:
            raise InvalidLoanTerms(f"first due date {first} does not fall on due day {due_day}", field="first_due_date")
        if first <= disbursement_date:
            raise InvalidLoanTerms("the first due date must be after the disbursement", field="first_due_date")
    return [add_months(first, k, due_day) for k in range(term_months)]


def _periods(
    start: date, nominal: Sequence[date], calendar: BusinessCalendar | None, roll: RollConvention
) -> list[_Period]:
    periods: list[_Period] = []
    previous = start
    for nominal_due in nominal:
        due = calendar.roll(nominal_due, roll) if calendar is not None else nominal_due
        if due <= previous:
            raise InvalidLoanTerms(
                f"due date {due} (nominal {nominal_due}) does not follow {previous} after rolling", field="due_day"
            )
        periods.append(_Period(nominal_due, due, previous))
        previous = due
    return periods


def _growth_factors(annual_rate: Decimal, day_count: DayCount, periods: Sequence[_Period]) -> list[Fraction]:
    rate = _rate(annual_rate)
    return [1 + rate * day_count.year_fraction(p.start, p.due) for p in periods]


def level_instalment_exact(principal_minor: int, growth: Sequence[Fraction]) -> Fraction:
    """The exact level payment X* that amortises `principal_minor` over periods with growth factors 1 + gₖ."""
    compounded = Fraction(1)
    annuity = Fraction(0)
    for factor in reversed(growth):  # annuity = Σⱼ Π_{k>j}(1+g_k), built from the end
        annuity += compounded
        compounded *= factor
    return principal_minor * compounded / annuity


def _rows(
    *,
    currency: Currency,
    balance: int,
    carry: Fraction,
    annual_rate: Decimal,
    day_count: DayCount,
    method: AmortisationMethod,
    periods: Sequence[_Period],
    first_number: int,
    level_minor: int,
    principal_parts: Sequence[int] | None,
    stop_when_repaid: bool,
) -> list[ScheduleRow]:
    rows: list[ScheduleRow] = []
    for index, period in enumerate(periods):
        interest, carry = accrue(balance, annual_rate, day_count, period.start, period.due, carry)
        last = index == len(periods) - 1
        if method is AmortisationMethod.EQUAL_INSTALMENT:
            principal = balance if last or balance + interest <= level_minor else level_minor - interest
        elif principal_parts is not None:
            principal = balance if last else principal_parts[index]
        else:
            principal = balance if last else min(level_minor, balance)
        balance -= principal
        rows.append(
            ScheduleRow(
                number=first_number + index,
                due_date=period.due,
                nominal_due_date=period.nominal_due,
                accrual_start=period.start,
                accrual_end=period.due,
                days=(period.due - period.start).days,
                principal=Money(principal, currency),
                interest=Money(interest, currency),
                instalment=Money(principal + interest, currency),
                balance_after=Money(balance, currency),
                carry_after=carry,
            )
        )
        if stop_when_repaid and balance == 0:
            break
    return rows


def _amortise(
    *,
    currency: Currency,
    balance: int,
    carry: Fraction,
    annual_rate: Decimal,
    day_count: DayCount,
    method: AmortisationMethod,
    periods: Sequence[_Period],
    first_number: int,
) -> tuple[list[ScheduleRow], int]:
    """Rows that repay `balance` over exactly `periods` (the keep-term case and new schedules)."""
    if method is AmortisationMethod.EQUAL_INSTALMENT:
        growth = _growth_factors(annual_rate, day_count, periods)
        level = round_half_up(level_instalment_exact(balance, growth))
        while True:
            rows = _rows(
                currency=currency,
                balance=balance,
                carry=carry,
                annual_rate=annual_rate,
                day_count=day_count,
                method=method,
                periods=periods,
                first_number=first_number,
                level_minor=level,
                principal_parts=None,
                stop_when_repaid=False,
            )
            # Rounding the level up must not repay the loan before its last due date (a tiny balance over
            # many periods): then pay one unit less, and let the last instalment absorb the difference.
            if level <= 0 or len(rows) < 2 or rows[-2].balance_after.amount_minor > 0:
                return rows, level
            level -= 1
    parts = allocate(balance, [1] * len(periods))
    rows = _rows(
        currency=currency,
        balance=balance,
        carry=carry,
        annual_rate=annual_rate,
        day_count=day_count,
        method=method,
        periods=periods,
        first_number=first_number,
        level_minor=max(parts),
        principal_parts=parts,
        stop_when_repaid=False,
    )
    return rows, max(parts)


def build_schedule(
    principal: Money,
    annual_rate: Decimal,
    term_months: int,
    disbursement_date: date,
    *,
    due_day: int | None = None,
    first_due_date: date | None = None,
    method: AmortisationMethod = AmortisationMethod.EQUAL_INSTALMENT,
    day_count: DayCount = DayCount.ACT_365F,
    calendar: BusinessCalendar | None = None,
    roll: RollConvention = RollConvention.FOLLOWING,
    first_period_days_min: int = FIRST_PERIOD_DAYS_MIN_DEFAULT,
) -> Schedule:
    """The schedule of a loan of `principal` disbursed on `disbursement_date`, repaid monthly.

    `calendar` None means every day is a business day (no rolling). See the module docstring for the
    accrual rule, the due dates and the amortisation methods.
    """
    if not isinstance(principal, Money) or principal.amount_minor <= 0:
        raise InvalidLoanTerms("principal must be a positive Money", field="principal")
    if not isinstance(term_months, int) or isinstance(term_months, bool) or not 1 <= term_months <= TERM_MONTHS_MAX:
        raise InvalidLoanTerms(f"term_months must be 1–{TERM_MONTHS_MAX}", field="term_months")
    _rate(annual_rate)
    method = AmortisationMethod(method)
    day_count = DayCount.parse(day_count)
    nominal = nominal_due_dates(
        disbursement_date,
        term_months,
        due_day=due_day,
        first_due_date=first_due_date,
        first_period_days_min=first_period_days_min,
    )
    periods = _periods(disbursement_date, nominal, calendar, RollConvention(roll))
    rows, level = _amortise(
        currency=principal.currency,
        balance=principal.amount_minor,
        carry=Fraction(0),
        annual_rate=annual_rate,
        day_count=day_count,
        method=method,
        periods=periods,
        first_number=1,
    )
    return Schedule(
        principal=principal,
        annual_rate=annual_rate,
        method=method,
        day_count=day_count,
        start_date=disbursement_date,
        rows=tuple(rows),
        carry_start=Fraction(0),
        level_minor=level,
    )


@dataclass(frozen=True, slots=True)
class LoanPosition:
    """Where a loan paid exactly on schedule stands at the start of a date (before anything dated that day)."""

    on: date
    principal: Money  # outstanding principal
    accrued_interest: Money  # interest accrued since the last due date paid, posted by the accrual rule
    carry: Fraction  # the remainder after posting `accrued_interest`
    paid_rows: int  # rows already paid
    remaining: tuple[ScheduleRow, ...]  # rows not yet paid


def position_on(schedule: Schedule, on: date, *, include_due_on: bool) -> LoanPosition:
    """The position of `schedule` at `on`, the instalments due before it (and on it, if `include_due_on`) paid."""
    if on < schedule.start_date:
        raise DateOutsideSchedule(f"{on} is before the schedule starts on {schedule.start_date}", field="on")
    paid = [row for row in schedule.rows if row.due_date < on or (include_due_on and row.due_date == on)]
    remaining = schedule.rows[len(paid) :]
    if paid:
        balance, carry, since = paid[-1].balance_after.amount_minor, paid[-1].carry_after, paid[-1].due_date
    else:
        balance, carry, since = schedule.principal.amount_minor, schedule.carry_start, schedule.start_date
    interest, carry = accrue(balance, schedule.annual_rate, schedule.day_count, since, on, carry)
    return LoanPosition(
        on=on,
        principal=Money(balance, schedule.currency),
        accrued_interest=Money(interest, schedule.currency),
        carry=carry,
        paid_rows=len(paid),
        remaining=tuple(remaining),
    )


@dataclass(frozen=True, slots=True)
class PayoffQuote:
    """What settles the loan on `on`: principal, interest accrued to `on`, fees; and their total."""

    on: date
    principal: Money
    interest: Money
    fees: Money
    total: Money = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.principal + self.interest + self.fees)


def payoff_quote(schedule: Schedule, on: date, fees: Money | None = None) -> PayoffQuote:
    """The amount that settles a loan paid on schedule so far, on any date from its start.

    Instalments due before `on` are taken as paid; one due on `on` is part of the quote (its interest is
    the interest accrued to `on`). After maturity the loan is repaid and only `fees` remain.
    """
    fees = fees if fees is not None else Money.zero(schedule.currency)
    if not isinstance(fees, Money) or fees.amount_minor < 0:
        raise InvalidLoanTerms("fees must be a non-negative Money", field="fees")
    position = position_on(schedule, on, include_due_on=False)
    return PayoffQuote(on=on, principal=position.principal, interest=position.accrued_interest, fees=fees)


@dataclass(frozen=True, slots=True)
class PrepaymentResult:
    """A prepayment applied: the part that paid accrued interest, the part that paid principal, and the new
    schedule of the remaining balance from the prepayment date (empty when the loan is settled)."""

    on: date
    amount: Money
    interest_paid: Money
    principal_paid: Money
    schedule: Schedule


def reschedule_after_prepayment(
    schedule: Schedule, prepayment: Money, on: date, mode: PrepaymentMode
) -> PrepaymentResult:
    """Apply an extra payment on `on` (after any instalment due that day) and reschedule the rest.

    The payment first covers the interest accrued since the last due date, then reduces principal. The
    remaining due dates stay; `KEEP_TERM` lowers the instalment, `KEEP_INSTALMENT` shortens the term. A
    prepayment equal to the payoff settles the loan (the new schedule has no rows).
    """
    mode = PrepaymentMode(mode)
    if not isinstance(prepayment, Money) or prepayment.amount_minor <= 0:
        raise InvalidLoanTerms("a prepayment must be a positive Money", field="prepayment")
    if prepayment.currency != schedule.currency:
        raise InvalidLoanTerms("the prepayment is not in the loan's currency", field="prepayment")
    position = position_on(schedule, on, include_due_on=True)
    payoff = position.principal.amount_minor + position.accrued_interest.amount_minor
    if prepayment.amount_minor > payoff:
        raise PrepaymentExceedsPayoff(
            f"prepayment {prepayment} exceeds the payoff {Money(payoff, schedule.currency)} on {on}",
            field="prepayment",
            payoff_minor=payoff,
        )
    interest = position.accrued_interest.amount_minor
    if prepayment.amount_minor <= interest:
        raise PrepaymentBelowAccruedInterest(
            f"prepayment {prepayment} does not exceed the accrued interest {position.accrued_interest}",
            field="prepayment",
            accrued_interest_minor=interest,
        )
    principal_paid = prepayment.amount_minor - interest
    balance = position.principal.amount_minor - principal_paid
    first_number = position.remaining[0].number if position.remaining else schedule.rows[-1].number + 1
    rows, level = reamortise(
        balance=Money(balance, schedule.currency),
        carry=position.carry,
        annual_rate=schedule.annual_rate,
        day_count=schedule.day_count,
        method=schedule.method,
        start=on,
        due_dates=[(row.nominal_due_date, row.due_date) for row in position.remaining],
        first_number=first_number,
        mode=mode,
        level_minor=schedule.level_minor,
    )
    new_schedule = Schedule(
        principal=Money(balance, schedule.currency),
        annual_rate=schedule.annual_rate,
        method=schedule.method,
        day_count=schedule.day_count,
        start_date=on,
        rows=tuple(rows),
        carry_start=position.carry,
        level_minor=level,
    )
    return PrepaymentResult(
        on=on,
        amount=prepayment,
        interest_paid=Money(interest, schedule.currency),
        principal_paid=Money(principal_paid, schedule.currency),
        schedule=new_schedule,
    )


def reamortise(
    *,
    balance: Money,
    carry: Fraction,
    annual_rate: Decimal,
    day_count: DayCount,
    method: AmortisationMethod,
    start: date,
    due_dates: Sequence[tuple[date, date]],
    first_number: int,
    mode: PrepaymentMode,
    level_minor: int,
) -> tuple[list[ScheduleRow], int]:
    """The remaining rows of a live loan after a prepayment on `start`: `balance` and the accrual `carry`
    as they stand, over the remaining (nominal, rolled) due dates. `KEEP_TERM` re-solves the instalment
    over the same dates; `KEEP_INSTALMENT` keeps `level_minor` and ends early. Returns (rows, level)."""
    mode = PrepaymentMode(mode)
    if balance.amount_minor <= 0 or not due_dates:
        return [], level_minor
    periods: list[_Period] = []
    previous = start
    for nominal, due in due_dates:
        periods.append(_Period(nominal, due, previous))
        previous = due
    if mode is PrepaymentMode.KEEP_TERM:
        return _amortise(
            currency=balance.currency,
            balance=balance.amount_minor,
            carry=carry,
            annual_rate=annual_rate,
            day_count=day_count,
            method=method,
            periods=periods,
            first_number=first_number,
        )
    rows = _rows(
        currency=balance.currency,
        balance=balance.amount_minor,
        carry=carry,
        annual_rate=annual_rate,
        day_count=day_count,
        method=method,
        periods=periods,
        first_number=first_number,
        level_minor=level_minor,
        principal_parts=None,
        stop_when_repaid=True,
    )
    return rows, level_minor
