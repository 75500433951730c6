"""Worked examples of the portfolio arithmetic, with the numbers."""

from __future__ import annotations

import doctest
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

import creditstack.analytics.portfolio
from creditstack.analytics import (
    AnalyticsInputInvalid,
    Ifrs9Stage,
    LoanTier,
    bucket_distribution,
    bucket_labels,
    china_five_tier,
    concentration_by,
    cr_n,
    dpd_bucket,
    expected_credit_loss,
    hhi,
    ifrs9_stage,
    roll_rates,
    vintage_curves,
)
from creditstack.core.money import CNY, Money

# --- buckets --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dpd", "bucket"),
    [
        (0, "current"),
        (1, "1-29"),
        (29, "1-29"),
        (30, "30-59"),
        (59, "30-59"),
        (60, "60-89"),
        (89, "60-89"),
        (90, "90-179"),
        (179, "90-179"),
        (180, "180+"),
        (999, "180+"),
    ],
)
def test_default_buckets(dpd: int, bucket: str) -> None:
    assert dpd_bucket(dpd) == bucket


def test_us_style_buckets_from_boundaries() -> None:
    us = (1, 30, 60, 90, 120, 150, 180)
    assert bucket_labels(us) == ("current", "1-29", "30-59", "60-89", "90-119", "120-149", "150-179", "180+")
    assert dpd_bucket(125, us) == "120-149"


@pytest.mark.parametrize("boundaries", [(), (30, 30), (60, 30), (0, 30), (1.0, 30)])
def test_bad_boundaries_are_refused(boundaries: tuple[int, ...]) -> None:
    with pytest.raises(AnalyticsInputInvalid):
        dpd_bucket(5, boundaries)


def test_negative_or_float_dpd_is_refused() -> None:
    with pytest.raises(AnalyticsInputInvalid):
        dpd_bucket(-1)
    with pytest.raises(AnalyticsInputInvalid):
        dpd_bucket(3.0)  # type: ignore[arg-type]


def test_bucket_distribution_counts_and_balances() -> None:
    rows = [
        {"dpd": 0, "balance_minor": 600},
        {"dpd": 0, "balance_minor": 200},
        {"dpd": 12, "balance_minor": 100},
        {"dpd": 95, "balance_minor": 100},
    ]
    distribution = {row.bucket: row for row in bucket_distribution(rows)}
    assert list(distribution) == ["current", "1-29", "30-59", "60-89", "90-179", "180+"]
    assert (distribution["current"].accounts, distribution["current"].balance_minor) == (2, 800)
    assert distribution["current"].account_share == Decimal("0.5")
    assert distribution["current"].balance_share == Decimal("0.8")
    assert distribution["90-179"].balance_share == Decimal("0.1")
    assert distribution["180+"].accounts == 0
    assert sum(row.accounts for row in distribution.values()) == 4


def test_rows_may_be_dataclasses() -> None:
    @dataclass
    class Row:
        dpd: int
        balance_minor: int

    [current, *_] = bucket_distribution([Row(0, 10), Row(40, 30)])
    assert current.balance_share == Decimal("0.25")


def test_a_missing_field_is_named() -> None:
    with pytest.raises(AnalyticsInputInvalid) as caught:
        bucket_distribution([{"dpd": 0}])
    assert caught.value.field == "balance_minor"


# --- vintages ------------------------------------------------------------------------------------------------------


