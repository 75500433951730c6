"""Ledger persistence: loads the state a batch touches (with row locks), writes what the evaluator decided.

Lock order, the same in every transaction, so that writers never deadlock: holds (by id), then accounts
(by id), then the journal counter (`core.sequence`), which is the last lock taken before commit and
orders commits. Accounts that take balance deltas are not locked at all. Set-based writes: on
PostgreSQL, COPY for entries, postings and idempotency rows and one UPDATE … FROM unnest for balances;
on SQLite, executemany in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import sequence
from creditstack.core.db import driver_connection
from creditstack.core.idempotency import StoredOutcome, bulk_insert
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger import tables as t
from creditstack.ledger.domain import (
    AccountState,
    AccountType,
    Decisions,
    HoldState,
    HoldStatus,
    PostingSpec,
    ReversibleEntry,
    Side,
)

_CHUNK = 5_000


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# ---------------------------------------------------------------- idempotency


def lookup_keys(conn: Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredOutcome]:
    """Stored outcomes for the (member, key) pairs that have one (primary-key look-ups, per member)."""
    found: dict[tuple[str, str], StoredOutcome] = {}
    by_member: dict[str, list[str]] = {}
    for member, key in dict.fromkeys(pairs):
        by_member.setdefault(member, []).append(key)
    sql = "SELECT member, key, request_hash, operation, status_code, outcome FROM idempotency_keys WHERE member = "
    pg = _is_pg(conn)
    cur = driver_connection(conn).cursor()
    try:
        for member, keys in by_member.items():
            for chunk in _chunks(keys):
                if pg:
                    cur.execute(sql + "%s AND key = ANY(%s)", (member, list(chunk)))
                else:
                    cur.execute(sql + f"? AND key IN ({','.join('?' * len(chunk))})", (member, *chunk))
                for m, k, h, op, status, outcome in cur.fetchall():
                    body = outcome if isinstance(outcome, dict) else json.loads(outcome)
                    found[(m, k)] = StoredOutcome(h, op, int(status), body)
    finally:
        cur.close()
    return found


# ---------------------------------------------------------------- accounts


def insert_account(
    conn: Connection,
    *,
    code: str,
    member: str,
    currency: str,
    type: AccountType,
    no_overdraft: bool,
    credit_limit_minor: int,
    uses_deltas: bool,
    metadata: dict[str, Any],
    now: datetime,
) -> int:
    result = conn.execute(
        t.accounts.insert()
        .values(
            code=code,
            member=member,
            currency=currency,
            type=type.value,
            no_overdraft=no_overdraft,
            credit_limit_minor=credit_limit_minor,
            uses_deltas=uses_deltas,
            metadata=metadata,
            created_at=now,
        )
        .returning(t.accounts.c.id)
    )
    return int(result.scalar_one())


def account_code_exists(conn: Connection, code: str) -> bool:
    return conn.execute(sa.select(t.accounts.c.id).where(t.accounts.c.code == code)).first() is not None


#: Columns `insert_accounts` writes, in the order of its rows' values (the balances start at their defaults).
ACCOUNT_INSERT_COLUMNS = (
    "code",
    "member",
    "currency",
    "type",
    "no_overdraft",
    "credit_limit_minor",
    "uses_deltas",
    "metadata",
    "created_at",
)
_ACCOUNTS_BY_CODE = sa.select(t.accounts).where(t.accounts.c.code.in_(sa.bindparam("codes", expanding=True)))
_ACCOUNT_IDS_BY_CODE = sa.select(t.accounts.c.code, t.accounts.c.id).where(
    t.accounts.c.code.in_(sa.bindparam("codes", expanding=True))
)


def insert_accounts(conn: Connection, rows: Sequence[Sequence[Any]]) -> dict[str, int]:
    """Insert many accounts (values in `ACCOUNT_INSERT_COLUMNS` order) through the driver — COPY on
    PostgreSQL, executemany on SQLite — in order, so their ids ascend in it; returns their ids by code."""
    if not rows:
        return {}
    bulk_insert(conn, t.accounts, ACCOUNT_INSERT_COLUMNS, rows)
    ids: dict[str, int] = {}
    for chunk in _chunks(sorted(r[0] for r in rows)):
        ids.update(
            (code, int(account_id)) for code, account_id in conn.execute(_ACCOUNT_IDS_BY_CODE, {"codes": list(chunk)})
        )
    return ids


def account_rows_by_code(conn: Connection, codes: Iterable[str]) -> dict[str, Any]:
    """The accounts with these codes (whole rows), by code; unknown codes are absent."""
    wanted = sorted(set(codes))
    found: dict[str, Any] = {}
    for chunk in _chunks(wanted):
        for row in conn.execute(_ACCOUNTS_BY_CODE, {"codes": list(chunk)}):
            found[row.code] = row
    return found


_ACCOUNT_STATE_COLUMNS = (
    t.accounts.c.id,
    t.accounts.c.currency,
    t.accounts.c.type,
    t.accounts.c.no_overdraft,
    t.accounts.c.credit_limit_minor,
    t.accounts.c.uses_deltas,
    t.accounts.c.debits_posted,
    t.accounts.c.credits_posted,
    t.accounts.c.debits_pending,
    t.accounts.c.credits_pending,
)


_ACCOUNT_TYPES = {account_type.value: account_type for account_type in AccountType}
_STATE_SQL = (
    "SELECT id, currency, type, no_overdraft, credit_limit_minor, uses_deltas, "
    "debits_posted, credits_posted, debits_pending, credits_pending FROM ledger_accounts"
)


def _state_tuple(r: Sequence[Any]) -> AccountState:
    return AccountState(
        int(r[0]),
        r[1],
        _ACCOUNT_TYPES[r[2]],
        bool(r[3]),
        int(r[4]),
        bool(r[5]),
        int(r[6]),
        int(r[7]),
        int(r[8]),
        int(r[9]),
    )


def load_accounts_for_update(conn: Connection, ids: Iterable[int]) -> dict[int, AccountState]:
    """The accounts with these ids; the ones checked for overdraft are locked, in id order.

    PostgreSQL: one locked read (`FOR NO KEY UPDATE`: id and code never change, so foreign-key checks of
    concurrent posting inserts are not blocked); accounts that take deltas are read without a lock.
    SQLite: the writer already holds the database lock (`BEGIN IMMEDIATE`).
    """
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows: list[Any] = []
    cur = driver_connection(conn).cursor()
    try:
        if _is_pg(conn):
            cur.execute(_STATE_SQL + " WHERE id = ANY(%s) AND uses_deltas", (wanted,))
            rows += cur.fetchall()
            cur.execute(_STATE_SQL + " WHERE id = ANY(%s) AND NOT uses_deltas ORDER BY id FOR NO KEY UPDATE", (wanted,))
            rows += cur.fetchall()
        else:
            for chunk in _chunks(wanted):
                cur.execute(_STATE_SQL + f" WHERE id IN ({','.join('?' * len(chunk))})", list(chunk))
                rows += cur.fetchall()
    finally:
        cur.close()
    return {int(r[0]): _state_tuple(r) for r in rows}


_ACCOUNT_BY_ID = sa.select(t.accounts).where(t.accounts.c.id == sa.bindparam("id"))
_ACCOUNT_BY_CODE = sa.select(t.accounts).where(t.accounts.c.code == sa.bindparam("code"))


def account_row(conn: Connection, account_id: int) -> Any | None:
    return conn.execute(_ACCOUNT_BY_ID, {"id": account_id}).one_or_none()


def account_row_by_code(conn: Connection, code: str) -> Any | None:
    return conn.execute(_ACCOUNT_BY_CODE, {"code": code}).one_or_none()


def list_accounts(conn: Connection, *, member: str | None, after_id: int, limit: int) -> list[Any]:
    query = sa.select(t.accounts).where(t.accounts.c.id > after_id).order_by(t.accounts.c.id).limit(limit)
    if member is not None:
        query = query.where(t.accounts.c.member == member)
    return list(conn.execute(query))


def unfolded_deltas(conn: Connection, account_ids: Sequence[int] | None = None) -> dict[int, tuple[int, int, int, int]]:
    d = t.balance_deltas.c
    query = sa.select(
        d.account_id,
        sa.func.sum(d.debits_posted),
        sa.func.sum(d.credits_posted),
        sa.func.sum(d.debits_pending),
        sa.func.sum(d.credits_pending),
    ).group_by(d.account_id)
    if account_ids is not None:
        query = query.where(d.account_id.in_(list(account_ids)))
    return {int(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in conn.execute(query)}


def _expired_sum(side: sa.Column[Any]) -> sa.Select[Any]:
    h = t.holds.c
    return sa.select(sa.func.coalesce(sa.func.sum(h.amount_minor), 0)).where(
        h.status == "pending", h.expires_at <= sa.bindparam("now"), side == sa.bindparam("account")
    )


_EXPIRED_DEBITS = _expired_sum(t.holds.c.debit_account_id)
_EXPIRED_CREDITS = _expired_sum(t.holds.c.credit_account_id)


def expired_unswept(conn: Connection, account_id: int, now: datetime) -> tuple[int, int]:
    """(debits, credits) pending on the account that belong to holds already past expiry."""
    params = {"now": now, "account": account_id}
    debit = conn.execute(_EXPIRED_DEBITS, params).scalar_one()
    credit = conn.execute(_EXPIRED_CREDITS, params).scalar_one()
    return int(debit), int(credit)


# ---------------------------------------------------------------- holds and entries


def _hold(row: Any) -> HoldState:
    return HoldState(
        id=row.id,
        debit_account_id=int(row.debit_account_id),
        credit_account_id=int(row.credit_account_id),
        currency=row.currency,
        amount_minor=int(row.amount_minor),
        status=HoldStatus(row.status),
        expires_at=_aware(row.expires_at),
        posted_amount_minor=int(row.posted_amount_minor),
    )


_EXPIRED_HOLDS = sa.select(t.holds.c.id).where(
    t.holds.c.status == "pending", t.holds.c.expires_at.is_not(None), t.holds.c.expires_at <= sa.bindparam("now")
)


def load_holds_for_update(conn: Connection, ids: Iterable[str], now: datetime) -> dict[str, HoldState]:
    """The named holds plus every pending hold past its expiry, locked in id order."""
    h = t.holds.c
    wanted = set(ids)
    expired = conn.execute(_EXPIRED_HOLDS, {"now": now}).scalars()
    wanted.update(expired)
    holds: dict[str, HoldState] = {}
    for chunk in _chunks(sorted(wanted)):
        query = sa.select(t.holds).where(h.id.in_(list(chunk))).order_by(h.id)
        if _is_pg(conn):
            query = query.with_for_update()
        for row in conn.execute(query):
            holds[row.id] = _hold(row)
    return holds


def hold_row(conn: Connection, hold_id: str) -> Any | None:
    return conn.execute(sa.select(t.holds).where(t.holds.c.id == hold_id)).one_or_none()


def load_reversible(conn: Connection, seqs: Iterable[int]) -> dict[int, ReversibleEntry]:
    wanted = sorted(set(seqs))
    if not wanted:
        return {}
    e, p = t.entries.c, t.postings.c
    found: dict[int, ReversibleEntry] = {}
    query = sa.select(e.seq).where(e.seq.in_(wanted)).order_by(e.seq)
    if _is_pg(conn):
        query = query.with_for_update()
    for seq in conn.execute(query).scalars():
        found[int(seq)] = ReversibleEntry(int(seq), (), reversed=False)
    for row in conn.execute(
        sa.select(p.entry_seq, p.account_id, p.side, p.amount_minor, p.currency)
        .where(p.entry_seq.in_(wanted))
        .order_by(p.entry_seq, p.leg)
    ):
        entry = found[int(row.entry_seq)]
        entry.postings = (
            *entry.postings,
            PostingSpec(int(row.account_id), Side.from_code(row.side), int(row.amount_minor), row.currency),
        )
    for seq in conn.execute(sa.select(e.reverses_seq).where(e.reverses_seq.in_(wanted))).scalars():
        found[int(seq)].reversed = True
    return found


# ---------------------------------------------------------------- writing a decided batch


@dataclass(frozen=True, slots=True)
class BatchWrite:
    decisions: Decisions
    initial: dict[int, tuple[int, int, int, int]]
    accounts: dict[int, AccountState]
    business_date: date
    now: datetime
    commit_clock: Callable[[], datetime]  # read again after the journal numbers are taken: commit order
    store_outcomes: bool = True  # False: the caller's own records make each command happen once


def write_batch(conn: Connection, batch: BatchWrite) -> None:
    """Persist the decisions: balances, holds, then (after taking journal numbers) entries, postings, keys."""
    decisions = batch.decisions
    _write_balances(conn, batch)
    new_holds = [c for c in decisions.hold_changes.values() if c.new]
    if new_holds:
        conn.execute(
            t.holds.insert(),
            [
                {
                    "id": c.hold.id,
                    "member": _hold_member(decisions, c.hold.id),
                    "idempotency_key": _hold_key(decisions, c.hold.id),
                    "debit_account_id": c.hold.debit_account_id,
                    "credit_account_id": c.hold.credit_account_id,
                    "currency": c.hold.currency,
                    "amount_minor": c.hold.amount_minor,
                    "status": "pending",
                    "expires_at": c.hold.expires_at,
                    "business_date": batch.business_date,
                    "created_at": batch.now,
                    "closed_at": None,
                    "posted_amount_minor": 0,
                    "post_entry_seq": None,
                    "description": _hold_description(decisions, c.hold.id),
                }
                for c in new_holds
            ],
        )
    # Journal numbers: the last lock before commit. Everything below is ordered by it.
    if decisions.entries:
        first = sequence.take(conn, PLATFORM_CORE, "journal", len(decisions.entries))
        for i, entry in enumerate(decisions.entries):
            entry.seq = first + i
        _insert_entries(conn, batch, batch.commit_clock())
    closed = [c for c in decisions.hold_changes.values() if c.hold.status is not HoldStatus.PENDING]
    expired_ids = [i for i in decisions.expired_hold_ids if i not in decisions.hold_changes]
    if closed or expired_ids:
        h = t.holds.c
        stmt = (
            sa.update(t.holds)
            .where(h.id == sa.bindparam("b_id"))
            .values(
                status=sa.bindparam("b_status"),
                closed_at=sa.bindparam("b_closed_at"),
                posted_amount_minor=sa.bindparam("b_posted"),
                post_entry_seq=sa.bindparam("b_seq"),
            )
        )
        rows = [
            {
                "b_id": c.hold.id,
                "b_status": c.hold.status.value,
                "b_closed_at": batch.now,
                "b_posted": c.hold.posted_amount_minor,
                "b_seq": c.entry.seq if c.entry is not None else None,
            }
            for c in closed
        ] + [
            {"b_id": i, "b_status": "expired", "b_closed_at": batch.now, "b_posted": 0, "b_seq": None}
            for i in expired_ids
        ]
        conn.execute(stmt, rows)
    if batch.store_outcomes:
        _insert_keys(conn, batch)


def _hold_command(decisions: Decisions, hold_id: str) -> Any:
    for o in decisions.outcomes:
        if o.hold_id == hold_id and o.command.operation == "hold":
            return o.command
    raise KeyError(hold_id)


def _hold_member(decisions: Decisions, hold_id: str) -> str:
    return str(_hold_command(decisions, hold_id).member)


def _hold_key(decisions: Decisions, hold_id: str) -> str:
    return str(_hold_command(decisions, hold_id).key)


def _hold_description(decisions: Decisions, hold_id: str) -> str:
    return str(_hold_command(decisions, hold_id).description)


def _write_balances(conn: Connection, batch: BatchWrite) -> None:
    updates: list[tuple[int, int, int, int, int]] = []
    deltas: list[dict[str, int]] = []
    for account_id, before in batch.initial.items():
        account = batch.accounts[account_id]
        after = account.copy_totals()
        if after == before:
            continue
        if account.uses_deltas:
            deltas.append(
                {
                    "account_id": account_id,
                    "debits_posted": after[0] - before[0],
                    "credits_posted": after[1] - before[1],
                    "debits_pending": after[2] - before[2],
                    "credits_pending": after[3] - before[3],
                }
            )
        else:
            updates.append((account_id, *after))
    if updates:
        if _is_pg(conn):
            cols = list(zip(*updates, strict=True))
            conn.execute(
                sa.text(
                    "UPDATE ledger_accounts AS a SET debits_posted = v.dp, credits_posted = v.cp, "
                    "debits_pending = v.dq, credits_pending = v.cq FROM unnest(CAST(:ids AS bigint[]), "
                    "CAST(:dp AS bigint[]), CAST(:cp AS bigint[]), CAST(:dq AS bigint[]), CAST(:cq AS bigint[])) "
                    "AS v(id, dp, cp, dq, cq) WHERE a.id = v.id"
                ),
                {
                    "ids": list(cols[0]),
                    "dp": list(cols[1]),
                    "cp": list(cols[2]),
                    "dq": list(cols[3]),
                    "cq": list(cols[4]),
                },
            )
        else:
            cur = driver_connection(conn).cursor()
            cur.executemany(
                "UPDATE ledger_accounts SET debits_posted = ?, credits_posted = ?, debits_pending = ?, "
                "credits_pending = ? WHERE id = ?",
                [(u[1], u[2], u[3], u[4], u[0]) for u in updates],
            )
            cur.close()
    if deltas:
        conn.execute(t.balance_deltas.insert(), deltas)


def _insert_entries(conn: Connection, batch: BatchWrite, now: datetime) -> None:
    entries = batch.decisions.entries
    bd = batch.business_date
    if _is_pg(conn):
        raw = driver_connection(conn)
        with raw.cursor() as cur:
            with cur.copy(
                "COPY ledger_entries (seq, member, idempotency_key, kind, business_date, committed_at, "
                "description, metadata, reverses_seq, hold_id) FROM STDIN"
            ) as copy:
                for e in entries:
                    copy.write_row(
                        (
                            e.seq,
                            e.member,
                            e.key,
                            e.kind,
                            bd,
                            now,
                            e.description,
                            json.dumps(e.metadata),
                            e.reverses_seq,
                            e.hold_id,
                        )
                    )
            with cur.copy(
                "COPY ledger_postings (entry_seq, leg, account_id, side, amount_minor, currency) FROM STDIN"
            ) as copy:
                for e in entries:
                    for leg, p in enumerate(e.postings):
                        copy.write_row((e.seq, leg, p.account_id, p.side.code, p.amount_minor, p.currency))
        return
    cur = driver_connection(conn).cursor()
    now_text = now.isoformat(sep=" ")
    bd_text = bd.isoformat()
    cur.executemany(
        "INSERT INTO ledger_entries (seq, member, idempotency_key, kind, business_date, committed_at, "
        "description, metadata, reverses_seq, hold_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            (
                e.seq,
                e.member,
                e.key,
                e.kind,
                bd_text,
                now_text,
                e.description,
                json.dumps(e.metadata),
                e.reverses_seq,
                e.hold_id,
            )
            for e in entries
        ],
    )
    cur.executemany(
        "INSERT INTO ledger_postings (entry_seq, leg, account_id, side, amount_minor, currency) VALUES (?,?,?,?,?,?)",
        [
            (e.seq, leg, p.account_id, p.side.code, p.amount_minor, p.currency)
            for e in entries
            for leg, p in enumerate(e.postings)
        ],
    )
    cur.close()


def _insert_keys(conn: Connection, batch: BatchWrite) -> None:
    bd_text = batch.business_date.isoformat()
    rows = []
    for o in batch.decisions.outcomes:
        if o.replayed:
            continue
        body = o.to_json(bd_text)
        o.stored = body  # computed once: the caller's result reuses it
        rows.append(
            (
                o.command.member,
                o.command.key,
                o.request_hash,
                o.command.operation,
                o.status_code,
                json.dumps(body, separators=(",", ":")),
            )
        )
    if not rows:
        return
    if _is_pg(conn):
        raw = driver_connection(conn)
        with (
            raw.cursor() as cur,
            cur.copy(
                "COPY idempotency_keys (member, key, request_hash, operation, status_code, outcome, created_at) "
                "FROM STDIN"
            ) as copy,
        ):
            for r in rows:
                copy.write_row((*r, batch.now))
        return
    cur = driver_connection(conn).cursor()
    now_text = batch.now.isoformat(sep=" ")
    cur.executemany(
        "INSERT INTO idempotency_keys (member, key, request_hash, operation, status_code, outcome, created_at) "
        "VALUES (?,?,?,?,?,?,?)",
        [(*r, now_text) for r in rows],
    )
    cur.close()


# ---------------------------------------------------------------- reads


def entry_row(conn: Connection, seq: int) -> Any | None:
    return conn.execute(sa.select(t.entries).where(t.entries.c.seq == seq)).one_or_none()


def entry_postings(conn: Connection, seq: int) -> list[Any]:
    p = t.postings.c
    return list(conn.execute(sa.select(t.postings).where(p.entry_seq == seq).order_by(p.leg)))


def account_history(conn: Connection, account_id: int, *, after_seq: int, limit: int) -> list[Any]:
    p, e = t.postings.c, t.entries.c
    return list(
        conn.execute(
            sa.select(
                p.entry_seq,
                p.leg,
                p.side,
                p.amount_minor,
                p.currency,
                e.kind,
                e.business_date,
                e.committed_at,
                e.description,
                e.idempotency_key,
            )
            .join(t.entries, e.seq == p.entry_seq)
            .where(p.account_id == account_id, p.entry_seq > after_seq)
            .order_by(p.entry_seq, p.leg)
            .limit(limit)
        )
    )


def posting_totals(
    conn: Connection, account_id: int, *, as_of_seq: int | None = None, as_of_date: date | None = None
) -> tuple[int, int]:
    """(debits, credits) posted to the account by entries up to a sequence number or business date."""
    p, e = t.postings.c, t.entries.c
    debit = sa.func.coalesce(sa.func.sum(sa.case((p.side == "D", p.amount_minor), else_=0)), 0)
    credit = sa.func.coalesce(sa.func.sum(sa.case((p.side == "C", p.amount_minor), else_=0)), 0)
    query = sa.select(debit, credit).where(p.account_id == account_id)
    if as_of_seq is not None:
        query = query.where(p.entry_seq <= as_of_seq)
    if as_of_date is not None:
        query = query.join(t.entries, e.seq == p.entry_seq).where(e.business_date <= as_of_date)
    row = conn.execute(query).one()
    return int(row[0]), int(row[1])


def all_posting_totals(conn: Connection) -> dict[int, tuple[int, int]]:
    p = t.postings.c
    rows = conn.execute(
        sa.select(
            p.account_id,
            sa.func.sum(sa.case((p.side == "D", p.amount_minor), else_=0)),
            sa.func.sum(sa.case((p.side == "C", p.amount_minor), else_=0)),
        ).group_by(p.account_id)
    )
    return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}


def pending_hold_totals(conn: Connection) -> dict[int, tuple[int, int]]:
    """(debits pending, credits pending) per account from holds still pending."""
    h = t.holds.c
    totals: dict[int, list[int]] = {}
    for row in conn.execute(
        sa.select(h.debit_account_id, sa.func.sum(h.amount_minor))
        .where(h.status == "pending")
        .group_by(h.debit_account_id)
    ):
        totals.setdefault(int(row[0]), [0, 0])[0] += int(row[1])
    for row in conn.execute(
        sa.select(h.credit_account_id, sa.func.sum(h.amount_minor))
        .where(h.status == "pending")
        .group_by(h.credit_account_id)
    ):
        totals.setdefault(int(row[0]), [0, 0])[1] += int(row[1])
    return {k: (v[0], v[1]) for k, v in totals.items()}


def currency_imbalances(conn: Connection) -> dict[str, int]:
    p = t.postings.c
    rows = conn.execute(
        sa.select(p.currency, sa.func.sum(sa.case((p.side == "D", p.amount_minor), else_=-p.amount_minor))).group_by(
            p.currency
        )
    )
    return {r[0]: int(r[1]) for r in rows if int(r[1]) != 0}


def unbalanced_entries(conn: Connection, limit: int = 100) -> list[int]:
    p = t.postings.c
    rows = conn.execute(
        sa.select(p.entry_seq)
        .group_by(p.entry_seq, p.currency)
        .having(sa.func.sum(sa.case((p.side == "D", p.amount_minor), else_=-p.amount_minor)) != 0)
        .limit(limit)
    )
    return sorted({int(r[0]) for r in rows})


def sequence_gaps(conn: Connection) -> tuple[int, int, int]:
    """(count, min, max) of entry sequence numbers: gapless means count == max and min == 1."""
    e = t.entries.c
    row = conn.execute(sa.select(sa.func.count(), sa.func.min(e.seq), sa.func.max(e.seq))).one()
    return int(row[0]), int(row[1] or 0), int(row[2] or 0)


def all_account_rows(conn: Connection) -> list[Any]:
    return list(conn.execute(sa.select(*_ACCOUNT_STATE_COLUMNS).order_by(t.accounts.c.id)))


def fold_deltas(conn: Connection) -> int:
    """Fold balance deltas into their account rows; returns the number of delta rows folded.

    DELETE … RETURNING folds exactly the rows it removed, so a delta committed concurrently is either
    folded now or left for the next run — never deleted unfolded.
    """
    removed = conn.execute(
        sa.text(
            "DELETE FROM ledger_balance_deltas RETURNING account_id, debits_posted, credits_posted, "
            "debits_pending, credits_pending"
        )
    ).all()
    sums: dict[int, list[int]] = {}
    for row in removed:
        total = sums.setdefault(int(row[0]), [0, 0, 0, 0])
        for i in range(4):
            total[i] += int(row[i + 1])
    a = t.accounts.c
    for account_id in sorted(sums):
        dp, cp, dq, cq = sums[account_id]
        conn.execute(
            sa.update(t.accounts)
            .where(a.id == account_id)
            .values(
                debits_posted=a.debits_posted + dp,
                credits_posted=a.credits_posted + cp,
                debits_pending=a.debits_pending + dq,
                credits_pending=a.credits_pending + cq,
            )
        )
    return len(removed)
