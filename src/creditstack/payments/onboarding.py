"""Onboarding in batches: many customers registered and their wallets opened together, each request answered
as `register_customer(...)` followed by `open_wallet(customer_id, currency, ...)` would have answered it had
the requests been sent one at a time, in order. `PaymentsService.register_batch` is the entry point.

The single calls cost three transactions and a dozen statements a customer (the registration, the wallet's
ledger account, the wallet, and the reads that answer them); this path costs a handful of statements a
batch, in one transaction:

1. Prepare, no I/O: each request checked by the single path's own rules (`PaymentsService._checked_customer`,
   the same key checks), its ids derived from its keys (`domain.keyed_id`: a replay finds the same ids), its
   two idempotency fingerprints and national-id hash computed, its personal data sealed (`PiiVault`, as
   `register_customer` seals it: nothing personal is logged or kept in the clear).
2. One transaction:
   - reads: every stored key of the batch (one IN query per 5,000 keys) and which national ids are taken
     (one per kind and 5,000 ids);
   - decisions in Python, request by request, in the order the single calls meet them: the registration's
     stored key → replay (or `idempotency.key_reused`); else a national id taken before or earlier in the
     batch → `payments.duplicate_customer`; then the wallet's malformed currency or key → its error; the
     wallet's stored key → replay (or `idempotency.key_reused`). Keys first used earlier in the batch count
     as stored;
   - the customers of replayed registrations (rows and wallets, one query each) for their answers;
   - writes: the idempotency records, customers, incomes, the wallets' ledger accounts
     (`LedgerService.open_accounts_in_transaction`: one insert; an account a cut-off `open_wallet` left
     behind is taken over, as `open_wallet` does) and wallets — one bulk statement each.

Each request is all or nothing. Where the single calls would register the customer and then refuse the wallet
(an unknown currency, a malformed wallet key, a wallet key used before for another request), the batch gives
the same error and registers nothing, so that a corrected request can simply be sent again. Otherwise the
answers are the single calls', and so are the rows they leave (ids, sealed data under the same contexts,
stored outcomes, ledger accounts in request order).

A concurrent request that stores one of the batch's keys, or registers one of its national ids, first makes
the batch's insert collide; the transaction is decided again (bounded) and the request then answers as a
replay or a duplicate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import idempotency
from creditstack.core.collector import collector_paused
from creditstack.core.errors import CreditstackError, LimitExceeded, ValidationFailed
from creditstack.core.idempotency import StoredOutcome
from creditstack.core.money import Currency
from creditstack.core.tables import PLATFORM_CORE
from creditstack.payments import repository as repo
from creditstack.payments.domain import ONBOARDING_BATCH_MAX, CustomerDetails, Onboarding, keyed_id

if TYPE_CHECKING:
    from creditstack.payments.service import PaymentsService

#: (status code, body, replayed): what `PaymentsService.register_batch` turns into an `OnboardingResult`.
Answer = tuple[int, dict[str, Any], bool]
#: How many times a batch is decided again after colliding with a concurrent request's key or national id.
KEY_COLLISION_RETRIES_MAX = 5
#: The stored operations of the two single calls (what their idempotency records say they were).
CUSTOMER_OPERATION = "payments.customer"
WALLET_OPERATION = "payments.wallet"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class OnboardingResult:
    """One request's answer: status code, body (`{"customer": …, "wallet": …}` as `get_customer` and
    `get_wallet` show them, or `{"error": …}`) and whether both of its keys had been used before."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return "error" not in self.body

    @property
    def customer_id(self) -> str | None:
        customer = self.body.get("customer")
        return str(customer["id"]) if isinstance(customer, dict) else None

    @property
    def wallet_id(self) -> str | None:
        wallet = self.body.get("wallet")
        return str(wallet["id"]) if isinstance(wallet, dict) else None

    @property
    def error_code(self) -> str | None:
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None


