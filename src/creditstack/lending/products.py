"""Lending products: the terms a product fixes, as data. No I/O.

A product is one of two kinds. An **instalment** cash loan (3–24 months, equal instalment or equal
principal) and a **revolving credit line** (statement day 1–28, due D days later, minimum payment,
interest-free period, conversion of a statement into 3/6/12 instalments). Both share the servicing terms:
day count, penalty rate on overdue principal, late fee and its grace days, the days-past-due tolerance,
non-accrual and charge-off thresholds, the delinquency buckets and the repayment allocation order.

**Rates are exact to the millionth** (`Decimal("0.182500")` = 18.25 % a year) so that the end-of-day
accrual can run in integer SQL on both databases: one day's interest on principal P is
(P × rate_micro × n + carry) / (10⁶ × days_per_year), posted rounded half up with the remainder carried —
the same rule as `schedule.daily_accrual`, in integers (`accrue_day`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from creditstack.core.money import Currency
from creditstack.lending.calendar import BusinessCalendar, RollConvention
from creditstack.lending.daycount import DayCount
from creditstack.lending.errors import InvalidProduct
from creditstack.lending.schedule import AmortisationMethod, PrepaymentMode

#: Rates carry at most six decimal places (of the fraction), so that accrual is integer arithmetic.
RATE_SCALE = 1_000_000
#: The allocation components, in the default order (issue: fees → penalty → interest → principal).
ALLOCATION_DEFAULT = ("fees", "penalty", "interest", "principal")
#: Default delinquency bucket lower bounds: current, 1–29, 30–59, 60–89, 90–179, 180+.
BUCKETS_DEFAULT = (1, 30, 60, 90, 180)
#: Largest principal a loan may carry (keeps integer accrual far inside 64 bits).
PRINCIPAL_MINOR_MAX = 100_000_000_000


class ProductKind(enum.StrEnum):
    INSTALMENT = "instalment"
    LINE = "line"


class ExcessHandling(enum.StrEnum):
    """What an instalment loan does with a repayment beyond everything billed."""

    PREPAY = "prepay"  # reduces principal at once (and reschedules per the prepayment mode)
    CREDIT = "credit"  # held as a credit and applied to the next instalment when it is billed


def rate_micro(rate: Decimal, field_name: str = "rate") -> int:
    """A rate as an integer number of millionths; refuses more than six places or a negative rate."""
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate < 0 or rate > 10:
        raise InvalidProduct(f"{field_name} must be a Decimal between 0 and 10", field=field_name)
    scaled = rate * RATE_SCALE
    if scaled != scaled.to_integral_value():
        raise InvalidProduct(f"{field_name} may have at most six decimal places", field=field_name)
    return int(scaled)


def accrue_day(
    principal_minor: int, rate_in_micro: int, day_units: int, days_per_year: int, carry: int
) -> tuple[int, int]:
    """One day's interest in integers: (posted minor units, new carry in 1/(10⁶ × days_per_year) units).

    Equal to `schedule.daily_accrual` with carry = carry / (10⁶ × days_per_year): ⌊x + ½⌋ of the exact
    amount plus carry. `day_units` is the day count's days for the day (1, or 0–3 under 30E/360).
    """
    denominator = RATE_SCALE * days_per_year
    total = principal_minor * rate_in_micro * day_units + carry
    posted = (total + denominator // 2) // denominator
    return posted, total - posted * denominator


def day_units(day_count: DayCount, day: date) -> int:
    """The numerator of the day's year fraction under `day_count` (its denominator is days_per_year)."""
    return day_count.days(day, day + timedelta(days=1))


