"""Pure evaluation of rules against figures. Every check returns one `CheckResult` per applicable rule.

No I/O and no clock: the caller passes the business date to `in_force` and the figures to the checks.
Comparisons are exact — integers and `Fraction`s, never a float and never a rounded ratio: a ratio limit
`n / d ≤ limit` is tested as `n ≤ limit × d` in rational arithmetic, so a zero or negative denominator
needs no special case (any positive numerator then fails a maximum).

Worked example (co-lending, the 30 % own-share rule): a loan of CNY 1,000.01 (100,001 fen) needs the
platform to fund at least ⌈0.30 × 100,001⌉ = ⌈30,000.3⌉ = 30,001 fen.

>>> from datetime import date
>>> from creditstack.core.money import CNY, Money
>>> rules = in_force("cn-2021-bank-internet-loans", date(2022, 1, 1))
>>> platform_share_min(Money(100_001, CNY), rules).amount_minor
30001
>>> [r.passed for r in check_colending_split(LoanSplit(Money(100_001, CNY), Money(30_000, CNY)), rules)]
[False]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Protocol

from creditstack.core.money import Currency, Money
from creditstack.policy.domain import (
    BankCapital,
    BorrowerPosition,
    CheckResult,
    LoanSplit,
    NumberValue,
    PartnerBankPosition,
    PlatformReturn,
    RateOffer,
    Rule,
    RuleScope,
    RuleSet,
)
from creditstack.policy.errors import PolicyInputInvalid, PolicyViolation, RuleMisconfigured, UnknownRuleSet
from creditstack.policy.rulesets import RULE_SETS

__all__ = [
    "PolicyViolation",
    "borrower_headroom",
    "check_bank_capital",
    "check_borrower",
    "check_colending_split",
    "check_offer_rate",
    "check_partner_limits",
    "check_platform_return",
    "failures",
    "in_force",
    "parse_rule_set_names",
    "platform_share_min",
    "raise_if_failed",
]

#: Places kept when a ratio is *shown* in `numbers` (the comparison itself is exact).
RATIO_PLACES_SHOWN = Decimal("0.000001")


class FigureSource(Protocol):
    """A set of named amounts and flags (partner bank, platform return, bank capital)."""

    def figures(self) -> dict[str, Money]: ...

    def flags(self) -> dict[str, bool]: ...


# ---------------------------------------------------------------------------------------------------------
# Selecting rules


def parse_rule_set_names(settings_names: str | Iterable[str]) -> tuple[str, ...]:
    """Rule-set names from a comma-separated setting or a sequence; blanks dropped, order and uniqueness kept."""
    raw = settings_names.split(",") if isinstance(settings_names, str) else list(settings_names)
    names: list[str] = []
    for name in raw:
        cleaned = name.strip()
        if cleaned and cleaned not in names:
            names.append(cleaned)
    return tuple(names)


def in_force(
    settings_names: str | Iterable[str],
    business_date: date,
    *,
    catalogue: Mapping[str, RuleSet] = RULE_SETS,
) -> tuple[Rule, ...]:
    """The rules of the named sets that are in force on `business_date` (`effective_from ≤ d < effective_to`).

    Raises `UnknownRuleSet` for a name the catalogue does not hold. A rule named by two sets appears once.
    """
    selected: dict[str, Rule] = {}
    for name in parse_rule_set_names(settings_names):
        rule_set = catalogue.get(name)
        if rule_set is None:
            raise UnknownRuleSet(
                f"unknown rule set {name!r}; known: {', '.join(sorted(catalogue))}", field="policy_rule_sets"
            )
        for rule in rule_set.in_force_on(business_date):
            selected.setdefault(rule.id, rule)
    return tuple(selected.values())


def _of_scope(rules: Iterable[Rule], scope: RuleScope) -> list[Rule]:
    return [rule for rule in rules if rule.scope == scope]


# ---------------------------------------------------------------------------------------------------------
# Helpers


def _shown(value: Fraction) -> Decimal:
    """A ratio for display: half-even to `RATIO_PLACES_SHOWN`."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(RATIO_PLACES_SHOWN, ROUND_HALF_EVEN)


def _percent(value: Decimal | Fraction) -> str:
    if isinstance(value, Fraction):
        value = _shown(value)
    text = f"{(value * 100).normalize():f}"
    return f"{text} %"


