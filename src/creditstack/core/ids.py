"""Identifiers: short random public ids, and deterministic idempotency keys derived from our own ids."""

from __future__ import annotations

import base64
import hashlib
import secrets

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


#: RFC 4648 base32 digits → Crockford's, so that `base64.b32encode` writes our alphabet (same bit order).
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())


def new_id(prefix: str, nbytes: int = 10) -> str:
    """A random public id such as `hold_5k2x...`; 80 bits of entropy by default."""
    if nbytes % 5 == 0:  # whole 40-bit groups: no padding, one C call instead of a loop per digit
        return f"{prefix}_{base64.b32encode(secrets.token_bytes(nbytes)).translate(_FROM_RFC4648).decode()}"
    n = int.from_bytes(secrets.token_bytes(nbytes), "big")
    chars = []
    for _ in range((nbytes * 8 + 4) // 5):
        n, r = divmod(n, 32)
        chars.append(_ALPHABET[r])
    return f"{prefix}_{''.join(reversed(chars))}"


def derived_key(*parts: object) -> str:
    """An idempotency key derived from our own ids: `derived_key('payments', pid, 'capture')`.

    Readable when short, hashed when long so it always fits the key column.
    """
    text = ":".join(str(p) for p in parts)
    if len(text) <= 120:
        return text
    return text[:80] + ":" + hashlib.sha256(text.encode()).hexdigest()[:32]