@dataclass(frozen=True, slots=True)
class Product:
    code: str
    kind: ProductKind
    currency: str
    name: str
    rate_min: Decimal  # annual, the best grade's offer
    rate_max: Decimal  # annual, the worst grade's offer
    day_count: DayCount = DayCount.ACT_365F
    penalty_rate: Decimal = Decimal("0.120000")  # annual, on overdue principal, on top of contract interest
    late_fee_minor: int = 0
    late_fee_grace_days: int = 0  # the fee is charged when an instalment is still unpaid this many days after due
    dpd_tolerance_minor: int = 0  # an unpaid amount up to this does not make an instalment past due
    non_accrual_dpd: int = 90
    charge_off_dpd: int = 180
    buckets: tuple[int, ...] = BUCKETS_DEFAULT
    allocation: tuple[str, ...] = ALLOCATION_DEFAULT
    amount_min_minor: int = 100_000
    amount_max_minor: int = 20_000_000
    holidays: tuple[date, ...] = ()
    weekend_days: tuple[int, ...] = (5, 6)
    roll: RollConvention = RollConvention.FOLLOWING
    # instalment loans
    term_months_min: int = 3
    term_months_max: int = 24
    amortisation: AmortisationMethod = AmortisationMethod.EQUAL_INSTALMENT
    prepayment_mode: PrepaymentMode = PrepaymentMode.KEEP_TERM
    excess: ExcessHandling = ExcessHandling.PREPAY
    origination_fee_bps: int = 0  # deducted from the disbursement; counted in the APR
    # credit lines
    statement_day: int = 5
    due_days: int = 20
    min_payment_floor_minor: int = 10_000
    min_payment_bps: int = 1_000  # of statement principal
    conversion_terms: tuple[int, ...] = (3, 6, 12)
    conversion_fee_bps_per_month: int = 60  # of the converted principal, charged with each instalment
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Currency.of(self.currency)
        object.__setattr__(self, "kind", ProductKind(self.kind))
        object.__setattr__(self, "day_count", DayCount.parse(self.day_count))
        object.__setattr__(self, "roll", RollConvention(self.roll))
        object.__setattr__(self, "amortisation", AmortisationMethod(self.amortisation))
        object.__setattr__(self, "prepayment_mode", PrepaymentMode(self.prepayment_mode))
        object.__setattr__(self, "excess", ExcessHandling(self.excess))
        if not self.code or len(self.code) > 40 or not self.code.replace("-", "").replace("_", "").isalnum():
            raise InvalidProduct("a product code is 1–40 letters, digits, '-' or '_'", field="code")
        rate_micro(self.rate_min, "rate_min")
        rate_micro(self.rate_max, "rate_max")
        rate_micro(self.penalty_rate, "penalty_rate")
        if self.rate_min > self.rate_max:
            raise InvalidProduct("rate_min must not exceed rate_max", field="rate_min")
        if sorted(self.allocation) != sorted(ALLOCATION_DEFAULT):
            raise InvalidProduct(f"allocation must order exactly {ALLOCATION_DEFAULT}", field="allocation")
        if list(self.buckets) != sorted(set(self.buckets)) or not self.buckets or self.buckets[0] < 1:
            raise InvalidProduct("buckets are increasing lower bounds of days past due, from 1", field="buckets")
        if not 0 < self.non_accrual_dpd <= self.charge_off_dpd:
            raise InvalidProduct("0 < non_accrual_dpd <= charge_off_dpd", field="charge_off_dpd")
        if not 0 < self.amount_min_minor <= self.amount_max_minor <= PRINCIPAL_MINOR_MAX:
            raise InvalidProduct("0 < amount_min <= amount_max <= 10¹¹ minor units", field="amount_max_minor")
        for name in ("late_fee_minor", "late_fee_grace_days", "dpd_tolerance_minor", "min_payment_floor_minor"):
            if getattr(self, name) < 0:
                raise InvalidProduct(f"{name} must not be negative", field=name)
        if not 3 <= self.term_months_min <= self.term_months_max <= 24 and self.kind is ProductKind.INSTALMENT:
            raise InvalidProduct("instalment terms lie within 3–24 months", field="term_months_max")
        if not 1 <= self.statement_day <= 28:
            raise InvalidProduct("the statement day is 1–28", field="statement_day")
        if not 1 <= self.due_days <= 60:
            raise InvalidProduct("due_days is 1–60", field="due_days")
        if not 0 <= self.min_payment_bps <= 10_000 or not 0 <= self.origination_fee_bps < 10_000:
            raise InvalidProduct("basis points lie within 0–10,000", field="min_payment_bps")
        if any(t not in (3, 6, 12) for t in self.conversion_terms):
            raise InvalidProduct("statements convert into 3, 6 or 12 instalments", field="conversion_terms")

    @property
    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar.of(self.holidays, self.weekend_days)

    @property
    def days_per_year(self) -> int:
        return self.day_count.days_per_year

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, enum.Enum):
                out[key] = value.value
            elif isinstance(value, Decimal):
                out[key] = str(value)
            elif isinstance(value, tuple):
                out[key] = [v.isoformat() if isinstance(v, date) else v for v in value]
            elif isinstance(value, Mapping):
                out[key] = dict(value)
            else:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Product:
        values = dict(data)
        for key in ("rate_min", "rate_max", "penalty_rate"):
            if key in values:
                values[key] = Decimal(str(values[key]))
        if "holidays" in values:
            values["holidays"] = tuple(date.fromisoformat(d) for d in values["holidays"])
        for key in ("weekend_days", "buckets", "allocation", "conversion_terms"):
            if key in values:
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except TypeError as exc:
            raise InvalidProduct(f"unknown or missing product terms: {exc}") from exc

    def rate_for_grade(self, grade_fraction: Decimal) -> Decimal:
        """The annual rate at a risk grade in [0, 1] (0 best), on the product's band, to six places."""
        grade_fraction = min(max(grade_fraction, Decimal(0)), Decimal(1))
        rate = self.rate_min + (self.rate_max - self.rate_min) * grade_fraction
        return rate.quantize(Decimal("0.000001"))


#: The products a new platform offers (`creditstack init` registers them; a platform may add its own).
DEFAULT_PRODUCTS: tuple[Product, ...] = (
    Product(
        code="cash-cny",
        kind=ProductKind.INSTALMENT,
        currency="CNY",
        name="Instalment cash loan (CNY)",
        rate_min=Decimal("0.072000"),
        rate_max=Decimal("0.216000"),
        late_fee_minor=2_000,
        late_fee_grace_days=3,
        dpd_tolerance_minor=100,
        amount_min_minor=50_000,
        amount_max_minor=20_000_000,
    ),
    Product(
        code="line-cny",
        kind=ProductKind.LINE,
        currency="CNY",
        name="Revolving credit line (CNY)",
        rate_min=Decimal("0.073000"),
        rate_max=Decimal("0.182500"),
        late_fee_minor=2_500,
        dpd_tolerance_minor=100,
        amount_min_minor=50_000,
        amount_max_minor=20_000_000,
        statement_day=5,
        due_days=20,
        min_payment_floor_minor=10_000,
        min_payment_bps=1_000,
    ),
)
