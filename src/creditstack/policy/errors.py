"""Policy errors. Each states one fact and has a stable code starting with `policy.` (see README.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from creditstack.core.errors import BusinessRuleViolated, CreditstackError, ValidationFailed

if TYPE_CHECKING:
    from creditstack.policy.domain import CheckResult


class PolicyViolation(BusinessRuleViolated):
    """A rule in force failed; the details name each failing rule id, its reason and its numbers."""

    code = "policy.rule_failed"

    def __init__(self, results: Iterable[CheckResult]) -> None:
        self.results: tuple[CheckResult, ...] = tuple(r for r in results if not r.passed)
        self.rule_ids: tuple[str, ...] = tuple(r.rule_id for r in self.results)
        failures: list[dict[str, Any]] = [r.to_dict() for r in self.results]
        message = "; ".join(f"{r.rule_id}: {r.reason}" for r in self.results) or "a policy rule failed"
        super().__init__(message, rule_ids=list(self.rule_ids), failures=failures)


class PolicyInputInvalid(ValidationFailed):
    """A figure handed to a policy check is unusable (a float rate, a negative amount, mixed currencies)."""

    code = "policy.input_invalid"


class UnknownRuleSet(ValidationFailed):
    """A rule-set name in the settings is not one of the rule sets this release ships."""

    code = "policy.unknown_rule_set"


class RuleMisconfigured(CreditstackError):
    """A rule's kind, scope, dates or parameters do not fit together; the rule data must be corrected."""

    code = "policy.rule_misconfigured"
