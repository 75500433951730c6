"""Pure portfolio arithmetic on plain rows: buckets, vintages, roll rates, concentration, IFRS 9, five tiers.

Standard library and `core` only. Rows are mappings (`dict`) or objects with attributes (dataclasses), read
by field name. Account-month snapshot rows (written by lending's month-end EOD) have the fields
`account_id, origination_month, snapshot_month, balance_minor, dpd, status, charged_off,
original_principal_minor`; months are `date`s (any day of the month) or `"YYYY-MM"` strings.

Amounts are integer minor units. Rates and shares are `Decimal`s, computed exactly as `Fraction`s and
rounded once, half-even, to `SHARE_PLACES` (HHI to `HHI_PLACES`) — rounding is monotone, so order and
bounds survive it.

>>> dpd_bucket(0), dpd_bucket(1), dpd_bucket(29), dpd_bucket(30), dpd_bucket(179), dpd_bucket(180)
('current', '1-29', '1-29', '30-59', '90-179', '180+')
>>> hhi([25, 25, 25, 25])
Decimal('2500.0000')
>>> cr_n([50, 30, 10, 5, 3, 2], n=2)
Decimal('0.800000')
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import IntEnum, StrEnum
from fractions import Fraction
from typing import Any, Literal, overload

from creditstack.analytics.errors import AnalyticsInputInvalid
from creditstack.core.money import Money, round_minor

#: Default DPD bucket lower bounds: current, 1–29, 30–59, 60–89, 90–179, 180+ (DESIGN.md, lending).
DPD_BOUNDARIES_DEFAULT: tuple[int, ...] = (1, 30, 60, 90, 180)
CURRENT = "current"
#: Shares and rates are rounded (half-even) to this many places when shown.
SHARE_PLACES = Decimal("0.000001")
#: HHI points (0–10,000) are rounded (half-even) to this many places.
HHI_PLACES = Decimal("0.0001")
HHI_MAX = 10_000
#: Statuses that mean the account has left the book (for roll rates).
CLOSED_STATUSES = frozenset({"closed", "paid_off", "settled"})
ROLL_CHARGED_OFF = "charged_off"
ROLL_CLOSED = "closed"
ROLL_MISSING = "missing"
"""To-state of an account present in the from-month snapshot and absent from the to-month snapshot."""
#: Largest number of rows one call accepts (a month-end book of a large platform fits many times over).
ROWS_MAX = 50_000_000

Number = int | Decimal | Fraction


# ---------------------------------------------------------------------------------------------------------
# Row access and small exact helpers


def _field(row: object, name: str) -> Any:
    if isinstance(row, Mapping):
        if name not in row:
            raise AnalyticsInputInvalid(f"row has no field {name!r}", field=name)
        return row[name]
    if not hasattr(row, name):
        raise AnalyticsInputInvalid(f"row has no field {name!r}", field=name)
    return getattr(row, name)


def _optional(row: object, name: str, default: Any) -> Any:
    if isinstance(row, Mapping):
        return row.get(name, default)
    return getattr(row, name, default)


def _int(value: object, name: str, *, minimum: int | None = None) -> int:
    if type(value) is not int:
        raise AnalyticsInputInvalid(f"{name} must be an int, got {type(value).__name__}", field=name)
    if minimum is not None and value < minimum:
        raise AnalyticsInputInvalid(f"{name} must be ≥ {minimum}, got {value}", field=name)
    return value


def _exact(value: object, name: str) -> Fraction:
    """An exact non-negative number (int, Decimal, Fraction); floats and bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | Fraction):
        raise AnalyticsInputInvalid(f"{name} must be an int, Decimal or Fraction, never {type(value).__name__}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise AnalyticsInputInvalid(f"{name} must be finite")
    exact = Fraction(value)
    if exact < 0:
        raise AnalyticsInputInvalid(f"{name} must not be negative")
    return exact


def _to_decimal(value: Fraction, places: Decimal = SHARE_PLACES) -> Decimal:
    """A Fraction rounded once, half-even, to `places` (exact: the integer division is done in `Fraction`)."""
    scale = Fraction(1) / Fraction(places)
    scaled = value * scale
    integral = round(scaled)  # Fraction.__round__ rounds half to even
    return (Decimal(integral) * places).quantize(places)


def ratio(numerator: int, denominator: int) -> Decimal:
    """`numerator / denominator` as a Decimal rounded to `SHARE_PLACES`; 0 when the denominator is 0."""
    if denominator == 0:
        return Decimal(0).quantize(SHARE_PLACES)
    return _to_decimal(Fraction(numerator, denominator))


def _rows(rows: Iterable[object]) -> list[object]:
    listed = list(rows)
    if len(listed) > ROWS_MAX:
        raise AnalyticsInputInvalid(f"more than {ROWS_MAX} rows in one call")
    return listed


_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})(?:-\d{2})?$")