def _rule_currency(rule: Rule) -> Currency:
    try:
        return Currency.of(rule.text("currency"))
    except Exception as exc:
        raise RuleMisconfigured(f"rule {rule.id}: unknown currency") from exc


def _in_currency(amount: Money, rule: Rule) -> None:
    if amount.currency != _rule_currency(rule):
        raise PolicyInputInvalid(
            f"rule {rule.id} is stated in {rule.text('currency')}; the figures are in {amount.currency.code}",
            rule_id=rule.id,
        )


# ---------------------------------------------------------------------------------------------------------
# Borrower caps


def _borrower_rules(borrower: BorrowerPosition, rules: Iterable[Rule]) -> list[Rule]:
    applicable = []
    for rule in _of_scope(rules, "borrower"):
        kinds = rule.names("borrower_kinds")
        purposes = rule.names("purposes")
        if kinds is not None and borrower.borrower_kind not in kinds:
            continue
        if purposes is not None and borrower.purpose not in purposes:
            continue
        applicable.append(rule)
    return applicable


def _borrower_cap_minor(borrower: BorrowerPosition, rule: Rule) -> tuple[int | None, dict[str, NumberValue]]:
    """The cap in minor units (None: the income the rule needs is missing) and the numbers behind it."""
    amount_cap = rule.integer("amount_max_minor")
    numbers: dict[str, NumberValue] = {"amount_cap_minor": amount_cap}
    fraction = rule.fraction("income_fraction")
    if fraction is None:
        return amount_cap, numbers
    numbers["income_fraction"] = f"{fraction.numerator}/{fraction.denominator}"
    if borrower.income_3y_average is None:
        return None, numbers
    # An integer exposure is ≤ income × fraction exactly when it is ≤ ⌊income × fraction⌋.
    income_cap = math.floor(borrower.income_3y_average.amount_minor * fraction)
    numbers["income_3y_average_minor"] = borrower.income_3y_average.amount_minor
    numbers["income_cap_minor"] = income_cap
    return min(amount_cap, income_cap), numbers


def check_borrower(borrower: BorrowerPosition, rules: Iterable[Rule]) -> list[CheckResult]:
    """Per-borrower caps: total outstanding principal + full credit-line limits + new principal ≤ cap.

    A cap that depends on income fails when the declared 3-year average income is missing.
    """
    results = []
    exposure = borrower.exposure()
    for rule in _borrower_rules(borrower, rules):
        _in_currency(exposure, rule)
        cap_minor, cap_numbers = _borrower_cap_minor(borrower, rule)
        numbers: dict[str, NumberValue] = {
            "currency": exposure.currency.code,
            "exposure_minor": exposure.amount_minor,
            "outstanding_principal_minor": borrower.outstanding_principal.amount_minor,
            "credit_line_limits_minor": borrower.credit_line_limits.amount_minor,
            "new_principal_minor": borrower.new_principal.amount_minor,
            **cap_numbers,
        }
        if cap_minor is None:
            results.append(
                CheckResult(rule.id, False, "the declared 3-year average income is missing; the cap needs it", numbers)
            )
            continue
        numbers["cap_minor"] = cap_minor
        numbers["headroom_minor"] = cap_minor - exposure.amount_minor
        cap = Money(cap_minor, exposure.currency)
        passed = exposure.amount_minor <= cap_minor
        verb = "within" if passed else "exceeds"
        reason = (
            f"borrower exposure {exposure} (outstanding {borrower.outstanding_principal} + credit-line limits "
            f"{borrower.credit_line_limits} + new {borrower.new_principal}) {verb} the cap {cap}"
        )
        if "income_cap_minor" in numbers:
            reason += (
                f" = min({Money(rule.integer('amount_max_minor'), exposure.currency)}, "
                f"{numbers['income_fraction']} × income {borrower.income_3y_average})"
            )
        results.append(CheckResult(rule.id, passed, reason, numbers))
    return results


