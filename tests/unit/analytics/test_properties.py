"""Properties of the portfolio arithmetic (hypothesis)."""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from creditstack.analytics import (
    bucket_labels,
    china_five_tier,
    cr_n,
    dpd_bucket,
    dpd_bucket_index,
    hhi,
    roll_rates,
    vintage_curves,
)
from creditstack.analytics.portfolio import HHI_PLACES, LoanTier, month_label

amounts = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=40).filter(any)
boundaries = st.lists(st.integers(min_value=1, max_value=1_000), min_size=1, max_size=8, unique=True).map(
    lambda values: tuple(sorted(values))
)


def _rounded(value: Fraction) -> Decimal:
    scaled = round(value / Fraction(HHI_PLACES))
    return (Decimal(scaled) * HHI_PLACES).quantize(HHI_PLACES)


@given(amounts)
def test_hhi_lies_between_the_equal_split_and_a_monopoly(values: list[int]) -> None:
    participants = sum(1 for v in values if v > 0)
    value = hhi(values)
    assert _rounded(Fraction(10_000, participants)) <= value <= Decimal(10_000)


@given(amounts, st.integers(min_value=1, max_value=10))
def test_cr_n_is_a_share_and_grows_with_n(values: list[int], n: int) -> None:
    assert Decimal(0) < cr_n(values, n) <= cr_n(values, n + 1) <= Decimal(1)


@given(boundaries, st.integers(min_value=0, max_value=2_000), st.integers(min_value=0, max_value=2_000))
def test_buckets_are_monotone_in_dpd(bounds: tuple[int, ...], a: int, b: int) -> None:
    low, high = min(a, b), max(a, b)
    assert dpd_bucket_index(low, bounds) <= dpd_bucket_index(high, bounds)
    labels = bucket_labels(bounds)
    assert len(labels) == len(bounds) + 1
    assert dpd_bucket(low, bounds) in labels
    assert (dpd_bucket(low, bounds) == "current") == (low < bounds[0])


@given(st.integers(min_value=0, max_value=2_000), st.integers(min_value=0, max_value=2_000))
def test_five_tiers_are_monotone_in_dpd(a: int, b: int) -> None:
    order = list(LoanTier)
    assert order.index(china_five_tier(min(a, b))) <= order.index(china_five_tier(max(a, b)))


# An account's history: per month a (dpd, charged_off) pair, from its origination month on.
history = st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.booleans()), min_size=1, max_size=18)
book = st.lists(
    st.tuples(st.integers(min_value=0, max_value=5), history, st.integers(min_value=1, max_value=10**9)),
    min_size=1,
    max_size=25,
)


Book = list[tuple[int, list[tuple[int, bool]], int]]


def _snapshots(accounts: Book) -> list[dict[str, object]]:
    base = 2024 * 12
    rows: list[dict[str, object]] = []
    for number, (start, months, principal) in enumerate(accounts):
        for mob, (dpd, charged_off) in enumerate(months):
            rows.append(
                {
                    "account_id": number,
                    "origination_month": month_label(base + start),
                    "snapshot_month": month_label(base + start + mob),
                    "balance_minor": 0 if charged_off else principal,
                    "dpd": dpd,
                    "status": "open",
                    "charged_off": charged_off,
                    "original_principal_minor": principal,
                }
            )
    return rows


@given(book, st.sampled_from(["ever_30_plus", "ever_60_plus", "ever_90_plus", "charged_off", "dpd30+"]))
def test_cumulative_vintage_curves_never_fall(
    accounts: list[tuple[int, list[tuple[int, bool]], int]], metric: str
) -> None:
    points = vintage_curves(_snapshots(accounts), metric)
    by_vintage: dict[str, list[tuple[int, Decimal, Decimal, int]]] = {}
    for p in points:
        by_vintage.setdefault(p.vintage, []).append((p.months_on_book, p.bad_rate, p.bad_principal_rate, p.accounts))
    assert sum(curve[0][3] for curve in by_vintage.values()) == len(accounts)
    for curve in by_vintage.values():
        mobs = [c[0] for c in curve]
        assert mobs == list(range(mobs[0], mobs[-1] + 1))
        for earlier, later in itertools.pairwise(curve):
            assert earlier[1] <= later[1]
            assert earlier[2] <= later[2]
        assert all(Decimal(0) <= c[1] <= Decimal(1) for c in curve)


@given(book, st.integers(min_value=0, max_value=20), st.integers(min_value=1, max_value=3))
def test_roll_rate_rows_sum_to_their_populations(accounts: Book, start: int, step: int) -> None:
    rows = _snapshots(accounts)
    base = 2024 * 12
    from_month, to_month = month_label(base + start), month_label(base + start + step)
    matrix = roll_rates(rows, from_month, to_month)
    in_from = sum(1 for r in rows if r["snapshot_month"] == from_month)
    assert sum(matrix.populations.values()) == in_from
    for state in matrix.from_states:
        assert sum(matrix.counts[state].values()) == matrix.populations[state]
        assert sum(matrix.balances_minor[state].values()) == matrix.population_balances_minor[state]