def month_index(value: object) -> int:
    """A month as a running count (year × 12 + month − 1) from a `date` or a `"YYYY-MM"` string."""
    if isinstance(value, date):
        return value.year * 12 + value.month - 1
    if isinstance(value, str):
        match = _MONTH_RE.match(value)
        if match and 1 <= int(match.group(2)) <= 12:
            return int(match.group(1)) * 12 + int(match.group(2)) - 1
    raise AnalyticsInputInvalid(f"not a month: {value!r} (use a date or 'YYYY-MM')", field="month")


def month_label(index: int) -> str:
    """The `"YYYY-MM"` label of a month index."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# ---------------------------------------------------------------------------------------------------------
# DPD buckets


def _check_boundaries(boundaries: Sequence[int]) -> tuple[int, ...]:
    bounds = tuple(boundaries)
    if not bounds:
        raise AnalyticsInputInvalid("at least one bucket boundary is needed", field="boundaries")
    for value in bounds:
        _int(value, "boundaries", minimum=1)
    if any(hi <= lo for lo, hi in itertools.pairwise(bounds)):
        raise AnalyticsInputInvalid("bucket boundaries must increase strictly", field="boundaries")
    return bounds


def bucket_labels(boundaries: Sequence[int] = DPD_BOUNDARIES_DEFAULT) -> tuple[str, ...]:
    """The labels in order: `current`, then `lo-hi` for each boundary pair, then `last+`.

    >>> bucket_labels()
    ('current', '1-29', '30-59', '60-89', '90-179', '180+')
    """
    bounds = _check_boundaries(boundaries)
    ranges = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(bounds)]
    return (CURRENT, *ranges, f"{bounds[-1]}+")


def dpd_bucket_index(dpd: int, boundaries: Sequence[int] = DPD_BOUNDARIES_DEFAULT) -> int:
    """The position of `dpd`'s bucket in `bucket_labels(boundaries)` (0 = current)."""
    bounds = _check_boundaries(boundaries)
    days = _int(dpd, "dpd", minimum=0)
    return sum(1 for bound in bounds if days >= bound)


def dpd_bucket(dpd: int, boundaries: Sequence[int] = DPD_BOUNDARIES_DEFAULT) -> str:
    """The bucket label of a days-past-due count: below the first boundary is `current`."""
    return bucket_labels(boundaries)[dpd_bucket_index(dpd, boundaries)]


@dataclass(frozen=True, slots=True)
class BucketRow:
    """One bucket of a DPD distribution."""

    bucket: str
    accounts: int
    balance_minor: int
    account_share: Decimal
    balance_share: Decimal


def bucket_distribution(rows: Iterable[object], boundaries: Sequence[int] = DPD_BOUNDARIES_DEFAULT) -> list[BucketRow]:
    """Accounts and balance per DPD bucket (every bucket listed, in order), with their shares of the total.

    Rows need `dpd` and `balance_minor`; pass the rows you want counted (for example one snapshot month,
    charged-off accounts excluded).
    """
    labels = bucket_labels(boundaries)
    accounts = [0] * len(labels)
    balances = [0] * len(labels)
    for row in _rows(rows):
        index = dpd_bucket_index(_field(row, "dpd"), boundaries)
        accounts[index] += 1
        balances[index] += _int(_field(row, "balance_minor"), "balance_minor")
    accounts_total, balance_total = sum(accounts), sum(balances)
    return [
        BucketRow(label, n, bal, ratio(n, accounts_total), ratio(bal, balance_total))
        for label, n, bal in zip(labels, accounts, balances, strict=True)
    ]


# ---------------------------------------------------------------------------------------------------------
# Vintage curves