@dataclass(slots=True)
class _Item:
    """A request as prepared: ids, fingerprints and sealed row, or the errors that refuse it without I/O."""

    index: int
    request: Onboarding
    error: CreditstackError | None = None  # refuses it before its registration's key is looked up
    wallet_error: CreditstackError | None = None  # refuses it when its wallet's turn comes
    details: CustomerDetails | None = None
    customer_id: str = ""
    customer_hash: str = ""
    national_id_hash: str | None = None
    row: dict[str, Any] = field(default_factory=dict)
    wallet_key: str = ""
    wallet_id: str = ""
    wallet_hash: str = ""


# Where a request's customer (or wallet) comes from, in one attempt at deciding the batch.
_FRESH = "fresh"  # created here
_STORED = "stored"  # its key was stored before this batch: a replay
_EARLIER = "earlier"  # its key was first used earlier in this batch: a replay


@dataclass(slots=True)
class _Decision:
    item: _Item
    error: CreditstackError | None = None
    customer: str = ""  # _FRESH | _STORED | _EARLIER
    wallet: str = ""
    wallet_id: str = ""
    wallets_before: int = 0  # how many of the batch's new wallets the customer had when it was registered


class OnboardingBatch:
    """One call of `PaymentsService.register_batch`. Uses the service's own checks, fingerprints, rows and
    answers, so that both paths decide from one definition."""

    def __init__(self, service: PaymentsService, requests: Sequence[Onboarding], member: str) -> None:
        self.service = service
        self.member = member
        self.items = [_Item(i, r) for i, r in enumerate(requests)]

    def run(self) -> list[Answer]:
        if len(self.items) > ONBOARDING_BATCH_MAX:
            raise LimitExceeded(
                f"an onboarding batch may carry at most {ONBOARDING_BATCH_MAX} requests, got {len(self.items)}",
                field="requests",
                requests_max=ONBOARDING_BATCH_MAX,
            )
        if not self.items:
            return []
        with collector_paused():  # as a payments batch: some twenty survivors per request, no cycles
            for item in self.items:
                self._prepare(item)
            answers, stored_wallets = self._retrying(self._decide_and_write)
        for index, wallet_id in stored_wallets.items():  # a wallet opened before: as it is now, as on replay
            status, body, replayed = answers[index]
            answers[index] = (status, {**body, "wallet": self.service.get_wallet(wallet_id)}, replayed)
        return answers

    # ------------------------------------------------------------ step 1: no I/O

    def _prepare(self, item: _Item) -> None:
        service, request = self.service, item.request
        if not isinstance(request, Onboarding):
            item.error = ValidationFailed(f"unknown onboarding request {type(request).__name__}", field="requests")
            return
        try:  # as register_customer: the details, then the key
            item.details = details = service._checked_customer(
                kind=request.kind,
                legal_name=request.legal_name,
                national_id=request.national_id,
                date_of_birth=request.date_of_birth,
                address=request.address,
                phone=request.phone,
                kyc_tier=request.kyc_tier,
                incomes=request.incomes,
                merchant_category=request.merchant_category,
                fee_bps=request.fee_bps,
                refund_fee_policy=request.refund_fee_policy,
                reference_pattern=request.reference_pattern,
            )
            idempotency.check_key(request.key)
        except CreditstackError as exc:
            item.error = exc
            return
        item.customer_id = keyed_id("cus", self.member, request.key)
        item.customer_hash = service._customer_fingerprint(details)
        item.row = service._customer_row(item.customer_id, details)
        item.national_id_hash = item.row["national_id_hash"]
        try:  # as open_wallet: the currency, then the key
            Currency.of(request.currency)
            item.wallet_key = idempotency.check_key(request.wallet_idempotency_key)
        except CreditstackError as exc:
            item.wallet_error = exc
            return
        item.wallet_id = keyed_id("wal", self.member, item.wallet_key)
        item.wallet_hash = service._wallet_fingerprint(item.customer_id, request.currency)

    # ------------------------------------------------------------ step 2: one transaction

    def _decide_and_write(self, conn: Connection) -> tuple[list[Answer], dict[int, str]]:
        items = [i for i in self.items if i.error is None]
        keys = {i.request.key for i in items} | {i.wallet_key for i in items if i.wallet_error is None}
        stored = idempotency.lookup_many(conn, PLATFORM_CORE, self.member, keys)
        taken: set[tuple[str, str]] = set()
        by_kind: dict[str, list[str]] = {}
        for i in items:
            if i.national_id_hash is not None and i.request.key not in stored:
                assert i.details is not None
                by_kind.setdefault(i.details.kind.value, []).append(i.national_id_hash)
        for kind, hashes in by_kind.items():
            taken.update((kind, h) for h in repo.national_id_hashes_taken(conn, kind, hashes))
        decisions, added = self._decide(stored, taken)
        replayed_customers = {d.item.customer_id for d in decisions if d.error is None and d.customer == _STORED}
        rows = {cid: row._mapping for cid, row in repo.customer_rows(conn, replayed_customers).items()}
        existing = repo.wallet_ids_of(conn, replayed_customers)
        self._write(conn, decisions)
        return self._answers(decisions, rows, existing, added)

    def _decide(
        self, stored: dict[str, StoredOutcome], taken: set[tuple[str, str]]
    ) -> tuple[list[_Decision], dict[str, list[str]]]:
        """Each request in order, as the single calls would meet it; nothing of a refused request counts."""
        first: dict[str, str] = {}  # key -> fingerprint, for keys first used (successfully) in this batch
        added: dict[str, list[str]] = {}  # customer id -> wallets this batch opens for it, in order
        decisions = []
        for item in self.items:
            d = _Decision(item)
            decisions.append(d)
            if item.error is not None:
                d.error = item.error
                continue
            assert item.details is not None
            key = item.request.key
            claim = (item.details.kind.value, item.national_id_hash or "")
            try:
                d.customer = self._replay(key, item.customer_hash, first, stored)
                if d.customer == _FRESH and item.national_id_hash is not None and claim in taken:
                    raise self.service._duplicate_customer(item.details)
                if item.wallet_error is not None:
                    raise item.wallet_error
                if d.customer == _FRESH and item.wallet_key == key:  # the registration has just stored it
                    StoredOutcome(item.customer_hash, "", 0, {}).replay(item.wallet_hash, key)
                d.wallet = self._replay(item.wallet_key, item.wallet_hash, first, stored)
            except CreditstackError as exc:
                d.error = exc
                continue
            d.wallets_before = len(added.get(item.customer_id, ()))
            if d.customer == _FRESH:
                first[key] = item.customer_hash
                if item.national_id_hash is not None:
                    taken.add(claim)
            if d.wallet == _FRESH:
                first[item.wallet_key] = item.wallet_hash
                d.wallet_id = item.wallet_id
                added.setdefault(item.customer_id, []).append(item.wallet_id)
            elif d.wallet == _STORED:
                d.wallet_id = str(stored[item.wallet_key].outcome["wallet_id"])
            else:
                d.wallet_id = item.wallet_id
        return decisions, added

    @staticmethod
    def _replay(key: str, request_hash: str, first: dict[str, str], stored: dict[str, StoredOutcome]) -> str:
        """Whether a key is fresh, replays a key of this batch, or replays a stored one; the single path's
        `idempotency.key_reused` for a key used before with another request."""
        earlier = first.get(key)
        if earlier is not None:
            StoredOutcome(earlier, "", 0, {}).replay(request_hash, key)
            return _EARLIER
        record = stored.get(key)
        if record is not None:
            record.replay(request_hash, key)
            return _STORED
        return _FRESH

    def _write(self, conn: Connection, decisions: list[_Decision]) -> None:
        """The fresh customers and wallets, with their stored outcomes: one bulk statement per table."""
        service = self.service
        now = service.clock.now()
        records: list[tuple[str, StoredOutcome]] = []
        customers: list[dict[str, Any]] = []
        incomes: list[tuple[str, Any, int, str]] = []
        opened: list[_Decision] = []
        for d in decisions:
            if d.error is not None:
                continue
            item = d.item
            assert item.details is not None
            if d.customer == _FRESH:
                outcome = StoredOutcome(item.customer_hash, CUSTOMER_OPERATION, 201, {"customer_id": item.customer_id})
                records.append((item.request.key, outcome))
                customers.append(item.row)
                incomes += [(item.customer_id, *income) for income in service._income_rows(item.details)]
            if d.wallet == _FRESH:
                outcome = StoredOutcome(item.wallet_hash, WALLET_OPERATION, 201, {"wallet_id": item.wallet_id})
                records.append((item.wallet_key, outcome))
                opened.append(d)
        # the keys first: a concurrent request that used one of them collides here, and the retry replays it
        idempotency.store_many(conn, PLATFORM_CORE, self.member, records, now)
        repo.insert_customers(conn, customers, incomes)
        accounts = service.ledger.open_accounts_in_transaction(
            conn,
            [service._wallet_account(d.wallet_id, d.item.customer_id, d.item.request.currency) for d in opened],
            reuse_existing=True,  # left by an open_wallet cut off between its account and its wallet
        )
        repo.insert_wallets(
            conn,
            [
                service._wallet_row(d.wallet_id, d.item.customer_id, d.item.request.currency, account.id)
                for d, account in zip(opened, accounts, strict=True)
            ],
        )

    def _answers(
        self,
        decisions: list[_Decision],
        rows: dict[str, Any],
        existing: dict[str, list[str]],
        added: dict[str, list[str]],
    ) -> tuple[list[Answer], dict[int, str]]:
        """Each request's answer; and the requests whose wallet was opened before this batch (answered with the
        wallet as it is now, read after the batch, as `open_wallet` reads it on replay)."""
        service = self.service
        answers: list[Answer] = []
        stored_wallets: dict[int, str] = {}
        fresh_wallets: dict[str, dict[str, Any]] = {}
        created: dict[str, Mapping[str, Any]] = {}  # customer id -> the row this batch registered it with
        for d in decisions:
            item = d.item
            if d.error is not None:
                answers.append((d.error.http_status, {"error": d.error.to_dict()}, False))
                continue
            assert item.details is not None
            customer_id = item.customer_id
            wallets = existing.get(customer_id, []) + added.get(customer_id, [])[: d.wallets_before]
            if d.customer == _STORED:
                row = rows[customer_id]
                customer = service._customer_json(row, service._unsealed_national_id(row), wallets)
            else:  # registered here, by this request or an earlier one with the same key and details
                row = created.setdefault(customer_id, item.row)
                customer = service._customer_json(row, item.details.national_id, wallets)
            if d.wallet == _STORED:
                stored_wallets[item.index] = d.wallet_id
                wallet: dict[str, Any] = {}
            elif d.wallet == _EARLIER:
                wallet = fresh_wallets[d.wallet_id]
            else:
                wallet_row = {
                    **service._wallet_row(d.wallet_id, customer_id, item.request.currency, 0),
                    "customer_kind": row["kind"],
                    "kyc_tier": row["kyc_tier"],
                }
                wallet = fresh_wallets[d.wallet_id] = service._wallet_json(wallet_row, 0, 0, 0)
            replayed = _FRESH not in (d.customer, d.wallet)
            answers.append((201, {"customer": customer, "wallet": wallet}, replayed))
        return answers, stored_wallets

    # ------------------------------------------------------------ plumbing

    def _retrying(self, work: Callable[[Connection], _T]) -> _T:
        """`work` in a transaction; decided again when a concurrent request stored one of its keys or
        registered one of its national ids first."""
        attempt = 0
        while True:
            try:
                return self.service.db.run(work)
            except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation, sqlite3.IntegrityError) as exc:
                # the bulk writes go through the driver, whose errors arrive unwrapped
                attempt += 1
                text = str(exc).lower()
                if attempt > KEY_COLLISION_RETRIES_MAX or ("idempotency" not in text and "national_id" not in text):
                    raise
