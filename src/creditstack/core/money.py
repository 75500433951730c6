"""Exact money: integer minor units of an ISO 4217 currency.

`Money` never holds a float. Arithmetic between different currencies raises, and so does multiplying by a
float. Splitting uses the largest-remainder method so that the parts always sum to the whole:

>>> [part.amount_minor for part in Money(100, CNY).allocate([1, 1, 1])]
[34, 33, 33]

`Decimal` is used where a rate multiplies an amount; the one rounding point is `round_minor`, half-even
unless a rule names another mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction

from creditstack.core.errors import ValidationFailed

#: Largest magnitude that crosses the wire exactly as a JSON number (IEEE-754 double): 2**53 - 1.
WIRE_AMOUNT_MINOR_MAX = 2**53 - 1
#: Largest magnitude a BIGINT column holds.
STORED_AMOUNT_MINOR_MAX = 2**63 - 1

# ISO 4217 minor-unit exponents of the currencies the platform knows (ISO 4217 list one, 2024).
_EXPONENTS: dict[str, int] = {
    "AED": 2,
    "AUD": 2,
    "BHD": 3,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CLP": 0,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "IDR": 2,
    "INR": 2,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KES": 2,
    "KRW": 0,
    "KWD": 3,
    "LKR": 2,
    "MXN": 2,
    "MYR": 2,
    "NGN": 2,
    "NOK": 2,
    "NZD": 2,
    "OMR": 3,
    "PHP": 2,
    "PKR": 2,
    "PLN": 2,
    "RUB": 2,
    "SAR": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TND": 3,
    "TRY": 2,
    "TWD": 2,
    "UGX": 0,
    "USD": 2,
    "VND": 0,
    "XAF": 0,
    "XOF": 0,
    "ZAR": 2,
}


class UnknownCurrency(ValidationFailed):
    """The currency code is not an ISO 4217 code this platform knows."""

    code = "money.unknown_currency"


class CurrencyMismatch(ValidationFailed):
    """Two amounts in different currencies were combined."""

    code = "money.currency_mismatch"


class InvalidAmount(ValidationFailed):
    """An amount is not an integer number of minor units (floats, strings and booleans included)."""

    code = "money.invalid_amount"


class AmountOutOfRange(InvalidAmount):
    """An amount is outside the range that can be carried exactly (±(2**53 − 1) on the wire)."""

    code = "money.amount_out_of_range"


@dataclass(frozen=True, slots=True)
class Currency:
    """An ISO 4217 currency and its minor-unit exponent (CNY 2, JPY 0, BHD 3)."""

    code: str
    exponent: int

    @classmethod
    def of(cls, code: str) -> Currency:
        """The currency for an ISO 4217 code; raises `UnknownCurrency` for any other string."""
        if not isinstance(code, str) or code not in _EXPONENTS:
            raise UnknownCurrency(f"unknown currency {code!r}", field="currency")
        return _CURRENCIES[code]

    def __str__(self) -> str:
        return self.code


_CURRENCIES: dict[str, Currency] = {code: Currency(code, exp) for code, exp in _EXPONENTS.items()}
CNY = _CURRENCIES["CNY"]
USD = _CURRENCIES["USD"]
EUR = _CURRENCIES["EUR"]
JPY = _CURRENCIES["JPY"]
CHF = _CURRENCIES["CHF"]


def known_currency_codes() -> frozenset[str]:
    """Every ISO 4217 code this platform accepts."""
    return frozenset(_EXPONENTS)


def check_amount_minor(value: object, *, field: str = "amount_minor", limit: int = STORED_AMOUNT_MINOR_MAX) -> int:
    """Return `value` if it is a true int (not bool, float or str) with |value| <= limit, else raise."""
    if type(value) is not int:
        raise InvalidAmount(
            f"{field} must be an integer number of minor units, got {type(value).__name__}", field=field
        )
    if not -limit <= value <= limit:
        raise AmountOutOfRange(f"{field} {value} is outside ±{limit}", field=field)
    return value


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: an integer number of minor units of one currency."""

    amount_minor: int
    currency: Currency

    def __post_init__(self) -> None:
        check_amount_minor(self.amount_minor)
        if not isinstance(self.currency, Currency):
            raise UnknownCurrency(f"currency must be a Currency, got {self.currency!r}", field="currency")

    @classmethod
    def of(cls, amount_minor: int, currency: str | Currency) -> Money:
        cur = currency if isinstance(currency, Currency) else Currency.of(currency)
        return cls(amount_minor, cur)

    @classmethod
    def zero(cls, currency: str | Currency) -> Money:
        return cls.of(0, currency)

    @classmethod
    def from_decimal(cls, amount: Decimal | str, currency: str | Currency) -> Money:
        """Parse a major-unit decimal ("12.34"); raises `InvalidAmount` if it has more places than allowed.

        Never rounds: a statement line of 18.150 EUR is exact (18.15), 8.855 EUR is an error to flag.
        """
        cur = currency if isinstance(currency, Currency) else Currency.of(currency)
        try:
            value = Decimal(amount)
        except (InvalidOperation, TypeError, ValueError) as exc:
            raise InvalidAmount(f"not a decimal amount: {amount!r}", field="amount") from exc
        if not value.is_finite():
            raise InvalidAmount(f"not a finite amount: {amount!r}", field="amount")
        scaled = value.scaleb(cur.exponent)
        if scaled != scaled.to_integral_value():
            raise InvalidAmount(
                f"{amount} has more decimal places than {cur.code} allows ({cur.exponent})", field="amount"
            )
        return cls(int(scaled), cur)

    def to_decimal(self) -> Decimal:
        """The amount in major units, exact."""
        return Decimal(self.amount_minor).scaleb(-self.currency.exponent)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency.code} and {other.currency.code} cannot be combined")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __mul__(self, factor: object) -> Money:
        if type(factor) is not int:
            raise TypeError("Money multiplies only by int; use multiply_rate() for rates")
        return Money(self.amount_minor * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount_minor >= other.amount_minor

    def is_zero(self) -> bool:
        return self.amount_minor == 0

    def multiply_rate(self, rate: Decimal, rounding: str = ROUND_HALF_EVEN) -> Money:
        """`self × rate`, rounded once to a whole minor unit (half-even by default)."""
        if not isinstance(rate, Decimal | int) or isinstance(rate, bool):
            raise TypeError("rate must be a Decimal or int, never a float")
        return Money(round_minor(Decimal(self.amount_minor) * rate, rounding), self.currency)

    def allocate(self, weights: Sequence[int | Decimal | Fraction]) -> list[Money]:
        """Split by weights with the largest-remainder method; the parts always sum to `self`."""
        return [Money(part, self.currency) for part in allocate(self.amount_minor, weights)]

    def to_wire(self) -> dict[str, int | str]:
        return {"amount_minor": self.amount_minor, "currency": self.currency.code}

    def __str__(self) -> str:
        return f"{self.to_decimal():.{self.currency.exponent}f} {self.currency.code}"


def round_minor(value: Decimal | Fraction, rounding: str = ROUND_HALF_EVEN) -> int:
    """The one rounding point for money: a Decimal (or exact Fraction) of minor units to an int."""
    if isinstance(value, Fraction):
        value = Decimal(value.numerator) / Decimal(value.denominator)
    return int(value.to_integral_value(rounding=rounding))


def basis_points_of(amount_minor: int, bps: int, rounding: str = ROUND_HALF_EVEN) -> int:
    """`amount × bps / 10,000`, rounded once (fees in basis points)."""
    return round_minor(Fraction(amount_minor * bps, 10_000), rounding)


def allocate(total_minor: int, weights: Sequence[int | Decimal | Fraction]) -> list[int]:
    """Largest-remainder split of `total_minor` in proportion to non-negative `weights`.

    Exact (rational arithmetic). Each part is within one unit of its exact share and the parts sum to the
    total; ties in the remainder go to the earlier weight, so the result is deterministic. A negative total
    is split as the mirror image of its absolute value.

    >>> allocate(100, [1, 1, 1])
    [34, 33, 33]
    >>> allocate(-5, [1, 1])
    [-3, -2]
    """
    if not weights:
        raise ValidationFailed("allocate needs at least one weight", field="weights")
    if all(type(w) is int for w in weights):  # the common case, in integers: same result, no Fractions
        return _allocate_int(total_minor, weights)  # type: ignore[arg-type]
    fracs = [Fraction(w) for w in weights]
    if any(f < 0 for f in fracs):
        raise ValidationFailed("allocation weights must be non-negative", field="weights")
    total_weight = sum(fracs, Fraction(0))
    if total_weight == 0:
        raise ValidationFailed("allocation weights sum to zero", field="weights")
    if total_minor < 0:
        return [-p for p in allocate(-total_minor, weights)]
    exact = [Fraction(total_minor) * f / total_weight for f in fracs]
    parts = [int(e) for e in exact]  # floor, since all non-negative
    short = total_minor - sum(parts)
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[:short]:
        parts[i] += 1
    return parts


def _allocate_int(total_minor: int, weights: Sequence[int]) -> list[int]:
    """`allocate` for integer weights: floor(total × w / W) each, then one more unit to the largest
    remainders (total × w mod W), ties to the earlier weight."""
    if any(w < 0 for w in weights):
        raise ValidationFailed("allocation weights must be non-negative", field="weights")
    total_weight = sum(weights)
    if total_weight == 0:
        raise ValidationFailed("allocation weights sum to zero", field="weights")
    if total_minor < 0:
        return [-p for p in _allocate_int(-total_minor, weights)]
    parts = []
    remainders = []
    for w in weights:
        q, r = divmod(total_minor * w, total_weight)
        parts.append(q)
        remainders.append(r)
    short = total_minor - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:short]:
        parts[i] += 1
    return parts