VintageMetric = Literal["ever_30_plus", "ever_60_plus", "ever_90_plus", "charged_off"]
_EVER_THRESHOLDS: dict[str, int | None] = {
    "ever_30_plus": 30,
    "ever_60_plus": 60,
    "ever_90_plus": 90,
    "charged_off": None,
}
_METRIC_ALIASES = {"dpd30+": "ever_30_plus", "dpd60+": "ever_60_plus", "dpd90+": "ever_90_plus"}
VINTAGE_METRICS: tuple[str, ...] = (*_EVER_THRESHOLDS, *_METRIC_ALIASES)


@dataclass(frozen=True, slots=True)
class VintagePoint:
    """A vintage's cumulative bad rate at one month on book.

    `bad_rate` = accounts bad by this month on book / accounts in the vintage; `bad_principal_rate` weighs
    each account by its original principal. Both are non-decreasing along a vintage (bad is absorbing).
    """

    vintage: str
    months_on_book: int
    accounts: int
    bad_accounts: int
    bad_rate: Decimal
    original_principal_minor: int
    bad_principal_minor: int
    bad_principal_rate: Decimal


def _is_bad(row: object, threshold: int | None) -> bool:
    charged_off = _optional(row, "charged_off", False)
    if not isinstance(charged_off, bool):
        raise AnalyticsInputInvalid("charged_off must be a bool", field="charged_off")
    if threshold is None:
        return charged_off
    return charged_off or _int(_field(row, "dpd"), "dpd", minimum=0) >= threshold


def vintage_curves(snapshots: Iterable[object], metric: str = "ever_90_plus") -> list[VintagePoint]:
    """Cumulative bad rate by months on book (MOB) per origination-month vintage.

    `metric`: `ever_30_plus` / `ever_60_plus` / `ever_90_plus` (ever at or beyond that DPD, or charged off;
    `dpd30+`, `dpd60+`, `dpd90+` are aliases) or `charged_off`. MOB = snapshot month − origination month.
    The denominator is every account seen in the vintage; an account counts as bad from the first MOB at
    which it meets the metric, and stays bad (paid-off or missing later snapshots do not cure it). Each
    vintage's curve runs from its earliest to its latest observed MOB, gaps filled.
    """
    canonical = _METRIC_ALIASES.get(metric, metric)
    if canonical not in _EVER_THRESHOLDS:
        raise AnalyticsInputInvalid(f"unknown metric {metric!r}; use one of {VINTAGE_METRICS}", field="metric")
    threshold = _EVER_THRESHOLDS[canonical]
    origination: dict[object, int] = {}
    principal: dict[object, int] = {}
    first_bad: dict[object, int] = {}
    seen: set[tuple[object, int]] = set()
    mob_range: dict[int, tuple[int, int]] = {}
    for row in _rows(snapshots):
        account = _field(row, "account_id")
        origin = month_index(_field(row, "origination_month"))
        snapshot = month_index(_field(row, "snapshot_month"))
        mob = snapshot - origin
        if mob < 0:
            raise AnalyticsInputInvalid(f"account {account!r}: snapshot before origination", field="snapshot_month")
        if (account, snapshot) in seen:
            raise AnalyticsInputInvalid(f"account {account!r}: two snapshots for {month_label(snapshot)}")
        seen.add((account, snapshot))
        if origination.setdefault(account, origin) != origin:
            raise AnalyticsInputInvalid(f"account {account!r}: two origination months", field="origination_month")
        original = _int(_field(row, "original_principal_minor"), "original_principal_minor", minimum=0)
        if principal.setdefault(account, original) != original:
            raise AnalyticsInputInvalid(
                f"account {account!r}: two original principals", field="original_principal_minor"
            )
        low, high = mob_range.get(origin, (mob, mob))
        mob_range[origin] = (min(low, mob), max(high, mob))
        if _is_bad(row, threshold):
            first_bad[account] = min(first_bad.get(account, mob), mob)

    by_vintage: dict[int, list[object]] = defaultdict(list)
    for account, origin in origination.items():
        by_vintage[origin].append(account)
    points: list[VintagePoint] = []
    for origin in sorted(by_vintage):
        members = by_vintage[origin]
        principal_total = sum(principal[a] for a in members)
        low, high = mob_range[origin]
        for mob in range(low, high + 1):
            bad = [a for a in members if a in first_bad and first_bad[a] <= mob]
            bad_principal = sum(principal[a] for a in bad)
            points.append(
                VintagePoint(
                    vintage=month_label(origin),
                    months_on_book=mob,
                    accounts=len(members),
                    bad_accounts=len(bad),
                    bad_rate=ratio(len(bad), len(members)),
                    original_principal_minor=principal_total,
                    bad_principal_minor=bad_principal,
                    bad_principal_rate=ratio(bad_principal, principal_total),
                )
            )
    return points