def borrower_headroom(borrower: BorrowerPosition, rules: Iterable[Rule]) -> Money | None:
    """The largest new principal (or new line limit) every applicable cap allows; None when no cap applies.

    Zero when the existing exposure already reaches a cap or an income-based cap lacks the income.
    """
    existing = borrower.existing_exposure()
    headroom: int | None = None
    for rule in _borrower_rules(borrower, rules):
        _in_currency(existing, rule)
        cap_minor, _ = _borrower_cap_minor(borrower, rule)
        room = 0 if cap_minor is None else max(0, cap_minor - existing.amount_minor)
        headroom = room if headroom is None else min(headroom, room)
    return None if headroom is None else Money(headroom, existing.currency)


# ---------------------------------------------------------------------------------------------------------
# Rate caps


def check_offer_rate(offer: RateOffer, rules: Iterable[Rule]) -> list[CheckResult]:
    """Rate caps on the offer's all-in APR (fees included); `covered_only` caps (the MLA) apply only to
    borrowers flagged as covered. A rate equal to the cap passes."""
    results = []
    for rule in _of_scope(rules, "offer"):
        if rule.flag("covered_only") and not offer.military_covered:
            continue
        measure = rule.text("measure", "apr_all_in")
        rate = offer.rate(measure)
        cap = rule.decimal("apr_max")
        passed = rate <= cap
        label = "military APR" if measure == "mapr" else "all-in APR"
        verb = "within" if passed else "above"
        numbers: dict[str, NumberValue] = {
            "measure": measure,
            "rate": rate,
            "apr_max": cap,
            "military_covered": offer.military_covered,
        }
        results.append(
            CheckResult(rule.id, passed, f"{label} {_percent(rate)} is {verb} the cap {_percent(cap)}", numbers)
        )
    return results


# ---------------------------------------------------------------------------------------------------------
# Co-lending: the platform's share of each loan


def _share_required_minor(principal_minor: int, rule: Rule) -> int:
    """⌈share_min × principal⌉: the share is rounded up to the minor unit, never down."""
    return math.ceil(Fraction(rule.decimal("share_min")) * principal_minor)


def platform_share_min(principal: Money, rules: Iterable[Rule]) -> Money:
    """The least the platform must fund of a loan of `principal` under the share rules in force (0 if none)."""
    required = [_share_required_minor(principal.amount_minor, rule) for rule in _of_scope(rules, "loan")]
    return Money(max(required, default=0), principal.currency)


def check_colending_split(split: LoanSplit, rules: Iterable[Rule]) -> list[CheckResult]:
    """Platform funds ≥ ⌈share_min × principal⌉ of each loan (2020 draft; 2021 notice from 2022-01-01)."""
    results = []
    principal = split.principal
    funded = split.platform_funded
    share = Fraction(funded.amount_minor, principal.amount_minor)
    for rule in _of_scope(rules, "loan"):
        share_min = rule.decimal("share_min")
        required_minor = _share_required_minor(principal.amount_minor, rule)
        passed = funded.amount_minor >= required_minor
        numbers: dict[str, NumberValue] = {
            "currency": principal.currency.code,
            "principal_minor": principal.amount_minor,
            "platform_funded_minor": funded.amount_minor,
            "platform_required_minor": required_minor,
            "share": _shown(share),
            "share_min": share_min,
        }
        verb = "meets" if passed else "falls short of"
        reason = (
            f"platform funds {funded} of {principal} ({_percent(share)}); {verb} the minimum "
            f"{Money(required_minor, principal.currency)} (⌈{_percent(share_min)}⌉)"
        )
        results.append(CheckResult(rule.id, passed, reason, numbers))
    return results


# ---------------------------------------------------------------------------------------------------------
# Ratio and amount rules (partner banks, platform returns, bank capital)


def _figure(source: Mapping[str, Money], name: str, rule: Rule) -> Money:
    if name not in source:
        raise RuleMisconfigured(f"rule {rule.id} names figure {name!r}, which its scope does not provide")
    return source[name]


