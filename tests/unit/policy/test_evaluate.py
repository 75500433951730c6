"""Worked examples of every check, with the numbers (sources: /work/shared/reference/regulation.md §1)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditstack.core.money import CNY, USD, Money
from creditstack.policy import (
    DEFAULT_RULE_SET_NAMES,
    BankCapital,
    BorrowerPosition,
    LoanSplit,
    PartnerBankPosition,
    PlatformReturn,
    PolicyInputInvalid,
    PolicyViolation,
    RateOffer,
    borrower_headroom,
    check_bank_capital,
    check_borrower,
    check_colending_split,
    check_offer_rate,
    check_partner_limits,
    check_platform_return,
    failures,
    in_force,
    platform_share_min,
    raise_if_failed,
)

TODAY = date(2026, 3, 2)
CN2020 = in_force("cn-2020-online-microlending", TODAY)
CN2025 = in_force("cn-2025-microlending", TODAY)
DEFAULTS = in_force(DEFAULT_RULE_SET_NAMES, TODAY)


def cny(yuan: int) -> Money:
    return Money(yuan * 100, CNY)


def person(
    new: int, *, outstanding: int = 0, lines: int = 0, income: int | None = 90_000, purpose: str = "consumer"
) -> BorrowerPosition:
    return BorrowerPosition(
        borrower_kind="natural_person",
        purpose=purpose,  # type: ignore[arg-type]
        new_principal=cny(new),
        outstanding_principal=cny(outstanding),
        credit_line_limits=cny(lines),
        income_3y_average=None if income is None else cny(income),
    )


# --- borrower caps --------------------------------------------------------------------------------------------


def test_income_90k_caps_at_30k_under_the_2020_draft_and_200k_under_2025() -> None:
    borrower = person(20_000, outstanding=5_000, lines=10_000)  # exposure 35,000
    [draft] = check_borrower(borrower, CN2020)
    assert draft.rule_id == "cn2020.natural_person_cap"
    assert not draft.passed
    assert draft.numbers["cap_minor"] == cny(30_000).amount_minor  # min(300,000, 90,000 / 3)
    assert draft.numbers["amount_cap_minor"] == cny(300_000).amount_minor
    assert draft.numbers["income_cap_minor"] == cny(30_000).amount_minor
    assert draft.numbers["income_3y_average_minor"] == cny(90_000).amount_minor
    assert draft.numbers["exposure_minor"] == cny(35_000).amount_minor
    assert draft.numbers["headroom_minor"] == -cny(5_000).amount_minor
    assert "30000.00 CNY" in draft.reason

    [final] = check_borrower(borrower, CN2025)
    assert final.rule_id == "cn2025.consumer_cap"
    assert final.passed
    assert final.numbers["cap_minor"] == cny(200_000).amount_minor


def test_the_amount_cap_binds_when_income_is_high() -> None:
    [result] = check_borrower(person(1_000, income=3_000_000), CN2020)
    assert result.numbers["cap_minor"] == cny(300_000).amount_minor  # 3,000,000 / 3 = 1,000,000 > 300,000


def test_an_income_third_rounds_down_to_the_unit() -> None:
    borrower = BorrowerPosition("natural_person", "consumer", Money(100, CNY), Money(0, CNY), Money(0, CNY), cny(100))
    [result] = check_borrower(borrower, CN2020)
    assert result.numbers["income_cap_minor"] == 3333  # ⌊10,000 / 3⌋ fen
    at_cap = BorrowerPosition("natural_person", "consumer", Money(3333, CNY), Money(0, CNY), Money(0, CNY), cny(100))
    over = BorrowerPosition("natural_person", "consumer", Money(3334, CNY), Money(0, CNY), Money(0, CNY), cny(100))
    assert check_borrower(at_cap, CN2020)[0].passed
    assert not check_borrower(over, CN2020)[0].passed


def test_a_credit_line_counts_at_its_full_limit() -> None:
    # A CNY 190,000 line barely drawn still uses 190,000 of the 200,000 cap: a new 20,000 loan breaks it.
    results = check_borrower(person(20_000, lines=190_000), DEFAULTS)
    assert {r.rule_id for r in results} == {"cn2021.household_consumer_cap", "cn2025.consumer_cap"}
    assert all(not r.passed for r in results)
    assert all(r.numbers["exposure_minor"] == cny(210_000).amount_minor for r in results)


def test_an_income_cap_without_income_fails_and_says_why() -> None:
    [result] = check_borrower(person(1_000, income=None), CN2020)
    assert not result.passed
    assert "income" in result.reason


def test_legal_persons_and_business_loans_have_their_own_caps() -> None:
    company = BorrowerPosition("legal_person", "business", cny(900_000), cny(100_000), cny(0))
    [draft] = check_borrower(company, CN2020)
    assert (draft.rule_id, draft.passed) == ("cn2020.legal_person_cap", True)  # exactly CNY 1,000,000
    [final] = check_borrower(company, CN2025)
    assert (final.rule_id, final.numbers["cap_minor"]) == ("cn2025.business_cap", cny(10_000_000).amount_minor)


def test_headroom_is_the_largest_new_principal_every_cap_allows() -> None:
    assert borrower_headroom(person(0, outstanding=5_000), CN2020) == cny(25_000)
    assert borrower_headroom(person(0, lines=150_000), DEFAULTS) == cny(50_000)
    assert borrower_headroom(person(0, lines=250_000), DEFAULTS) == cny(0)
    assert borrower_headroom(person(0, income=None), CN2020) == cny(0)
    assert borrower_headroom(person(0), in_force("rate-cap-24", TODAY)) is None


def test_a_borrower_in_another_currency_is_refused_not_compared() -> None:
    borrower = BorrowerPosition("natural_person", "consumer", Money(100, USD), Money(0, USD), Money(0, USD))
    with pytest.raises(PolicyInputInvalid):
        check_borrower(borrower, CN2025)
    with pytest.raises(PolicyInputInvalid):
        BorrowerPosition("natural_person", "consumer", Money(100, USD), Money(0, CNY), Money(0, CNY))
    with pytest.raises(PolicyInputInvalid):
        BorrowerPosition("natural_person", "consumer", Money(-1, CNY), Money(0, CNY), Money(0, CNY))


# --- rate caps ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("apr", "passed"), [("0.2399", True), ("0.24", True), ("0.2401", False)])
def test_the_24_percent_all_in_cap(apr: str, passed: bool) -> None:
    [result] = check_offer_rate(RateOffer(apr_all_in=Decimal(apr)), DEFAULTS)
    assert (result.rule_id, result.passed) == ("cn.rate_cap_24", passed)
    assert result.numbers["rate"] == Decimal(apr)
    assert result.numbers["apr_max"] == Decimal("0.24")


def test_the_mla_applies_only_to_covered_borrowers() -> None:
    rules = in_force("us-mla-36", TODAY)
    civilian = RateOffer(apr_all_in=Decimal("0.40"))
    assert check_offer_rate(civilian, rules) == []
    service_member = RateOffer(apr_all_in=Decimal("0.40"), military_covered=True)
    [result] = check_offer_rate(service_member, rules)
    assert (result.rule_id, result.passed) == ("us.mla_mapr_36", False)


def test_the_mla_compares_the_military_apr_with_add_ons() -> None:
    rules = in_force("us-mla-36", TODAY)
    offer = RateOffer(apr_all_in=Decimal("0.35"), mapr=Decimal("0.3650"), military_covered=True)
    [result] = check_offer_rate(offer, rules)
    assert not result.passed
    assert result.numbers["rate"] == Decimal("0.3650")
    assert "36.5 %" in result.reason


def test_a_float_rate_is_refused() -> None:
    with pytest.raises(PolicyInputInvalid):
        RateOffer(apr_all_in=0.2)  # type: ignore[arg-type]


# --- co-lending -------------------------------------------------------------------------------------------------


def test_thirty_percent_of_an_odd_amount_rounds_up_to_the_unit() -> None:
    principal = Money(100_001, CNY)  # CNY 1,000.01 → 30 % is 30,000.3 fen → 30,001 fen
    assert platform_share_min(principal, DEFAULTS) == Money(30_001, CNY)
    [short] = check_colending_split(LoanSplit(principal, Money(30_000, CNY)), DEFAULTS)
    assert (short.rule_id, short.passed) == ("cn2021.partner_share_min", False)
    assert short.numbers["platform_required_minor"] == 30_001
    [enough] = check_colending_split(LoanSplit(principal, Money(30_001, CNY)), DEFAULTS)
    assert enough.passed


def test_the_share_rule_is_not_checked_before_2022() -> None:
    split = LoanSplit(cny(10_000), cny(0))  # partners fund it all (the pre-2022 model)
    assert check_colending_split(split, in_force(DEFAULT_RULE_SET_NAMES, date(2021, 12, 31))) == []
    [result] = check_colending_split(split, in_force(DEFAULT_RULE_SET_NAMES, date(2022, 1, 1)))
    assert not result.passed
    assert platform_share_min(cny(10_000), in_force(DEFAULT_RULE_SET_NAMES, date(2021, 12, 31))) == cny(0)


def test_both_share_rules_report_when_both_sets_are_named() -> None:
    rules = in_force(["cn-2020-online-microlending", "cn-2021-bank-internet-loans"], TODAY)
    results = check_colending_split(LoanSplit(cny(1_000), cny(300)), rules)
    assert [(r.rule_id, r.passed) for r in results] == [
        ("cn2020.platform_share_min", True),
        ("cn2021.partner_share_min", True),
    ]


@given(st.integers(min_value=1, max_value=10**15))
def test_the_minimum_share_is_the_least_amount_that_passes(principal_minor: int) -> None:
    principal = Money(principal_minor, CNY)
    least = platform_share_min(principal, DEFAULTS)
    assert least.amount_minor * 10 >= principal_minor * 3  # at least 30 %
    assert (least.amount_minor - 1) * 10 < principal_minor * 3  # one unit less is below 30 %
    assert all(r.passed for r in check_colending_split(LoanSplit(principal, least), DEFAULTS))
    if least.amount_minor > 0:
        below = LoanSplit(principal, Money(least.amount_minor - 1, CNY))
        assert not any(r.passed for r in check_colending_split(below, DEFAULTS))


# --- partner banks ---------------------------------------------------------------------------------------------


def bank(with_partner: int, joint_total: int = 0, total_loans: int = 10_000_000) -> PartnerBankPosition:
    return PartnerBankPosition(
        bank_id="bank-a",
        joint_loans_with_partner=cny(with_partner),
        net_tier1_capital=cny(1_000_000),
        joint_loans_total=cny(joint_total),
        total_loans=cny(total_loans),
    )


def test_a_bank_may_fund_up_to_25_percent_of_its_net_tier1_with_one_platform() -> None:
    at_limit = {r.rule_id: r for r in check_partner_limits(bank(250_000), DEFAULTS)}
    assert at_limit["cn2021.partner_tier1_max"].passed
    over = {r.rule_id: r for r in check_partner_limits(bank(250_001), DEFAULTS)}
    result = over["cn2021.partner_tier1_max"]
    assert not result.passed
    assert result.numbers["joint_loans_with_partner_minor"] == cny(250_001).amount_minor
    assert result.numbers["net_tier1_capital_minor"] == cny(1_000_000).amount_minor
    assert result.numbers["joint_loans_with_partner_max_minor"] == cny(250_000).amount_minor
    assert result.numbers["ratio"] == Decimal("0.250001")


def test_joint_loans_at_most_half_of_a_banks_loans() -> None:
    results = {r.rule_id: r for r in check_partner_limits(bank(0, 5_000_001), DEFAULTS)}
    assert not results["cn2021.joint_loans_total_max"].passed
    assert results["cn2021.joint_loans_total_max"].numbers["joint_loans_total_max_minor"] == cny(5_000_000).amount_minor


def test_a_bank_without_tier1_capital_cannot_take_any_joint_loan() -> None:
    broke = PartnerBankPosition("b", cny(1), cny(0), cny(1), cny(100))
    result = next(r for r in check_partner_limits(broke, DEFAULTS) if r.rule_id == "cn2021.partner_tier1_max")
    assert not result.passed
    assert "undefined" in result.reason


# --- platform returns ---------------------------------------------------------------------------------------------


def platform(**changes: object) -> PlatformReturn:
    fields: dict[str, object] = {
        "net_assets": cny(1_000_000_000),
        "nonstandard_funding": cny(1_000_000_000),  # 1× — at the limit
        "bonds_abs_funding": cny(4_000_000_000),  # 4× — at the limit
        "registered_capital": cny(3_000_000_000),
        "largest_borrower_exposure": cny(100_000_000),  # 10 %
        "largest_related_group_exposure": cny(150_000_000),  # 15 %
        "lends_across_provinces": False,
    }
    fields.update(changes)
    return PlatformReturn(**fields)  # type: ignore[arg-type]


def test_a_platform_at_every_limit_passes() -> None:
    assert all(r.passed for r in check_platform_return(platform(), CN2025))
    assert all(r.passed for r in check_platform_return(platform(), CN2020))


def test_leverage_beyond_one_times_net_assets_fails_with_the_multiple() -> None:
    results = {r.rule_id: r for r in check_platform_return(platform(nonstandard_funding=cny(1_500_000_000)), CN2025)}
    result = results["cn2025.nonstandard_leverage_max"]
    assert not result.passed
    assert result.numbers["ratio"] == Decimal("1.5")
    assert "1.5×" in result.reason


def test_single_borrower_and_related_group_concentration() -> None:
    failing = platform(largest_borrower_exposure=cny(100_000_001), largest_related_group_exposure=cny(150_000_001))
    failed = {r.rule_id for r in failures(check_platform_return(failing, CN2025))}
    assert failed == {"cn2025.single_borrower_max", "cn2025.related_group_max"}


def test_registered_capital_across_provinces_needs_5bn_under_the_draft() -> None:
    single = {r.rule_id: r.passed for r in check_platform_return(platform(), CN2020)}
    assert single == {
        "cn2020.nonstandard_leverage_max": True,
        "cn2020.bonds_abs_leverage_max": True,
        "cn2020.registered_capital_min": True,
    }  # the 5 bn rule does not apply to a single-province lender
    across = {r.rule_id: r for r in check_platform_return(platform(lends_across_provinces=True), CN2020)}
    assert not across["cn2020.registered_capital_cross_province_min"].passed
    assert across["cn2020.registered_capital_cross_province_min"].numbers["registered_capital_min_minor"] == (
        cny(5_000_000_000).amount_minor
    )


def test_negative_net_assets_fail_every_leverage_rule() -> None:
    results = check_platform_return(platform(net_assets=cny(-1)), CN2025)
    assert all(not r.passed for r in results)


# --- bank capital -------------------------------------------------------------------------------------------------


def capital(cet1: int, tier1: int, total: int, leverage_exposure: int = 100_000) -> BankCapital:
    return BankCapital(cny(cet1), cny(tier1), cny(total), cny(100_000), cny(leverage_exposure))


def test_basel3_minimums_at_the_boundary() -> None:
    rules = in_force("basel3", TODAY)
    results = {r.rule_id: r.passed for r in check_bank_capital(capital(7_000, 8_500, 10_500), rules)}
    assert results == dict.fromkeys(
        [
            "basel3.cet1_min",
            "basel3.tier1_min",
            "basel3.total_capital_min",
            "basel3.conservation_buffer",
            "basel3.leverage_min",
        ],
        True,
    )
    thin = {r.rule_id: r.passed for r in check_bank_capital(capital(4_500, 5_999, 8_000), rules)}
    assert thin == {
        "basel3.cet1_min": True,  # exactly 4.5 %
        "basel3.tier1_min": False,  # 5.999 %
        "basel3.total_capital_min": True,  # exactly 8 %
        "basel3.conservation_buffer": False,  # 4.5 % < 7 %
        "basel3.leverage_min": True,  # 5.999 % of the exposure measure
    }


def test_china_asks_4_percent_leverage_where_basel_asks_3() -> None:
    bank_capital = BankCapital(cny(8_000), cny(9_000), cny(11_000), cny(80_000), cny(257_143))  # leverage ≈ 3.5 %
    basel = {r.rule_id: r.passed for r in check_bank_capital(bank_capital, in_force("basel3", TODAY))}
    china = {r.rule_id: r.passed for r in check_bank_capital(bank_capital, in_force("cn-bank-capital", TODAY))}
    assert basel["basel3.leverage_min"] is True
    assert china["cnbank.leverage_min"] is False
    assert all(passed for rule_id, passed in china.items() if rule_id != "cnbank.leverage_min")


# --- refusing -----------------------------------------------------------------------------------------------------


def test_origination_is_refused_naming_the_rule_and_the_numbers() -> None:
    results = check_borrower(person(20_000, outstanding=15_000), CN2020) + check_offer_rate(
        RateOffer(apr_all_in=Decimal("0.30")), DEFAULTS
    )
    with pytest.raises(PolicyViolation) as caught:
        raise_if_failed(results)
    error = caught.value
    assert error.code == "policy.rule_failed"
    assert error.http_status == 409
    assert error.rule_ids == ("cn2020.natural_person_cap", "cn.rate_cap_24")
    assert "cn2020.natural_person_cap" in error.message
    body = error.to_dict()
    json.dumps(body)  # Decimals became strings: the problem+json body serialises
    failure = body["details"]["failures"][1]
    assert failure["numbers"]["rate"] == "0.30"
    assert failure["numbers"]["apr_max"] == "0.24"


def test_nothing_is_raised_when_everything_passes() -> None:
    raise_if_failed(check_borrower(person(1_000), DEFAULTS))
