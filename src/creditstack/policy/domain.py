"""Pure policy types: dated rules as data, rule sets, check results and the figures the checks read.

Standard library and `core` only. A `Rule` is data — an id, one of a handful of kinds, a scope (what it
is checked against), typed parameters, a half-open validity window `[effective_from, effective_to)`, a
jurisdiction and the source it was read from. `evaluate` turns rules plus figures into `CheckResult`s.

Worked example (the 2020 draft's natural-person cap, Art. 13): a borrower whose declared average annual
income over the last three years is CNY 90,000 may owe at most min(CNY 300,000, 90,000 / 3) = CNY 30,000.

>>> from creditstack.core.money import CNY, Money
>>> position = BorrowerPosition(
...     borrower_kind="natural_person", purpose="consumer",
...     new_principal=Money(1_000_000, CNY), outstanding_principal=Money(500_000, CNY),
...     credit_line_limits=Money(2_000_000, CNY), income_3y_average=Money(9_000_000, CNY))
>>> position.exposure().amount_minor  # new + outstanding + full line limits
3500000
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Literal, get_args

from creditstack.core.money import Money
from creditstack.policy.errors import PolicyInputInvalid, RuleMisconfigured

RuleKind = Literal["borrower_cap", "rate_cap", "loan_share_min", "ratio_max", "ratio_min", "amount_min"]
RULE_KINDS: tuple[RuleKind, ...] = get_args(RuleKind)

RuleScope = Literal["borrower", "offer", "loan", "partner_bank", "platform", "bank_capital"]
RULE_SCOPES: tuple[RuleScope, ...] = get_args(RuleScope)

BorrowerKind = Literal["natural_person", "legal_person"]
BORROWER_KINDS: tuple[BorrowerKind, ...] = get_args(BorrowerKind)

LoanPurpose = Literal["consumer", "business"]
LOAN_PURPOSES: tuple[LoanPurpose, ...] = get_args(LoanPurpose)

RateMeasure = Literal["apr_all_in", "mapr"]
RATE_MEASURES: tuple[RateMeasure, ...] = get_args(RateMeasure)

ParameterValue = int | str | bool | Decimal | Fraction | tuple[str, ...]
NumberValue = int | str | bool | Decimal

# kind -> (scopes it may have, required parameters with their types, optional parameters with their types)
_KIND_SPEC: dict[str, tuple[frozenset[str], dict[str, type], dict[str, type]]] = {
    "borrower_cap": (
        frozenset({"borrower"}),
        {"amount_max_minor": int, "currency": str},
        {"income_fraction": Fraction, "borrower_kinds": tuple, "purposes": tuple},
    ),
    "rate_cap": (frozenset({"offer"}), {"apr_max": Decimal}, {"covered_only": bool, "measure": str}),
    "loan_share_min": (frozenset({"loan"}), {"share_min": Decimal}, {}),
    "ratio_max": (
        frozenset({"partner_bank", "platform", "bank_capital"}),
        {"numerator": str, "denominator": str, "limit": Decimal},
        {},
    ),
    "ratio_min": (
        frozenset({"partner_bank", "platform", "bank_capital"}),
        {"numerator": str, "denominator": str, "limit": Decimal},
        {},
    ),
    "amount_min": (
        frozenset({"platform", "bank_capital"}),
        {"figure": str, "amount_min_minor": int, "currency": str},
        {"condition": str},
    ),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One dated regulatory rule, as data.

    `effective_to` is exclusive: the first date on which the rule no longer applies (None: open-ended),
    so a replacement rule can start on the day its predecessor stops.
    """

    id: str
    kind: RuleKind
    scope: RuleScope
    title: str
    parameters: Mapping[str, ParameterValue] = field(hash=False)
    effective_from: date
    effective_to: date | None
    jurisdiction: str
    source: str

    def __post_init__(self) -> None:
        if not self.id or not self.source or not self.jurisdiction:
            raise RuleMisconfigured("a rule needs an id, a jurisdiction and a source", rule_id=self.id)
        if self.kind not in _KIND_SPEC:
            raise RuleMisconfigured(f"rule {self.id}: unknown kind {self.kind!r}", rule_id=self.id)
        scopes, required, optional = _KIND_SPEC[self.kind]
        if self.scope not in scopes:
            raise RuleMisconfigured(f"rule {self.id}: kind {self.kind} cannot have scope {self.scope}")
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise RuleMisconfigured(f"rule {self.id}: effective_to must be after effective_from")
        params = dict(self.parameters)
        for name in required:
            if name not in params:
                raise RuleMisconfigured(f"rule {self.id}: parameter {name!r} is required for {self.kind}")
        for name, value in params.items():
            expected_type = required.get(name) or optional.get(name)
            if expected_type is None:
                raise RuleMisconfigured(f"rule {self.id}: parameter {name!r} is not used by {self.kind}")
            if type(value) is not expected_type:
                raise RuleMisconfigured(f"rule {self.id}: parameter {name!r} must be {expected_type.__name__}")
        for name in ("limit", "share_min", "apr_max"):
            number = params.get(name)
            if isinstance(number, Decimal) and not (number.is_finite() and number >= 0):
                raise RuleMisconfigured(f"rule {self.id}: parameter {name!r} must be a non-negative number")
        measure = params.get("measure", "apr_all_in")
        if measure not in RATE_MEASURES:
            raise RuleMisconfigured(f"rule {self.id}: measure must be one of {RATE_MEASURES}")
        object.__setattr__(self, "parameters", MappingProxyType(params))

    def in_force_on(self, business_date: date) -> bool:
        """True when `effective_from <= business_date < effective_to`."""
        if business_date < self.effective_from:
            return False
        return self.effective_to is None or business_date < self.effective_to

    # Typed readers for the evaluator (the parameter types were checked on construction).
    def decimal(self, name: str) -> Decimal:
        value = self.parameters[name]
        assert isinstance(value, Decimal)
        return value

    def integer(self, name: str) -> int:
        value = self.parameters[name]
        assert type(value) is int
        return value

    def text(self, name: str, default: str | None = None) -> str:
        value = self.parameters.get(name, default)
        assert isinstance(value, str)
        return value

    def fraction(self, name: str) -> Fraction | None:
        value = self.parameters.get(name)
        assert value is None or isinstance(value, Fraction)
        return value

    def flag(self, name: str) -> bool:
        value = self.parameters.get(name, False)
        assert isinstance(value, bool)
        return value

    def names(self, name: str) -> tuple[str, ...] | None:
        value = self.parameters.get(name)
        assert value is None or isinstance(value, tuple)
        return value


