"""Money: exact integer minor units, ISO 4217 exponents, largest-remainder splits."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditstack.core.money import (
    CNY,
    JPY,
    AmountOutOfRange,
    Currency,
    CurrencyMismatch,
    InvalidAmount,
    Money,
    UnknownCurrency,
    allocate,
    basis_points_of,
)


def test_exponents_follow_iso_4217() -> None:
    assert Currency.of("CNY").exponent == 2
    assert Currency.of("JPY").exponent == 0
    assert Currency.of("BHD").exponent == 3
    with pytest.raises(UnknownCurrency):
        Currency.of("XYZ")


def test_floats_strings_and_bools_are_refused() -> None:
    for bad in (1.0, "100", True, Decimal(1)):
        with pytest.raises(InvalidAmount):
            Money(bad, CNY)  # type: ignore[arg-type]
    with pytest.raises(AmountOutOfRange):
        Money(2**63, CNY)
    with pytest.raises(TypeError):
        Money(100, CNY) * 1.5  # type: ignore[operator]


def test_mixing_currencies_raises() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(1, CNY) + Money(1, JPY)


def test_decimal_parsing_never_rounds() -> None:
    assert Money.from_decimal("18.150", "EUR").amount_minor == 1815
    assert Money.from_decimal("2700", "JPY").amount_minor == 2700
    with pytest.raises(InvalidAmount):
        Money.from_decimal("8.855", "EUR")
    with pytest.raises(InvalidAmount):
        Money.from_decimal("1.5", "JPY")


def test_basis_points_round_half_even() -> None:
    # 0.6 % of 1.25 CNY = 0.75 fen -> 1 fen; 0.5 % of 1.00 = 0.5 fen -> 0 (half to even); of 3.00 = 1.5 -> 2.
    assert basis_points_of(125, 60) == 1
    assert basis_points_of(100, 50) == 0
    assert basis_points_of(300, 50) == 2


def test_allocate_examples() -> None:
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]
    assert allocate(10_000, [Decimal("0.3"), Decimal("0.45"), Decimal("0.25")]) == [3000, 4500, 2500]
    assert allocate(1, [1, 1]) == [1, 0]
    assert allocate(-5, [1, 1]) == [-3, -2]


@given(
    total=st.integers(min_value=-(10**15), max_value=10**15),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12).filter(any),
)
def test_allocate_sums_to_the_whole_within_one_unit_of_exact(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, weight_sum)
        assert abs(part - exact) < 1
