"""Commit-ordered, gapless counters (the journal sequence and the outbox position).

`take(conn, name, n)` must be the last write of a transaction before commit: it updates one row, whose
lock is then held until commit, so the next transaction to take numbers waits for this one to commit.
Numbers therefore become visible in the order they were taken and none is skipped (a rolled-back
transaction returns its numbers with the rollback). This is the one serialisation point per database;
batches amortise it by taking n numbers at once.
"""

from __future__ import annotations

from functools import cache

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core.tables import CoreTables

COUNTER_NAMES = ("journal", "outbox")


def ensure_counters(conn: Connection, tables: CoreTables) -> None:
    existing = {r[0] for r in conn.execute(sa.select(tables.commit_counters.c.name))}
    for name in COUNTER_NAMES:
        if name not in existing:
            conn.execute(tables.commit_counters.insert().values(name=name, value=0))


def take(conn: Connection, tables: CoreTables, name: str, n: int) -> int:
    """Reserve `n` consecutive numbers; returns the first. Call as the last write before commit."""
    if n <= 0:
        raise ValueError("take needs n >= 1")
    row = conn.execute(_take_statement(tables), {"counter": name, "n": n}).one()
    last = int(row[0])
    return last - n + 1


@cache
def _take_statement(tables: CoreTables) -> sa.UpdateBase:
    """Built once per database's tables (it runs in every transaction that writes the journal or the outbox)."""
    c = tables.commit_counters.c
    return (
        sa.update(tables.commit_counters)
        .where(c.name == sa.bindparam("counter"))
        .values(value=c.value + sa.bindparam("n", type_=sa.BigInteger))
        .returning(c.value)
    )


def current(conn: Connection, tables: CoreTables, name: str) -> int:
    c = tables.commit_counters.c
    value = conn.execute(sa.select(c.value).where(c.name == name)).scalar_one_or_none()
    return int(value or 0)