# ---------------------------------------------------------------------------------------------------------
# Roll rates


@dataclass(frozen=True, slots=True)
class RollRateRow:
    """One cell of a roll-rate matrix."""

    from_state: str
    to_state: str
    accounts: int
    balance_minor: int
    """Balance at the from-month of the accounts that moved from `from_state` to `to_state`."""
    account_rate: Decimal
    balance_rate: Decimal


@dataclass(frozen=True, slots=True)
class RollRates:
    """Transitions of the from-month population between states (buckets, charged off, closed, missing).

    `counts[i][j]` and `balances_minor[i][j]` (from-month balances) sum along each row to the row's
    population (`populations[i]`, `population_balances_minor[i]`); `to_balances_minor[i][j]` holds the same
    accounts' to-month balances, for the ratio `Bal_j(t) / Bal_i(t−1)`.
    """

    from_month: str
    to_month: str
    from_states: tuple[str, ...]
    to_states: tuple[str, ...]
    counts: Mapping[str, Mapping[str, int]]
    balances_minor: Mapping[str, Mapping[str, int]]
    to_balances_minor: Mapping[str, Mapping[str, int]]

    @property
    def populations(self) -> dict[str, int]:
        return {state: sum(self.counts[state].values()) for state in self.from_states}

    @property
    def population_balances_minor(self) -> dict[str, int]:
        return {state: sum(self.balances_minor[state].values()) for state in self.from_states}

    def account_rate(self, from_state: str, to_state: str) -> Decimal:
        """Share of the from-state's accounts that moved to `to_state` (Markov `P_ij = n_ij / n_i`)."""
        return ratio(self.counts[from_state][to_state], self.populations[from_state])

    def balance_rate(self, from_state: str, to_state: str) -> Decimal:
        """Share of the from-state's from-month balance that moved to `to_state`."""
        return ratio(self.balances_minor[from_state][to_state], self.population_balances_minor[from_state])

    def rows(self) -> list[RollRateRow]:
        return [
            RollRateRow(
                i,
                j,
                self.counts[i][j],
                self.balances_minor[i][j],
                self.account_rate(i, j),
                self.balance_rate(i, j),
            )
            for i in self.from_states
            for j in self.to_states
        ]


def _roll_state(row: object, boundaries: Sequence[int]) -> str:
    if _optional(row, "charged_off", False) is True:
        return ROLL_CHARGED_OFF
    if _optional(row, "status", None) in CLOSED_STATUSES:
        return ROLL_CLOSED
    return dpd_bucket(_field(row, "dpd"), boundaries)


def roll_rates(
    snapshots: Iterable[object],
    from_month: date | str,
    to_month: date | str,
    boundaries: Sequence[int] = DPD_BOUNDARIES_DEFAULT,
) -> RollRates:
    """The transition matrix of accounts from their state in `from_month` to their state in `to_month`.

    States: the DPD buckets, then `charged_off` (flag set), `closed` (status closed / paid_off / settled);
    an account absent from the to-month snapshot goes to `missing`. Accounts that first appear in the
    to-month are not in the matrix (they have no from-state).
    """
    start, end = month_index(from_month), month_index(to_month)
    if end <= start:
        raise AnalyticsInputInvalid("to_month must come after from_month", field="to_month")
    from_states = (*bucket_labels(boundaries), ROLL_CHARGED_OFF, ROLL_CLOSED)
    to_states = (*from_states, ROLL_MISSING)
    before: dict[object, tuple[str, int]] = {}
    after: dict[object, tuple[str, int]] = {}
    for row in _rows(snapshots):
        month = month_index(_field(row, "snapshot_month"))
        if month not in (start, end):
            continue
        account = _field(row, "account_id")
        target = before if month == start else after
        if account in target:
            raise AnalyticsInputInvalid(f"account {account!r}: two snapshots for {month_label(month)}")
        target[account] = (_roll_state(row, boundaries), _int(_field(row, "balance_minor"), "balance_minor"))
    counts = {i: dict.fromkeys(to_states, 0) for i in from_states}
    balances = {i: dict.fromkeys(to_states, 0) for i in from_states}
    to_balances = {i: dict.fromkeys(to_states, 0) for i in from_states}
    for account, (state, balance) in before.items():
        to_state, to_balance = after.get(account, (ROLL_MISSING, 0))
        counts[state][to_state] += 1
        balances[state][to_state] += balance
        to_balances[state][to_state] += to_balance
    return RollRates(month_label(start), month_label(end), from_states, to_states, counts, balances, to_balances)


