"""The ledger's use cases — the only way money moves in creditstack.

`LedgerService.submit` decides and commits a batch of commands in one transaction (set-based writes);
`LedgerService.execute` sends one command through the group-commit writer, which gathers commands that
arrive concurrently into one transaction (one fsync, one take of journal numbers) and answers each
caller with its own outcome. Both paths: validation first (a refused request stores nothing), then
idempotency (the first outcome of a key is stored and replayed), then the evaluator, then the write.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import business_date as business_dates
from creditstack.core import sequence
from creditstack.core.clock import Clock
from creditstack.core.db import Database
from creditstack.core.errors import CreditstackError, IdempotencyKeyReused, RecordError, ValidationFailed
from creditstack.core.ids import new_id
from creditstack.core.money import Currency
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger import errors
from creditstack.ledger import repository as repo
from creditstack.ledger.domain import (
    AccountState,
    AccountType,
    Command,
    LedgerState,
    Outcome,
    PostEntry,
    PostHold,
    ReserveHold,
    ReverseEntry,
    VoidHold,
    evaluate,
)

SERVICE = "platform"
#: Most entries one batch (and one group commit) may carry.
BATCH_ENTRIES_MAX = 10_000
#: Most pending requests the group-commit writer queues before callers wait.
WRITER_QUEUE_MAX = 10_000
#: Largest page of account history or account list.
PAGE_SIZE_MAX = 1_000
#: How many times a batch that collided with a concurrent duplicate key is decided again.
KEY_COLLISION_RETRIES_MAX = 5
#: Most accounts one `open_accounts` call may open.
ACCOUNTS_BATCH_MAX = 10_000


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a caller gets back for one command: its HTTP-like status and the stored (or fresh) body."""

    key: str
    status_code: int
    body: dict[str, Any]
    replayed: bool

    @property
    def ok(self) -> bool:
        return self.body.get("status") == "committed"

    @property
    def error_code(self) -> str | None:
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None

    @property
    def entry_seq(self) -> int | None:
        entry = self.body.get("entry")
        return int(entry["seq"]) if isinstance(entry, dict) else None

    @property
    def hold_id(self) -> str | None:
        value = self.body.get("hold_id")
        return str(value) if value is not None else None


class BatchRejected(ValidationFailed):
    """A linked batch was refused before it ran: every validation error is listed; nothing was stored."""

    code = "ledger.batch_invalid"

    def __init__(self, record_errors: list[RecordError]) -> None:
        super().__init__(
            f"{len(record_errors)} entries are invalid; nothing was committed",
            errors=[e.to_dict() for e in record_errors],
        )
        self.record_errors = record_errors


