"""Payments persistence. Lock order inside a payment's transaction: the original payment (refunds) or the
rail payments being settled (batches), then limit-usage rows (by wallet id, then period), then the ledger's
own order (holds → accounts → journal counter), then the outbox counter.

The bulk helpers (`wallet_rows`, `payment_rows`, `lock_usage_many`, `add_usage_many`, `insert_payments`,
`settle_payments`) serve `PaymentsService.submit_batch`: one statement per chunk of ids or rows, built once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core.db import driver_connection
from creditstack.core.idempotency import bulk_insert, copy_or_executemany
from creditstack.payments import tables as t
from creditstack.payments.domain import LimitUsage

#: Most ids one IN list (or rows one multi-row statement) carries; SQLite allows 32,766 parameters.
_CHUNK = 5_000


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ---------------------------------------------------------------- customers


def insert_customer(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(t.customers.insert().values(**row))


_CUSTOMER_BY_ID = sa.select(t.customers).where(t.customers.c.id == sa.bindparam("id"))


def customer_row(conn: Connection, customer_id: str) -> Any | None:
    return conn.execute(_CUSTOMER_BY_ID, {"id": customer_id}).one_or_none()


def customer_by_national_id_hash(conn: Connection, kind: str, national_id_hash: str) -> Any | None:
    c = t.customers.c
    return conn.execute(
        sa.select(t.customers).where(c.kind == kind, c.national_id_hash == national_id_hash)
    ).one_or_none()


def insert_incomes(conn: Connection, customer_id: str, incomes: Sequence[tuple[date, int, str]]) -> None:
    if incomes:
        conn.execute(
            t.incomes.insert(),
            [{"customer_id": customer_id, "as_of": d, "annual_income_minor": a, "currency": c} for d, a, c in incomes],
        )


def incomes_of(conn: Connection, customer_id: str) -> list[Any]:
    i = t.incomes.c
    return list(conn.execute(sa.select(t.incomes).where(i.customer_id == customer_id).order_by(i.as_of)))


# ---------------------------------------------------------------- wallets


def insert_wallet(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(t.wallets.insert().values(**row))


def wallet_row(conn: Connection, wallet_id: str) -> Any:  # a row, or None
    return conn.execute(_WALLET_BY_ID, {"id": wallet_id}).one_or_none()


def _wallet_query() -> sa.Select[Any]:
    w, c = t.wallets.c, t.customers.c
    return sa.select(
        t.wallets,
        c.kind.label("customer_kind"),
        c.kyc_tier,
        c.fee_bps,
        c.refund_fee_policy,
        c.merchant_category,
        c.reference_pattern,
    ).join(t.customers, c.id == w.customer_id)


_WALLETS_BY_ID = _wallet_query().where(t.wallets.c.id.in_(sa.bindparam("ids", expanding=True)))
_WALLET_BY_ID = _wallet_query().where(t.wallets.c.id == sa.bindparam("id"))


def wallet_rows(conn: Connection, wallet_ids: Iterable[str]) -> dict[str, Any]:
    """The wallets with these ids (rows as `wallet_row` reads them), by id; unknown ids are absent."""
    wanted = sorted(set(wallet_ids))
    found: dict[str, Any] = {}
    for chunk in _chunks(wanted):
        for row in conn.execute(_WALLETS_BY_ID, {"ids": list(chunk)}):
            found[row.id] = row
    return found


def wallets_of(conn: Connection, customer_id: str) -> list[Any]:
    w = t.wallets.c
    return list(conn.execute(sa.select(t.wallets).where(w.customer_id == customer_id).order_by(w.created_at)))


def set_wallet_status(conn: Connection, wallet_id: str, status: str) -> None:
    conn.execute(sa.update(t.wallets).where(t.wallets.c.id == wallet_id).values(status=status))


# ---------------------------------------------------------------- limits


def lock_usage(conn: Connection, wallet_id: str, day_key: str, month_key: str) -> LimitUsage:
    """Create the day and month usage rows if missing and lock them (PostgreSQL) for this transaction."""
    u = t.limit_usage.c
    for period in (day_key, month_key):
        if _is_pg(conn):
            conn.execute(
                sa.text(
                    "INSERT INTO payments_limit_usage (wallet_id, period, outgoing_minor, count) "
                    "VALUES (:w, :p, 0, 0) ON CONFLICT DO NOTHING"
                ),
                {"w": wallet_id, "p": period},
            )
        else:
            conn.execute(
                sa.text(
                    "INSERT OR IGNORE INTO payments_limit_usage (wallet_id, period, outgoing_minor, count) "
                    "VALUES (:w, :p, 0, 0)"
                ),
                {"w": wallet_id, "p": period},
            )
    query = (
        sa.select(u.period, u.outgoing_minor, u.count.label("payments_count"))
        .where(u.wallet_id == wallet_id, u.period.in_([day_key, month_key]))
        .order_by(u.period)
    )
    if _is_pg(conn):
        query = query.with_for_update()
    rows = {r.period: r for r in conn.execute(query)}
    return LimitUsage(
        daily_minor=int(rows[day_key].outgoing_minor),
        daily_count=int(rows[day_key].payments_count),
        monthly_minor=int(rows[month_key].outgoing_minor),
    )


def lock_usage_many(conn: Connection, wallet_ids: Iterable[str], day_key: str, month_key: str) -> dict[str, list[int]]:
    """`lock_usage` for many wallets at once: rows created if missing, then locked (PostgreSQL) in wallet id
    and period order. Returns [daily_minor, daily_count, monthly_minor] per wallet, for the caller to count on."""
    wanted = sorted(set(wallet_ids))
    usage: dict[str, list[int]] = {w: [0, 0, 0] for w in wanted}
    if not wanted:
        return usage
    pairs = [(w, p) for w in wanted for p in sorted((day_key, month_key))]
    if _is_pg(conn):
        for chunk in _chunks(pairs):
            conn.execute(
                sa.text(
                    "INSERT INTO payments_limit_usage (wallet_id, period, outgoing_minor, count) "
                    "SELECT w, p, 0, 0 FROM unnest(CAST(:w AS text[]), CAST(:p AS text[])) AS v(w, p) "
                    "ORDER BY w, p ON CONFLICT DO NOTHING"
                ),
                {"w": [w for w, _ in chunk], "p": [p for _, p in chunk]},
            )
    else:
        cur = driver_connection(conn).cursor()
        try:
            cur.executemany(
                "INSERT OR IGNORE INTO payments_limit_usage (wallet_id, period, outgoing_minor, count) "
                "VALUES (?, ?, 0, 0)",
                pairs,
            )
        finally:
            cur.close()
    u = t.limit_usage.c
    query = (
        sa.select(u.wallet_id, u.period, u.outgoing_minor, u.count.label("payments_count"))
        .where(u.wallet_id.in_(sa.bindparam("ids", expanding=True)), u.period.in_([day_key, month_key]))
        .order_by(u.wallet_id, u.period)
    )
    if _is_pg(conn):
        query = query.with_for_update()
    for chunk in _chunks(wanted):
        for row in conn.execute(query, {"ids": list(chunk)}):
            if row.period == day_key:
                usage[row.wallet_id][0] = int(row.outgoing_minor)
                usage[row.wallet_id][1] = int(row.payments_count)
            else:
                usage[row.wallet_id][2] = int(row.outgoing_minor)
    return usage


def read_usage(conn: Connection, wallet_id: str, day_key: str, month_key: str) -> list[int]:
    """[daily_minor, daily_count, monthly_minor] of a wallet as stored (zeros where no row), creating nothing."""
    u = t.limit_usage.c
    usage = [0, 0, 0]
    for row in conn.execute(
        sa.select(u.period, u.outgoing_minor, u.count.label("payments_count")).where(
            u.wallet_id == wallet_id, u.period.in_([day_key, month_key])
        )
    ):
        if row.period == day_key:
            usage[0], usage[1] = int(row.outgoing_minor), int(row.payments_count)
        else:
            usage[2] = int(row.outgoing_minor)
    return usage


def add_usage_many(conn: Connection, deltas: Sequence[tuple[str, int, int]], periods: Sequence[str]) -> None:
    """`add_usage` for many wallets: (wallet id, amount, count) added to each of `periods` (rows locked)."""
    rows = [(amount, count, wallet_id, period) for wallet_id, amount, count in deltas for period in periods]
    if not rows:
        return
    sql = (
        "UPDATE payments_limit_usage SET outgoing_minor = outgoing_minor + {p}, count = count + {p} "
        "WHERE wallet_id = {p} AND period = {p}"
    )
    cur = driver_connection(conn).cursor()
    try:
        cur.executemany(sql.format(p="%s" if _is_pg(conn) else "?"), rows)
    finally:
        cur.close()


def add_usage(conn: Connection, wallet_id: str, periods: Sequence[str], amount_minor: int, count: int) -> None:
    u = t.limit_usage.c
    conn.execute(
        sa.update(t.limit_usage)
        .where(u.wallet_id == wallet_id, u.period.in_(list(periods)))
        .values(outgoing_minor=u.outgoing_minor + amount_minor, count=u.count + count)
    )


# ---------------------------------------------------------------- payments


def insert_payment(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(_INSERT_PAYMENT, row)


_INSERT_PAYMENT = t.payments.insert()


#: Column defaults of a payment row (what the database fills in when a single insert leaves them out).
_PAYMENT_DEFAULTS: dict[str, Any] = {c.name: None for c in t.payments.columns if c.name != "serial"} | {
    "fee_minor": 0,
    "refunded_minor": 0,
    "refunded_fee_minor": 0,
    "funding": "wallet",
}


def full_payment_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` with every column present (defaults filled in), as a multi-row insert needs it."""
    return {**_PAYMENT_DEFAULTS, **row}