RuleSetStatus = Literal["in_force", "draft", "interpretation", "reference"]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A named set of rules from one text (or one family of texts); settings name the sets in force."""

    name: str
    title: str
    status: RuleSetStatus
    jurisdiction: str
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        ids = [rule.id for rule in self.rules]
        if len(ids) != len(set(ids)):
            raise RuleMisconfigured(f"rule set {self.name}: duplicate rule ids")

    def in_force_on(self, business_date: date) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.in_force_on(business_date))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one rule against one set of figures: pass or fail, why, and the numbers compared.

    Amounts in `numbers` are integer minor units (keys end in `_minor`, with a `currency` key); rates and
    ratios are Decimals (fractions of one, not percent).
    """

    rule_id: str
    passed: bool
    reason: str
    numbers: Mapping[str, NumberValue] = field(hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", MappingProxyType(dict(self.numbers)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: Decimals become strings so that nothing passes through a float."""
        return {
            "rule_id": self.rule_id,
            "passed": self.passed,
            "reason": self.reason,
            "numbers": {k: str(v) if isinstance(v, Decimal) else v for k, v in self.numbers.items()},
        }


# ---------------------------------------------------------------------------------------------------------
# Figures the checks read


def _same_currency(*amounts: Money) -> None:
    for amount in amounts:
        if not isinstance(amount, Money):
            raise PolicyInputInvalid(f"expected Money, got {type(amount).__name__}")
    currencies = {amount.currency for amount in amounts}
    if len(currencies) > 1:
        raise PolicyInputInvalid(f"figures mix currencies: {sorted(c.code for c in currencies)}")


def _non_negative(**amounts: Money) -> None:
    for name, amount in amounts.items():
        if amount.amount_minor < 0:
            raise PolicyInputInvalid(f"{name} must not be negative", field=name)


@dataclass(frozen=True, slots=True)
class BorrowerPosition:
    """What a borrower owes and asks for, as the per-borrower caps see it.

    The exposure compared with a cap is `outstanding_principal + credit_line_limits + new_principal`: every
    open credit line counts at its full limit (drawn or not), and a new credit line counts at its limit.
    `income_3y_average` is the borrower's declared average annual income over the last three years; the
    lending decision stores it next to the check results.
    """

    borrower_kind: BorrowerKind
    purpose: LoanPurpose
    new_principal: Money
    outstanding_principal: Money
    credit_line_limits: Money
    income_3y_average: Money | None = None

    def __post_init__(self) -> None:
        if self.borrower_kind not in BORROWER_KINDS:
            raise PolicyInputInvalid(f"borrower_kind must be one of {BORROWER_KINDS}", field="borrower_kind")
        if self.purpose not in LOAN_PURPOSES:
            raise PolicyInputInvalid(f"purpose must be one of {LOAN_PURPOSES}", field="purpose")
        amounts = [self.new_principal, self.outstanding_principal, self.credit_line_limits]
        if self.income_3y_average is not None:
            amounts.append(self.income_3y_average)
        _same_currency(*amounts)
        _non_negative(
            new_principal=self.new_principal,
            outstanding_principal=self.outstanding_principal,
            credit_line_limits=self.credit_line_limits,
        )
        if self.income_3y_average is not None:
            _non_negative(income_3y_average=self.income_3y_average)

    def existing_exposure(self) -> Money:
        """Outstanding principal plus the full limits of open credit lines, before the new loan."""
        return self.outstanding_principal + self.credit_line_limits

    def exposure(self) -> Money:
        """The figure a borrower cap compares: existing exposure plus the new principal (or new limit)."""
        return self.existing_exposure() + self.new_principal


def _check_rate(value: object, name: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise PolicyInputInvalid(f"{name} must be a finite, non-negative Decimal (never a float)", field=name)
    return value


@dataclass(frozen=True, slots=True)
class RateOffer:
    """The rates of an offer, as fractions of one (`Decimal("0.2399")` is 23.99 % a year).

    `apr_all_in` is the annual percentage rate with every fee included (Regulation Z Appendix J actuarial
    method, computed by lending). `mapr` is the Military Lending Act's military APR, which also counts
    credit-insurance premiums and add-on products; when None the all-in APR stands in for it.
    `military_covered` flags a borrower covered by the MLA (active-duty member or dependant).
    """

    apr_all_in: Decimal
    mapr: Decimal | None = None
    military_covered: bool = False

    def __post_init__(self) -> None:
        _check_rate(self.apr_all_in, "apr_all_in")
        if self.mapr is not None:
            _check_rate(self.mapr, "mapr")

    def rate(self, measure: str) -> Decimal:
        """The rate a cap with this `measure` compares (`mapr` falls back to the all-in APR)."""
        if measure == "mapr" and self.mapr is not None:
            return self.mapr
        return self.apr_all_in


@dataclass(frozen=True, slots=True)
class LoanSplit:
    """How one loan's principal is funded: the platform's own part, the rest by partner banks."""

    principal: Money
    platform_funded: Money

    def __post_init__(self) -> None:
        _same_currency(self.principal, self.platform_funded)
        if self.principal.amount_minor <= 0:
            raise PolicyInputInvalid("principal must be positive", field="principal")
        if not 0 <= self.platform_funded.amount_minor <= self.principal.amount_minor:
            raise PolicyInputInvalid("platform_funded must lie between 0 and the principal", field="platform_funded")


@dataclass(frozen=True, slots=True)
class PartnerBankPosition:
    """A partner bank's joint-lending figures (after the participation being checked)."""

    bank_id: str
    joint_loans_with_partner: Money
    """Balance of loans the bank funds jointly with this platform."""
    net_tier1_capital: Money
    joint_loans_total: Money
    """Balance of all the bank's jointly funded internet loans, with every partner."""
    total_loans: Money

    def __post_init__(self) -> None:
        _same_currency(self.joint_loans_with_partner, self.net_tier1_capital, self.joint_loans_total, self.total_loans)
        _non_negative(
            joint_loans_with_partner=self.joint_loans_with_partner,
            joint_loans_total=self.joint_loans_total,
            total_loans=self.total_loans,
        )

    def figures(self) -> dict[str, Money]:
        return {
            "joint_loans_with_partner": self.joint_loans_with_partner,
            "net_tier1_capital": self.net_tier1_capital,
            "joint_loans_total": self.joint_loans_total,
            "total_loans": self.total_loans,
        }

    def flags(self) -> dict[str, bool]:
        return {}


@dataclass(frozen=True, slots=True)
class PlatformReturn:
    """The platform-level figures of a supervisory return (micro-lender view).

    `net_assets` is the figure the leverage and concentration limits refer to (for the 2025 concentration
    limits: net assets at the prior year end). `largest_related_group_exposure` is the largest exposure to a
    borrower together with its related parties.
    """

    net_assets: Money
    nonstandard_funding: Money
    """Bank loans, shareholder loans and other non-standardised debt."""
    bonds_abs_funding: Money
    """Bonds and asset-backed securities outstanding."""
    registered_capital: Money
    largest_borrower_exposure: Money
    largest_related_group_exposure: Money
    lends_across_provinces: bool = False

    def __post_init__(self) -> None:
        _same_currency(
            self.net_assets,
            self.nonstandard_funding,
            self.bonds_abs_funding,
            self.registered_capital,
            self.largest_borrower_exposure,
            self.largest_related_group_exposure,
        )
        _non_negative(
            nonstandard_funding=self.nonstandard_funding,
            bonds_abs_funding=self.bonds_abs_funding,
            registered_capital=self.registered_capital,
            largest_borrower_exposure=self.largest_borrower_exposure,
            largest_related_group_exposure=self.largest_related_group_exposure,
        )

    def figures(self) -> dict[str, Money]:
        return {
            "net_assets": self.net_assets,
            "nonstandard_funding": self.nonstandard_funding,
            "bonds_abs_funding": self.bonds_abs_funding,
            "registered_capital": self.registered_capital,
            "largest_borrower_exposure": self.largest_borrower_exposure,
            "largest_related_group_exposure": self.largest_related_group_exposure,
        }

    def flags(self) -> dict[str, bool]:
        return {"lends_across_provinces": self.lends_across_provinces}


@dataclass(frozen=True, slots=True)
class BankCapital:
    """A bank's capital figures for the Basel III minimums (the supervisor's bank view)."""

    cet1_capital: Money
    tier1_capital: Money
    total_capital: Money
    risk_weighted_assets: Money
    leverage_exposure: Money
    """The leverage ratio's exposure measure (on- and off-balance-sheet)."""

    def __post_init__(self) -> None:
        _same_currency(
            self.cet1_capital, self.tier1_capital, self.total_capital, self.risk_weighted_assets, self.leverage_exposure
        )
        _non_negative(risk_weighted_assets=self.risk_weighted_assets, leverage_exposure=self.leverage_exposure)

    def figures(self) -> dict[str, Money]:
        return {
            "cet1_capital": self.cet1_capital,
            "tier1_capital": self.tier1_capital,
            "total_capital": self.total_capital,
            "risk_weighted_assets": self.risk_weighted_assets,
            "leverage_exposure": self.leverage_exposure,
        }

    def flags(self) -> dict[str, bool]:
        return {}