def _ratio_result(rule: Rule, figures: Mapping[str, Money]) -> CheckResult:
    numerator_name, denominator_name = rule.text("numerator"), rule.text("denominator")
    numerator = _figure(figures, numerator_name, rule)
    denominator = _figure(figures, denominator_name, rule)
    limit = rule.decimal("limit")
    bound = Fraction(limit) * denominator.amount_minor
    is_max = rule.kind == "ratio_max"
    numbers: dict[str, NumberValue] = {
        "currency": numerator.currency.code,
        f"{numerator_name}_minor": numerator.amount_minor,
        f"{denominator_name}_minor": denominator.amount_minor,
        "limit": limit,
    }
    if is_max:
        passed = numerator.amount_minor <= bound
        numbers[f"{numerator_name}_max_minor"] = math.floor(bound)
    else:
        passed = numerator.amount_minor >= bound
        numbers[f"{numerator_name}_min_minor"] = math.ceil(bound)
    if denominator.amount_minor > 0:
        ratio = Fraction(numerator.amount_minor, denominator.amount_minor)
        numbers["ratio"] = _shown(ratio)
        ratio_text = f"{_percent(ratio)} ({_multiple(ratio)})"
    else:
        ratio_text = "undefined (denominator not positive)"
    sign = "≤" if is_max else "≥"
    outcome = "passes" if passed else "fails"
    reason = (
        f"{numerator_name} {numerator} / {denominator_name} {denominator} = {ratio_text}; "
        f"{outcome} {sign} {_percent(limit)}"
    )
    return CheckResult(rule.id, passed, reason, numbers)


def _multiple(ratio: Fraction) -> str:
    """A ratio as a multiple, for leverage-style reading (`1.25×`)."""
    return f"{_shown(ratio).normalize():f}×"


def _amount_result(rule: Rule, figures: Mapping[str, Money]) -> CheckResult:
    name = rule.text("figure")
    amount = _figure(figures, name, rule)
    _in_currency(amount, rule)
    minimum = Money(rule.integer("amount_min_minor"), amount.currency)
    passed = amount >= minimum
    numbers: dict[str, NumberValue] = {
        "currency": amount.currency.code,
        f"{name}_minor": amount.amount_minor,
        f"{name}_min_minor": minimum.amount_minor,
    }
    outcome = "meets" if passed else "is below"
    return CheckResult(rule.id, passed, f"{name} {amount} {outcome} the minimum {minimum}", numbers)


def _evaluate_figures(source: FigureSource, rules: Iterable[Rule], scope: RuleScope) -> list[CheckResult]:
    figures = source.figures()
    flags = source.flags()
    results = []
    for rule in _of_scope(rules, scope):
        if rule.kind in ("ratio_max", "ratio_min"):
            results.append(_ratio_result(rule, figures))
        elif rule.kind == "amount_min":
            condition = rule.parameters.get("condition")
            if isinstance(condition, str):
                if condition not in flags:
                    raise RuleMisconfigured(f"rule {rule.id} names flag {condition!r}, which its scope lacks")
                if not flags[condition]:
                    continue
            results.append(_amount_result(rule, figures))
        else:  # pragma: no cover - Rule.__post_init__ ties kinds to scopes
            raise RuleMisconfigured(f"rule {rule.id}: kind {rule.kind} cannot be evaluated in scope {scope}")
    return results


def check_partner_limits(bank: PartnerBankPosition, rules: Iterable[Rule]) -> list[CheckResult]:
    """A partner bank's limits: joint loans with this platform ≤ 25 % of its net tier-1 capital; all its
    joint internet loans ≤ 50 % of its total loans. Pass the figures *after* the participation."""
    return _evaluate_figures(bank, rules, "partner_bank")


def check_platform_return(platform: PlatformReturn, rules: Iterable[Rule]) -> list[CheckResult]:
    """Platform-level limits for the supervisor: leverage (1× / 4× net assets), concentration (10 % / 15 %
    of net assets), registered capital (2020 draft)."""
    return _evaluate_figures(platform, rules, "platform")


def check_bank_capital(bank: BankCapital, rules: Iterable[Rule]) -> list[CheckResult]:
    """Capital and leverage ratio minimums (Basel III, or China's)."""
    return _evaluate_figures(bank, rules, "bank_capital")


# ---------------------------------------------------------------------------------------------------------
# Outcomes


def failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    """The failed results, in order."""
    return [result for result in results if not result.passed]


def raise_if_failed(results: Sequence[CheckResult] | Iterable[CheckResult]) -> None:
    """Raise `PolicyViolation` (code `policy.rule_failed`) naming every failing rule and its numbers."""
    failed = failures(results)
    if failed:
        raise PolicyViolation(failed)