_INSERT_COLUMNS = [c for c in t.payments.columns if c.name != "serial"]


def insert_payments(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many payments through the driver (COPY on PostgreSQL, executemany on SQLite), in order, so
    their serials follow it. Values are bound as SQLAlchemy would bind them (its type processors, once per
    distinct value), so a row reads back the same as one `insert_payment` wrote."""
    if not rows:
        return
    dialect = conn.dialect
    names = [c.name for c in _INSERT_COLUMNS]
    defaults = [_PAYMENT_DEFAULTS[name] for name in names]
    processed = [
        (i, processor)
        for i, processor in enumerate(c.type.dialect_impl(dialect).bind_processor(dialect) for c in _INSERT_COLUMNS)
        if processor is not None
    ]
    bound: dict[tuple[int, Any], Any] = {}  # (column, value) -> bound value: dates and times repeat
    values = []
    for row in rows:
        get = row.get
        record = [get(name, default) for name, default in zip(names, defaults, strict=True)]
        for i, processor in processed:
            value = record[i]
            if value is not None:
                converted = bound.get((i, value))
                if converted is None:
                    converted = bound[(i, value)] = processor(value)
                record[i] = converted
        values.append(record)
    copy_or_executemany(conn, t.payments.name, names, values)


def settle_payments(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Mark rail payments completed: (id, entry_seq, settled_business_date, updated_at) per row."""
    if not rows:
        return
    p = t.payments.c
    conn.execute(
        sa.update(t.payments)
        .where(p.id == sa.bindparam("b_id"))
        .values(
            status="completed",
            entry_seq=sa.bindparam("b_seq"),
            settled_business_date=sa.bindparam("b_settled"),
            updated_at=sa.bindparam("b_now"),
        ),
        [
            {
                "b_id": r["id"],
                "b_seq": r["entry_seq"],
                "b_settled": r["settled_business_date"],
                "b_now": r["updated_at"],
            }
            for r in rows
        ],
    )


def payment_rows(conn: Connection, payment_ids: Iterable[str], *, lock: bool = False) -> dict[str, Any]:
    """The payments with these ids, by id; locked in id order on PostgreSQL with `lock`."""
    wanted = sorted(set(payment_ids))
    query = (
        sa.select(t.payments).where(t.payments.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(t.payments.c.id)
    )
    if lock and _is_pg(conn):
        query = query.with_for_update()
    found: dict[str, Any] = {}
    for chunk in _chunks(wanted):
        for row in conn.execute(query, {"ids": list(chunk)}):
            found[row.id] = row
    return found


_PAYMENT_BY_ID = sa.select(t.payments).where(t.payments.c.id == sa.bindparam("id"))
_PAYMENT_BY_ID_LOCKED = _PAYMENT_BY_ID.with_for_update()


def payment_row(conn: Connection, payment_id: str, *, lock: bool = False) -> Any:  # a row, or None
    query = _PAYMENT_BY_ID_LOCKED if lock and _is_pg(conn) else _PAYMENT_BY_ID
    return conn.execute(query, {"id": payment_id}).one_or_none()


def payment_by_end_to_end(conn: Connection, end_to_end_id: str, *, lock: bool = False) -> Any | None:
    query = sa.select(t.payments).where(t.payments.c.end_to_end_id == end_to_end_id)
    if lock and _is_pg(conn):
        query = query.with_for_update()
    return conn.execute(query).one_or_none()


def update_payment(conn: Connection, payment_id: str, now: datetime, **values: Any) -> None:
    conn.execute(sa.update(t.payments).where(t.payments.c.id == payment_id).values(updated_at=now, **values))


def history(
    conn: Connection,
    wallet_id: str,
    *,
    from_date: date | None,
    to_date: date | None,
    kind: str | None,
    counterparty: str | None,
    before_serial: int | None,
    limit: int,
) -> list[Any]:
    p = t.payments.c
    involved = sa.or_(p.payer_wallet_id == wallet_id, p.payee_wallet_id == wallet_id)
    query = sa.select(t.payments).where(involved).order_by(p.serial.desc()).limit(limit)
    if from_date is not None:
        query = query.where(p.business_date >= from_date)
    if to_date is not None:
        query = query.where(p.business_date <= to_date)
    if kind is not None:
        query = query.where(p.kind == kind)
    if counterparty is not None:
        query = query.where(
            sa.or_(
                sa.and_(p.payer_wallet_id == wallet_id, p.payee_wallet_id == counterparty),
                sa.and_(p.payee_wallet_id == wallet_id, p.payer_wallet_id == counterparty),
            )
        )
    if before_serial is not None:
        query = query.where(p.serial < before_serial)
    return list(conn.execute(query))


def settlement_items(conn: Connection, *, from_date: date | None = None, to_date: date | None = None) -> list[Any]:
    """Rail-backed payments (top-ups and withdrawals) for reconciliation with the bank's statement."""
    p = t.payments.c
    query = sa.select(t.payments).where(p.end_to_end_id.is_not(None)).order_by(p.serial)
    if from_date is not None:
        query = query.where(p.business_date >= from_date)
    if to_date is not None:
        query = query.where(p.business_date <= to_date)
    return list(conn.execute(query))


# ---------------------------------------------------------------- the web console's reads


def customers_page(conn: Connection, kind: str, after: str | None, limit: int) -> list[Any]:
    """Customers of one kind in id order, after the cursor: ids and tiers only, nothing sealed."""
    c = t.customers.c
    query = sa.select(c.id, c.kind, c.kyc_tier, c.created_at).where(c.kind == kind).order_by(c.id).limit(limit)
    if after is not None:
        query = query.where(c.id > after)
    return list(conn.execute(query))


# ---------------------------------------------------------------- onboarding batches (`register_batch`)

_CUSTOMER_COLUMNS = tuple(c.name for c in t.customers.columns)
_WALLET_COLUMNS = tuple(c.name for c in t.wallets.columns)
_INCOME_COLUMNS = ("customer_id", "as_of", "annual_income_minor", "currency")
_CUSTOMERS_BY_ID = sa.select(t.customers).where(t.customers.c.id.in_(sa.bindparam("ids", expanding=True)))
_NATIONAL_IDS_TAKEN = sa.select(t.customers.c.national_id_hash).where(
    t.customers.c.kind == sa.bindparam("kind"),
    t.customers.c.national_id_hash.in_(sa.bindparam("hashes", expanding=True)),
)
_WALLETS_OF_CUSTOMERS = (
    sa.select(t.wallets.c.customer_id, t.wallets.c.id)
    .where(t.wallets.c.customer_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(t.wallets.c.customer_id, t.wallets.c.created_at)
)


def national_id_hashes_taken(conn: Connection, kind: str, national_id_hashes: Iterable[str]) -> set[str]:
    """Which of these national-id hashes a customer of `kind` already has (index look-ups, per chunk)."""
    wanted = sorted(set(national_id_hashes))
    taken: set[str] = set()
    for chunk in _chunks(wanted):
        taken.update(conn.execute(_NATIONAL_IDS_TAKEN, {"kind": kind, "hashes": list(chunk)}).scalars())
    return taken


def customer_rows(conn: Connection, customer_ids: Iterable[str]) -> dict[str, Any]:
    """The customers with these ids (whole rows, as `customer_row` reads them), by id."""
    wanted = sorted(set(customer_ids))
    found: dict[str, Any] = {}
    for chunk in _chunks(wanted):
        for row in conn.execute(_CUSTOMERS_BY_ID, {"ids": list(chunk)}):
            found[row.id] = row
    return found


def wallet_ids_of(conn: Connection, customer_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each customer's wallet ids, in the order `wallets_of` lists them; customers without one are absent."""
    wanted = sorted(set(customer_ids))
    found: dict[str, list[str]] = {}
    for chunk in _chunks(wanted):
        for customer_id, wallet_id in conn.execute(_WALLETS_OF_CUSTOMERS, {"ids": list(chunk)}):
            found.setdefault(customer_id, []).append(wallet_id)
    return found


def insert_customers(
    conn: Connection, customers: Sequence[Mapping[str, Any]], incomes: Sequence[tuple[str, date, int, str]]
) -> None:
    """Many customers (rows as `insert_customer` takes them) and their incomes (customer id, as of, amount,
    currency): one bulk insert per table, through the driver."""
    if customers:
        bulk_insert(conn, t.customers, _CUSTOMER_COLUMNS, [[r[c] for c in _CUSTOMER_COLUMNS] for r in customers])
    if incomes:
        bulk_insert(conn, t.incomes, _INCOME_COLUMNS, incomes)


def insert_wallets(conn: Connection, wallets: Sequence[Mapping[str, Any]]) -> None:
    """Many wallets (rows as `insert_wallet` takes them): one bulk insert, through the driver."""
    if wallets:
        bulk_insert(conn, t.wallets, _WALLET_COLUMNS, [[r[c] for c in _WALLET_COLUMNS] for r in wallets])
