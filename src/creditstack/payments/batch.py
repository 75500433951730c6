"""Payments in batches: many merchant payments, bill payments, transfers and top-ups decided together, each
answered exactly as the single method (`pay_merchant`, `pay_bill`, `transfer`, `top_up`) would have answered
it had the requests been sent one at a time, in order. `PaymentsService.submit_batch` is the entry point.

The single path costs about two dozen statements a payment; this path costs a handful a batch:

1. Prepare, no I/O: each request's idempotency hash; a malformed key (or request) answers its error at
   once. Requests that cannot be decided in bulk are marked to run through the single path at their
   place: every request after a merchant payment funded by a `FundingSource` (the credit line) that
   carries that payment's key (whether the key ends up stored depends on how the source answers).
2. Top-ups, if any: one short transaction records the fresh ones — pending rows and their stored outcomes,
   in bulk — and only then is each instruction sent to the rail, outside any transaction of ours, as
   `top_up` does (an instruction the bank may act on is always on file first).
3. One transaction for everything else, in request order:
   - reads: every wallet the batch names (one IN query), every stored key (one), the top-ups recorded in
     step 2 (locked), the limit-usage rows of every payer (created if missing and locked in wallet order);
   - decisions in Python, request by request: a stored key → replay (or `idempotency.key_reused`); else
     validation → the error as a value, nothing stored; else the limits, counting the batch's own earlier
     payments → a stored rejection; else one ledger entry. A payment funded by a source (no limits, as on
     the single path) first has the source `reserve` it at its place, in a savepoint: a refusal is its
     error, nothing stored; a source that posted to the ledger itself while earlier payments of the
     segment are still unposted is undone, the segment written, and the reserve made again, so that
     journal entries stay in request order;
   - all ledger entries — with the settlement entries of settled top-ups at their place — in ONE
     non-linked `LedgerService.post_in_transaction` call. The ledger evaluates them in order against the
     running balances, so insufficient funds is its call. If a payment it refused had been counted towards
     a later payment's limit (the decisions assume success first), the decisions are made again with what
     the ledger said, inside a savepoint, until the two agree; the first position where they could differ
     moves forward each round, so this ends, and what it ends at is the outcome of the requests one by one;
   - writes: payment rows, usage deltas, outbox events, settled top-ups and stored outcomes — one
     multi-row statement each.
   A request that runs through the single path first writes everything decided before it (a "segment"),
   then runs in a savepoint of the same transaction, so the order of outcomes, journal entries and events
   is the order of the requests.

A concurrent request that stores one of the batch's keys first makes the batch's insert collide; the
transaction is decided again (bounded, as for a single payment) and the key then answers as a replay.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import events, idempotency, sequence
from creditstack.core.collector import collector_paused
from creditstack.core.errors import (
    CreditstackError,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    LimitExceeded,
    ValidationFailed,
)
from creditstack.core.events import DomainEvent
from creditstack.core.idempotency import StoredOutcome
from creditstack.core.ids import new_id
from creditstack.core.money import Money
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.domain import PostEntry
from creditstack.payments import errors
from creditstack.payments import repository as repo
from creditstack.payments.domain import (
    PAYMENT_BATCH_MAX,
    BillPayment,
    FundingLeg,
    FundingSource,
    LimitUsage,
    MerchantPayment,
    PaymentKind,
    PaymentRequest,
    PaymentStatus,
    RailInstruction,
    RailOutcome,
    TopUp,
    Transfer,
    check_limits,
    period_keys,
)

if TYPE_CHECKING:
    from creditstack.ledger.service import CommandResult
    from creditstack.payments.service import PaymentsService

#: (status code, body, replayed): what `PaymentsService.submit_batch` turns into a `PaymentResult`.
Answer = tuple[int, dict[str, Any], bool]
#: How many times a batch is decided again after colliding with a concurrent request's key.
KEY_COLLISION_RETRIES_MAX = 5
#: Rounds of deciding limits again after the ledger refused payments that had counted towards them (each
#: round fixes at least one more position, so a batch needs at most one round per payment).
LIMIT_ROUNDS_MAX = PAYMENT_BATCH_MAX + 1

_T = TypeVar("_T")
_REQUEST_TYPES = (MerchantPayment, BillPayment, Transfer, TopUp)

# What a request turned out to be in one attempt at deciding the batch.
_ERROR = "error"  # refused before it ran; stores nothing
_REPLAY_STORED = "replay_stored"  # its key was stored before this batch
_REPLAY_BATCH = "replay_batch"  # its key was used earlier in this batch
_FRESH = "fresh"  # runs here
_RECORDED = "recorded"  # a top-up recorded in step 2, to be settled here
_SINGLE = "single"  # runs through the single path at its place


@dataclass(slots=True)
class _Item:
    """A request as prepared: its hash, or the error that refuses it before any read."""

    index: int
    request: PaymentRequest
    request_hash: str = ""
    error: CreditstackError | None = None
    single: bool = False
    funded: bool = False  # a merchant payment paid by a funding source (the credit line)


@dataclass(slots=True)
class _Decision:
    """One request in one attempt."""

    item: _Item
    kind: str = _ERROR
    error: CreditstackError | None = None
    stored: StoredOutcome | None = None  # _REPLAY_STORED
    first: int | None = None  # _REPLAY_BATCH: the index of the request that used the key first
    payment_kind: PaymentKind | None = None  # _FRESH outgoing payments:
    payer: Any = None
    payee: Any = None
    fee_minor: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    source: FundingSource | None = None  # funded payments: the source, and what it reserved
    leg: FundingLeg | None = None
    row: dict[str, Any] | None = None
    entry: PostEntry | None = None
    answer: tuple[int, dict[str, Any]] | None = None  # what is stored under the key (_FRESH, _RECORDED)
    final_body: dict[str, Any] | None = None  # where the payment ended up in this batch
    single_answer: Answer | None = None  # _SINGLE

    @property
    def outgoing(self) -> bool:
        return self.kind == _FRESH and self.payment_kind is not None

    @property
    def limited(self) -> bool:
        """An outgoing payment from the wallet: counted against the payer's limits (funded ones are not)."""
        return self.outgoing and self.source is None


