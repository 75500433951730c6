"""The transactional outbox: domain events written in the same transaction as the change.

A service collects `DomainEvent`s while it works and calls `flush_events` as the last step before
commit; the events take consecutive commit-ordered positions (`sequence.take`), so a consumer that reads
`position > last_seen` never skips a row that committed late. Delivery is at least once: consumers
record what they processed (`advance_consumer`) in the same transaction as their own effects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import sequence
from creditstack.core.db import driver_connection
from creditstack.core.idempotency import bulk_insert
from creditstack.core.tables import CoreTables

#: Largest page a consumer may read at once.
OUTBOX_PAGE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class DomainEvent:
    topic: str  # past tense, e.g. "payments.payment_completed"
    aggregate_id: str
    business_date: date
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    position: int
    topic: str
    aggregate_id: str
    business_date: date
    created_at: datetime
    payload: dict[str, Any]


def flush_events(conn: Connection, tables: CoreTables, events: Sequence[DomainEvent], now: datetime) -> None:
    """Write `events` with consecutive positions. Call as the last write before commit."""
    if not events:
        return
    first = sequence.take(conn, tables, "outbox", len(events))
    conn.execute(
        tables.outbox.insert(),
        [
            {
                "position": first + i,
                "topic": e.topic,
                "aggregate_id": e.aggregate_id,
                "business_date": e.business_date,
                "created_at": now,
                "payload": e.payload,
            }
            for i, e in enumerate(events)
        ],
    )


def flush_events_prepared(conn: Connection, tables: CoreTables, events: Sequence[DomainEvent], now: datetime) -> None:
    """`flush_events` for thousands of events (a batch of payments): the same rows, written through the driver
    (COPY on PostgreSQL, executemany on SQLite) instead of SQLAlchemy's per-row parameter processing. Call as
    the last write."""
    if not events:
        return
    first = sequence.take(conn, tables, "outbox", len(events))
    bulk_insert(
        conn,
        tables.outbox,
        ("position", "topic", "aggregate_id", "business_date", "created_at", "payload"),
        [(first + i, e.topic, e.aggregate_id, e.business_date, now, e.payload) for i, e in enumerate(events)],
    )


def read_after(
    conn: Connection,
    tables: CoreTables,
    position: int,
    *,
    topics: Iterable[str] | None = None,
    limit: int = 1000,
) -> list[StoredEvent]:
    o = tables.outbox.c
    query = (
        sa.select(tables.outbox).where(o.position > position).order_by(o.position).limit(min(limit, OUTBOX_PAGE_MAX))
    )
    if topics is not None:
        query = query.where(o.topic.in_(list(topics)))
    return [
        StoredEvent(r.position, r.topic, r.aggregate_id, r.business_date, r.created_at, r.payload)
        for r in conn.execute(query)
    ]


#: An event as `read_rows_after` returns it: (position, topic, aggregate id, business date, payload).
EventRow = tuple[int, str, str, date, Mapping[str, Any]]
_json_decoder = json.JSONDecoder()


def read_rows_after(conn: Connection, tables: CoreTables, position: int, limit: int = 1000) -> list[EventRow]:
    """`read_after` for a consumer that folds many thousands of events: the same events, as plain tuples,
    read through the driver (no statement building, no row objects; payloads decoded once)."""
    postgres = conn.dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    sql = (
        f'SELECT "position", topic, aggregate_id, business_date, payload FROM {tables.outbox.name} '
        f'WHERE "position" > {mark} ORDER BY "position" LIMIT {mark}'
    )
    cur = driver_connection(conn).cursor()
    try:
        cur.execute(sql, (position, min(limit, OUTBOX_PAGE_MAX)))
        fetched = cur.fetchall()
    finally:
        cur.close()
    days: dict[Any, date] = {}
    rows: list[EventRow] = []
    for event_position, topic, aggregate_id, business_date, payload in fetched:
        day = days.get(business_date)
        if day is None:  # SQLite hands dates back as text
            day = days[business_date] = (
                business_date if isinstance(business_date, date) else date.fromisoformat(business_date)
            )
        rows.append((int(event_position), topic, aggregate_id, day, _decoded(payload)))
    return rows


def _decoded(value: Any) -> Any:
    if not isinstance(value, str):  # PostgreSQL's driver decodes JSONB itself
        return value
    try:
        return _json_decoder.raw_decode(value)[0]  # `json.loads` without its whitespace checks
    except ValueError:
        return json.loads(value)


@cache
def _position_query(tables: CoreTables, lock: bool) -> sa.Select[Any]:
    c = tables.outbox_consumers.c
    query = sa.select(c.position).where(c.consumer == sa.bindparam("consumer"))
    return query.with_for_update() if lock else query


def consumer_position(conn: Connection, tables: CoreTables, consumer: str, *, lock: bool = False) -> int:
    value = conn.execute(_position_query(tables, lock), {"consumer": consumer}).scalar_one_or_none()
    return int(value) if value is not None else 0


def advance_consumer(conn: Connection, tables: CoreTables, consumer: str, position: int, now: datetime) -> None:
    c = tables.outbox_consumers.c
    updated = conn.execute(
        sa.update(tables.outbox_consumers).where(c.consumer == consumer).values(position=position, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(tables.outbox_consumers.insert().values(consumer=consumer, position=position, updated_at=now))
