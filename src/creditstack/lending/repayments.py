"""Repayments: how one repayment is allocated (pure), and many repayments decided in one transaction, each
answered exactly as `LendingService.repay` would have answered it had the requests been made one at a time,
in order. `LendingService.repay_batch` is the entry point.

The single path costs about a dozen statements a repayment; the batch path a handful a batch:

1. Prepare: each request's validation (amount, source, key — the single path's order) and its idempotency
   hash; a refusal answers its error at once and stores nothing. (`_prepare_source` too, as `repay` calls
   it: nothing to do once the products' and the house's ledger accounts are open.)
2. One transaction (the caller's `Database.batch()` when one is open):
   - reads: every account the batch names (one IN query, locked on PostgreSQL in id order), every
     instalment of those accounts (one), every stored key (one), the business date;
   - decisions in Python, request by request, with `allocate_repayment` — the allocation the single path
     uses: a stored key → replay (or `idempotency.key_reused`); an unknown or inactive account → its error;
     else the allocation and one ledger entry. A request the bulk path does not decide itself runs through
     the single path's own unit of work at its place, in a savepoint: an account end of day has not reached
     (accrual or billing still to do — `_catch_up`'s work), a prepayment that re-amortises a loan's unbilled
     rows, and every later request on an account that went that way. A request whose key or account an
     undecided earlier request of the segment holds first writes that segment (so it sees the outcome);
     a key used earlier in the batch replays what was stored (read back as JSON, as a replay reads it);
   - a segment's ledger entries in ONE non-linked `LedgerService.post_in_transaction` call, in a savepoint.
     The ledger evaluates them in order against running balances, so a wallet short of money is its call
     (`ledger.insufficient_funds` → `lending.insufficient_funds`, as `repay` turns it). A refused entry
     changes no balance, but the ledger stores its rejection under the entry's key, which the single path
     rolls back with everything else; so the savepoint is rolled back and the segment posted again without
     the refused entries (the others come out the same: a refusal moves nothing);
   - writes: instalment updates, account updates (executemany, statements built once), transactions,
     outbox events and stored outcomes (through the driver).
   A request through the single path first writes everything decided before it, so journal entries,
   outbox events and transactions keep the order of the requests.

A concurrent request that stores one of the batch's keys first makes the batch's insert collide; the
transaction is decided again (bounded) and the key then answers as a replay.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import events as outbox
from creditstack.core import idempotency
from creditstack.core.collector import collector_paused
from creditstack.core.errors import CreditstackError, IdempotencyKeyReused, LimitExceeded
from creditstack.core.events import DomainEvent
from creditstack.core.idempotency import StoredOutcome
from creditstack.core.ids import new_id
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.domain import PostEntry
from creditstack.lending import errors
from creditstack.lending import tables as t
from creditstack.lending.products import PRINCIPAL_MINOR_MAX, ExcessHandling, Product

if TYPE_CHECKING:
    from creditstack.lending.service import LendingService

#: (status code, body, replayed, error): what `LendingService.repay_batch` turns into a `LendingResult`.
Answer = tuple[int, dict[str, Any], bool, CreditstackError | None]

#: Most requests one `LendingService.repay_batch` call may carry (the ledger's batch bound is the other).
REPAY_BATCH_MAX = 5_000
#: How many times a batch is decided again after colliding with a concurrent request's key.
KEY_COLLISION_RETRIES_MAX = 5
#: Most account ids one read carries (SQLite allows 32,766 parameters).
READ_CHUNK_MAX = 5_000
#: The idempotency operation of a repayment (the single path's).
OPERATION = "lending.repay"
SOURCES = ("wallet", "external")


def positive_amount(amount_minor: object, field: str = "amount_minor") -> int:
    if type(amount_minor) is not int or amount_minor <= 0 or amount_minor > PRINCIPAL_MINOR_MAX:
        raise errors.InvalidRepayment(
            f"{field} must be a positive whole number of minor units up to {PRINCIPAL_MINOR_MAX}", field=field
        )
    return amount_minor


@dataclass(frozen=True, slots=True)
class Repayment:
    """One repayment of a batch: the arguments of `LendingService.repay`."""

    key: str
    account_id: str  # the account's ref
    amount_minor: int
    source: str = "wallet"

    def request(self) -> dict[str, Any]:
        """The request as the single path hashes it."""
        return {"account_id": self.account_id, "amount_minor": self.amount_minor, "source": self.source}


# ---------------------------------------------------------------- the allocation (pure)


@dataclass(slots=True)
class Allocation:
    """What one repayment does to an account: decided from the account row and its open instalments alone.

    `values` are the account's new column values (without a loan's re-amortisation after a prepayment, which
    `reschedules` flags: the caller deletes the unbilled rows — `unbilled_left` 0 — or re-amortises them);
    `instalments` the `_PAY_INSTALMENT` parameters of each row paid, oldest first."""

    paid: dict[str, int]
    credit_applied: int
    closes: bool
    values: dict[str, Any]
    instalments: list[dict[str, Any]]
    prepaid_principal: int
    reschedules: bool
    unbilled_left: int


def allocate_repayment(row: Any, open_rows: Sequence[Any], product: Product, amount: int, bd: date) -> Allocation:
    """Allocate `amount` to the account `row` on business date `bd`: oldest open (billed, unsettled) row first,
    within it in the product's order (penalty interest owed with the oldest row); then, per the product, a
    prepayment of unbilled interest and principal or a credit held for the next due date (a payment that
    settles a loan takes the credit held with it). `open_rows` ordered by due date, then number."""
    remaining = amount
    paid = {"principal": 0, "interest": 0, "penalty": 0, "fees": 0, "credit": 0}
    penalty_owed = row.penalty_minor
    row_updates: list[tuple[int, dict[str, int]]] = []
    for index, inst in enumerate(open_rows):
        owed = {
            "fees": inst.fee_due - inst.fee_paid,
            "penalty": penalty_owed if index == 0 else 0,  # penalty interest is owed with the oldest row
            "interest": inst.interest_due - inst.interest_paid,
            "principal": inst.principal_due - inst.principal_paid,
        }
        taken = {k: 0 for k in owed}
        for component in product.allocation:
            take = min(remaining, owed[component])
            taken[component] = take
            remaining -= take
        penalty_owed -= taken["penalty"]
        for k, v in taken.items():
            paid[k] += v
        row_updates.append((inst.number, taken))
        if remaining == 0:
            break
    if remaining and penalty_owed:  # no billed row left but penalty owed
        take = min(remaining, penalty_owed)
        paid["penalty"] += take
        remaining -= take
    interest_unbilled = row.interest_unbilled_minor
    # a line's principal converted into instalments is repaid with them, not by an early payment
    principal_unbilled = row.principal_minor - row.principal_billed_minor - row.converted_unbilled_minor
    prepaid_principal = 0
    credit_applied = 0
    closes = False
    if remaining:
        payoff_rest = interest_unbilled + principal_unbilled
        prepay = row.kind == "line" or product.excess is ExcessHandling.PREPAY
        if not prepay and remaining + row.credit_minor >= payoff_rest:
            # the payment settles the loan: the credit held for the next due date goes with it (the payoff
            # quote deducts it), else the loan would stay open with its principal and the credit both
            credit_applied = row.credit_minor
            remaining += credit_applied
            prepay = True
        if prepay:
            to_interest = min(remaining, interest_unbilled)
            remaining -= to_interest
            paid["interest"] += to_interest
            interest_unbilled -= to_interest
            prepaid_principal = min(remaining, principal_unbilled)
            remaining -= prepaid_principal
            paid["principal"] += prepaid_principal
        if remaining:
            paid["credit"] = remaining
            remaining = 0
    # rows; and, as they now stand, the oldest past-due date and the overdue principal (`_refresh_past_due`
    # over the billed rows left open, computed here from the rows given instead of read again)
    tolerance = product.dpd_tolerance_minor
    paid_rows = dict(row_updates)
    past: list[date] = []
    overdue = 0
    instalments: list[dict[str, Any]] = []
    for inst in open_rows:
        paid_now = paid_rows.get(inst.number)
        fee_paid, interest_paid, principal_paid = inst.fee_paid, inst.interest_paid, inst.principal_paid
        if paid_now is not None:
            fee_paid += paid_now["fees"]
            interest_paid += paid_now["interest"]
            principal_paid += paid_now["principal"]
            settled = (
                fee_paid == inst.fee_due and interest_paid == inst.interest_due and principal_paid == inst.principal_due
            )
            instalments.append(
                {
                    "account": row.id,
                    "row": inst.number,
                    "fee": fee_paid,
                    "penalty": inst.penalty_paid + paid_now["penalty"],
                    "interest": interest_paid,
                    "principal": principal_paid,
                    "settled": bd if settled else None,
                }
            )
            if settled:
                continue
        if inst.due_date < bd:
            owed_row = inst.principal_due + inst.interest_due + inst.fee_due
            unpaid = owed_row - principal_paid - interest_paid - fee_paid
            if unpaid > tolerance:
                past.append(inst.due_date)
            overdue += inst.principal_due - principal_paid
    billed_principal_paid = sum(taken["principal"] for _, taken in row_updates)
    billed_interest_paid = sum(taken["interest"] for _, taken in row_updates)
    billed_fees_paid = sum(taken["fees"] for _, taken in row_updates)
    principal = row.principal_minor - billed_principal_paid - prepaid_principal
    values: dict[str, Any] = {
        "principal_minor": principal,
        "principal_billed_minor": row.principal_billed_minor - billed_principal_paid,
        "interest_billed_minor": row.interest_billed_minor - billed_interest_paid,
        "interest_unbilled_minor": interest_unbilled,
        "fees_minor": row.fees_minor - billed_fees_paid,
        "penalty_minor": row.penalty_minor - paid["penalty"],
        "credit_minor": row.credit_minor - credit_applied + paid["credit"],
        "last_paid_on": bd,
        "version": row.version + 1,
    }
    if row.kind == "line" and row.stmt_due_date is not None and bd <= row.stmt_due_date:
        values["stmt_paid_minor"] = row.stmt_paid_minor + amount
    reschedules = row.kind == "loan" and prepaid_principal > 0
    unbilled_left = principal - values["principal_billed_minor"]
    owed_after = (
        principal
        + values["interest_billed_minor"]
        + values["interest_unbilled_minor"]
        + values["fees_minor"]
        + values["penalty_minor"]
    )
    if row.kind == "loan" and owed_after == 0:
        closes = True
        values.update(status="closed", closed_on=bd, past_due_since=None, overdue_principal_minor=0)
    else:
        values.update(past_due_since=min(past) if past else None, overdue_principal_minor=overdue)
    return Allocation(paid, credit_applied, closes, values, instalments, prepaid_principal, reschedules, unbilled_left)


# ---------------------------------------------------------------- many repayments in one transaction

# What a request turned out to be.
_ERROR = "error"  # refused; stores nothing
_REPLAY = "replay"  # its key was stored before (or earlier in this batch)
_BULK = "bulk"  # decided here
_SINGLE = "single"  # through the single path's unit of work, at its place

# The columns a repayment may change on an account (one UPDATE, built once, for every repayment).
_ACCOUNT_COLUMNS = (
    "principal_minor",
    "principal_billed_minor",
    "interest_billed_minor",
    "interest_unbilled_minor",
    "fees_minor",
    "penalty_minor",
    "credit_minor",
    "last_paid_on",
    "version",
    "stmt_paid_minor",
    "status",
    "closed_on",
    "past_due_since",
    "overdue_principal_minor",
)
_a, _i = t.accounts.c, t.instalments.c
_PAY_INSTALMENT = (
    sa.update(t.instalments)
    .where(_i.account_id == sa.bindparam("account"), _i.number == sa.bindparam("row"))
    .values(
        fee_paid=sa.bindparam("fee"),
        penalty_paid=sa.bindparam("penalty"),
        interest_paid=sa.bindparam("interest"),
        principal_paid=sa.bindparam("principal"),
        settled_on=sa.bindparam("settled"),
    )
)
_UPDATE_ACCOUNT = (
    sa.update(t.accounts)
    .where(_a.id == sa.bindparam("b_id"))
    .values({name: sa.bindparam(f"b_{name}") for name in _ACCOUNT_COLUMNS})
)
_DELETE_UNBILLED = sa.delete(t.instalments).where(_i.account_id == sa.bindparam("account"), _i.billed_on.is_(None))
_ACCOUNTS_BY_REFS = sa.select(t.accounts).where(_a.ref.in_(sa.bindparam("refs", expanding=True))).order_by(_a.id)
_ACCOUNTS_BY_REFS_LOCKED = _ACCOUNTS_BY_REFS.with_for_update()
_INSTALMENTS_OF = (
    sa.select(t.instalments)
    .where(_i.account_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(_i.account_id, _i.number)
)
_TRANSACTION_COLUMNS = (
    "account_id",
    "kind",
    "business_date",
    "reference",
    "ledger_key",
    "details",
    "created_at",
    "amount_minor",
    "principal_minor",
    "interest_minor",
    "penalty_minor",
    "fees_minor",
    "credit_minor",
)


@dataclass(slots=True)
class _Decision:
    index: int
    request: Repayment
    request_hash: str = ""
    kind: str = _ERROR
    error: CreditstackError | None = None
    stored: StoredOutcome | None = None  # _REPLAY
    account: Any = None  # _BULK: the account's state, and what this repayment does to it
    allocation: Allocation | None = None
    entry: PostEntry | None = None
    answer: tuple[int, dict[str, Any]] | None = None  # fresh outcomes: what is stored under the key


@dataclass(slots=True)
class _Account:
    """An account as the batch sees it: its row (updated as repayments are written) and instalments."""

    row: SimpleNamespace
    instalments: list[SimpleNamespace]
    single: bool = False  # went through the single path in this batch: its state here is stale

    def open_rows(self) -> list[SimpleNamespace]:
        rows = [r for r in self.instalments if r.billed_on is not None and r.settled_on is None]
        rows.sort(key=lambda r: (r.due_date, r.number))
        return rows


@dataclass(slots=True)
class _Segment:
    decisions: list[_Decision] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    accounts: set[str] = field(default_factory=set)


class RepaymentBatch:
    """One call of `LendingService.repay_batch`. Uses the service's own allocation, entry, event and answer
    helpers, so that both paths decide from one definition."""

    def __init__(self, service: LendingService, requests: Sequence[Repayment], member: str, bound: int) -> None:
        self.service = service
        self.member = member
        self.requests = list(requests)
        self.bound = bound

    def run(self) -> list[Answer]:
        bound = self.bound
        if len(self.requests) > bound:
            raise LimitExceeded(
                f"a repayments batch may carry at most {bound} requests, got {len(self.requests)}",
                field="requests",
                requests_max=bound,
            )
        if not self.requests:
            return []
        with collector_paused():  # some dozens of survivors per repayment, no cycles
            decisions = self._prepare()
            attempt = 0
            while True:
                try:
                    return self.service.db.run(lambda conn: self._decide_and_write(conn, decisions))
                except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation, sqlite3.IntegrityError) as exc:
                    # the bulk writes go through the driver, whose errors arrive unwrapped
                    attempt += 1
                    if attempt > KEY_COLLISION_RETRIES_MAX or "idempotency" not in str(exc).lower():
                        raise

    def _prepare(self) -> list[_Decision]:
        """Step 1: what the single path checks before its transaction, in its order."""
        prepared = []
        for index, request in enumerate(self.requests):
            d = _Decision(index, request)
            prepared.append(d)
            try:
                if not isinstance(request, Repayment):
                    raise errors.InvalidRepayment(f"unknown repayment request {type(request).__name__}")
                positive_amount(request.amount_minor)
                if request.source not in SOURCES:
                    raise errors.InvalidRepayment("source must be 'wallet' or 'external'", field="source")
                self.service._prepare_source(request.account_id)
                idempotency.check_key(request.key)
            except CreditstackError as exc:
                d.error = exc
                continue
            d.request_hash = idempotency.request_hash(OPERATION, request.request())
            d.kind = _BULK  # for now: decided in step 2
        return prepared

    def _decide_and_write(self, conn: Connection, prepared: list[_Decision]) -> list[Answer]:
        """Step 2, in one transaction."""
        service = self.service
        decisions = [
            _Decision(d.index, d.request, d.request_hash, d.kind, d.error) for d in prepared
        ]  # this attempt's copies
        live = [d for d in decisions if d.kind != _ERROR]
        bd = service._business_date(conn)
        accounts = self._read_accounts(conn, {d.request.account_id for d in live})
        stored = idempotency.lookup_many(conn, PLATFORM_CORE, self.member, {d.request.key for d in live})
        run = _Run(self, conn, bd, accounts)
        segment = _Segment()
        for d in live:
            request = d.request
            if request.key in segment.keys or request.account_id in segment.accounts:
                run.flush(segment)  # an undecided earlier request holds the key or the account
                segment = _Segment()
            record = stored.get(request.key)
            if record is None and request.key in run.stored:  # used earlier in this batch
                record = _as_read_back(run.stored[request.key])
            if record is not None:
                try:
                    d.stored = record.replay(d.request_hash, request.key)
                    d.kind = _REPLAY
                except IdempotencyKeyReused as exc:
                    d.kind, d.error = _ERROR, exc
                continue
            account = accounts.get(request.account_id)
            if account is None:
                d.kind = _ERROR
                d.error = errors.AccountNotFound(f"no loan or line {request.account_id}", field="account_id")
                continue
            if account.single:
                d.kind = _SINGLE
            elif account.row.status != "active":
                d.kind = _ERROR
                d.error = errors.AccountNotActive(
                    f"{request.account_id} is {account.row.status}; it takes no repayment"
                )
                continue
            elif not run.up_to_date(account):
                d.kind = _SINGLE
            else:
                run.decide(d, account)
            if d.kind == _SINGLE:
                run.flush(segment)
                segment = _Segment()
                account.single = True
                run.single(d)
                continue
            segment.decisions.append(d)
            segment.keys.add(request.key)
            segment.accounts.add(request.account_id)
        run.flush(segment)
        return [self._answer(d) for d in decisions]

    def _read_accounts(self, conn: Connection, refs: set[str]) -> dict[str, _Account]:
        query = _ACCOUNTS_BY_REFS_LOCKED if self.service.db.is_postgres else _ACCOUNTS_BY_REFS
        wanted = sorted(refs)
        found: dict[str, _Account] = {}
        by_id: dict[int, _Account] = {}
        for start in range(0, len(wanted), READ_CHUNK_MAX):
            result = conn.execute(query, {"refs": wanted[start : start + READ_CHUNK_MAX]})
            names = list(result.keys())  # once per read: a row's own mapping costs more than its values
            for values in result:
                row = SimpleNamespace(**dict(zip(names, values, strict=True)))
                account = _Account(row, [])
                found[row.ref] = account
                by_id[row.id] = account
        ids = sorted(by_id)
        for start in range(0, len(ids), READ_CHUNK_MAX):
            result = conn.execute(_INSTALMENTS_OF, {"ids": ids[start : start + READ_CHUNK_MAX]})
            names = list(result.keys())
            for values in result:
                inst = SimpleNamespace(**dict(zip(names, values, strict=True)))
                by_id[inst.account_id].instalments.append(inst)
        return found

    @staticmethod
    def _answer(d: _Decision) -> Answer:
        if d.kind == _ERROR:
            assert d.error is not None
            return d.error.http_status, {"error": d.error.to_dict()}, False, d.error
        if d.kind == _REPLAY:
            assert d.stored is not None
            return d.stored.status_code, d.stored.outcome, True, None
        assert d.answer is not None
        return d.answer[0], d.answer[1], False, None


class _Run:
    """Step 2's running state: the accounts, the outcomes stored in this batch, and the segment writer."""

    def __init__(self, batch: RepaymentBatch, conn: Connection, bd: date, accounts: dict[str, _Account]) -> None:
        self.batch = batch
        self.service = batch.service
        self.conn = conn
        self.bd = bd
        self.accounts = accounts
        self.stored: dict[str, StoredOutcome] = {}  # keys stored by this batch so far
        self.now = self.service.clock.now()
        self.day = bd.toordinal() - 1

    def up_to_date(self, account: _Account) -> bool:
        """Nothing for `_catch_up` to do: accrued through the day before, and nothing due left unbilled."""
        row = account.row
        if row.accrued_through.toordinal() < self.day:
            return False
        complete = self.service.eod.complete_through
        if complete is not None and complete.toordinal() >= self.day:
            return True
        return not any(r.billed_on is None and r.due_date <= self.bd for r in account.instalments)

    def decide(self, d: _Decision, account: _Account) -> None:
        """A fresh repayment on an up-to-date active account: its allocation and ledger entry (or, for a
        prepayment that re-amortises a loan, the single path)."""
        service, request = self.service, d.request
        row = account.row
        product = service.product(row.product_code)
        allocation = allocate_repayment(row, account.open_rows(), product, request.amount_minor, self.bd)
        if allocation.reschedules and allocation.unbilled_left != 0:
            d.kind = _SINGLE
            return
        d.account, d.allocation = account, allocation
        d.entry = service._repayment_entry(
            row, request.source, request.amount_minor, allocation, self.batch.member, request.key,
            service._source_account_cached(row, request.source),
        )  # fmt: skip
        d.kind = _BULK

    def single(self, d: _Decision) -> None:
        """A request through the single path's unit of work, at its place, in a savepoint."""
        service, request = self.service, d.request
        work = service._repay_work(
            request.account_id, request.amount_minor, request.source, request.key, self.batch.member, None
        )
        try:
            with self.conn.begin_nested():
                status, body, replayed = idempotency.once(
                    self.conn,
                    PLATFORM_CORE,
                    member=self.batch.member,
                    key=request.key,
                    operation=OPERATION,
                    request_hash_value=d.request_hash,
                    work=lambda: work(self.conn),
                    now=service.clock.now(),
                )
        except CreditstackError as exc:
            d.kind, d.error = _ERROR, exc
            return
        if replayed:  # only a concurrent change gets here: the key was looked up at the start
            d.kind, d.stored = _REPLAY, StoredOutcome(d.request_hash, OPERATION, status, body)
            return
        d.answer = (status, body)
        self.stored[request.key] = StoredOutcome(d.request_hash, OPERATION, status, body)

    def flush(self, segment: _Segment) -> None:
        """Post a segment's entries with one ledger call (again without any it refused) and write it."""
        todo = [d for d in segment.decisions if d.kind == _BULK]
        if not todo:
            return
        service = self.service
        while todo:
            savepoint = self.conn.begin_nested()
            results = service.ledger.post_in_transaction(self.conn, [d.entry for d in todo if d.entry is not None])
            refused = []
            for d, result in zip(todo, results, strict=True):
                if not result.ok:
                    code = result.error_code or "unknown"
                    assert d.entry is not None
                    d.kind = _ERROR
                    if code == "ledger.insufficient_funds":
                        d.error = errors.InsufficientFunds("the wallet does not hold enough", field="amount_minor")
                    else:
                        d.error = errors.LedgerRefused(f"the ledger refused {d.entry.key}: {code}")
                    refused.append(d)
            if not refused:
                savepoint.commit()
                break
            savepoint.rollback()  # the ledger stored the refusals under their keys: post again without them
            todo = [d for d in todo if d.kind == _BULK]
        self._write(todo)

    def _write(self, decided: list[_Decision]) -> None:
        if not decided:
            return
        service, conn, bd = self.service, self.conn, self.bd
        instalment_updates: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        account_updates: list[dict[str, Any]] = []
        transactions: list[tuple[Any, ...]] = []
        to_emit: list[DomainEvent] = []
        records: list[tuple[str, StoredOutcome]] = []
        for d in decided:
            request, account, allocation = d.request, d.account, d.allocation
            assert account is not None and allocation is not None and d.entry is not None
            row = account.row
            instalment_updates.extend(allocation.instalments)
            by_number = {r.number: r for r in account.instalments}
            for paid in allocation.instalments:
                inst = by_number[paid["row"]]
                inst.fee_paid, inst.penalty_paid = paid["fee"], paid["penalty"]
                inst.interest_paid, inst.principal_paid = paid["interest"], paid["principal"]
                inst.settled_on = paid["settled"]
            if allocation.reschedules:  # the loan's unbilled principal is all prepaid: its unbilled rows go
                deletes.append({"account": row.id})
                account.instalments = [r for r in account.instalments if r.billed_on is not None]
            values = allocation.values
            row_before = row
            account.row = SimpleNamespace(**{**row.__dict__, **values})
            update = {f"b_{name}": getattr(account.row, name) for name in _ACCOUNT_COLUMNS}
            update["b_id"] = row.id
            account_updates.append(update)
            reference = new_id("rep")
            transactions.append(
                (
                    row.id, "repayment", bd, reference, d.entry.key,
                    {"source": request.source, "credit_applied_minor": allocation.credit_applied}, self.now,
                    request.amount_minor, allocation.paid["principal"], allocation.paid["interest"],
                    allocation.paid["penalty"], allocation.paid["fees"], allocation.paid["credit"],
                )
            )  # fmt: skip
            to_emit.append(service._repayment_event(row_before, request.amount_minor, request.source, allocation, bd))
            body = service._repayment_body(
                reference,
                allocation,
                row_before.currency,
                service._account_json(conn, account.row, rows=account.instalments),
            )
            d.answer = (201, body)
            records.append((request.key, StoredOutcome(d.request_hash, OPERATION, 201, body)))
            self.stored[request.key] = records[-1][1]
        if instalment_updates:
            conn.execute(_PAY_INSTALMENT, instalment_updates)
        if deletes:
            conn.execute(_DELETE_UNBILLED, deletes)
        conn.execute(_UPDATE_ACCOUNT, account_updates)
        idempotency.bulk_insert(conn, t.transactions, _TRANSACTION_COLUMNS, transactions)
        outbox.flush_events_prepared(conn, PLATFORM_CORE, to_emit, self.now)
        idempotency.store_many(conn, PLATFORM_CORE, self.batch.member, records, self.now)


def _as_read_back(stored: StoredOutcome) -> StoredOutcome:
    """An outcome stored by this batch as a replay reads it back from the store (JSON), not the live object
    answered first."""
    return dataclasses.replace(stored, outcome=json.loads(json.dumps(stored.outcome)))