def _key_reused(first_hash: str, request_hash: str, key: str) -> CreditstackError:
    """The error the single path raises for a key used before with another request."""
    try:
        StoredOutcome(first_hash, "", 0, {}).replay(request_hash, key)
    except IdempotencyKeyReused as exc:
        return exc
    raise AssertionError("the hashes differ")  # pragma: no cover - only called when they do


def _error_answer(error: CreditstackError) -> Answer:
    return error.http_status, {"error": error.to_dict()}, False


class PaymentBatch:
    """One call of `PaymentsService.submit_batch`. Uses the service's own validation, row, entry and answer
    helpers, so that both paths decide from one definition."""

    def __init__(self, service: PaymentsService, requests: Sequence[PaymentRequest], member: str) -> None:
        self.service = service
        self.member = member
        self.items = [_Item(i, r) for i, r in enumerate(requests)]
        self.claimed: dict[str, int] = {}  # key -> index of the top-up recorded for it in step 2
        self.top_up_rows: dict[int, dict[str, Any]] = {}
        self.rail_outcomes: dict[int, RailOutcome | None] = {}

    # ------------------------------------------------------------ the steps

    def run(self) -> list[Answer]:
        bound = min(PAYMENT_BATCH_MAX, self.service.ledger.batch_entries_max)
        if len(self.items) > bound:
            raise LimitExceeded(
                f"a payments batch may carry at most {bound} requests, got {len(self.items)}",
                field="requests",
                requests_max=bound,
            )
        if not self.items:
            return []
        with collector_paused():
            self._prepare()
            if any(isinstance(i.request, TopUp) and i.error is None and not i.single for i in self.items):
                self.top_up_rows = self._retrying(self._record_top_ups)
                self.claimed = {self.items[i].request.key: i for i in self.top_up_rows}
                self._send_to_rail()
            return self._retrying(self._decide_and_write)

    def _prepare(self) -> None:
        single_keys: set[str] = set()
        currencies: list[str] = []
        for item in self.items:
            request = item.request
            if not isinstance(request, _REQUEST_TYPES):
                item.error = ValidationFailed(f"unknown payment request {type(request).__name__}", field="requests")
                continue
            try:
                idempotency.check_key(request.key)
            except CreditstackError as exc:
                item.error = exc
                continue
            if not isinstance(request.amount, Money):
                item.error = ValidationFailed("amount must be Money", field="amount")
                continue
            if request.amount.currency.code not in currencies:
                currencies.append(request.amount.currency.code)
            item.request_hash = idempotency.request_hash(request.operation, request.request())
            if request.key in single_keys:
                item.single = True
            elif isinstance(request, MerchantPayment) and request.funding != "wallet":
                item.funded = True
                single_keys.add(request.key)
        for currency in currencies:  # in order of first use, as the single path opens them
            self.service.ensure_house_accounts(currency)

    def _record_top_ups(self, conn: Connection) -> dict[int, dict[str, Any]]:
        """Step 2: record the fresh top-ups (pending rows and stored outcomes), in the caller's transaction."""
        service = self.service
        bd = service._business_date(conn)
        decisions = self._classify(
            repo.wallet_rows(conn, self._wallet_ids()),
            idempotency.lookup_many(conn, PLATFORM_CORE, self.member, self._keys()),
        )
        rows: dict[int, dict[str, Any]] = {}
        records: list[tuple[str, StoredOutcome]] = []
        for d in decisions:
            request = d.item.request
            if d.kind == _FRESH and isinstance(request, TopUp):
                row = service._top_up_row(request, self.member, d.payee, bd)
                rows[d.item.index] = row
                status, body = service._written_answer(row)
                records.append((request.key, StoredOutcome(d.item.request_hash, request.operation, status, body)))
        repo.insert_payments(conn, list(rows.values()))
        idempotency.store_many(conn, PLATFORM_CORE, self.member, records, service.clock.now())
        return rows

    def _send_to_rail(self) -> None:
        """Each recorded top-up's instruction to the rail, in order. A rail that raises leaves its payment
        pending (it can be sent again with `retry_withdrawal` or settled by a statement)."""
        indices, instructions = [], []
        for index, row in sorted(self.top_up_rows.items()):
            request = self.items[index].request
            assert isinstance(request, TopUp)
            indices.append(index)
            instructions.append(
                RailInstruction(
                    row["end_to_end_id"], "collect", row["amount_minor"], row["currency"], request.bank_account_token
                )
            )
        rail = self.service.rail
        submit_many = getattr(rail, "submit_many", None)  # a rail that takes a batch at once (optional)
        if submit_many is not None:
            try:
                outcomes = submit_many(instructions)
            except Exception:  # as a lost answer for each: they stay pending, the batch goes on
                outcomes = [None] * len(instructions)
            for index, outcome in zip(indices, outcomes, strict=True):
                self.rail_outcomes[index] = None if outcome is None else RailOutcome(outcome)
            return
        for index, instruction in zip(indices, instructions, strict=True):
            try:
                self.rail_outcomes[index] = RailOutcome(rail.submit(instruction))
            except Exception:  # the others go on; this one stays pending, as after a lost answer
                self.rail_outcomes[index] = None

    def _decide_and_write(self, conn: Connection) -> list[Answer]:
        """Step 3, in one transaction (the caller's, or a savepoint of its `Database.batch()`)."""
        service = self.service
        bd = service._business_date(conn)
        periods = period_keys(bd)
        wallets = repo.wallet_rows(conn, self._wallet_ids())
        decisions = self._classify(
            wallets, idempotency.lookup_many(conn, PLATFORM_CORE, self.member, self._keys()), self.claimed
        )
        replayed_ids = [
            str(d.stored.outcome["payment_id"])
            for d in decisions
            if d.kind == _REPLAY_STORED and d.stored is not None and _shows_current_row(d.stored.outcome)
        ]
        current = repo.payment_rows(conn, replayed_ids)
        top_ups = {i: dict(row) for i, row in self.top_up_rows.items()}  # this attempt's copies
        recorded = repo.payment_rows(conn, [row["id"] for row in top_ups.values()], lock=True)
        usage = repo.lock_usage_many(conn, [d.payer.id for d in decisions if d.limited], *periods)
        run = _Run(self, conn, bd, periods, wallets, top_ups, recorded, usage)
        segment: list[_Decision] = []
        for d in decisions:
            if d.kind == _SINGLE:
                run.flush(segment)
                segment = []
                run.single(d)
            elif d.kind == _FRESH and d.source is not None:
                if not run.reserve(d, behind=bool(segment)):  # the source posted ahead of the segment
                    run.flush(segment)
                    segment = []
                    run.reserve(d, behind=False)
                if d.kind == _FRESH:  # else the source refused it: its error answers
                    segment.append(d)
            elif d.kind in (_FRESH, _RECORDED):
                segment.append(d)
        run.flush(segment)
        return [self._answer(d, decisions, current) for d in decisions]

    # ------------------------------------------------------------ deciding

    def _classify(
        self, wallets: dict[str, Any], stored: dict[str, StoredOutcome], claimed: dict[str, int] | None = None
    ) -> list[_Decision]:
        """Idempotency and validation of every request, in order, as the single path would meet them."""
        claimed = claimed or {}
        first: dict[str, int] = {}
        decisions = []
        for item in self.items:
            d = _Decision(item)
            decisions.append(d)
            request = item.request
            if item.error is not None:
                d.error = item.error
                continue
            if item.single:
                d.kind = _SINGLE
                continue
            key = request.key
            earlier = first.get(key)
            if earlier is not None:
                first_hash = self.items[earlier].request_hash
                if first_hash != item.request_hash:
                    d.error = _key_reused(first_hash, item.request_hash, key)
                else:
                    d.kind, d.first = _REPLAY_BATCH, earlier
                continue
            owner = claimed.get(key)
            record = stored.get(key)
            if owner == item.index:
                d.kind = _RECORDED
                first[key] = item.index
                continue
            if record is not None and owner is None:
                try:
                    d.stored = record.replay(item.request_hash, key)
                    d.kind = _REPLAY_STORED
                except IdempotencyKeyReused as exc:
                    d.error = exc
                continue
            try:
                self._validate(d, wallets.get)
            except CreditstackError as exc:
                d.error = exc
                continue
            if owner is not None:  # a later top-up of this batch holds the key: only a concurrent change gets here
                d.error = IdempotencyInProgress(f"key {key!r} is held by a top-up of this batch", field="key")
                continue
            d.kind = _FRESH
            first[key] = item.index
        return decisions

    def _validate(self, d: _Decision, find: Callable[[str], Any]) -> None:
        service, request = self.service, d.item.request
        if isinstance(request, Transfer):
            d.payer, d.payee = service._transfer_parties(find, request)
            d.payment_kind = PaymentKind.P2P
        elif isinstance(request, MerchantPayment):
            d.source, d.payer, d.payee, d.fee_minor = service._merchant_parties(find, request)
            d.payment_kind = PaymentKind.MERCHANT
            d.extra = {"merchant_category": d.payee.merchant_category}
        elif isinstance(request, BillPayment):
            d.payer, d.payee = service._bill_parties(find, request)
            d.payment_kind = PaymentKind.BILL
            d.extra = {"biller_reference": request.reference, "bill_due_date": request.due_date}
        else:
            d.payee = service._top_up_wallet(find, request)

    def _answer(self, d: _Decision, decisions: list[_Decision], current: dict[str, Any]) -> Answer:
        if d.kind == _ERROR:
            assert d.error is not None
            return _error_answer(d.error)
        if d.kind == _SINGLE:
            assert d.single_answer is not None
            return d.single_answer
        if d.kind == _REPLAY_STORED:
            assert d.stored is not None
            body = d.stored.outcome
            if _shows_current_row(body):  # asynchronous payments: where they are now
                row = current.get(str(body["payment_id"]))
                if row is not None:
                    body = self.service._payment_json(row)
            return d.stored.status_code, body, True
        if d.kind == _REPLAY_BATCH:
            assert d.first is not None
            first = decisions[d.first]
            assert first.answer is not None and first.final_body is not None
            status, stored_body = first.answer
            return status, (stored_body if "error" in stored_body else first.final_body), True
        assert d.answer is not None and d.final_body is not None
        return d.answer[0], d.final_body, False

    # ------------------------------------------------------------ plumbing

    def _wallet_ids(self) -> set[str]:
        ids: set[str] = set()
        for item in self.items:
            request = item.request
            if item.error is not None or item.single:
                continue
            if isinstance(request, Transfer):
                ids.update((request.payer_wallet_id, request.payee_wallet_id))
            elif isinstance(request, MerchantPayment):  # funded ones too: they are decided here
                ids.update((request.payer_wallet_id, request.merchant_wallet_id))
            elif isinstance(request, BillPayment):
                ids.update((request.payer_wallet_id, request.biller_wallet_id))
            else:
                ids.add(request.wallet_id)
        return ids

    def _keys(self) -> set[str]:
        return {i.request.key for i in self.items if i.error is None and not i.single}

    def _retrying(self, work: Callable[[Connection], _T]) -> _T:
        """`work` in a transaction; decided again when a concurrent request stored one of its keys first."""
        attempt = 0
        while True:
            try:
                return self.service.db.run(work)
            except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation, sqlite3.IntegrityError) as exc:
                # the bulk writes go through the driver, whose errors arrive unwrapped
                attempt += 1
                if attempt > KEY_COLLISION_RETRIES_MAX or "idempotency" not in str(exc).lower():
                    raise


