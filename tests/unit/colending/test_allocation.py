"""Co-lending arithmetic, pure (no I/O): the funding split of a loan and the sharing of its cash flows.

Properties (hypothesis), with the exact figures computed here in `Fraction`s:

* `split_funding`: the shares sum to the principal; the platform keeps at least its minimum and at most its
  maximum; each bank takes at most its capacity, and either nothing or at least its agreement's minimum;
  it refuses exactly when no combination of banks can fund the loan (checked by brute force over every
  subset), and otherwise leaves the platform no more than the best combination would; a refusal for lack of
  capacity names every bank's binding limit.
* `cumulative_split` over any sequence of cash flows: each step's increments sum to the flow; each
  participant's running amount stays within one unit of its exact pro-rata value; when the principal repaid
  reaches the principal funded every participant's principal is exactly zero.
* `interest_weights`: each bank earns min(borrower rate, bank rate) on its share and the platform the rest;
  the weights sum to principal × rate.
* The service's book of one account (`_Book`, in memory: no database) over any sequence of lending events —
  disbursement or draws, repayments, refunds onto a line, a charge-off, a recovery — leaves every
  participant's principal at exactly zero once the account is paid off or charged off, even when it was paid
  in part before the charge-off.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from fractions import Fraction
from itertools import combinations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditstack.colending.allocation import (
    PLATFORM,
    BankCapacity,
    FundingNotPossible,
    cumulative_split,
    interest_weights,
    share_ceil,
    share_floor,
    split_funding,
)
from creditstack.colending.service import _Book
from creditstack.core.events import StoredEvent

COMMON: dict[str, Any] = {"deadline": None, "database": None}

# ---------------------------------------------------------------- split_funding

limits = st.one_of(st.none(), st.integers(-1_000, 2_000_000))


@st.composite
def banks_of(draw: st.DrawFn, principal_minor: int) -> list[BankCapacity]:
    banks = []
    for n in range(draw(st.integers(0, 4))):
        share_max_bps = draw(st.integers(0, 10_000))
        share_min_bps = draw(st.integers(0, share_max_bps))
        banks.append(
            BankCapacity(
                partner_id=f"bank{n}",
                share_max_minor=share_floor(principal_minor, share_max_bps),
                share_min_minor=share_ceil(principal_minor, share_min_bps),
                exposure_headroom_minor=draw(limits),
                tier1_headroom_minor=draw(limits),
                joint_headroom_minor=draw(limits),
            )
        )
    return banks


@st.composite
def loans(draw: st.DrawFn) -> tuple[int, int, int, list[BankCapacity]]:
    principal = draw(st.integers(1, 3_000_000))
    platform_min_bps = draw(st.sampled_from([0, 3_000, 3_000, 5_000]))
    platform_max_bps = draw(st.sampled_from([10_000, 10_000, 7_000, 5_000, 3_000]))
    return (
        principal,
        share_ceil(principal, platform_min_bps),
        share_floor(principal, platform_max_bps),
        draw(banks_of(principal)),
    )


def best_bank_total(principal: int, platform_min: int, platform_max: int, banks: list[BankCapacity]) -> int | None:
    """By brute force over every subset of banks: the most the banks can take together, each within its
    [minimum, capacity], leaving the platform within [minimum, maximum]; None if no subset can."""
    platform_max = max(platform_max, platform_min)
    need, room = principal - platform_max, principal - platform_min
    eligible = [(b, b.capacity()[0]) for b in banks if b.capacity()[0] >= max(b.share_min_minor, 1)]
    best = None
    for size in range(len(eligible) + 1):
        for subset in combinations(eligible, size):
            low = sum(b.share_min_minor for b, _ in subset)
            high = min(room, sum(cap for _, cap in subset))
            if low <= high and high >= need and (best is None or high > best):
                best = high
    return best


@settings(max_examples=600, **COMMON)
@given(loans())
def test_a_split_sums_to_the_principal_and_keeps_every_limit(loan: tuple[int, int, int, list[BankCapacity]]) -> None:
    principal, platform_min, platform_max, banks = loan
    best = best_bank_total(principal, platform_min, platform_max, banks)
    try:
        shares = split_funding(principal, platform_min_minor=platform_min, platform_max_minor=platform_max, banks=banks)
    except FundingNotPossible as refused:
        assert best is None, f"refused although the banks could take {best}: {refused}"
        assert refused.code == "colending.funding_not_possible" and refused.http_status == 409
        return
    assert best is not None
    assert sum(shares.values()) == principal
    assert platform_min <= shares[PLATFORM] <= max(platform_max, platform_min)
    assert shares[PLATFORM] == principal - best  # the banks take all they may: the platform keeps the least
    by_id = {b.partner_id: b for b in banks}
    for partner_id, share in shares.items():
        if partner_id == PLATFORM:
            continue
        bank = by_id[partner_id]
        assert 0 < share <= bank.capacity()[0]
        assert share >= bank.share_min_minor
        assert share <= bank.share_max_minor


@settings(max_examples=300, **COMMON)
@given(loans())
def test_a_refusal_for_lack_of_capacity_names_each_banks_binding_limit(
    loan: tuple[int, int, int, list[BankCapacity]],
) -> None:
    principal, platform_min, platform_max, banks = loan
    eligible_capacity = sum(b.capacity()[0] for b in banks if b.capacity()[0] >= max(b.share_min_minor, 1))
    need = principal - max(platform_max, platform_min)
    if eligible_capacity >= need:
        return
    with pytest.raises(FundingNotPossible) as refused:
        split_funding(principal, platform_min_minor=platform_min, platform_max_minor=platform_max, banks=banks)
    assert refused.value.details["need_minor"] == need
    assert refused.value.details["capacity_minor"] == eligible_capacity
    binding = refused.value.details["binding"]
    assert len(binding) == len(banks)
    for bank, named in zip(banks, binding, strict=True):
        capacity, limit = bank.capacity()
        below_minimum = 0 < capacity < max(bank.share_min_minor, 1)
        assert named == f"{bank.partner_id}: {limit}" + (" < agreement_share_min" if below_minimum else "")
        assert named in refused.value.message


def test_three_banks_take_seventy_percent_and_the_platform_the_thirty_percent_minimum() -> None:
    principal = 1_000_003
    banks = [
        BankCapacity(f"bank{n}", share_floor(principal, 7_000), share_ceil(principal, 1_000), 500_000_000, None, None)
        for n in range(3)
    ]
    shares = split_funding(
        principal, platform_min_minor=share_ceil(principal, 3_000), platform_max_minor=principal, banks=banks
    )
    assert shares == {PLATFORM: 300_001, "bank0": 233_334, "bank1": 233_334, "bank2": 233_334}


def test_a_bank_below_its_minimum_share_is_raised_to_it_rather_than_refused() -> None:
    """Pro rata to capacity, B would get 280 < its 300 minimum: it gets its minimum, A the rest."""
    banks = [BankCapacity("A", 600, 0, None, None, None), BankCapacity("B", 400, 300, None, None, None)]
    shares = split_funding(1_000, platform_min_minor=300, platform_max_minor=300, banks=banks)
    assert shares == {PLATFORM: 300, "A": 343, "B": 357}


def test_when_the_minimums_cannot_all_fit_the_best_combination_of_banks_funds() -> None:
    """Minimums of 400 + 400 exceed the 700 the platform's minimum leaves: one bank funds, the larger."""
    banks = [BankCapacity("A", 450, 400, None, None, None), BankCapacity("B", 700, 400, None, None, None)]
    shares = split_funding(1_000, platform_min_minor=300, platform_max_minor=500, banks=banks)
    assert shares == {PLATFORM: 300, "B": 700}


