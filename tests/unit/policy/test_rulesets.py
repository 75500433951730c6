"""The shipped rule sets: sources, ids, dates, defaults, and rules that refuse bad data."""

from __future__ import annotations

import doctest
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

import creditstack.policy.domain
import creditstack.policy.evaluate
from creditstack.core.settings import Settings
from creditstack.policy import (
    DEFAULT_RULE_SET_NAMES,
    RULE_SETS,
    Rule,
    RuleMisconfigured,
    RuleSet,
    UnknownRuleSet,
    all_rules,
    in_force,
    parse_rule_set_names,
)


def test_every_rule_cites_its_source_and_ids_are_unique() -> None:
    rules = all_rules()
    assert len({rule.id for rule in rules}) == len(rules)
    for rule in rules:
        assert "regulation.md §1" in rule.source, rule.id
        assert rule.jurisdiction in {"CN", "US", "BCBS"}


def test_the_shipped_sets_and_their_key_numbers() -> None:
    assert set(RULE_SETS) == {
        "cn-2020-online-microlending",
        "cn-2025-microlending",
        "cn-2021-bank-internet-loans",
        "rate-cap-24",
        "us-mla-36",
        "basel3",
        "cn-bank-capital",
    }
    by_id = {rule.id: rule for rule in all_rules()}
    assert by_id["cn2020.natural_person_cap"].integer("amount_max_minor") == 30_000_000  # CNY 300,000.00
    assert by_id["cn2020.legal_person_cap"].integer("amount_max_minor") == 100_000_000
    assert by_id["cn2025.consumer_cap"].integer("amount_max_minor") == 20_000_000
    assert by_id["cn2025.business_cap"].integer("amount_max_minor") == 1_000_000_000
    assert by_id["cn2021.partner_share_min"].effective_from == date(2022, 1, 1)
    assert by_id["cn2021.partner_tier1_max"].decimal("limit") == Decimal("0.25")
    assert by_id["cn2021.joint_loans_total_max"].decimal("limit") == Decimal("0.50")
    assert by_id["cn.rate_cap_24"].decimal("apr_max") == Decimal("0.24")
    assert by_id["us.mla_mapr_36"].flag("covered_only") is True
    assert by_id["basel3.cet1_min"].decimal("limit") == Decimal("0.045")
    assert by_id["basel3.conservation_buffer"].decimal("limit") == Decimal("0.07")
    assert by_id["basel3.leverage_min"].decimal("limit") == Decimal("0.03")
    assert by_id["cnbank.leverage_min"].decimal("limit") == Decimal("0.04")
    assert RULE_SETS["cn-2020-online-microlending"].status == "draft"


def test_defaults_match_the_settings_default() -> None:
    default = Settings.model_fields["policy_rule_sets"].default
    assert parse_rule_set_names(default) == DEFAULT_RULE_SET_NAMES
    assert "cn-2020-online-microlending" not in DEFAULT_RULE_SET_NAMES


def test_in_force_reads_a_comma_separated_setting() -> None:
    rules = in_force(" cn-2025-microlending , rate-cap-24,,rate-cap-24", date(2026, 3, 2))
    assert {rule.id for rule in rules} == {
        "cn2025.consumer_cap",
        "cn2025.business_cap",
        "cn2025.single_borrower_max",
        "cn2025.related_group_max",
        "cn2025.nonstandard_leverage_max",
        "cn2025.bonds_abs_leverage_max",
        "cn.rate_cap_24",
    }


def test_the_2021_share_rule_starts_on_2022_01_01() -> None:
    before = {rule.id for rule in in_force(DEFAULT_RULE_SET_NAMES, date(2021, 12, 31))}
    on = {rule.id for rule in in_force(DEFAULT_RULE_SET_NAMES, date(2022, 1, 1))}
    assert "cn2021.partner_share_min" not in before
    assert "cn2021.partner_share_min" in on
    assert "cn2021.partner_tier1_max" in before  # the notice's other items are dated from 2021-02-20