def snapshot(
    account: str, mob: int, dpd: int, *, charged_off: bool = False, principal: int = 1_000
) -> dict[str, object]:
    return {
        "account_id": account,
        "origination_month": "2024-01",
        "snapshot_month": date(2024 + mob // 12, mob % 12 + 1, 28),  # month-end snapshots, MOB = mob
        "balance_minor": 0 if charged_off else principal,
        "dpd": dpd,
        "status": "charged_off" if charged_off else "open",
        "charged_off": charged_off,
        "original_principal_minor": principal,
    }


# A: 30 at MOB 1, 60 at MOB 2, 90 at MOB 3. B: charged off at MOB 5. C: 30 at MOB 2, cured. D: always current.
VINTAGE = [
    *(snapshot("A", m, d, principal=3_000) for m, d in enumerate([0, 30, 60, 90, 120, 150])),
    *(snapshot("B", m, d) for m, d in enumerate([0, 0, 0, 0, 0])),
    snapshot("B", 5, 0, charged_off=True),
    *(snapshot("C", m, d) for m, d in enumerate([0, 0, 30, 0, 0, 0])),
    *(snapshot("D", m, 0) for m in range(6)),
]


def test_ever_90_plus_vintage_curve() -> None:
    points = vintage_curves(VINTAGE, "ever_90_plus")
    assert [p.months_on_book for p in points] == [0, 1, 2, 3, 4, 5]
    assert {p.vintage for p in points} == {"2024-01"}
    assert [p.bad_accounts for p in points] == [0, 0, 0, 1, 1, 2]  # A at MOB 3, B charged off at MOB 5
    assert [p.bad_rate for p in points][-1] == Decimal("0.5")
    assert points[3].bad_rate == Decimal("0.25")
    # Weighted by original principal: A is 3,000 of 6,000.
    assert points[3].bad_principal_rate == Decimal("0.5")
    assert points[5].bad_principal_rate == Decimal("0.666667")


def test_ever_30_plus_counts_a_cured_account_and_keeps_it_bad() -> None:
    points = vintage_curves(VINTAGE, "dpd30+")
    assert [p.bad_accounts for p in points] == [0, 1, 2, 2, 2, 3]


def test_charged_off_curve() -> None:
    assert [p.bad_accounts for p in vintage_curves(VINTAGE, "charged_off")] == [0, 0, 0, 0, 0, 1]


def test_vintages_are_kept_apart_and_sorted() -> None:
    later = {**snapshot("E", 0, 95), "origination_month": "2024-03", "snapshot_month": "2024-03"}
    points = vintage_curves([*VINTAGE, later])
    assert [(p.vintage, p.months_on_book) for p in points][-1] == ("2024-03", 0)
    assert points[-1].bad_rate == Decimal("1")


def test_duplicate_snapshots_and_unknown_metrics_are_refused() -> None:
    with pytest.raises(AnalyticsInputInvalid):
        vintage_curves([*VINTAGE, VINTAGE[0]])
    with pytest.raises(AnalyticsInputInvalid):
        vintage_curves(VINTAGE, "ever_45_plus")
    with pytest.raises(AnalyticsInputInvalid):
        vintage_curves([{**VINTAGE[0], "snapshot_month": "2023-12"}])


# --- roll rates ----------------------------------------------------------------------------------------------------


def month_row(account: str, month: str, dpd: int, balance: int, **extra: object) -> dict[str, object]:
    return {"account_id": account, "snapshot_month": month, "dpd": dpd, "balance_minor": balance, **extra}


ROLL_BOOK = [
    # May: four current, two 1-29, one 30-59
    month_row("a", "2025-05", 0, 100),
    month_row("b", "2025-05", 0, 200),
    month_row("c", "2025-05", 0, 300),
    month_row("d", "2025-05", 0, 400),
    month_row("e", "2025-05", 10, 500),
    month_row("f", "2025-05", 20, 600),
    month_row("g", "2025-05", 45, 700),
    # June
    month_row("a", "2025-06", 0, 90),  # stays current
    month_row("b", "2025-06", 15, 200),  # rolls to 1-29
    month_row("c", "2025-06", 0, 0, status="paid_off"),  # closed
    # d is missing in June
    month_row("e", "2025-06", 40, 500),  # rolls to 30-59
    month_row("f", "2025-06", 0, 550),  # cures
    month_row("g", "2025-06", 75, 0, charged_off=True),  # charged off
    month_row("h", "2025-06", 0, 999),  # new in June: not in the matrix
]


def test_roll_rate_matrix_rows_sum_to_their_populations() -> None:
    matrix = roll_rates(ROLL_BOOK, "2025-05", date(2025, 6, 30))
    assert matrix.from_month == "2025-05"
    assert matrix.to_month == "2025-06"
    assert matrix.populations["current"] == 4
    assert matrix.populations["1-29"] == 2
    assert matrix.populations["30-59"] == 1
    for state in matrix.from_states:
        assert sum(matrix.counts[state].values()) == matrix.populations[state]
        assert sum(matrix.balances_minor[state].values()) == matrix.population_balances_minor[state]
    assert matrix.counts["current"] == {
        **dict.fromkeys(matrix.to_states, 0),
        "current": 1,
        "1-29": 1,
        "closed": 1,
        "missing": 1,
    }
    assert matrix.counts["1-29"]["30-59"] == 1
    assert matrix.counts["1-29"]["current"] == 1
    assert matrix.counts["30-59"]["charged_off"] == 1
    assert sum(matrix.populations.values()) == 7  # h is new


def test_roll_rates_by_count_and_by_balance() -> None:
    matrix = roll_rates(ROLL_BOOK, "2025-05", "2025-06")
    assert matrix.account_rate("current", "1-29") == Decimal("0.25")
    assert matrix.balance_rate("current", "1-29") == Decimal("0.2")  # 200 of 1,000
    assert matrix.balance_rate("1-29", "30-59") == Decimal("0.454545")  # 500 of 1,100
    assert matrix.to_balances_minor["1-29"]["current"] == 550
    rows = matrix.rows()
    assert len(rows) == len(matrix.from_states) * len(matrix.to_states)
    assert sum(r.accounts for r in rows) == 7


def test_roll_rates_need_a_later_to_month() -> None:
    with pytest.raises(AnalyticsInputInvalid):
        roll_rates(ROLL_BOOK, "2025-06", "2025-05")


# --- concentration -------------------------------------------------------------------------------------------------


def test_hhi_worked_examples() -> None:
    assert hhi([1, 1, 1, 1]) == Decimal(2500)  # four equal firms
    assert hhi([Decimal("0.25")] * 4) == Decimal(2500)  # shares or amounts, any scale
    assert hhi([7]) == Decimal(10_000)  # monopoly
    assert hhi([50, 30, 20]) == Decimal(3800)  # 2,500 + 900 + 400
    assert hhi([10] * 10) == Decimal(1000)
    assert hhi([1, 1, 1]) == Decimal("3333.3333")


def test_cr_n() -> None:
    assert cr_n([40, 20, 10, 10, 10, 5, 5]) == Decimal("0.9")
    assert cr_n([40, 20, 10, 10, 10, 5, 5], n=1) == Decimal("0.4")
    assert cr_n([3, 1], n=5) == Decimal(1)


@pytest.mark.parametrize("bad", [[], [0, 0], [1, -1], [0.5, 0.5]])
def test_concentration_refuses_empty_negative_and_float_input(bad: list[object]) -> None:
    with pytest.raises(AnalyticsInputInvalid):
        hhi(bad)  # type: ignore[arg-type]


def test_concentration_by_partner_bank() -> None:
    loans = [
        {"bank": "A", "balance_minor": 500},
        {"bank": "B", "balance_minor": 300},
        {"bank": "A", "balance_minor": 100},
        {"bank": "C", "balance_minor": 100},
    ]
    report = concentration_by(loans, "bank", n=2)
    assert [(r.key, r.amount_minor) for r in report.rows] == [("A", 600), ("B", 300), ("C", 100)]
    assert report.total_minor == 1000
    assert report.hhi == Decimal(4600)  # 3,600 + 900 + 100
    assert report.cr_n == Decimal("0.9")
    assert report.rows[0].share == Decimal("0.6")
    by_function = concentration_by(loans, lambda row: row["bank"] == "A")  # type: ignore[index]
    assert by_function.hhi == Decimal(5200)  # 60 % and 40 %


# --- IFRS 9 and ECL ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dpd", "stage"), [(0, 1), (30, 1), (31, 2), (90, 2), (91, 3), (400, 3)])
def test_ifrs9_backstops(dpd: int, stage: int) -> None:
    assert ifrs9_stage(dpd) == stage


def test_ifrs9_flags_move_stages() -> None:
    assert ifrs9_stage(0, sicr=True) is Ifrs9Stage.UNDERPERFORMING
    assert ifrs9_stage(0, credit_impaired=True) is Ifrs9Stage.CREDIT_IMPAIRED
    assert ifrs9_stage(40, sicr_dpd_over=60) is Ifrs9Stage.PERFORMING


def test_expected_credit_loss() -> None:
    # 12-month ECL of a stage-1 loan: 2 % × 45 % × CNY 10,000.00 = CNY 90.00.
    assert expected_credit_loss(Decimal("0.02"), Decimal("0.45"), 1_000_000) == 9_000
    assert expected_credit_loss(Decimal("0.02"), Decimal("0.45"), Money(1_000_000, CNY)) == Money(9_000, CNY)
    # Rounded once, half-even.
    assert expected_credit_loss(Decimal("0.5"), Decimal(1), 5) == 2  # 2.5 → 2
    assert expected_credit_loss(Decimal("0.5"), Decimal(1), 7) == 4  # 3.5 → 4
    # Discounted one year at 10 %: DF = 1 / 1.1.
    assert expected_credit_loss(Decimal(1), Decimal(1), 1_100, Decimal(1) / Decimal("1.1")) == 1_000


@pytest.mark.parametrize(("pd_value", "lgd"), [(0.02, Decimal("0.4")), (Decimal("1.2"), Decimal("0.4"))])
def test_ecl_refuses_floats_and_probabilities_beyond_one(pd_value: object, lgd: Decimal) -> None:
    with pytest.raises(AnalyticsInputInvalid):
        expected_credit_loss(pd_value, lgd, 100)  # type: ignore[call-overload]


# --- five tiers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dpd", "tier"),
    [
        (0, LoanTier.NORMAL),
        (1, LoanTier.SPECIAL_MENTION),
        (90, LoanTier.SPECIAL_MENTION),
        (91, LoanTier.SUBSTANDARD),
        (270, LoanTier.SUBSTANDARD),
        (271, LoanTier.DOUBTFUL),
        (360, LoanTier.DOUBTFUL),
        (361, LoanTier.LOSS),
    ],
)
def test_five_tier_dpd_floors(dpd: int, tier: LoanTier) -> None:
    assert china_five_tier(dpd) is tier


def test_five_tier_flags_and_mapping() -> None:
    assert china_five_tier(0, watch=True) is LoanTier.SPECIAL_MENTION
    assert china_five_tier(0, credit_impaired=True) is LoanTier.SUBSTANDARD
    assert china_five_tier(10, credit_impaired=True, ecl_to_book=Decimal("0.5")) is LoanTier.DOUBTFUL
    assert china_five_tier(10, credit_impaired=True, ecl_to_book=Decimal("0.9")) is LoanTier.LOSS
    assert china_five_tier(400, credit_impaired=True, ecl_to_book=Decimal("0.5")) is LoanTier.LOSS
    assert LoanTier.SPECIAL_MENTION.value == "special-mention"
    assert [t.non_performing for t in LoanTier] == [False, False, True, True, True]
    assert [t.ifrs9_stage for t in LoanTier] == [1, 2, 3, 3, 3]


def test_docstring_examples() -> None:
    failed, attempted = doctest.testmod(creditstack.analytics.portfolio)
    assert attempted > 0
    assert failed == 0
