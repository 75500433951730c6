"""API keys per member with a role: created once (the token is shown once), stored hashed, checked per call."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core.clock import Clock
from creditstack.core.db import Database
from creditstack.core.errors import Unauthenticated, ValidationFailed
from creditstack.core.security import Role, generate_api_key, secret_matches, split_token
from creditstack.core.tables import CoreTables

#: Longest member (tenant) id.
MEMBER_LENGTH_MAX = 64


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role and the member (tenant) whose data it may see."""

    key_id: str
    role: Role
    member: str


class InvalidMember(ValidationFailed):
    """A member id must be 1..64 characters of letters, digits, '-', '_' or ':'."""

    code = "auth.invalid_member"


def check_member(member: str) -> str:
    if not member or len(member) > MEMBER_LENGTH_MAX or not all(ch.isalnum() or ch in "-_:" for ch in member):
        raise InvalidMember(f"invalid member id {member!r}", field="member")
    return member


#: How long a verified key is trusted from memory before it is checked against the database again
#: (bounds how long a key revoked by another process keeps working here).
KEY_CACHE_SECONDS = 30.0
#: Most verified keys kept in memory.
KEY_CACHE_ENTRIES_MAX = 10_000


class ApiKeys:
    def __init__(self, db: Database, tables: CoreTables, clock: Clock) -> None:
        self.db = db
        self.tables = tables
        self.clock = clock
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._cache_lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """A recently verified principal for this token, without touching the database."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._cache_lock:
            hit = self._cache.get(digest)
            if hit is not None and hit[1] > time.monotonic():
                return hit[0]
        return None

    def authenticate_cached(self, token: str) -> Principal:
        hit = self.cached(token)
        if hit is not None:
            return hit
        principal = self.authenticate(token)
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._cache_lock:
            if len(self._cache) >= KEY_CACHE_ENTRIES_MAX:
                self._cache.clear()
            self._cache[digest] = (principal, time.monotonic() + KEY_CACHE_SECONDS)
        return principal

    def create(self, role: Role, member: str, label: str = "") -> tuple[Principal, str]:
        """A new key; returns the principal and the token, which is never shown again."""
        check_member(member)
        key = generate_api_key()

        def work(conn: Connection) -> None:
            conn.execute(
                self.tables.api_keys.insert().values(
                    key_id=key.key_id,
                    secret_hash=key.secret_hash,
                    role=role.value,
                    member=member,
                    label=label[:200],
                    created_at=self.clock.now(),
                    revoked_at=None,
                )
            )

        self.db.run(work)
        return Principal(key.key_id, role, member), key.token

    def authenticate(self, token: str) -> Principal:
        key_id, secret = split_token(token)
        k = self.tables.api_keys.c
        row = self.db.run(
            lambda conn: conn.execute(
                sa.select(k.secret_hash, k.role, k.member, k.revoked_at).where(k.key_id == key_id)
            ).one_or_none(),
            readonly=True,
        )
        if row is None or row.revoked_at is not None or not secret_matches(secret, row.secret_hash):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(key_id, Role(row.role), row.member)

    def revoke(self, key_id: str) -> bool:
        with self._cache_lock:
            for digest, (principal, _) in list(self._cache.items()):
                if principal.key_id == key_id:
                    del self._cache[digest]
        k = self.tables.api_keys.c
        return bool(
            self.db.run(
                lambda conn: (
                    conn.execute(
                        sa.update(self.tables.api_keys)
                        .where(k.key_id == key_id, k.revoked_at.is_(None))
                        .values(revoked_at=self.clock.now())
                    ).rowcount
                )
            )
        )