def test_nothing_of_a_set_applies_before_its_dates() -> None:
    assert in_force("cn-2025-microlending", date(2024, 12, 31)) == ()
    assert in_force("cn-2020-online-microlending", date(2020, 11, 1)) == ()
    assert len(in_force("cn-2020-online-microlending", date(2020, 11, 2))) == 7


def test_unknown_rule_set_is_refused_with_a_code() -> None:
    with pytest.raises(UnknownRuleSet) as caught:
        in_force("cn-2019-imaginary", date(2026, 1, 1))
    assert caught.value.code == "policy.unknown_rule_set"


def _cap_rule(**overrides: object) -> Rule:
    fields: dict[str, object] = {
        "id": "test.cap",
        "kind": "borrower_cap",
        "scope": "borrower",
        "title": "test cap",
        "parameters": {"amount_max_minor": 100, "currency": "CNY"},
        "effective_from": date(2024, 1, 1),
        "effective_to": date(2025, 1, 1),
        "jurisdiction": "CN",
        "source": "a test",
    }
    fields.update(overrides)
    return Rule(**fields)  # type: ignore[arg-type]


def test_effective_to_is_exclusive() -> None:
    rule = _cap_rule()
    catalogue = {"t": RuleSet("t", "test", "in_force", "CN", (rule,))}
    assert in_force("t", date(2023, 12, 31), catalogue=catalogue) == ()
    assert in_force("t", date(2024, 1, 1), catalogue=catalogue) == (rule,)
    assert in_force("t", date(2024, 12, 31), catalogue=catalogue) == (rule,)
    assert in_force("t", date(2025, 1, 1), catalogue=catalogue) == ()


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "no_such_kind"},
        {"scope": "platform"},  # a borrower cap is checked against borrowers only
        {"effective_to": date(2024, 1, 1)},
        {"parameters": {"currency": "CNY"}},  # amount missing
        {"parameters": {"amount_max_minor": 100.0, "currency": "CNY"}},  # a float amount
        {"parameters": {"amount_max_minor": 100, "currency": "CNY", "limit": Decimal(1)}},  # not a cap parameter
        {"source": ""},
    ],
)
def test_a_rule_refuses_data_that_does_not_fit(overrides: dict[str, object]) -> None:
    with pytest.raises(RuleMisconfigured):
        _cap_rule(**overrides)


def test_rate_rules_refuse_a_float_cap_and_an_unknown_measure() -> None:
    base: dict[str, object] = {
        "id": "test.rate",
        "kind": "rate_cap",
        "scope": "offer",
        "title": "t",
        "effective_from": date(2024, 1, 1),
        "effective_to": None,
        "jurisdiction": "CN",
        "source": "a test",
    }
    with pytest.raises(RuleMisconfigured):
        Rule(**base, parameters={"apr_max": 0.24})  # type: ignore[arg-type, dict-item]
    with pytest.raises(RuleMisconfigured):
        Rule(**base, parameters={"apr_max": Decimal("0.24"), "measure": "apr_nominal"})  # type: ignore[arg-type]


def test_rule_parameters_are_read_only() -> None:
    rule = _cap_rule()
    with pytest.raises(TypeError):
        rule.parameters["amount_max_minor"] = 5  # type: ignore[index]


@pytest.mark.parametrize("module", [creditstack.policy.domain, creditstack.policy.evaluate])
def test_docstring_examples(module: object) -> None:
    failed, attempted = doctest.testmod(module)  # type: ignore[arg-type]
    assert attempted > 0
    assert failed == 0


def test_the_readme_lists_every_rule() -> None:
    readme = (Path(creditstack.policy.domain.__file__).parent / "README.md").read_text()
    missing = [rule.id for rule in all_rules() if f"`{rule.id}`" not in readme]
    assert missing == []