# ---------------------------------------------------------------------------------------------------------
# Concentration


def _shares(amounts: Iterable[Number]) -> list[Fraction]:
    values = [_exact(value, "share") for value in amounts]
    total = sum(values, Fraction(0))
    if not values or total == 0:
        raise AnalyticsInputInvalid("concentration needs at least one positive amount", field="shares")
    return [value / total for value in values]


def hhi(shares: Iterable[Number]) -> Decimal:
    """Herfindahl-Hirschman index on 0–10,000: Σ(100·s_i)² with s_i = x_i / Σx.

    Accepts amounts or shares on any scale (they are normalised); exact, then rounded to `HHI_PLACES`.
    For n participants it lies in [10,000 / n, 10,000]. US HMG 2023: above 1,800 is highly concentrated.
    """
    normalised = _shares(shares)
    return _to_decimal(HHI_MAX * sum((s * s for s in normalised), Fraction(0)), HHI_PLACES)


def cr_n(shares: Iterable[Number], n: int = 5) -> Decimal:
    """Concentration ratio: the sum of the `n` largest shares, as a fraction of one."""
    _int(n, "n", minimum=1)
    normalised = sorted(_shares(shares), reverse=True)
    return _to_decimal(sum(normalised[:n], Fraction(0)))


@dataclass(frozen=True, slots=True)
class ConcentrationRow:
    key: object
    amount_minor: int
    share: Decimal


@dataclass(frozen=True, slots=True)
class Concentration:
    """Amounts grouped by a key, largest first, with HHI (0–10,000) and CR-n."""

    rows: tuple[ConcentrationRow, ...]
    total_minor: int
    hhi: Decimal
    cr_n: Decimal
    n: int


def concentration_by(
    rows: Iterable[object],
    key: str | Callable[[object], object],
    *,
    amount_field: str = "balance_minor",
    n: int = 5,
) -> Concentration:
    """Group `rows` by `key` (a field name or a function), sum `amount_field`, and measure concentration.

    Ties in amount are ordered by the key's text, so the result is deterministic.
    """
    totals: dict[object, int] = defaultdict(int)
    for row in _rows(rows):
        group = key(row) if callable(key) else _field(row, key)
        totals[group] += _int(_field(row, amount_field), amount_field, minimum=0)
    ordered = sorted(totals.items(), key=lambda item: (-item[1], str(item[0])))
    total = sum(totals.values())
    amounts = [amount for _, amount in ordered]
    return Concentration(
        rows=tuple(ConcentrationRow(group, amount, ratio(amount, total)) for group, amount in ordered),
        total_minor=total,
        hhi=hhi(amounts),
        cr_n=cr_n(amounts, n),
        n=n,
    )


# ---------------------------------------------------------------------------------------------------------
# IFRS 9 stages and expected credit loss


class Ifrs9Stage(IntEnum):
    """IFRS 9 impairment stages: 12-month ECL (1), lifetime ECL (2), credit-impaired (3)."""

    PERFORMING = 1
    UNDERPERFORMING = 2
    CREDIT_IMPAIRED = 3


def ifrs9_stage(
    dpd: int,
    *,
    sicr: bool = False,
    credit_impaired: bool = False,
    sicr_dpd_over: int = 30,
    default_dpd_over: int = 90,
) -> Ifrs9Stage:
    """The stage from days past due and flags, with the standard's rebuttable backstops.

    More than 30 DPD presumes a significant increase in credit risk (IFRS 9 5.5.11) → stage 2; more than
    90 DPD presumes default (B5.5.37) → stage 3. `sicr` / `credit_impaired` flags set by other evidence
    move an account to stage 2 / 3 regardless of DPD.
    """
    days = _int(dpd, "dpd", minimum=0)
    if credit_impaired or days > default_dpd_over:
        return Ifrs9Stage.CREDIT_IMPAIRED
    if sicr or days > sicr_dpd_over:
        return Ifrs9Stage.UNDERPERFORMING
    return Ifrs9Stage.PERFORMING