def test_a_bank_with_no_capacity_left_is_named_with_its_binding_limit() -> None:
    banks = [
        BankCapacity("A", 700, 100, 50, None, None),  # exposure cap: 50 left, below its minimum of 100
        BankCapacity("B", 700, 0, None, 0, None),  # tier-1 limit reached
        BankCapacity("C", 700, 0, None, None, 200),  # 50 % of total loans: 200 left
    ]
    with pytest.raises(FundingNotPossible) as refused:
        split_funding(1_000, platform_min_minor=300, platform_max_minor=500, banks=banks)
    assert refused.value.details["binding"] == [
        "A: agreement_exposure_cap < agreement_share_min",
        "B: tier1_capital_25pct",
        "C: joint_loans_50pct",
    ]
    assert refused.value.details["capacity_minor"] == 200 and refused.value.details["need_minor"] == 500


# ---------------------------------------------------------------- cumulative_split and interest_weights

weights_maps = st.dictionaries(
    st.sampled_from([PLATFORM, "bank0", "bank1", "bank2"]), st.integers(0, 5_000_000), min_size=1
).filter(lambda w: sum(w.values()) > 0)


@settings(max_examples=400, **COMMON)
@given(weights=weights_maps, cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_a_cumulative_split_stays_within_one_unit_of_pro_rata_and_ends_exact(
    weights: dict[str, int], cuts: list[int]
) -> None:
    principal = sum(weights.values())  # a loan's principal shares are its weights
    # any sequence of principal repayments up to payoff (cut points in basis points of the principal)
    points = sorted({principal * c // 10_000 for c in cuts} | {principal})
    allocated: dict[str, int] = {}
    previous = 0
    for total in points:
        increments = cumulative_split(total, weights, allocated)
        assert sum(increments.values()) == total - previous
        for name, increment in increments.items():
            allocated[name] = allocated.get(name, 0) + increment
            exact = Fraction(total * weights[name], principal)
            assert abs(allocated[name] - exact) < 1, (name, allocated[name], exact)
        previous = total
    assert allocated == weights  # at payoff every participant's principal is exactly zero


@settings(max_examples=400, **COMMON)
@given(
    shares=weights_maps,
    borrower_rate_micro=st.integers(0, 240_000),
    bank_rates=st.lists(st.integers(0, 400_000), min_size=3, max_size=3),
    collected=st.lists(st.integers(1, 50_000), max_size=10),
)
def test_interest_gives_each_bank_the_lower_rate_on_its_share_and_the_platform_the_rest(
    shares: dict[str, int], borrower_rate_micro: int, bank_rates: list[int], collected: list[int]
) -> None:
    rates = {f"bank{n}": rate for n, rate in enumerate(bank_rates)}
    weights = interest_weights(shares, borrower_rate_micro, rates)
    principal = sum(shares.values())
    if borrower_rate_micro == 0:
        assert weights == shares
        return
    assert sum(weights.values()) == principal * borrower_rate_micro
    for name, share in shares.items():
        if name != PLATFORM:
            assert weights[name] == share * min(borrower_rate_micro, rates[name])
    excess = sum(
        s * (borrower_rate_micro - min(borrower_rate_micro, rates[n])) for n, s in shares.items() if n != PLATFORM
    )
    assert weights[PLATFORM] == shares.get(PLATFORM, 0) * borrower_rate_micro + excess
    # interest collected, shared cumulatively: each bank within one unit of min(r, r_b) × its share
    allocated: dict[str, int] = {}
    total = 0
    for amount in collected:
        total += amount
        for name, increment in cumulative_split(total, weights, allocated).items():
            allocated[name] = allocated.get(name, 0) + increment
        for name, share in shares.items():
            earned = min(borrower_rate_micro, rates[name]) if name != PLATFORM else borrower_rate_micro
            exact = Fraction(total * share * earned, principal * borrower_rate_micro)
            if name == PLATFORM:
                exact += Fraction(total * excess, principal * borrower_rate_micro)
            assert abs(allocated[name] - exact) < 1
    assert sum(allocated.values()) == total


# ---------------------------------------------------------------- the book of one account, event by event

REF = "loan_x"
DAY = date(2026, 3, 2)


def event(position: int, topic: str, **payload: int) -> StoredEvent:
    return StoredEvent(position, f"lending.{topic}", REF, DAY, datetime(2026, 3, 2, tzinfo=UTC), dict(payload))


flows = st.lists(
    st.tuples(
        st.sampled_from(["repay", "repay", "refund", "draw"]),
        st.integers(0, 10_000),  # basis points of what is outstanding (principal) …
        st.integers(0, 9_999),  # … and interest, fees, penalty in minor units
    ),
    max_size=10,
)


@settings(max_examples=400, **COMMON)
@given(
    shares=weights_maps.filter(lambda w: set(w) != {PLATFORM}),
    kind=st.sampled_from(["loan", "line"]),
    program=flows,
    end=st.sampled_from(["payoff", "charge_off"]),
    recovered=st.integers(0, 5_000),
    fees_to=st.sampled_from(["platform", "pro_rata"]),
)
def test_every_participants_principal_is_zero_at_payoff_or_charge_off(
    shares: dict[str, int], kind: str, program: list[tuple[str, int, int]], end: str, recovered: int, fees_to: str
) -> None:
    weight_total = sum(shares.values())
    rates = {name: 80_000 for name in shares if name != PLATFORM}
    interest = interest_weights(shares, 150_000, rates)
    book = _Book({REF: {p: (w, interest[p], 0) for p, w in shares.items()}}, {}, {})
    book.kinds = {REF: kind}
    book.fees_to = {p: (fees_to, "pro_rata") for p in shares if p != PLATFORM}
    rows: list[dict[str, Any]] = []
    position = 0
    funded = outstanding = 0

    def apply(topic: str, **payload: int) -> None:
        nonlocal position
        position += 1
        rows.extend(book.apply(event(position, topic, **payload)))

    if kind == "loan":
        apply("loan_disbursed", principal_minor=weight_total)
        funded = outstanding = weight_total
    for action, bps, other in program:
        if action == "draw" and kind == "line":
            amount = 1 + weight_total * bps // 10_000
            apply("line_drawn", amount_minor=amount, principal_minor=amount)
            funded += amount
            outstanding += amount
        elif action == "refund" and kind == "line":
            principal = outstanding * bps // 10_000
            apply("line_refunded", amount_minor=principal + other, principal_minor=principal)
            outstanding -= principal
        elif action in ("repay", "refund"):
            principal = outstanding * bps // 10_000
            apply(
                "repayment_received",
                principal_minor=principal,
                interest_minor=other,
                fees_minor=other // 3,
                penalty_minor=other // 7,
            )
            outstanding -= principal
        # running principal: each participant within one unit of its exact share of what is funded and repaid
        participants = book.participants[REF]
        for name, (weight, _, held) in participants.items():
            exact = Fraction(funded * weight, weight_total) - Fraction((funded - outstanding) * weight, weight_total)
            assert abs(held - exact) < 2, (name, held, exact)
    if end == "payoff":
        apply("repayment_received", principal_minor=outstanding, interest_minor=0, fees_minor=0, penalty_minor=0)
    else:
        apply("charged_off", principal_minor=outstanding)
        if recovered:
            apply("recovered", amount_minor=recovered)
    assert {name: held for name, (_, _, held) in book.participants[REF].items()} == dict.fromkeys(shares, 0)
    # the movements of each bank: what it funded, less what it got back and lost, is zero
    by_partner: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        by_partner[row["partner_id"]][row["component"]] += row["amount_minor"]
    for name, components in by_partner.items():
        assert -components["funding"] - components["principal"] - components["loss"] == 0, name
        if kind == "loan":
            assert -components["funding"] == shares[name]
            assert book.outstanding_delta[name] == -shares[name]  # its exposure falls back by its share
        else:
            assert book.outstanding_delta.get(name, 0) == 0  # a line's commitment is its limit share
        if fees_to == "platform":
            assert components["fees"] == 0
