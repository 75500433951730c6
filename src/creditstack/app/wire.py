"""Shapes on the wire shared by every router: money as {"amount_minor": int, "currency": "XXX"}.

Floats, strings, booleans and integers outside the signed 53-bit range are refused with stable codes
(`money.invalid_amount`, `money.amount_out_of_range`, `money.unknown_currency`), so a JSON client in
any language round-trips every amount exactly.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from creditstack.core.money import (
    WIRE_AMOUNT_MINOR_MAX,
    AmountOutOfRange,
    InvalidAmount,
    UnknownCurrency,
    known_currency_codes,
)


def exact_amount_minor(value: Any) -> int:
    """A JSON integer of minor units within the signed 53-bit range; anything else is refused."""
    if type(value) is not int:
        raise PydanticCustomError(
            InvalidAmount.code,
            "amount_minor must be a JSON integer of minor units, got {kind}",
            {"kind": type(value).__name__},
        )
    if not -WIRE_AMOUNT_MINOR_MAX <= value <= WIRE_AMOUNT_MINOR_MAX:
        raise PydanticCustomError(AmountOutOfRange.code, "amount_minor must be within ±(2**53 − 1)", {})
    return value


#: A bare amount in minor units whose currency the object it applies to fixes (a loan's, a product's).
AmountMinorIn = Annotated[int, BeforeValidator(exact_amount_minor)]


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_date(value: Any) -> Any:
    """Only a `YYYY-MM-DD` string is a date on the wire (not a timestamp or a number, which pydantic's lax
    mode would accept)."""
    if value is None or isinstance(value, date):
        return value
    if not isinstance(value, str) or _ISO_DATE.fullmatch(value) is None:
        raise ValueError("a date is a string YYYY-MM-DD")
    return date.fromisoformat(value)


#: A calendar date on the wire: exactly `YYYY-MM-DD`.
IsoDate = Annotated[date, BeforeValidator(iso_date)]


class MoneyIn(BaseModel):
    """An exact amount: integer minor units (cents, fen) of an ISO 4217 currency."""

    model_config = ConfigDict(extra="forbid")

    amount_minor: int
    currency: str

    @field_validator("amount_minor", mode="before")
    @classmethod
    def _exact_integer(cls, value: Any) -> int:
        return exact_amount_minor(value)

    @field_validator("currency", mode="before")
    @classmethod
    def _known_currency(cls, value: Any) -> str:
        if not isinstance(value, str) or value not in known_currency_codes():
            raise PydanticCustomError(
                UnknownCurrency.code, "unknown ISO 4217 currency {value!r}", {"value": str(value)[:8]}
            )
        return value


class Page(BaseModel):
    next_after: int | None = None