@dataclass(frozen=True, slots=True)
class NewAccount:
    """One account for `LedgerService.open_accounts`: the arguments of `open_account`."""

    member: str
    code: str
    currency: str
    type: AccountType | str
    no_overdraft: bool = False
    credit_limit_minor: int = 0
    uses_deltas: bool = False
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    code: str
    member: str
    currency: str
    type: str
    no_overdraft: bool
    credit_limit_minor: int
    uses_deltas: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    balance_minor: int
    pending_out_minor: int
    available_minor: int
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        def money(v: int) -> dict[str, Any]:
            return {"amount_minor": v, "currency": self.currency}

        return {
            "id": self.id,
            "code": self.code,
            "member": self.member,
            "currency": self.currency,
            "type": self.type,
            "normal_side": AccountType(self.type).normal_side.value,
            "no_overdraft": self.no_overdraft,
            "credit_limit": money(self.credit_limit_minor),
            "uses_deltas": self.uses_deltas,
            "totals": {
                "debits_posted": money(self.debits_posted),
                "credits_posted": money(self.credits_posted),
                "debits_pending": money(self.debits_pending),
                "credits_pending": money(self.credits_pending),
            },
            "balance": money(self.balance_minor),
            "pending": money(self.pending_out_minor),
            "available": money(self.available_minor),
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class AuditReport:
    accounts_checked: int
    entries: int
    differences: list[dict[str, Any]]
    currency_imbalances: dict[str, int]
    unbalanced_entries: list[int]
    sequence_ok: bool
    overdrafts: list[int]

    @property
    def clean(self) -> bool:
        return (
            not (self.differences or self.currency_imbalances or self.unbalanced_entries or self.overdrafts)
            and self.sequence_ok
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "accounts_checked": self.accounts_checked,
            "entries": self.entries,
            "differences": self.differences,
            "currency_imbalances": self.currency_imbalances,
            "unbalanced_entries": self.unbalanced_entries,
            "sequence_gapless": self.sequence_ok,
            "overdrafts": self.overdrafts,
        }


class LedgerService:
    def __init__(self, db: Database, clock: Clock, *, batch_entries_max: int = BATCH_ENTRIES_MAX) -> None:
        self.db = db
        self.clock = clock
        self.batch_entries_max = batch_entries_max
        self._writer: _GroupCommitWriter | None = None
        self._writer_lock = threading.Lock()

    # ------------------------------------------------------------ accounts

    def open_account(
        self,
        *,
        member: str,
        code: str,
        currency: str,
        type: AccountType | str,
        no_overdraft: bool = False,
        credit_limit_minor: int = 0,
        uses_deltas: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> AccountView:
        account_type = _checked_account(
            NewAccount(member, code, currency, type, no_overdraft, credit_limit_minor, uses_deltas, metadata)
        )

        def work(conn: Connection) -> int:
            if repo.account_code_exists(conn, code):
                raise errors.AccountCodeTaken(f"account code {code!r} is taken", field="code")
            return repo.insert_account(
                conn,
                code=code,
                member=member,
                currency=currency,
                type=account_type,
                no_overdraft=no_overdraft,
                credit_limit_minor=credit_limit_minor,
                uses_deltas=uses_deltas,
                metadata=metadata or {},
                now=self.clock.now(),
            )

        account_id = self.db.run(work)
        return self.get_account(account_id)

    def open_accounts(self, accounts: Sequence[NewAccount], *, reuse_existing: bool = False) -> list[AccountView]:
        """`open_account` for many accounts in one transaction: `open_accounts_in_transaction` in its own."""
        return self.db.run(
            lambda conn: self.open_accounts_in_transaction(conn, accounts, reuse_existing=reuse_existing)
        )

    def open_accounts_in_transaction(
        self, conn: Connection, accounts: Sequence[NewAccount], *, reuse_existing: bool = False
    ) -> list[AccountView]:
        """Open many accounts inside the caller's transaction, with one insert: one view per account, in order
        (ids ascending in that order, as one `open_account` call after another would give them).

        Every definition is checked as `open_account` checks it, and all of them before anything is written:
        any invalid one (or a code twice in the call) refuses the whole call with `ledger.batch_invalid`
        listing each bad definition. A code already in use is `ledger.account_code_taken` (naming every such
        code) — or, with `reuse_existing`, that account is returned instead (as `ensure_account` does; for
        callers whose codes derive from their own idempotency keys). At most `ACCOUNTS_BATCH_MAX` accounts.
        """
        if len(accounts) > ACCOUNTS_BATCH_MAX:
            raise errors.BatchTooLarge(
                f"one call may open at most {ACCOUNTS_BATCH_MAX} accounts, got {len(accounts)}",
                field="accounts",
                accounts_max=ACCOUNTS_BATCH_MAX,
            )
        types: list[AccountType] = []
        invalid: list[RecordError] = []
        seen: set[str] = set()
        for i, account in enumerate(accounts):
            try:
                types.append(_checked_account(account))
                if account.code in seen:
                    raise errors.InvalidAccountDefinition(
                        f"account code {account.code!r} appears twice in the call", field="code"
                    )
                seen.add(account.code)
            except CreditstackError as exc:
                invalid.append(RecordError.from_error(i, exc))
        if invalid:
            raise BatchRejected(invalid)
        if not accounts:
            return []
        existing = repo.account_rows_by_code(conn, [a.code for a in accounts])
        if existing and not reuse_existing:
            taken = sorted(existing)
            raise errors.AccountCodeTaken(f"account code {taken[0]!r} is taken", field="code", codes=taken)
        now = self.clock.now()
        fresh = [(a, t) for a, t in zip(accounts, types, strict=True) if a.code not in existing]
        ids = repo.insert_accounts(
            conn,
            [
                (a.code, a.member, a.currency, t.value, a.no_overdraft, a.credit_limit_minor, a.uses_deltas,
                 a.metadata or {}, now)
                for a, t in fresh
            ],
        )  # fmt: skip
        views = []
        for account, account_type in zip(accounts, types, strict=True):
            row = existing.get(account.code)
            if row is not None:
                views.append(self._view(conn, row))
                continue
            views.append(
                AccountView(
                    id=ids[account.code],
                    code=account.code,
                    member=account.member,
                    currency=account.currency,
                    type=account_type.value,
                    no_overdraft=account.no_overdraft,
                    credit_limit_minor=account.credit_limit_minor,
                    uses_deltas=account.uses_deltas,
                    debits_posted=0,
                    credits_posted=0,
                    debits_pending=0,
                    credits_pending=0,
                    balance_minor=0,
                    pending_out_minor=0,
                    available_minor=0,
                    metadata=dict(account.metadata or {}),
                )
            )
        return views

    def ensure_account(
        self,
        *,
        member: str,
        code: str,
        currency: str,
        type: AccountType | str,
        uses_deltas: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> AccountView:
        """The account with `code`, opened if missing (a house account other contexts open on first use; two
        processes opening it at once both get the one that won). Call outside a transaction."""
        found = self.find_account(code)
        if found is not None:
            return found
        try:
            return self.open_account(
                member=member, code=code, currency=currency, type=type, uses_deltas=uses_deltas, metadata=metadata
            )
        except errors.AccountCodeTaken:
            found = self.find_account(code)
            if found is None:  # pragma: no cover - taken but not found: only a concurrent delete could do it
                raise
            return found

    def get_account(self, account_id: int) -> AccountView:
        def work(conn: Connection) -> AccountView:
            row = repo.account_row(conn, account_id)
            if row is None:
                raise errors.UnknownAccount(f"no account {account_id}", account_id=account_id)
            return self._view(conn, row)

        return self.db.run(work, readonly=True)

    def find_account(self, code: str) -> AccountView | None:
        def work(conn: Connection) -> AccountView | None:
            row = repo.account_row_by_code(conn, code)
            return None if row is None else self._view(conn, row)

        return self.db.run(work, readonly=True)

    def list_accounts(self, *, member: str | None = None, after_id: int = 0, limit: int = 100) -> list[AccountView]:
        limit = _page(limit)

        def work(conn: Connection) -> list[AccountView]:
            return [
                self._view(conn, r) for r in repo.list_accounts(conn, member=member, after_id=after_id, limit=limit)
            ]

        return self.db.run(work, readonly=True)

    def _view(self, conn: Connection, row: Any) -> AccountView:
        state = AccountState(
            id=int(row.id),
            currency=row.currency,
            type=AccountType(row.type),
            no_overdraft=bool(row.no_overdraft),
            credit_limit_minor=int(row.credit_limit_minor),
            uses_deltas=bool(row.uses_deltas),
            debits_posted=int(row.debits_posted),
            credits_posted=int(row.credits_posted),
            debits_pending=int(row.debits_pending),
            credits_pending=int(row.credits_pending),
        )
        if state.uses_deltas:
            delta = repo.unfolded_deltas(conn, [state.id]).get(state.id)
            if delta:
                state.debits_posted += delta[0]
                state.credits_posted += delta[1]
                state.debits_pending += delta[2]
                state.credits_pending += delta[3]
        # A hold past its expiry stops counting at once, even before a write sweeps it.
        expired_debit, expired_credit = repo.expired_unswept(conn, state.id, self.clock.now())
        state.debits_pending -= expired_debit
        state.credits_pending -= expired_credit
        return AccountView(
            id=state.id,
            code=row.code,
            member=row.member,
            currency=state.currency,
            type=state.type.value,
            no_overdraft=state.no_overdraft,
            credit_limit_minor=state.credit_limit_minor,
            uses_deltas=state.uses_deltas,
            debits_posted=state.debits_posted,
            credits_posted=state.credits_posted,
            debits_pending=state.debits_pending,
            credits_pending=state.credits_pending,
            balance_minor=state.balance_minor,
            pending_out_minor=state.pending_out_minor,
            available_minor=state.available_minor,
            metadata=row.metadata if isinstance(row.metadata, dict) else {},
        )

    # ------------------------------------------------------------ commands

    def submit(self, commands: Sequence[Command], *, linked: bool = False) -> list[CommandResult]:
        """Decide and commit a batch in one transaction; one result per command, in order.

        Unlinked: each command stands alone; an invalid one gets its validation error (stored nowhere).
        Linked: all or nothing; any validation error refuses the batch (`BatchRejected`, nothing stored).
        """
        return self._run_batch(commands, linked, self._commit_groups)

    def post_in_transaction(
        self, conn: Connection, commands: Sequence[Command], *, linked: bool = False, caller_keyed: bool = False
    ) -> list[CommandResult]:
        """Decide and write `commands` inside the caller's transaction (same database), uncommitted.

        For contexts whose own changes must commit atomically with the ledger's (a payment row, a limit
        counter, an outbox event): the caller takes its own row locks first, calls this, writes its rows
        and commits. The journal numbers are taken here, so call it as the caller's last ledger step and
        commit promptly. Business rejections come back as results, never as exceptions.

        `caller_keyed`: the caller's own records, written in this transaction, already make each command
        happen once — its key names a step of an object of the caller's (`payments:{payment id}:settle`)
        taken under that object's lock, and a repeat of the request is answered from the caller's own
        idempotency record. The ledger then neither looks the keys up nor stores an outcome under them
        (the entry still carries its key); distinct keys within the call are the caller's promise
        (`ValueError` if broken). Results are the same as without it.
        """
        return self._run_batch(
            commands, linked, lambda groups: self._decide_and_write(conn, groups, caller_keyed=caller_keyed)
        )

    def _run_batch(
        self,
        commands: Sequence[Command],
        linked: bool,
        commit: Callable[[Sequence[Sequence[Command]]], list[CommandResult]],
    ) -> list[CommandResult]:
        if not commands:
            raise errors.EmptyBatch("a batch needs at least one entry", field="entries")
        if len(commands) > self.batch_entries_max:
            raise errors.BatchTooLarge(
                f"a batch may carry at most {self.batch_entries_max} entries, got {len(commands)}",
                field="entries",
                entries_max=self.batch_entries_max,
            )
        invalid: dict[int, CreditstackError] = {}
        for i, command in enumerate(commands):
            try:
                command.validate()
            except CreditstackError as exc:
                invalid[i] = exc
        if linked and invalid:
            raise BatchRejected([RecordError.from_error(i, e) for i, e in sorted(invalid.items())])
        valid = [c for i, c in enumerate(commands) if i not in invalid]
        groups = [valid] if linked else [[c] for c in valid]
        decided = iter(commit(groups)) if valid else iter(())
        results = []
        for i, command in enumerate(commands):
            if i in invalid:
                refused = invalid[i]
                results.append(
                    CommandResult(
                        command.key, refused.http_status, {"status": "invalid", "error": refused.to_dict()}, False
                    )
                )
            else:
                results.append(next(decided))
        return results

    def execute(self, command: Command) -> CommandResult:
        """One command through the group-commit writer (validation errors raise)."""
        return self.execute_future(command).result()

    def execute_future(self, command: Command) -> Future[CommandResult]:
        """Like `execute`, without waiting: for async callers (`asyncio.wrap_future`)."""
        command.validate()
        batch_future = self._writer_instance().submit([[command]])
        single: Future[CommandResult] = Future()

        def done(f: Future[list[CommandResult]]) -> None:
            error = f.exception()
            if error is not None:
                single.set_exception(error)
            else:
                single.set_result(f.result()[0])

        batch_future.add_done_callback(done)
        return single

    def execute_linked(self, commands: Sequence[Command]) -> list[CommandResult]:
        if not commands:
            raise errors.EmptyBatch("a batch needs at least one entry", field="entries")
        if len(commands) > self.batch_entries_max:
            raise errors.BatchTooLarge(
                f"a batch may carry at most {self.batch_entries_max} entries",
                field="entries",
                entries_max=self.batch_entries_max,
            )
        invalid = []
        for i, command in enumerate(commands):
            try:
                command.validate()
            except CreditstackError as exc:
                invalid.append(RecordError.from_error(i, exc))
        if invalid:
            raise BatchRejected(invalid)
        return self._writer_instance().submit([list(commands)]).result()

    def _writer_instance(self) -> _GroupCommitWriter:
        with self._writer_lock:
            if self._writer is None:
                self._writer = _GroupCommitWriter(self)
            return self._writer

    def close(self) -> None:
        with self._writer_lock:
            if self._writer is not None:
                self._writer.stop()
                self._writer = None

    def _commit_groups(self, groups: Sequence[Sequence[Command]]) -> list[CommandResult]:
        """Decide and commit `groups` (each a linked group; singletons are plain) in one transaction."""
        attempt = 0
        while True:
            try:
                return self.db.run(lambda conn: self._decide_and_write(conn, groups))
            except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation, sqlite3.IntegrityError) as exc:
                # A concurrent request with the same idempotency key committed first: decide again, and
                # the replay path answers with its outcome.
                attempt += 1
                if attempt > KEY_COLLISION_RETRIES_MAX or "idempotency" not in str(exc).lower():
                    raise

    def _decide_and_write(
        self, conn: Connection, groups: Sequence[Sequence[Command]], *, caller_keyed: bool = False
    ) -> list[CommandResult]:
        now = self.clock.now()
        today = business_dates.current(conn, PLATFORM_CORE, SERVICE)
        flat = [c for g in groups for c in g]
        stored = {} if caller_keyed else repo.lookup_keys(conn, [(c.member, c.key) for c in flat])
        outcomes: list[list[Outcome]] = []
        pending: list[list[Outcome]] = []
        seen: dict[tuple[str, str], Outcome] = {}
        duplicates: list[tuple[Outcome, Outcome]] = []
        key_errors: dict[int, CreditstackError] = {}
        for group in groups:
            group_outcomes = []
            fresh = []
            for command in group:
                outcome = Outcome(command, "" if caller_keyed else command.request_hash())
                pair = (command.member, command.key)
                if caller_keyed and pair in seen:
                    raise ValueError(f"caller-keyed commands must carry distinct keys: {command.key!r} repeats")
                prior = stored.get(pair)
                if prior is not None:
                    if prior.request_hash != outcome.request_hash:
                        key_errors[id(outcome)] = IdempotencyKeyReused(
                            f"key {command.key!r} was used before with a different request",
                            field="idempotency_key",
                        )
                    outcome.replayed = True
                    outcome.stored = prior.outcome
                    outcome.status_code = prior.status_code
                elif pair in seen:
                    first = seen[pair]
                    if first.request_hash != outcome.request_hash:
                        key_errors[id(outcome)] = IdempotencyKeyReused(
                            f"key {command.key!r} was used before with a different request",
                            field="idempotency_key",
                        )
                    outcome.replayed = True
                    duplicates.append((outcome, first))
                else:
                    seen[pair] = outcome
                    fresh.append(outcome)
                group_outcomes.append(outcome)
            outcomes.append(group_outcomes)
            if len(group) > 1 and any(id(o) in key_errors for o in group_outcomes):
                # A linked group with a reused key is refused whole, before it runs: nothing is stored.
                for outcome in fresh:
                    outcome.error = errors.LinkedEntryFailed(
                        f"linked entry {outcome.command.key!r} not committed: another key of the batch was reused"
                    )
                    outcome.status_code = outcome.error.http_status
            elif fresh:
                pending.append(fresh)
        if pending:
            state = self._load_state(conn, [o.command for g in pending for o in g], now)
            initial = {i: a.copy_totals() for i, a in state.accounts.items()}
            decisions = evaluate(state, pending)
            repo.write_batch(
                conn,
                repo.BatchWrite(
                    decisions, initial, state.accounts, today, now, self.clock.now, store_outcomes=not caller_keyed
                ),
            )
        bd_text = today.isoformat()
        for outcome, first in duplicates:
            outcome.stored = first.to_json(bd_text)
            outcome.status_code = first.status_code
        results = []
        for group_outcomes in outcomes:
            for outcome in group_outcomes:
                key_error = key_errors.get(id(outcome))
                if key_error is not None:
                    results.append(
                        CommandResult(
                            outcome.command.key,
                            key_error.http_status,
                            {"status": "rejected", "error": key_error.to_dict()},
                            True,
                        )
                    )
                else:
                    results.append(
                        CommandResult(
                            outcome.command.key,
                            outcome.status_code,
                            outcome.to_json(bd_text),
                            outcome.replayed,
                        )
                    )
        return results

    def _load_state(self, conn: Connection, commands: Sequence[Command], now: datetime) -> LedgerState:
        hold_ids = [c.hold_id for c in commands if isinstance(c, PostHold | VoidHold)]
        holds = repo.load_holds_for_update(conn, hold_ids, now)
        reversals = repo.load_reversible(conn, [c.entry_seq for c in commands if isinstance(c, ReverseEntry)])
        account_ids: set[int] = set()
        for command in commands:
            if isinstance(command, PostEntry):
                account_ids.update(p.account_id for p in command.postings)
            elif isinstance(command, ReserveHold):
                account_ids.update((command.debit_account_id, command.credit_account_id))
        for hold in holds.values():
            account_ids.update((hold.debit_account_id, hold.credit_account_id))
        for entry in reversals.values():
            account_ids.update(p.account_id for p in entry.postings)
        accounts = repo.load_accounts_for_update(conn, account_ids)
        new_hold_ids = [new_id("hold") for c in commands if isinstance(c, ReserveHold)]
        return LedgerState(accounts, holds, reversals, now, new_hold_ids)

    # ------------------------------------------------------------ reads

    def get_entry(self, seq: int) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            row = repo.entry_row(conn, seq)
            if row is None:
                raise errors.EntryNotFound(f"no entry {seq}", entry_seq=seq)
            return {
                "seq": int(row.seq),
                "kind": row.kind,
                "business_date": row.business_date.isoformat(),
                "committed_at": row.committed_at.isoformat(),
                "description": row.description,
                "idempotency_key": row.idempotency_key,
                "member": row.member,
                "reverses_seq": row.reverses_seq,
                "hold_id": row.hold_id,
                "metadata": row.metadata if isinstance(row.metadata, dict) else {},
                "postings": [
                    {
                        "account_id": int(p.account_id),
                        "side": "debit" if p.side == "D" else "credit",
                        "amount": {"amount_minor": int(p.amount_minor), "currency": p.currency},
                    }
                    for p in repo.entry_postings(conn, seq)
                ],
            }

        return self.db.run(work, readonly=True)

    def get_hold(self, hold_id: str) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            row = repo.hold_row(conn, hold_id)
            if row is None:
                raise errors.HoldNotFound(f"no hold {hold_id!r}", hold_id=hold_id)
            status = row.status
            expires_at = repo._aware(row.expires_at)
            if status == "pending" and expires_at is not None and expires_at <= self.clock.now():
                status = "expired"
            return {
                "id": row.id,
                "status": status,
                "debit_account_id": int(row.debit_account_id),
                "credit_account_id": int(row.credit_account_id),
                "amount": {"amount_minor": int(row.amount_minor), "currency": row.currency},
                "posted_amount": {"amount_minor": int(row.posted_amount_minor), "currency": row.currency},
                "expires_at": expires_at.isoformat() if expires_at else None,
                "post_entry_seq": row.post_entry_seq,
                "business_date": row.business_date.isoformat(),
                "description": row.description,
            }

        return self.db.run(work, readonly=True)

    def history(self, account_id: int, *, after_seq: int = 0, limit: int = 100) -> dict[str, Any]:
        limit = _page(limit)

        def work(conn: Connection) -> dict[str, Any]:
            if repo.account_row(conn, account_id) is None:
                raise errors.UnknownAccount(f"no account {account_id}", account_id=account_id)
            rows = repo.account_history(conn, account_id, after_seq=after_seq, limit=limit)
            items = [
                {
                    "entry_seq": int(r.entry_seq),
                    "leg": int(r.leg),
                    "side": "debit" if r.side == "D" else "credit",
                    "amount": {"amount_minor": int(r.amount_minor), "currency": r.currency},
                    "kind": r.kind,
                    "business_date": r.business_date.isoformat(),
                    "description": r.description,
                    "idempotency_key": r.idempotency_key,
                }
                for r in rows
            ]
            next_after = int(rows[-1].entry_seq) if len(rows) == limit else None
            return {"items": items, "next_after_seq": next_after}

        return self.db.run(work, readonly=True)

    def balance_as_of(
        self, account_id: int, *, business_date: date | None = None, seq: int | None = None
    ) -> dict[str, Any]:
        """The posted balance at the end of a business date, or just after a sequence number."""

        def work(conn: Connection) -> dict[str, Any]:
            row = repo.account_row(conn, account_id)
            if row is None:
                raise errors.UnknownAccount(f"no account {account_id}", account_id=account_id)
            debits, credits = repo.posting_totals(conn, account_id, as_of_seq=seq, as_of_date=business_date)
            account_type = AccountType(row.type)
            balance = debits - credits if account_type.normal_side.value == "debit" else credits - debits
            return {
                "account_id": account_id,
                "as_of": {"business_date": business_date.isoformat() if business_date else None, "seq": seq},
                "debits_posted": {"amount_minor": debits, "currency": row.currency},
                "credits_posted": {"amount_minor": credits, "currency": row.currency},
                "balance": {"amount_minor": balance, "currency": row.currency},
            }

        return self.db.run(work, readonly=True)

    def journal_position(self) -> int:
        return self.db.run(lambda conn: sequence.current(conn, PLATFORM_CORE, "journal"), readonly=True)

    def business_date(self) -> date:
        return self.db.run(lambda conn: business_dates.current(conn, PLATFORM_CORE, SERVICE), readonly=True)

    # ------------------------------------------------------------ audit and compaction

    def audit(self) -> AuditReport:
        """Re-derive every balance from postings and holds and report every difference."""

        def work(conn: Connection) -> AuditReport:
            posted = repo.all_posting_totals(conn)
            pending = repo.pending_hold_totals(conn)
            deltas = repo.unfolded_deltas(conn)
            differences = []
            overdrafts = []
            rows = repo.all_account_rows(conn)
            for row in rows:
                account_id = int(row.id)
                delta = deltas.get(account_id, (0, 0, 0, 0))
                stored = (
                    int(row.debits_posted) + delta[0],
                    int(row.credits_posted) + delta[1],
                    int(row.debits_pending) + delta[2],
                    int(row.credits_pending) + delta[3],
                )
                derived_posted = posted.get(account_id, (0, 0))
                derived = (*derived_posted, *pending.get(account_id, (0, 0)))
                if stored != derived:
                    differences.append({"account_id": account_id, "stored": list(stored), "derived": list(derived)})
                state = AccountState(
                    account_id,
                    row.currency,
                    AccountType(row.type),
                    bool(row.no_overdraft),
                    int(row.credit_limit_minor),
                    bool(row.uses_deltas),
                    *stored,
                )
                if state.no_overdraft and state.available_minor < -state.credit_limit_minor:
                    overdrafts.append(account_id)
            count, low, high = repo.sequence_gaps(conn)
            journal = sequence.current(conn, PLATFORM_CORE, "journal")
            sequence_ok = count == high == journal and (count == 0 or low == 1)
            return AuditReport(
                len(rows),
                count,
                differences,
                repo.currency_imbalances(conn),
                repo.unbalanced_entries(conn),
                sequence_ok,
                overdrafts,
            )

        return self.db.run(work, readonly=True)

    def compact(self) -> int:
        """Fold hot accounts' balance deltas into their rows; returns how many delta rows were folded."""
        return self.db.run(repo.fold_deltas)


def _checked_account(account: NewAccount) -> AccountType:
    """The account's type if `open_account` would accept the definition, else `ledger.invalid_account` (or an
    unknown currency) naming the field."""
    try:
        account_type = AccountType(account.type)
    except ValueError as exc:
        raise errors.InvalidAccountDefinition(f"unknown account type {account.type!r}", field="type") from exc
    Currency.of(account.currency)
    if not account.code or len(account.code) > 100:
        raise errors.InvalidAccountDefinition("code must be 1..100 characters", field="code")
    if type_is_bool(account.credit_limit_minor) or account.credit_limit_minor < 0:
        raise errors.InvalidAccountDefinition("credit limit must be a non-negative integer", field="credit_limit_minor")
    if account.uses_deltas and account.no_overdraft:
        raise errors.InvalidAccountDefinition(
            "an account that takes balance deltas cannot have an overdraft check", field="uses_deltas"
        )
    return account_type


def type_is_bool(value: object) -> bool:
    return isinstance(value, bool) or type(value) is not int


def _page(limit: int) -> int:
    if limit < 1 or limit > PAGE_SIZE_MAX:
        raise ValidationFailed(f"limit must be 1..{PAGE_SIZE_MAX}", field="limit")
    return limit


class _GroupCommitWriter:
    """One thread that gathers concurrently submitted groups into one transaction per round."""

    def __init__(self, service: LedgerService) -> None:
        self._service = service
        self._queue: queue.Queue[tuple[list[list[Command]], Future[list[CommandResult]]] | None] = queue.Queue(
            WRITER_QUEUE_MAX
        )
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def submit(self, groups: list[list[Command]]) -> Future[list[CommandResult]]:
        future: Future[list[CommandResult]] = Future()
        self._queue.put((groups, future))
        return future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            size = sum(len(g) for g in item[0])
            stop = False
            while size < self._service.batch_entries_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                size += sum(len(g) for g in nxt[0])
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[list[list[Command]], Future[list[CommandResult]]]]) -> None:
        groups = [g for groups, _ in batch for g in groups]
        try:
            results = self._service._commit_groups(groups)
        except BaseException as exc:
            if len(batch) > 1:
                # Isolate the failure: commit each caller's request on its own.
                for item in batch:
                    self._commit([item])
                return
            batch[0][1].set_exception(exc)
            return
        position = 0
        for groups_of_caller, future in batch:
            count = sum(len(g) for g in groups_of_caller)
            future.set_result(results[position : position + count])
            position += count