def _shows_current_row(body: dict[str, Any]) -> bool:
    """A stored success of an asynchronous payment is answered with the payment as it is now."""
    return "payment_id" in body and "error" not in body


class _Run:
    """Step 3's running state: the usage counted so far, and the segment writer."""

    def __init__(
        self,
        batch: PaymentBatch,
        conn: Connection,
        bd: Any,
        periods: tuple[str, str],
        wallets: dict[str, Any],
        top_ups: dict[int, dict[str, Any]],
        recorded: dict[str, Any],
        usage: dict[str, list[int]],
    ) -> None:
        self.batch = batch
        self.service = batch.service
        self.conn = conn
        self.bd = bd
        self.periods = periods
        self.wallets = wallets
        self.top_ups = top_ups
        self.recorded = recorded
        self.usage = usage
        self.now = self.service.clock.now()

    def _settles_here(self, d: _Decision) -> bool:
        """A recorded top-up the rail settled and nobody else has applied an outcome to."""
        index = d.item.index
        row = self.recorded.get(self.top_ups[index]["id"])
        return (
            self.batch.rail_outcomes.get(index) is RailOutcome.SETTLED
            and row is not None
            and row.status == PaymentStatus.PENDING.value
        )

    def _plan(
        self, segment: list[_Decision], usage: dict[str, list[int]], refused: set[int]
    ) -> tuple[list[int], list[PostEntry], dict[int, errors.LimitExceeded]]:
        """Which requests go to the ledger (in order) and which a limit rejects, counting usage as it goes
        (payments in `refused` — insufficient funds — count nothing)."""
        service = self.service
        sent: list[int] = []
        commands: list[PostEntry] = []
        over_limit: dict[int, errors.LimitExceeded] = {}
        for d in segment:
            index = d.item.index
            if d.kind == _RECORDED:
                if self._settles_here(d):
                    row = self.top_ups[index]
                    wallet = self.wallets[row["payee_wallet_id"]]
                    if d.entry is None:
                        d.entry = service._top_up_settle_entry(row["id"], row["amount_minor"], row["currency"], wallet)
                    sent.append(index)
                    commands.append(d.entry)
                continue
            request = d.item.request
            if d.leg is not None:  # funded: no limits (as on the single path); the source's account pays
                if d.entry is None:
                    assert d.row is not None and d.payment_kind is not None
                    d.entry = service._outgoing_entry(
                        d.row["id"], d.payment_kind, d.leg.ledger_account_id, d.payee, request.amount, d.fee_minor
                    )
                sent.append(index)
                commands.append(d.entry)
                continue
            amount_minor = request.amount.amount_minor
            counted = usage[d.payer.id]
            limits = service.tiers[int(d.payer.kyc_tier)]
            within = (
                amount_minor <= limits.per_transaction_minor
                and counted[0] + amount_minor <= limits.daily_minor
                and counted[2] + amount_minor <= limits.monthly_minor
                and counted[1] + 1 <= limits.daily_count_max
            )
            if not within:  # the exact refusal (which limit, what remains) is check_limits' to state
                try:
                    check_limits(limits, LimitUsage(counted[0], counted[1], counted[2]), amount_minor)
                except errors.LimitExceeded as exc:
                    over_limit[index] = exc
                    continue
            if d.entry is None:
                assert d.row is not None and d.payment_kind is not None
                d.entry = service._outgoing_entry(
                    d.row["id"], d.payment_kind, int(d.payer.ledger_account_id), d.payee, request.amount, d.fee_minor
                )
            sent.append(index)
            commands.append(d.entry)
            if index not in refused:
                counted[0] += amount_minor
                counted[1] += 1
                counted[2] += amount_minor
        return sent, commands, over_limit

    def flush(self, segment: list[_Decision]) -> None:
        """Decide a segment with one ledger call and write what it decided."""
        if not segment:
            return
        service = self.service
        for d in segment:
            if d.outgoing and d.row is None:
                assert d.payment_kind is not None
                request = d.item.request
                d.row = service._outgoing_row(
                    new_id("pay"), d.payment_kind, self.batch.member, request.key, d.payer, d.payee,
                    request.amount, self.bd, d.fee_minor, d.extra,
                )  # fmt: skip
        start = self.usage
        refused: set[int] = set()
        for _round in range(LIMIT_ROUNDS_MAX):
            usage = {w: list(u) for w, u in start.items()}
            sent, commands, over_limit = self._plan(segment, usage, refused)
            if not commands:
                results: list[CommandResult] = []
                break
            savepoint = self.conn.begin_nested()
            results = service.ledger.post_in_transaction(self.conn, commands, caller_keyed=True)  # as `_post`
            now_refused = set()
            for index, result in zip(sent, results, strict=True):
                if not result.ok:
                    settlement = isinstance(self.batch.items[index].request, TopUp)
                    if settlement or result.error_code != "ledger.insufficient_funds":
                        raise CreditstackError(f"ledger refused payment: {result.error_code}")
                    now_refused.add(index)
            if now_refused == refused:  # the ledger refused what the limits assumed: they agree
                savepoint.commit()
                break
            check = {w: list(u) for w, u in start.items()}
            check_sent, _, check_over_limit = self._plan(segment, check, now_refused)
            if check_sent == sent:  # the same requests reach the ledger: its answers stand
                savepoint.commit()
                # the limit refusals as the true counts state them (which limit, what remains)
                usage, refused, over_limit = check, now_refused, check_over_limit
                break
            savepoint.rollback()  # a refusal changed what a later limit sees: decide again with it
            refused = now_refused
        else:  # pragma: no cover - bounded by the argument in the module docstring
            raise CreditstackError("payments batch: limit decisions did not settle")
        self._write(segment, dict(zip(sent, results, strict=True)), over_limit, refused, start, usage)
        self.usage = usage

    def _write(
        self,
        segment: list[_Decision],
        results: dict[int, CommandResult],
        over_limit: dict[int, errors.LimitExceeded],
        refused: set[int],
        start: dict[str, list[int]],
        usage: dict[str, list[int]],
    ) -> None:
        service, batch = self.service, self.batch
        new_rows: list[dict[str, Any]] = []
        settled: list[dict[str, Any]] = []
        to_emit: list[DomainEvent] = []
        records: list[tuple[str, StoredOutcome]] = []
        other_outcomes: list[_Decision] = []
        for d in segment:
            index, request = d.item.index, d.item.request
            if d.kind == _RECORDED:
                top_up = self.top_ups[index]
                d.answer = service._written_answer(top_up)  # what step 2 stored
                if index in results:
                    top_up.update(
                        status=PaymentStatus.COMPLETED.value,
                        entry_seq=results[index].entry_seq,
                        settled_business_date=self.bd,
                        updated_at=self.now,
                    )
                    settled.append(top_up)
                    to_emit.append(service._completed_event(repo.full_payment_row(top_up), None))
                    d.final_body = service._payment_json_of(top_up)
                else:
                    other_outcomes.append(d)
                continue
            row = d.row
            assert row is not None
            if index in over_limit:
                limit_error = over_limit[index]
                row.update(status=PaymentStatus.REJECTED.value, error_code=limit_error.code)
                status, body = service._written_answer(row)
                body = {**body, "error": limit_error.to_dict()}
            elif index in refused:
                row.update(status=PaymentStatus.REJECTED.value, error_code=errors.InsufficientFunds.code)
                status, body = service._written_answer(row)
            else:
                row["entry_seq"] = results[index].entry_seq
                to_emit.append(service._completed_event(row, d.payee.id))
                if d.leg is not None:  # the source's own events, after the payment's (as the single path)
                    to_emit.extend(d.leg.events)
                status, body = service._written_answer(row)
            new_rows.append(row)
            d.answer, d.final_body = (status, body), body
            records.append((request.key, StoredOutcome(d.item.request_hash, request.operation, status, body)))
        repo.insert_payments(self.conn, new_rows)
        repo.settle_payments(self.conn, settled)
        deltas = []
        for wallet_id, after in usage.items():
            before = start[wallet_id]
            if after != before:
                deltas.append((wallet_id, after[0] - before[0], after[1] - before[1]))
        repo.add_usage_many(self.conn, deltas, self.periods)
        events.flush_events_prepared(self.conn, PLATFORM_CORE, to_emit, self.now)
        idempotency.store_many(self.conn, PLATFORM_CORE, batch.member, records, self.now)
        for d in other_outcomes:  # rejected, timed out, accepted for later, or applied by someone else
            index = d.item.index
            outcome = batch.rail_outcomes.get(index)
            if outcome is None:
                d.final_body = service._payment_json(self.recorded[self.top_ups[index]["id"]])
            else:
                applied = service._apply_rail_outcome_in(self.conn, self.top_ups[index]["end_to_end_id"], outcome)
                d.final_body = applied.body

    def reserve(self, d: _Decision, *, behind: bool) -> bool:
        """A funded payment's reserve with its source, at its place, in a savepoint. A refusal becomes the
        payment's error (nothing stored). With `behind` (earlier payments of the segment not yet posted), a
        source that posted journal entries itself is undone and False returned: the caller writes the
        segment first and reserves again, keeping the journal in request order."""
        service = self.service
        request = d.item.request
        assert d.source is not None and d.payment_kind is not None
        if d.row is None:
            d.row = service._outgoing_row(
                new_id("pay"), d.payment_kind, self.batch.member, request.key, d.payer, d.payee,
                request.amount, self.bd, d.fee_minor, d.extra,
            )  # fmt: skip
            d.row["funding"] = d.source.name
        journal = sequence.current(self.conn, PLATFORM_CORE, "journal") if behind else None
        savepoint = self.conn.begin_nested()
        try:
            leg = d.source.reserve(
                self.conn,
                customer_id=d.payer.customer_id,
                amount_minor=request.amount.amount_minor,
                currency=request.amount.currency.code,
                payment_id=d.row["id"],
            )
        except CreditstackError as exc:
            savepoint.rollback()
            d.kind, d.error = _ERROR, exc
            return True
        if journal is not None and sequence.current(self.conn, PLATFORM_CORE, "journal") != journal:
            savepoint.rollback()
            return False
        savepoint.commit()
        d.leg = leg
        return True

    def single(self, d: _Decision) -> None:
        """A request through the single path, at its place, in a savepoint of the batch's transaction."""
        service, batch = self.service, self.batch
        request = d.item.request
        try:
            with self.conn.begin_nested():
                result = service._once(
                    self.conn,
                    batch.member,
                    request.key,
                    request.operation,
                    d.item.request_hash,
                    service._work(request, batch.member, None),
                )
                body = result.body
                if isinstance(request, TopUp) and not result.replayed and body.get("status") == "pending":
                    # Rare (a top-up reusing a credit-line payment's key): sent from inside the transaction.
                    instruction = RailInstruction(
                        body["end_to_end_id"],
                        "collect",
                        body["amount"]["amount_minor"],
                        body["amount"]["currency"],
                        request.bank_account_token,
                    )
                    try:
                        outcome: RailOutcome | None = RailOutcome(service.rail.submit(instruction))
                    except Exception:  # as in step 2: it stays pending
                        outcome = None
                    if outcome is not None:
                        body = service._apply_rail_outcome_in(self.conn, instruction.end_to_end_id, outcome).body
                d.single_answer = (result.status_code, body, result.replayed)
        except CreditstackError as exc:
            d.single_answer = _error_answer(exc)
        funded = isinstance(request, MerchantPayment) and request.funding != "wallet"
        if not isinstance(request, TopUp) and not funded:
            payer = request.payer_wallet_id
            if payer in self.usage:  # the single path may have counted towards this payer's limits
                self.usage[payer] = repo.read_usage(self.conn, payer, *self.periods)
