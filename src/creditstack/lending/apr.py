"""Annual percentage rate: the actuarial method of Regulation Z, 12 CFR part 1026, Appendix J.

Closed-end offers disclose the APR computed here; open-end (line) offers disclose the periodic rate times
the number of periods in a year (`periodic_rate_apr`, § 1026.14(b)).

The method, paragraph by paragraph of Appendix J (b):

- (b)(2) The term begins on consummation — here the earliest advance, unless `term_start` names the later
  date from which the finance charge is earned — and ends on the last payment (or a later advance).
- (b)(3) A *period* is the interval between consecutive advances, between consecutive payments, and from
  the start of the term to the first advance or payment after it. All months are equal; months run from
  a day to the same day of another month, from month end to month end for a month-end series, and a
  series on the 29th or 30th uses the last day of February.
- (b)(4) The *unit-period* is the common period (one that occurs more than once) that occurs most often,
  the smaller one on a tie; with no common period, the average of all periods rounded to the nearest
  standard interval (day, week or multiple up to 52, semimonth, month or multiple up to 12), the lower on
  an exact tie. In a single-advance, single-payment transaction it is the term, at most a year.
- (b)(5) Time from the start of the term to each advance and payment, as t full unit-periods plus a
  fraction f: for a month, months counted back from the later date plus the remaining days / 30; for a
  semimonth or a multiple of a month, 30 days per counted month plus the remaining days, divided by 15 or
  30 × months; for a day or week(s), days divided by the days per unit-period; for a year, whole years
  counted back plus remaining months / 12 (or remaining days / 365). Unit-periods per year: 12 / months,
  24, 52 / weeks, 365, 1; for a single payment within a year, 12 / months (whole months) or 365 / days.
- (b)(6) The rate for a fractional unit-period is f × i (simple interest over the fraction).
- (b)(8) The general equation, solved for the unit-period rate i:
  Σ advances Aₖ / ((1 + fₖ i)(1 + i)^tₖ) = Σ payments Pₖ / ((1 + fₖ i)(1 + i)^tₖ).
- (b)(1) APR = i × unit-periods per year, shown in percent to two decimals.

The equation is solved in `Decimal` (50 significant digits) by Newton's method kept inside a bisection
bracket, to far below the 0.005 percentage point that rounding to two decimals needs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import Any

from creditstack.core.errors import CreditstackError, RecordError
from creditstack.core.money import WIRE_AMOUNT_MINOR_MAX, Currency, UnknownCurrency
from creditstack.lending.calendar import add_months, is_month_end, month_index
from creditstack.lending.math_errors import (
    AprNotComputable,
    AprRequestMalformed,
    AprUnknownCurrency,
    InvalidCashFlowAmount,
    InvalidCashFlowDate,
    TooManyCashFlows,
)

#: Most advances one APR request may carry.
ADVANCES_MAX = 1_200
#: Most payments one APR request may carry (weekly for 20 years fits).
PAYMENTS_MAX = 1_200
#: Longest term, start to last flow, in years.
TERM_YEARS_MAX = 60
#: Earliest and latest calendar years a cash flow may fall in.
CASH_FLOW_YEAR_MIN = 1900
CASH_FLOW_YEAR_MAX = 2200
#: Highest unit-period rate searched (1,000 = 100,000 % a unit-period).
UNIT_RATE_MAX = Decimal(1_000)
#: Decimal digits carried while solving.
SOLVER_PRECISION = 50
#: Newton/bisection steps at most.
SOLVER_ITERATIONS_MAX = 400
#: Places of the disclosed APR, in percent.
APR_PLACES = Decimal("0.01")

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class UnitPeriodKind(enum.Enum):
    """The standard intervals of Appendix J (b)(3)(iii), plus the term of a single-payment transaction."""

    DAY = "day"
    WEEK = "week"
    SEMIMONTH = "semimonth"
    MONTH = "month"
    YEAR = "year"
    TERM_DAYS = "term_days"  # single advance, single payment, term under a year, not whole months
    TERM_MONTHS = "term_months"  # single advance, single payment, term under a year, whole months


@dataclass(frozen=True, slots=True)
class UnitPeriod:
    """A unit-period: its kind and multiple (weeks or months; days or months of a single-payment term)."""

    kind: UnitPeriodKind
    multiple: int = 1

    @property
    def periods_per_year(self) -> Fraction:
        kind, n = self.kind, self.multiple
        if kind is UnitPeriodKind.DAY:
            return Fraction(365)
        if kind is UnitPeriodKind.WEEK:
            return Fraction(52, n)
        if kind is UnitPeriodKind.SEMIMONTH:
            return Fraction(24)
        if kind in (UnitPeriodKind.MONTH, UnitPeriodKind.TERM_MONTHS):
            return Fraction(12, n)
        if kind is UnitPeriodKind.TERM_DAYS:
            return Fraction(365, n)
        return Fraction(1)

    @property
    def approximate_days(self) -> Fraction:
        """Length in days, months taken as 365/12 (used only to order and average unit-periods)."""
        return Fraction(365) / self.periods_per_year

    @property
    def label(self) -> str:
        kind, n = self.kind, self.multiple
        if kind is UnitPeriodKind.TERM_DAYS:
            return f"term of {n} days"
        if kind is UnitPeriodKind.TERM_MONTHS:
            return f"term of {n} month{'s' if n > 1 else ''}"
        if kind in (UnitPeriodKind.WEEK, UnitPeriodKind.MONTH) and n > 1:
            return f"{n} {kind.value}s"
        return str(kind.value)


_STANDARD_INTERVALS: tuple[UnitPeriod, ...] = (
    UnitPeriod(UnitPeriodKind.DAY),
    *(UnitPeriod(UnitPeriodKind.WEEK, n) for n in range(1, 53)),
    UnitPeriod(UnitPeriodKind.SEMIMONTH),
    *(UnitPeriod(UnitPeriodKind.MONTH, n) for n in range(1, 13)),
)


@dataclass(frozen=True, slots=True)
class CashFlow:
    """An advance or a payment: a date and a positive amount in minor units."""

    on: date
    amount_minor: int


@dataclass(frozen=True, slots=True)
class TimedFlow:
    """A cash flow placed in time: t full unit-periods and a fraction f from the start of the term."""

    kind: str  # "advance" | "payment"
    on: date
    amount_minor: int
    full_periods: int
    fraction: Fraction


@dataclass(frozen=True, slots=True)
class AprResult:
    """The APR (percent, two decimals) and how it was found."""

    apr: Decimal
    apr_unrounded: Decimal  # percent, ten decimals
    unit_period: UnitPeriod
    periods_per_year: Fraction
    unit_period_rate: Decimal  # a fraction per unit-period
    term_start: date
    flows: tuple[TimedFlow, ...]

    def to_dict(self) -> dict[str, Any]:
        ppy = self.periods_per_year
        return {
            "apr": f"{self.apr:.2f}",
            "apr_unrounded": str(self.apr_unrounded),
            "unit_period": self.unit_period.label,
            "periods_per_year": str(ppy.numerator) if ppy.denominator == 1 else f"{ppy.numerator}/{ppy.denominator}",
            "unit_period_rate": str(self.unit_period_rate),
            "term_start": self.term_start.isoformat(),
        }


# --- time: months, anchors, unit-period counting -------------------------------------------------------


def months_apart(earlier: date, later: date) -> int | None:
    """Whole months from `earlier` to `later` under Appendix J (b)(3)(iv), or None if not whole months.

    Same day of month; or month end to a day at least as late (a month-end or 29th/30th series after
    February); or to a month end from a day at least as late (31 Jan → 28 Feb, 30 Jan → 28 Feb).
    """
    n = month_index(later) - month_index(earlier)
    if n <= 0:
        return None
    if later.day == earlier.day:
        return n
    if is_month_end(earlier) and later.day >= earlier.day:
        return n
    if is_month_end(later) and earlier.day >= later.day:
        return n
    return None


def _anchor_day(day: date, series: Sequence[date], index: int) -> int:
    """The day of month a series is on, seen from its `index`-th date: a month-end date of a series on a
    later day (29th–31st, or month ends) is measured back on that later day."""
    if not is_month_end(day):
        return day.day
    near = series[max(0, index - 2) : index + 3]
    return max([day.day, *(other.day for other in near)])


def _months_back(start: date, later: date, anchor: int) -> tuple[int, date]:
    """(m, d): the most whole months m counted back from `later` (on `anchor`) landing on d >= `start`."""
    m = month_index(later) - month_index(start)
    while m > 0 and add_months(later, -m, anchor) < start:
        m -= 1
    return m, add_months(later, -m, anchor)


def _time(unit: UnitPeriod, start: date, later: date, anchor: int) -> tuple[int, Fraction]:
    """(t, f) from `start` to `later` in unit-periods, Appendix J (b)(5)."""
    days = (later - start).days
    kind, n = unit.kind, unit.multiple
    if kind is UnitPeriodKind.DAY:
        return days, Fraction(0)
    if kind is UnitPeriodKind.WEEK:
        t, rest = divmod(days, 7 * n)
        return t, Fraction(rest, 7 * n)
    if kind in (UnitPeriodKind.TERM_DAYS, UnitPeriodKind.TERM_MONTHS):
        return (1, Fraction(0)) if days else (0, Fraction(0))
    months, back = _months_back(start, later, anchor)
    remaining_days = (back - start).days
    if kind is UnitPeriodKind.MONTH and n == 1:
        return months, Fraction(remaining_days, 30)
    if kind is UnitPeriodKind.YEAR:
        years = months // 12
        if remaining_days == 0:
            return years, Fraction(months - 12 * years, 12)
        year_back = add_months(later, -12 * years, anchor)
        return years, Fraction((year_back - start).days, 365)
    per_unit = 15 if kind is UnitPeriodKind.SEMIMONTH else 30 * n
    t, rest = divmod(30 * months + remaining_days, per_unit)
    return t, Fraction(rest, per_unit)


def _matches(unit: UnitPeriod, earlier: date, later: date, semimonthly: bool) -> bool:
    days = (later - earlier).days
    if unit.kind is UnitPeriodKind.DAY:
        return days == 1
    if unit.kind is UnitPeriodKind.WEEK:
        return days == 7 * unit.multiple
    if unit.kind is UnitPeriodKind.SEMIMONTH:
        return semimonthly and 13 <= days <= 17
    return months_apart(earlier, later) == unit.multiple


def _periods(start: date, series: Sequence[date]) -> list[tuple[date, date, bool]]:
    """(earlier, later, in a semimonthly cadence) for start → first date after it, and date → next date."""
    after = [d for d in series if d > start]
    if not after:
        return []
    points = [start, *after]
    result = []
    for k in range(1, len(points)):
        # A semimonth: two steps of the series span exactly one month (checked on either side).
        cadence = (k + 1 < len(points) and months_apart(points[k - 1], points[k + 1]) == 1) or (
            k >= 2 and months_apart(points[k - 2], points[k]) == 1
        )
        result.append((points[k - 1], points[k], cadence))
    return result


def determine_unit_period(start: date, advances: Sequence[date], payments: Sequence[date]) -> UnitPeriod:
    """The unit-period of a transaction with more than one advance or payment, Appendix J (b)(4)(i)."""
    periods = _periods(start, sorted(set(payments))) + _periods(start, sorted(set(advances)))
    best: tuple[int, Fraction, UnitPeriod] | None = None
    for unit in _STANDARD_INTERVALS:
        count = sum(1 for earlier, later, cadence in periods if _matches(unit, earlier, later, cadence))
        if count < 2:  # not a common period
            continue
        key = (-count, unit.approximate_days, unit)
        if best is None or key[:2] < best[:2]:
            best = key
    if best is not None:
        return best[2]
    # No common period: the average of all periods, rounded to the nearest standard interval (lower on a tie).
    average = Fraction(sum((later - earlier).days for earlier, later, _ in periods), max(len(periods), 1))
    return min(_STANDARD_INTERVALS, key=lambda unit: (abs(unit.approximate_days - average), unit.approximate_days))


def _single_payment_unit(start: date, payment: date) -> UnitPeriod:
    """Appendix J (b)(4)(ii), (b)(5)(v)–(vii): the term, at most a year."""
    if add_months(start, 12) <= payment:
        return UnitPeriod(UnitPeriodKind.YEAR)
    months = months_apart(start, payment)
    if months is not None:
        return UnitPeriod(UnitPeriodKind.TERM_MONTHS, months)
    return UnitPeriod(UnitPeriodKind.TERM_DAYS, (payment - start).days)


# --- the general equation ------------------------------------------------------------------------------


def _solve(flows: Sequence[tuple[int, Fraction, int]]) -> Decimal:
    """The unit-period rate i >= 0 with Σ signed amount / ((1 + f i)(1 + i)^t) = 0 (payments positive)."""
    grouped: dict[tuple[int, Fraction], int] = {}
    for t, f, amount in flows:
        grouped[(t, f)] = grouped.get((t, f), 0) + amount
    terms = [(t, Decimal(f.numerator) / Decimal(f.denominator), Decimal(a)) for (t, f), a in grouped.items() if a]

    def value(i: Decimal) -> tuple[Decimal, Decimal]:
        total = Decimal(0)
        slope = Decimal(0)
        one_i = 1 + i
        for t, f, amount in terms:
            one_fi = 1 + f * i
            pv = amount / (one_fi * one_i**t)
            total += pv
            slope -= pv * (f / one_fi + t / one_i)
        return total, slope

    lo = Decimal(0)
    at_lo, _ = value(lo)
    if at_lo == 0:
        return lo
    if at_lo < 0:
        raise AprNotComputable("the payments do not exceed the advances, so there is no positive APR")
    hi = Decimal("0.01")
    while value(hi)[0] > 0:
        lo, hi = hi, hi * 4
        if hi > UNIT_RATE_MAX:
            raise AprNotComputable("the APR is beyond the supported range")
    rate = (lo + hi) / 2
    tolerance = Decimal(10) ** -(SOLVER_PRECISION - 20)
    for _ in range(SOLVER_ITERATIONS_MAX):
        total, slope = value(rate)
        if total == 0:
            return rate
        if total > 0:
            lo = rate
        else:
            hi = rate
        step = rate - total / slope if slope != 0 else rate
        candidate = step if lo < step < hi else (lo + hi) / 2
        if abs(candidate - rate) <= tolerance or hi - lo <= tolerance:
            return candidate
        rate = candidate
    return rate  # pragma: no cover - Newton inside a bracket converges long before the cap


def _check_flows(kind: str, flows: Sequence[CashFlow], limit: int) -> None:
    if len(flows) > limit:
        raise TooManyCashFlows(f"at most {limit} {kind} per request", field=kind, limit=limit)
    for index, flow in enumerate(flows):
        amount = flow.amount_minor
        if type(amount) is not int or not 0 < amount <= WIRE_AMOUNT_MINOR_MAX:
            raise InvalidCashFlowAmount(
                f"{kind}[{index}].amount_minor must be a positive integer", field=f"{kind}[{index}].amount_minor"
            )
        if not isinstance(flow.on, date) or not CASH_FLOW_YEAR_MIN <= flow.on.year <= CASH_FLOW_YEAR_MAX:
            raise InvalidCashFlowDate(
                f"{kind}[{index}].date must be a date in {CASH_FLOW_YEAR_MIN}–{CASH_FLOW_YEAR_MAX}",
                field=f"{kind}[{index}].date",
            )


def _as_flows(items: Sequence[CashFlow | tuple[date, int]]) -> list[CashFlow]:
    return [item if isinstance(item, CashFlow) else CashFlow(item[0], item[1]) for item in items]


def compute_apr(
    advances: Sequence[CashFlow | tuple[date, int]],
    payments: Sequence[CashFlow | tuple[date, int]],
    *,
    term_start: date | None = None,
) -> AprResult:
    """The Appendix J actuarial APR of any pattern of advances and payments (amounts in minor units).

    `term_start` is the date the finance charge begins to be earned, if later than the first advance.
    """
    advance_flows, payment_flows = _as_flows(advances), _as_flows(payments)
    if not advance_flows or not payment_flows:
        raise AprNotComputable("an APR needs at least one advance and one payment")
    _check_flows("advances", advance_flows, ADVANCES_MAX)
    _check_flows("payments", payment_flows, PAYMENTS_MAX)
    start = term_start if term_start is not None else min(flow.on for flow in advance_flows)
    every = advance_flows + payment_flows
    if any(flow.on < start for flow in every):
        raise AprNotComputable("a cash flow falls before the start of the term", field="term_start")
    if not any(flow.on > start for flow in payment_flows):
        raise AprNotComputable("no payment falls after the start of the term", field="payments")
    end = max(flow.on for flow in every)
    if end > add_months(start, 12 * TERM_YEARS_MAX):
        raise AprNotComputable(f"the term exceeds {TERM_YEARS_MAX} years")

    advance_dates = sorted(flow.on for flow in advance_flows)
    payment_dates = sorted(flow.on for flow in payment_flows)
    if len(advance_flows) == 1 and len(payment_flows) == 1:
        unit = _single_payment_unit(start, payment_flows[0].on)
    else:
        unit = determine_unit_period(start, advance_dates, payment_dates)

    timed: list[TimedFlow] = []
    for kind, flows, series in (
        ("advance", advance_flows, advance_dates),
        ("payment", payment_flows, payment_dates),
    ):
        for flow in flows:
            anchor = _anchor_day(flow.on, series, series.index(flow.on))
            t, f = _time(unit, start, flow.on, anchor)
            timed.append(TimedFlow(kind, flow.on, flow.amount_minor, t, f))
    with localcontext() as context:
        context.prec = SOLVER_PRECISION
        signed = [
            (x.full_periods, x.fraction, x.amount_minor if x.kind == "payment" else -x.amount_minor) for x in timed
        ]
        rate = _solve(signed)
        ppy = unit.periods_per_year
        percent = rate * Decimal(ppy.numerator) / Decimal(ppy.denominator) * 100
        apr = percent.quantize(APR_PLACES, rounding=ROUND_HALF_EVEN)
        unrounded = percent.quantize(Decimal("1e-10"), rounding=ROUND_HALF_EVEN)
        unit_rate = rate.quantize(Decimal("1e-20"), rounding=ROUND_HALF_EVEN)
    return AprResult(
        apr=apr,
        apr_unrounded=unrounded,
        unit_period=unit,
        periods_per_year=unit.periods_per_year,
        unit_period_rate=unit_rate,
        term_start=start,
        flows=tuple(timed),
    )


def periodic_rate_apr(periodic_rate: Decimal, periods_per_year: int) -> Decimal:
    """An open-end (line) APR: the periodic rate (a fraction, 0.015 = 1.5 %) × periods a year, in percent,
    two decimals (Regulation Z § 1026.14(b))."""
    if not isinstance(periodic_rate, Decimal) or not periodic_rate.is_finite() or periodic_rate < 0:
        raise AprRequestMalformed("periodic_rate must be a non-negative Decimal", field="periodic_rate")
    if type(periods_per_year) is not int or not 1 <= periods_per_year <= 366:
        raise AprRequestMalformed("periods_per_year must be an integer 1–366", field="periods_per_year")
    with localcontext() as context:
        context.prec = SOLVER_PRECISION
        return (periodic_rate * periods_per_year * 100).quantize(APR_PLACES, rounding=ROUND_HALF_EVEN)


# --- the JSON body -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AprRequest:
    """A validated APR request body."""

    currency: Currency
    advances: tuple[CashFlow, ...]
    payments: tuple[CashFlow, ...]


_FLOW_KEYS = frozenset({"date", "amount_minor"})
_BODY_KEYS = frozenset({"currency", "advances", "payments"})


def _parse_flow(kind: str, index: int, item: object, errors: list[CreditstackError]) -> CashFlow | None:
    where = f"{kind}[{index}]"
    if not isinstance(item, Mapping) or set(item) != _FLOW_KEYS:
        errors.append(
            AprRequestMalformed(f'{where} must be an object with exactly "date" and "amount_minor"', field=where)
        )
        return None
    raw_date, amount = item["date"], item["amount_minor"]
    on: date | None = None
    if not isinstance(raw_date, str) or not _ISO_DATE.match(raw_date):
        errors.append(InvalidCashFlowDate(f"{where}.date must be an ISO date YYYY-MM-DD", field=f"{where}.date"))
    else:
        try:
            on = date.fromisoformat(raw_date)
        except ValueError:
            errors.append(
                InvalidCashFlowDate(f"{where}.date {raw_date!r} is not a calendar date", field=f"{where}.date")
            )
        else:
            if not CASH_FLOW_YEAR_MIN <= on.year <= CASH_FLOW_YEAR_MAX:
                errors.append(
                    InvalidCashFlowDate(
                        f"{where}.date must fall in {CASH_FLOW_YEAR_MIN}–{CASH_FLOW_YEAR_MAX}", field=f"{where}.date"
                    )
                )
                on = None
    if type(amount) is not int or not 0 < amount <= WIRE_AMOUNT_MINOR_MAX:
        errors.append(
            InvalidCashFlowAmount(
                f"{where}.amount_minor must be a positive integer of at most {WIRE_AMOUNT_MINOR_MAX}",
                field=f"{where}.amount_minor",
            )
        )
        return None
    return CashFlow(on, amount) if on is not None else None


def parse_apr_request(body: object) -> AprRequest:
    """Validate {"currency", "advances": [{"date", "amount_minor"}], "payments": [...]}.

    Every problem is collected; the first is raised with all of them (as `RecordError` dicts) in
    `details["errors"]`.
    """
    if not isinstance(body, Mapping):
        raise AprRequestMalformed("the request body must be a JSON object")
    errors: list[CreditstackError] = []
    missing = sorted(_BODY_KEYS - set(body))
    unexpected = sorted(str(key) for key in set(body) - _BODY_KEYS)
    if missing or unexpected:
        raise AprRequestMalformed(
            f"missing keys {missing}, unexpected keys {unexpected}", missing=missing, unexpected=unexpected
        )
    currency: Currency | None = None
    try:
        currency = Currency.of(body["currency"])
    except UnknownCurrency:
        errors.append(AprUnknownCurrency(f"unknown currency {body['currency']!r}", field="currency"))
    lists: dict[str, list[CashFlow]] = {}
    for kind, limit in (("advances", ADVANCES_MAX), ("payments", PAYMENTS_MAX)):
        items = body[kind]
        if not isinstance(items, list) or not items:
            errors.append(AprRequestMalformed(f"{kind} must be a non-empty list", field=kind))
            continue
        if len(items) > limit:
            raise TooManyCashFlows(f"at most {limit} {kind} per request", field=kind, limit=limit)
        parsed = [_parse_flow(kind, index, item, errors) for index, item in enumerate(items)]
        lists[kind] = [flow for flow in parsed if flow is not None]
    if errors:
        first = errors[0]
        first.details["errors"] = [RecordError.from_error(i, e).to_dict() for i, e in enumerate(errors)]
        raise first
    assert currency is not None
    return AprRequest(currency, tuple(lists["advances"]), tuple(lists["payments"]))


def compute_apr_request(body: object) -> dict[str, Any]:
    """The APR calculator end to end: validate the JSON body, compute, and answer {"apr": "9.69", ...}."""
    request = parse_apr_request(body)
    result = compute_apr(request.advances, request.payments)
    return {"currency": request.currency.code, **result.to_dict()}
