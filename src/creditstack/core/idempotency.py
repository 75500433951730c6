"""Idempotency keys: the first outcome of a request is stored with a hash of its canonical form.

A replay with the same request returns the stored outcome; the same key with a different request is
`idempotency.key_reused`. Keys are unique per (member, key). A request refused by validation before it
runs stores nothing (the caller may fix it and reuse the key).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core.db import driver_connection
from creditstack.core.errors import IdempotencyKeyReused, ValidationFailed
from creditstack.core.tables import CoreTables

#: Longest idempotency key accepted.
IDEMPOTENCY_KEY_LENGTH_MAX = 200
_KEY_CHARACTERS = re.compile(r"[!-~]+")  # printable ASCII, no spaces


class InvalidIdempotencyKey(ValidationFailed):
    """The idempotency key is missing, empty, too long or has characters outside printable ASCII."""

    code = "idempotency.invalid_key"


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key or len(key) > IDEMPOTENCY_KEY_LENGTH_MAX:
        raise InvalidIdempotencyKey(
            f"idempotency key must be 1..{IDEMPOTENCY_KEY_LENGTH_MAX} characters", field="idempotency_key"
        )
    if not _KEY_CHARACTERS.fullmatch(key):
        raise InvalidIdempotencyKey("idempotency key must be printable ASCII without spaces", field="idempotency_key")
    return key


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def request_hash(operation: str, request: Any) -> str:
    return hashlib.sha256(f"{operation}\n{canonical_json(request)}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    request_hash: str
    operation: str
    status_code: int
    outcome: dict[str, Any]

    def replay(self, expected_hash: str, key: str) -> StoredOutcome:
        if self.request_hash != expected_hash:
            raise IdempotencyKeyReused(f"key {key!r} was used before with a different request", field="idempotency_key")
        return self


@cache
def _lookup_query(tables: CoreTables) -> sa.Select[Any]:
    k = tables.idempotency_keys.c
    return sa.select(k.request_hash, k.operation, k.status_code, k.outcome).where(
        k.member == sa.bindparam("member"), k.key == sa.bindparam("key")
    )


def lookup(conn: Connection, tables: CoreTables, member: str, key: str) -> StoredOutcome | None:
    row = conn.execute(_lookup_query(tables), {"member": member, "key": key}).one_or_none()
    if row is None:
        return None
    return StoredOutcome(row.request_hash, row.operation, row.status_code, row.outcome)


#: Most keys one look-up statement carries (SQLite allows 32,766 parameters).
LOOKUP_CHUNK_KEYS_MAX = 5_000


def lookup_many(conn: Connection, tables: CoreTables, member: str, keys: Iterable[str]) -> dict[str, StoredOutcome]:
    """`lookup` for many keys of one member: primary-key look-ups in one statement per chunk of keys."""
    k = tables.idempotency_keys.c
    query = sa.select(k.key, k.request_hash, k.operation, k.status_code, k.outcome).where(
        k.member == member, k.key.in_(sa.bindparam("keys", expanding=True))
    )
    wanted = sorted(set(keys))
    found: dict[str, StoredOutcome] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK_KEYS_MAX):
        for row in conn.execute(query, {"keys": wanted[start : start + LOOKUP_CHUNK_KEYS_MAX]}):
            found[row.key] = StoredOutcome(row.request_hash, row.operation, row.status_code, row.outcome)
    return found


def store_many(
    conn: Connection, tables: CoreTables, member: str, outcomes: Sequence[tuple[str, StoredOutcome]], now: Any
) -> None:
    """`store` for many (key, outcome) pairs of one member, in the caller's transaction, written through the
    driver (`bulk_insert`)."""
    if not outcomes:
        return
    columns = ("member", "key", "request_hash", "operation", "status_code", "outcome", "created_at")
    rows = [(member, key, o.request_hash, o.operation, o.status_code, o.outcome, now) for key, o in outcomes]
    bulk_insert(conn, tables.idempotency_keys, columns, rows)


def bulk_insert(conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """INSERT `rows` into `table` through the DB-API driver (COPY on PostgreSQL, one prepared statement with
    executemany on SQLite), each value converted by its column type's bind processor for this dialect (what
    SQLAlchemy would send), so the rows read back as if SQLAlchemy had written them — without its per-row
    parameter processing, which dominates for thousands of rows."""
    dialect = conn.dialect
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]
    cache: list[dict[Any, Any]] = [{} for _ in columns]
    values = []
    for row in rows:
        record = []
        for i, raw in enumerate(row):
            processor = processors[i]
            value = raw
            if processor is not None and raw is not None:
                if isinstance(raw, dict | list):
                    value = processor(raw)
                else:
                    seen = cache[i]
                    if raw not in seen:
                        seen[raw] = processor(raw)
                    value = seen[raw]
            record.append(value)
        values.append(record)
    copy_or_executemany(conn, table.name, columns, values)


def copy_or_executemany(conn: Connection, table_name: str, columns: Sequence[str], values: Sequence[Any]) -> None:
    """Rows of driver-ready values into a table: COPY on PostgreSQL, executemany on SQLite (as the ledger's
    bulk writes do)."""
    cursor = driver_connection(conn).cursor()
    try:
        if conn.dialect.name == "postgresql":
            with cursor.copy(f"COPY {table_name} ({', '.join(columns)}) FROM STDIN") as copy:
                for record in values:
                    copy.write_row(record)
        else:
            marks = ", ".join(["?"] * len(columns))
            cursor.executemany(f"INSERT INTO {table_name} ({', '.join(columns)}) VALUES ({marks})", values)
    finally:
        cursor.close()


def store(
    conn: Connection,
    tables: CoreTables,
    *,
    member: str,
    key: str,
    request_hash_value: str,
    operation: str,
    status_code: int,
    outcome: dict[str, Any],
    now: Any,
) -> None:
    """Record the first outcome of a key (in the same transaction as the effects it describes)."""
    conn.execute(
        tables.idempotency_keys.insert(),
        {
            "member": member,
            "key": key,
            "request_hash": request_hash_value,
            "operation": operation,
            "status_code": status_code,
            "outcome": outcome,
            "created_at": now,
        },
    )


def once(
    conn: Connection,
    tables: CoreTables,
    *,
    member: str,
    key: str,
    operation: str,
    request_hash_value: str,
    work: Callable[[], tuple[int, dict[str, Any]]],
    now: Any,
) -> tuple[int, dict[str, Any], bool]:
    """Run `work` once per (member, key) inside the caller's transaction: replay the stored outcome of an
    earlier request (refusing the key with another request), or run it and store its outcome.
    Returns (status code, body, replayed)."""
    stored = lookup(conn, tables, member, key)
    if stored is not None:
        stored.replay(request_hash_value, key)
        return stored.status_code, stored.outcome, True
    status_code, body = work()
    store(
        conn,
        tables,
        member=member,
        key=key,
        request_hash_value=request_hash_value,
        operation=operation,
        status_code=status_code,
        outcome=body,
        now=now,
    )
    return status_code, body, False
