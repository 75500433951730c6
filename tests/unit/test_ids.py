"""Public ids: Crockford base32 of random bytes, most significant digit first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditstack.core import ids

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def digit_by_digit(data: bytes) -> str:
    """The definition: the bytes as one big-endian number, written in base 32 with Crockford's digits."""
    n = int.from_bytes(data, "big")
    digits = []
    for _ in range((len(data) * 8 + 4) // 5):
        n, r = divmod(n, 32)
        digits.append(ALPHABET[r])
    return "".join(reversed(digits))


@given(st.binary(min_size=1, max_size=20))
def test_new_id_writes_the_random_bytes_in_crockford_base32(data: bytes) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ids.secrets, "token_bytes", lambda n: data[:n].rjust(n, b"\0"))
        assert ids.new_id("pay", len(data)) == f"pay_{digit_by_digit(data)}"


def test_default_ids_carry_80_bits_in_16_digits() -> None:
    made = {ids.new_id("pay") for _ in range(1_000)}
    assert len(made) == 1_000
    assert all(len(i) == len("pay_") + 16 and set(i[4:]) <= set(ALPHABET) for i in made)
