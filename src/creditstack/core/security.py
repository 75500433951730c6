"""Security primitives: API keys (hashed at rest) and personal-data protection.

API keys look like `cs_<key_id>_<secret>`; only SHA-256 of the secret is stored (the secret has 256 bits
of entropy, so a slow hash adds nothing). Personal data is sealed with AES-256-GCM under a key id that
names the key for rotation, and national ids also get a keyed hash (HMAC-SHA-256) for exact look-ups.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from creditstack.core.errors import Unauthenticated, ValidationFailed


class Role(StrEnum):
    CONSUMER = "consumer"
    MERCHANT = "merchant"
    PLATFORM_OPERATOR = "platform_operator"
    PARTNER_BANK = "partner_bank"
    BUREAU_FURNISHER = "bureau_furnisher"
    BUREAU_SUBSCRIBER = "bureau_subscriber"
    BUREAU_OPERATOR = "bureau_operator"
    SUPERVISOR = "supervisor"
    SERVICE = "service"  # another creditstack service calling on its own behalf


class UnknownRole(ValidationFailed):
    """The role is not one of creditstack's roles."""

    code = "auth.unknown_role"


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError as exc:
        raise UnknownRole(f"unknown role {text!r}; roles: {', '.join(r.value for r in Role)}", field="role") from exc


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key_id: str
    secret_hash: str
    token: str  # shown once, never stored


def generate_api_key() -> NewApiKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewApiKey(key_id, hash_secret(secret), f"cs_{key_id}_{secret}")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "cs" or not parts[1] or not parts[2]:
        raise Unauthenticated("malformed API key")
    return parts[1], parts[2]


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


class PiiKeyMissing(ValidationFailed):
    """No key is configured to seal personal data."""

    code = "security.pii_key_missing"


class PiiSealBroken(ValidationFailed):
    """Sealed personal data could not be opened (wrong key, or tampered with)."""

    code = "security.pii_seal_broken"


class PiiVault:
    """Seals and opens personal data with AES-256-GCM; keyed hashes for look-ups.

    Keys are 32 random bytes keyed by id; the newest id seals, any known id opens (rotation). The
    look-up hash uses its own key so that the hash index stays stable across rotations.
    """

    def __init__(self, keys: dict[str, bytes], current_key_id: str, lookup_key: bytes) -> None:
        if current_key_id not in keys:
            raise PiiKeyMissing(f"no key with id {current_key_id!r}")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise PiiKeyMissing(f"key {key_id!r} must be 32 bytes")
        self._keys = dict(keys)
        self._current = current_key_id
        self._lookup_key = lookup_key

    @classmethod
    def generate(cls) -> PiiVault:
        return cls({"k1": AESGCM.generate_key(bit_length=256)}, "k1", secrets.token_bytes(32))

    def seal(self, plaintext: str, *, context: str) -> str:
        nonce = os.urandom(12)
        ct = AESGCM(self._keys[self._current]).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{self._current}:{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def open(self, sealed: str, *, context: str) -> str:
        key_id, _, body = sealed.partition(":")
        key = self._keys.get(key_id)
        if key is None:
            raise PiiSealBroken(f"unknown key id {key_id!r}")
        raw = base64.urlsafe_b64decode(body.encode())
        try:
            return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode()).decode()
        except Exception as exc:
            raise PiiSealBroken("sealed value does not open under its key") from exc

    def lookup_hash(self, value: str, *, kind: str) -> str:
        normalised = "".join(value.split()).upper()
        return hmac.new(self._lookup_key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


def load_vault(var_dir: Path, env: dict[str, str] | None = None) -> PiiVault:
    """The PII vault from `CREDITSTACK_PII_KEYS` ("id:base64,id:base64"), `CREDITSTACK_PII_CURRENT_KEY` and
    `CREDITSTACK_PII_LOOKUP_KEY` (base64); without them (the embedded default) from `{var_dir}/keys/pii.json`,
    created with fresh random keys and mode 0600 on first use. Keys never live in the repository."""
    env = dict(os.environ) if env is None else env
    if env.get("CREDITSTACK_PII_KEYS"):
        keys = {}
        for item in env["CREDITSTACK_PII_KEYS"].split(","):
            key_id, _, b64 = item.strip().partition(":")
            keys[key_id] = base64.b64decode(b64)
        current = env.get("CREDITSTACK_PII_CURRENT_KEY") or next(iter(keys))
        lookup = base64.b64decode(env.get("CREDITSTACK_PII_LOOKUP_KEY", ""))
        if len(lookup) < 32:
            raise PiiKeyMissing("CREDITSTACK_PII_LOOKUP_KEY must be at least 32 random bytes, base64")
        return PiiVault(keys, current, lookup)
    path = var_dir / "keys" / "pii.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        material = {
            "keys": {"k1": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()},
            "current": "k1",
            "lookup": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(material, handle)
    data = json.loads(path.read_text())
    return PiiVault(
        {k: base64.b64decode(v) for k, v in data["keys"].items()}, data["current"], base64.b64decode(data["lookup"])
    )
