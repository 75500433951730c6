"""The rule sets creditstack ships, as data. Each rule cites its source (see /work/shared/reference/regulation.md).

Marks in sources follow the reference notes: ✅ seen in a source; ◐ from a secondary source; ⚠ uncertain.
Amounts are integer minor units (CNY fen: CNY 300,000 is `30_000_000`); rates and ratios are Decimals as
fractions of one. `DEFAULT_RULE_SET_NAMES` is what `Settings.policy_rule_sets` names by default; the
2020 draft (`cn-2020-online-microlending`) never took effect as written and is a selectable scenario.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType

from creditstack.policy.domain import ParameterValue, Rule, RuleKind, RuleScope, RuleSet

CNY_FEN_PER_YUAN = 100

_REF = "reference/regulation.md"

# --- sources ------------------------------------------------------------------------------------------------
_SRC_2020_DRAFT = (
    "CBIRC+PBOC 网络小额贷款业务管理暂行办法（征求意见稿）, draft of 2 Nov 2020, never finalised as drafted"
)
_SRC_2025 = (
    "NFRA 小额贷款公司监督管理暂行办法 (金规〔2024〕26号), published Jan 2025; ✅ nbluoke.com.cn (WEMONEY, "
    "2025-01-17); ⚠ effective date encoded as 2025-01-01, not confirmed in the text"
)
_SRC_2020_MEASURES = "CBIRC Interim Measures on Commercial Banks' Internet Loans (Order 2020 No. 9, 17 Jul 2020)"
_SRC_2021_NOTICE = "CBIRC notice 银保监办发〔2021〕24号 (20 Feb 2021)"
_SRC_BASEL = "BCBS Basel III, RBC20.1 (minimums)"


def _yuan(amount_yuan: int) -> int:
    return amount_yuan * CNY_FEN_PER_YUAN


def _rule(
    rule_id: str,
    kind: RuleKind,
    scope: RuleScope,
    title: str,
    parameters: Mapping[str, ParameterValue],
    effective_from: date,
    jurisdiction: str,
    source: str,
    effective_to: date | None = None,
) -> Rule:
    return Rule(
        id=rule_id,
        kind=kind,
        scope=scope,
        title=title,
        parameters=parameters,
        effective_from=effective_from,
        effective_to=effective_to,
        jurisdiction=jurisdiction,
        source=source,
    )


# --- China, online micro-lending: the 2020 draft ----------------------------------------------------------
_D2020 = date(2020, 11, 2)
CN_2020_ONLINE_MICROLENDING = RuleSet(
    name="cn-2020-online-microlending",
    title="Online micro-lending, draft interim measures (2 Nov 2020) — the 'Ant moment' scenario",
    status="draft",
    jurisdiction="CN",
    rules=(
        _rule(
            "cn2020.platform_share_min",
            "loan_share_min",
            "loan",
            "The micro-lender funds at least 30 % of each joint loan",
            {"share_min": Decimal("0.30")},
            _D2020,
            "CN",
            f"{_SRC_2020_DRAFT}; ✅ cyzfzs.com, yhxinli.cn (Beijing Business Daily) ({_REF} §1a)",
        ),
        _rule(
            "cn2020.natural_person_cap",
            "borrower_cap",
            "borrower",
            "Natural person: balance ≤ CNY 300,000 and ≤ 1/3 of average annual income of the last 3 years",
            {
                "amount_max_minor": _yuan(300_000),
                "currency": "CNY",
                "income_fraction": Fraction(1, 3),
                "borrower_kinds": ("natural_person",),
            },
            _D2020,
            "CN",
            f"{_SRC_2020_DRAFT}, Art. 13; ✅ chinajusticeobserver ({_REF} §1a)",
        ),
        _rule(
            "cn2020.legal_person_cap",
            "borrower_cap",
            "borrower",
            "Legal person or other organisation (with related parties): balance ≤ CNY 1,000,000",
            {"amount_max_minor": _yuan(1_000_000), "currency": "CNY", "borrower_kinds": ("legal_person",)},
            _D2020,
            "CN",
            f"{_SRC_2020_DRAFT}; ✅ cyzfzs.com ({_REF} §1a)",
        ),
        _rule(
            "cn2020.nonstandard_leverage_max",
            "ratio_max",
            "platform",
            "Non-standardised funding (bank and shareholder loans) ≤ 1× net assets",
            {"numerator": "nonstandard_funding", "denominator": "net_assets", "limit": Decimal(1)},
            _D2020,
            "CN",
            f"{_SRC_2020_DRAFT}, Art. 12; ✅ chinajusticeobserver ({_REF} §1a)",
        ),
        _rule(
            "cn2020.bonds_abs_leverage_max",
            "ratio_max",
            "platform",
            "Standardised funding (bonds, ABS) ≤ 4× net assets",
            {"numerator": "bonds_abs_funding", "denominator": "net_assets", "limit": Decimal(4)},
            _D2020,
            "CN",
            f"{_SRC_2020_DRAFT}, Art. 12; ✅ chinajusticeobserver ({_REF} §1a)",
        ),
        _rule(
            "cn2020.registered_capital_min",
            "amount_min",
            "platform",
            "Registered capital ≥ CNY 1 bn, paid in one go, in cash",
            {"figure": "registered_capital", "amount_min_minor": _yuan(1_000_000_000), "currency": "CNY"},
            _D2020,
            "CN",
            f"{_SRC_2020_DRAFT}; ✅ Reuters/devdiscourse 2020-11-02, cyzfzs.com ({_REF} §1a)",
        ),
        _rule(
            "cn2020.registered_capital_cross_province_min",
            "amount_min",
            "platform",
            "Lending across provinces: registered capital ≥ CNY 5 bn",
            {
                "figure": "registered_capital",
                "amount_min_minor": _yuan(5_000_000_000),
                "currency": "CNY",
                "condition": "lends_across_provinces",
            },
            _D2020,
            "CN",
            f"{_SRC_2020_DRAFT}; ✅ Reuters/devdiscourse 2020-11-02 ({_REF} §1a)",
        ),
    ),
)

# --- China, micro-lending: the 2025 rules in force ------------------------------------------------------
_D2025 = date(2025, 1, 1)
CN_2025_MICROLENDING = RuleSet(
    name="cn-2025-microlending",
    title="Micro-lending companies, interim supervisory measures (NFRA, 2025)",
    status="in_force",
    jurisdiction="CN",
    rules=(
        _rule(
            "cn2025.consumer_cap",
            "borrower_cap",
            "borrower",
            "Online micro-lender, consumer loans: balance ≤ CNY 200,000 per household",
            {"amount_max_minor": _yuan(200_000), "currency": "CNY", "purposes": ("consumer",)},
            _D2025,
            "CN",
            f"{_SRC_2025} ({_REF} §1a)",
        ),
        _rule(
            "cn2025.business_cap",
            "borrower_cap",
            "borrower",
            "Online micro-lender, business loans: balance ≤ CNY 10,000,000",
            {"amount_max_minor": _yuan(10_000_000), "currency": "CNY", "purposes": ("business",)},
            _D2025,
            "CN",
            f"{_SRC_2025} ({_REF} §1a)",
        ),
        _rule(
            "cn2025.single_borrower_max",
            "ratio_max",
            "platform",
            "One borrower ≤ 10 % of net assets at the prior year end",
            {"numerator": "largest_borrower_exposure", "denominator": "net_assets", "limit": Decimal("0.10")},
            _D2025,
            "CN",
            f"{_SRC_2025} ({_REF} §1a)",
        ),
        _rule(
            "cn2025.related_group_max",
            "ratio_max",
            "platform",
            "One borrower with its related parties ≤ 15 % of net assets at the prior year end",
            {"numerator": "largest_related_group_exposure", "denominator": "net_assets", "limit": Decimal("0.15")},
            _D2025,
            "CN",
            f"{_SRC_2025} ({_REF} §1a)",
        ),
        _rule(
            "cn2025.nonstandard_leverage_max",
            "ratio_max",
            "platform",
            "Non-standardised funding ≤ 1× net assets ('1+4' kept)",
            {"numerator": "nonstandard_funding", "denominator": "net_assets", "limit": Decimal(1)},
            _D2025,
            "CN",
            f"{_SRC_2025}; CBIRC notice of Sept 2020 (marketscreener 2020-09-16) ({_REF} §1a)",
        ),
        _rule(
            "cn2025.bonds_abs_leverage_max",
            "ratio_max",
            "platform",
            "Standardised funding (bonds, ABS) ≤ 4× net assets ('1+4' kept)",
            {"numerator": "bonds_abs_funding", "denominator": "net_assets", "limit": Decimal(4)},
            _D2025,
            "CN",
            f"{_SRC_2025}; CBIRC notice of Sept 2020 (marketscreener 2020-09-16) ({_REF} §1a)",
        ),
    ),
)

# --- China, commercial banks' internet loans and joint lending ---------------------------------------------
_D2021_NOTICE = date(2021, 2, 20)
CN_2021_BANK_INTERNET_LOANS = RuleSet(
    name="cn-2021-bank-internet-loans",
    title="Commercial banks' internet loans (Order 2020 No. 9) and the joint-lending notice of 2021",
    status="in_force",
    jurisdiction="CN",
    rules=(
        _rule(
            "cn2021.partner_share_min",
            "loan_share_min",
            "loan",
            "In a joint loan the bank's partner (here the platform) funds at least 30 % of each loan",
            {"share_min": Decimal("0.30")},
            date(2022, 1, 1),
            "CN",
            f"{_SRC_2021_NOTICE}, item II; in force 1 Jan 2022 ✅ reg-track ({_REF} §1b)",
        ),
        _rule(
            "cn2021.partner_tier1_max",
            "ratio_max",
            "partner_bank",
            "A bank's joint loans with any one partner ≤ 25 % of its net tier-1 capital",
            {"numerator": "joint_loans_with_partner", "denominator": "net_tier1_capital", "limit": Decimal("0.25")},
            _D2021_NOTICE,
            "CN",
            f"{_SRC_2021_NOTICE}, item III ✅; dated from the notice (it follows the 2020 Measures' "
            f"transition) ◐ ({_REF} §1b)",
        ),
        _rule(
            "cn2021.joint_loans_total_max",
            "ratio_max",
            "partner_bank",
            "A bank's jointly funded internet loans ≤ 50 % of its total loans",
            {"numerator": "joint_loans_total", "denominator": "total_loans", "limit": Decimal("0.50")},
            _D2021_NOTICE,
            "CN",
            f"{_SRC_2021_NOTICE}, item IV ✅; dated from the notice ◐ ({_REF} §1b)",
        ),
        _rule(
            "cn2021.household_consumer_cap",
            "borrower_cap",
            "borrower",
            "Internet consumer credit ≤ CNY 200,000 per household",
            {"amount_max_minor": _yuan(200_000), "currency": "CNY", "purposes": ("consumer",)},
            date(2020, 7, 17),
            "CN",
            f"{_SRC_2020_MEASURES}; ✅ tellerreport 2020-07-17 ({_REF} §1b)",
        ),
    ),
)

# --- Rate caps -----------------------------------------------------------------------------------------------
RATE_CAP_24 = RuleSet(
    name="rate-cap-24",
    title="All-in rate cap of 24 % a year for licensed lenders (China)",
    status="interpretation",
    jurisdiction="CN",
    rules=(
        _rule(
            "cn.rate_cap_24",
            "rate_cap",
            "offer",
            "All-in APR (interest plus every fee) ≤ 24 % a year",
            {"apr_max": Decimal("0.24"), "measure": "apr_all_in"},
            date(2017, 8, 4),
            "CN",
            "SPC opinions on financial trials (法发〔2017〕22号, 4 Aug 2017): interest plus fees above 24 %/yr "
            "reducible ◐; NFRA 金规〔2025〕9号 (effective 1 Oct 2025) requires the total financing cost to be "
            f"disclosed — the 24 % is an interpretation ⚠ ({_REF} §1b, §1d)",
        ),
    ),
)

US_MLA_36 = RuleSet(
    name="us-mla-36",
    title="US Military Lending Act: 36 % MAPR for covered borrowers",
    status="in_force",
    jurisdiction="US",
    rules=(
        _rule(
            "us.mla_mapr_36",
            "rate_cap",
            "offer",
            "Military APR ≤ 36 % for covered members and dependants",
            {"apr_max": Decimal("0.36"), "measure": "mapr", "covered_only": True},
            date(2016, 10, 3),
            "US",
            "10 USC 987; 32 CFR 232 (the 2015 amended rule, compliance date 3 Oct 2016 for most consumer "
            f"credit) ◐ ({_REF} §1d)",
        ),
    ),
)

# --- Bank capital: Basel III and China ----------------------------------------------------------------------
_BASEL_DATES = "dates from the Basel III transitional arrangements (fully phased in) ◐"
BASEL3 = RuleSet(
    name="basel3",
    title="Basel III minimum capital and leverage ratios (BCBS)",
    status="reference",
    jurisdiction="BCBS",
    rules=(
        _rule(
            "basel3.cet1_min",
            "ratio_min",
            "bank_capital",
            "CET1 ≥ 4.5 % of risk-weighted assets",
            {"numerator": "cet1_capital", "denominator": "risk_weighted_assets", "limit": Decimal("0.045")},
            date(2015, 1, 1),
            "BCBS",
            f"{_SRC_BASEL} ✅; {_BASEL_DATES} ({_REF} §1f)",
        ),
        _rule(
            "basel3.tier1_min",
            "ratio_min",
            "bank_capital",
            "Tier 1 ≥ 6 % of risk-weighted assets",
            {"numerator": "tier1_capital", "denominator": "risk_weighted_assets", "limit": Decimal("0.06")},
            date(2015, 1, 1),
            "BCBS",
            f"{_SRC_BASEL} ✅; {_BASEL_DATES} ({_REF} §1f)",
        ),
        _rule(
            "basel3.total_capital_min",
            "ratio_min",
            "bank_capital",
            "Total capital ≥ 8 % of risk-weighted assets",
            {"numerator": "total_capital", "denominator": "risk_weighted_assets", "limit": Decimal("0.08")},
            date(2013, 1, 1),
            "BCBS",
            f"{_SRC_BASEL} ✅; {_BASEL_DATES} ({_REF} §1f)",
        ),
        _rule(
            "basel3.conservation_buffer",
            "ratio_min",
            "bank_capital",
            "CET1 ≥ 7 % of RWA (4.5 % minimum + 2.5 % conservation buffer; below it distributions are limited)",
            {"numerator": "cet1_capital", "denominator": "risk_weighted_assets", "limit": Decimal("0.07")},
            date(2019, 1, 1),
            "BCBS",
            f"{_SRC_BASEL}, footnote (conservation buffer) ✅; {_BASEL_DATES} ({_REF} §1f)",
        ),
        _rule(
            "basel3.leverage_min",
            "ratio_min",
            "bank_capital",
            "Tier 1 ≥ 3 % of the leverage exposure measure",
            {"numerator": "tier1_capital", "denominator": "leverage_exposure", "limit": Decimal("0.03")},
            date(2018, 1, 1),
            "BCBS",
            f"BCBS Basel III, LEV40 (Pillar 1 from 1 Jan 2018 ◐) ✅ bis.org ({_REF} §1f)",
        ),
    ),
)

_SRC_CN_CAPITAL = "NFRA/PBOC Capital Rules for Commercial Banks (2023), in force 1 Jan 2024"
CN_BANK_CAPITAL = RuleSet(
    name="cn-bank-capital",
    title="China's commercial-bank capital and leverage minimums",
    status="in_force",
    jurisdiction="CN",
    rules=(
        _rule(
            "cnbank.cet1_min",
            "ratio_min",
            "bank_capital",
            "CET1 ≥ 5 % of risk-weighted assets",
            {"numerator": "cet1_capital", "denominator": "risk_weighted_assets", "limit": Decimal("0.05")},
            date(2024, 1, 1),
            "CN",
            f"{_SRC_CN_CAPITAL} ◐ (creditriskengine nfra.yml) ({_REF} §1f)",
        ),
        _rule(
            "cnbank.tier1_min",
            "ratio_min",
            "bank_capital",
            "Tier 1 ≥ 6 % of risk-weighted assets",
            {"numerator": "tier1_capital", "denominator": "risk_weighted_assets", "limit": Decimal("0.06")},
            date(2024, 1, 1),
            "CN",
            f"{_SRC_CN_CAPITAL} ({_REF} §1f)",
        ),
        _rule(
            "cnbank.total_capital_min",
            "ratio_min",
            "bank_capital",
            "Total capital ≥ 8 % of risk-weighted assets",
            {"numerator": "total_capital", "denominator": "risk_weighted_assets", "limit": Decimal("0.08")},
            date(2024, 1, 1),
            "CN",
            f"{_SRC_CN_CAPITAL} ({_REF} §1f)",
        ),
        _rule(
            "cnbank.total_capital_with_buffer",
            "ratio_min",
            "bank_capital",
            "Capital adequacy ≥ 10.5 % with the 2.5 % conservation buffer (big banks 11.5 %, not encoded)",
            {"numerator": "total_capital", "denominator": "risk_weighted_assets", "limit": Decimal("0.105")},
            date(2024, 1, 1),
            "CN",
            f"{_SRC_CN_CAPITAL}; ✅ business-standard ({_REF} §1f)",
        ),
        _rule(
            "cnbank.leverage_min",
            "ratio_min",
            "bank_capital",
            "Leverage ratio (Tier 1 / exposure measure) ≥ 4 % for all commercial banks",
            {"numerator": "tier1_capital", "denominator": "leverage_exposure", "limit": Decimal("0.04")},
            date(2024, 1, 1),
            "CN",
            f"商业银行杠杆率管理办法 ✅ chinabankingnews; dated from the 2023 Capital Rules ◐ ({_REF} §1f)",
        ),
    ),
)

RULE_SETS: Mapping[str, RuleSet] = MappingProxyType(
    {
        rule_set.name: rule_set
        for rule_set in (
            CN_2020_ONLINE_MICROLENDING,
            CN_2025_MICROLENDING,
            CN_2021_BANK_INTERNET_LOANS,
            RATE_CAP_24,
            US_MLA_36,
            BASEL3,
            CN_BANK_CAPITAL,
        )
    }
)
"""Every rule set this release ships, by name."""

DEFAULT_RULE_SET_NAMES: tuple[str, ...] = ("cn-2021-bank-internet-loans", "cn-2025-microlending", "rate-cap-24")
"""The sets in force by default (the same as `Settings.policy_rule_sets`)."""


def all_rules() -> tuple[Rule, ...]:
    """Every rule of every shipped set, in set order."""
    return tuple(rule for rule_set in RULE_SETS.values() for rule in rule_set.rules)
