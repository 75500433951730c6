"""Payments persistence. Lock order inside a payment's transaction: the original payment (refunds), then
limit-usage rows, then the ledger's own order (holds → accounts → journal counter)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.payments import tables as t
from creditstack.payments.domain import LimitUsage


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# ---------------------------------------------------------------- customers


def insert_customer(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(t.customers.insert().values(**row))


def customer_row(conn: Connection, customer_id: str) -> Any | None:
    return conn.execute(sa.select(t.customers).where(t.customers.c.id == customer_id)).one_or_none()


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
    w, c = t.wallets.c, t.customers.c
    return conn.execute(
        sa.select(
            t.wallets,
            c.kind.label("customer_kind"),
            c.kyc_tier,
            c.fee_bps,
            c.refund_fee_policy,
            c.merchant_category,
            c.reference_pattern,
        )
        .join(t.customers, c.id == w.customer_id)
        .where(w.id == wallet_id)
    ).one_or_none()


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


def add_usage(conn: Connection, wallet_id: str, periods: Sequence[str], amount_minor: int, count: int) -> None:
    u = t.limit_usage.c
    conn.execute(
        sa.update(t.limit_usage)
        .where(u.wallet_id == wallet_id, u.period.in_(list(periods)))
        .values(outgoing_minor=u.outgoing_minor + amount_minor, count=u.count + count)
    )


# ---------------------------------------------------------------- payments


def insert_payment(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(t.payments.insert().values(**row))


def payment_row(conn: Connection, payment_id: str, *, lock: bool = False) -> Any:  # a row, or None
    query = sa.select(t.payments).where(t.payments.c.id == payment_id)
    if lock and _is_pg(conn):
        query = query.with_for_update()
    return conn.execute(query).one_or_none()


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
