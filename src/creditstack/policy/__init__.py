"""Policy: dated regulatory rule sets as data, evaluated by a handful of rule kinds. Pure (no I/O).

Rules (`domain.Rule`) carry an id, a kind (`borrower_cap`, `rate_cap`, `loan_share_min`, `ratio_max`,
`ratio_min`, `amount_min`), a scope, typed parameters, a validity window, a jurisdiction and a source.
`rulesets` ships the sets (China's 2020 draft and 2025 micro-lending rules, the 2021 bank internet-loan
rules, the 24 % and MLA 36 % rate caps, Basel III and China's bank capital minimums). `evaluate` selects
the rules in force for the settings and a business date and checks borrowers, offers, co-lending splits,
partner banks, platform returns and bank capital; every check returns `CheckResult`s, and
`raise_if_failed` turns failures into `PolicyViolation` (`policy.rule_failed`). See README.md.
"""

from __future__ import annotations

from creditstack.policy.domain import (
    BankCapital,
    BorrowerPosition,
    CheckResult,
    LoanSplit,
    PartnerBankPosition,
    PlatformReturn,
    RateOffer,
    Rule,
    RuleSet,
)
from creditstack.policy.errors import PolicyInputInvalid, PolicyViolation, RuleMisconfigured, UnknownRuleSet
from creditstack.policy.evaluate import (
    borrower_headroom,
    check_bank_capital,
    check_borrower,
    check_colending_split,
    check_offer_rate,
    check_partner_limits,
    check_platform_return,
    failures,
    in_force,
    parse_rule_set_names,
    platform_share_min,
    raise_if_failed,
)
from creditstack.policy.rulesets import DEFAULT_RULE_SET_NAMES, RULE_SETS, all_rules

__all__ = [
    "DEFAULT_RULE_SET_NAMES",
    "RULE_SETS",
    "BankCapital",
    "BorrowerPosition",
    "CheckResult",
    "LoanSplit",
    "PartnerBankPosition",
    "PlatformReturn",
    "PolicyInputInvalid",
    "PolicyViolation",
    "RateOffer",
    "Rule",
    "RuleMisconfigured",
    "RuleSet",
    "UnknownRuleSet",
    "all_rules",
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