def _probability(value: object, name: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or not 0 <= value <= 1:
        raise AnalyticsInputInvalid(f"{name} must be a Decimal in [0, 1] (never a float)", field=name)
    return value


@overload
def expected_credit_loss(pd: Decimal, lgd: Decimal, ead: Money, discount_factor: Decimal = ...) -> Money: ...
@overload
def expected_credit_loss(pd: Decimal, lgd: Decimal, ead: int, discount_factor: Decimal = ...) -> int: ...
def expected_credit_loss(
    pd: Decimal, lgd: Decimal, ead: Money | int, discount_factor: Decimal = Decimal(1)
) -> Money | int:
    """ECL = PD × LGD × EAD × DF, rounded once (half-even) to a minor unit.

    `pd`, `lgd` and `discount_factor` are Decimals in [0, 1]; `ead` is Money or integer minor units (the
    result has the same type). Stage 1 passes a 12-month PD; stages 2 and 3 a lifetime PD.

    >>> expected_credit_loss(Decimal("0.02"), Decimal("0.45"), 1_000_000)  # 2 % × 45 % × 10,000.00
    9000
    """
    product = _probability(pd, "pd") * _probability(lgd, "lgd") * _probability(discount_factor, "discount_factor")
    if isinstance(ead, Money):
        if ead.amount_minor < 0:
            raise AnalyticsInputInvalid("ead must not be negative", field="ead")
        return ead.multiply_rate(product)
    return round_minor(Decimal(_int(ead, "ead", minimum=0)) * product)


# ---------------------------------------------------------------------------------------------------------
# China's five-tier loan classification


class LoanTier(StrEnum):
    """China's five-tier classification (Measures for Risk Classification of Financial Assets, 2023)."""

    NORMAL = "normal"
    SPECIAL_MENTION = "special-mention"
    SUBSTANDARD = "substandard"
    DOUBTFUL = "doubtful"
    LOSS = "loss"

    @property
    def non_performing(self) -> bool:
        """Substandard, doubtful and loss are non-performing loans (NPL)."""
        return self in (LoanTier.SUBSTANDARD, LoanTier.DOUBTFUL, LoanTier.LOSS)

    @property
    def ifrs9_stage(self) -> Ifrs9Stage:
        """The usual mapping: normal = stage 1, special mention = stage 2, substandard and below = stage 3."""
        if self is LoanTier.NORMAL:
            return Ifrs9Stage.PERFORMING
        if self is LoanTier.SPECIAL_MENTION:
            return Ifrs9Stage.UNDERPERFORMING
        return Ifrs9Stage.CREDIT_IMPAIRED


_TIER_ORDER = tuple(LoanTier)


def china_five_tier(
    dpd: int,
    *,
    watch: bool = False,
    credit_impaired: bool = False,
    ecl_to_book: Decimal | None = None,
) -> LoanTier:
    """The tier from days past due (floors of the 2023 Measures) and flags.

    DPD mapping: 0 normal; 1–90 special mention; 91–270 substandard; 271–360 doubtful; over 360 loss.
    `watch` (a risk signal without arrears) lifts a normal loan to special mention. A credit-impaired asset
    is at least substandard, at least doubtful when ECL / book value ≥ 50 %, and loss when ≥ 90 %.
    Source: reference/regulation.md §1g (◐, via creditriskengine `ecl/emerging/china.py`).
    """
    days = _int(dpd, "dpd", minimum=0)
    if days > 360:
        tier = LoanTier.LOSS
    elif days > 270:
        tier = LoanTier.DOUBTFUL
    elif days > 90:
        tier = LoanTier.SUBSTANDARD
    elif days > 0 or watch:
        tier = LoanTier.SPECIAL_MENTION
    else:
        tier = LoanTier.NORMAL
    floors = [tier]
    if credit_impaired:
        floors.append(LoanTier.SUBSTANDARD)
        if ecl_to_book is not None:
            coverage = _exact(ecl_to_book, "ecl_to_book")
            if coverage >= Fraction(9, 10):
                floors.append(LoanTier.LOSS)
            elif coverage >= Fraction(1, 2):
                floors.append(LoanTier.DOUBTFUL)
    return max(floors, key=_TIER_ORDER.index)
