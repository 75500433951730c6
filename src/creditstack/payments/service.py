"""Payments use cases: customers, wallets, top-ups and withdrawals over the bank rail, peer transfers,
merchant payments and refunds, bill payments, history.

Every movement is one balanced ledger entry (or hold), posted through `LedgerService` inside the
payment's own transaction, so the payment row, the limit counters, the idempotency record, the ledger
entry and the outbox event commit together or not at all. `submit_batch` does the same for many payments
in one transaction, with the same outcomes (payments/batch.py).

Outcomes follow the ledger's idempotency rules: a malformed or impossible request (unknown or frozen
wallet, self-transfer, wrong currency, refund of a refund) is refused before anything runs and stores
nothing; a request that ran and was refused by the state of the world (insufficient funds, a limit) is a
stored business rejection, replayed as it was. Rail calls happen outside database transactions: the
instruction is recorded first (with its end-to-end id, the rail's idempotency key), then sent, then its
outcome applied; a timeout leaves the payment `unknown` and any hold in place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import business_date as business_dates
from creditstack.core import events, idempotency
from creditstack.core.clock import Clock
from creditstack.core.db import Database
from creditstack.core.errors import CreditstackError, ValidationFailed
from creditstack.core.events import DomainEvent
from creditstack.core.ids import new_id
from creditstack.core.money import Currency, Money
from creditstack.core.security import PiiVault
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.domain import (
    AccountType,
    Command,
    PostEntry,
    PostHold,
    PostingSpec,
    ReserveHold,
    Side,
    VoidHold,
)
from creditstack.ledger.service import CommandResult, LedgerService, NewAccount
from creditstack.payments import errors
from creditstack.payments import repository as repo
from creditstack.payments.batch import PaymentBatch
from creditstack.payments.domain import (
    DEFAULT_TIERS,
    BankRail,
    BillPayment,
    CustomerDetails,
    CustomerKind,
    FundingSource,
    MerchantPayment,
    Onboarding,
    PaymentKind,
    PaymentRequest,
    PaymentStatus,
    RailInstruction,
    RailOutcome,
    RefundFeePolicy,
    TierLimits,
    TopUp,
    Transfer,
    WalletStatus,
    check_customer,
    check_limits,
    keyed_id,
    merchant_fee,
    period_keys,
    refund_fee_share,
)
from creditstack.payments.domain import Income as Income  # noqa: PLC0414 - re-exported: callers import it from here
from creditstack.payments.onboarding import OnboardingBatch, OnboardingResult
from creditstack.payments.reconciliation import LedgerItem, LedgerStatus, reconcile, statement_date
from creditstack.payments.statement_errors import StatementMalformed
from creditstack.payments.statements import BankStatement, CreditDebit, parse_camt053, parse_statement_csv

SERVICE = "platform"
LEDGER_MEMBER = "payments"
TOPIC_COMPLETED = "payments.payment_completed"
TOPIC_RAIL_BREAK = "payments.rail_break"
#: Largest page of payment history.
HISTORY_PAGE_MAX = 500
#: How many times a payment is decided again after colliding with a concurrent duplicate key.
KEY_COLLISION_RETRIES_MAX = 5


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """One call's answer: HTTP-like status, body (stored on first run, replayed later), replay flag."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.body.get("status") not in (None, PaymentStatus.REJECTED.value) and "error" not in self.body

    @property
    def payment_id(self) -> str | None:
        value = self.body.get("payment_id")
        return str(value) if value is not None else None

    @property
    def error_code(self) -> str | None:
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None


class PaymentsService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ledger: LedgerService,
        vault: PiiVault,
        rail: BankRail,
        *,
        tiers: dict[int, TierLimits] | None = None,
        funding_sources: dict[str, FundingSource] | None = None,
        timing_tolerance_business_days: int = 2,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.vault = vault
        self.rail = rail
        self.tiers = tiers or dict(DEFAULT_TIERS)
        self.funding_sources = dict(funding_sources or {})
        self.timing_tolerance_business_days = timing_tolerance_business_days
        self._house: dict[tuple[str, str], int] = {}

    def register_funding_source(self, source: FundingSource) -> None:
        self.funding_sources[source.name] = source

    # ------------------------------------------------------------ house accounts

    HOUSE_PURPOSES = ("settlement", "fee_income", "suspense")

    def ensure_house_accounts(self, currency: str) -> None:
        """Open the house accounts of a currency if missing. Called before a payment's transaction starts,
        never inside one (opening an account is its own transaction)."""
        for purpose in self.HOUSE_PURPOSES:
            self._house_account(purpose, currency)

    def house_account(self, purpose: str, currency: str) -> int:
        """The ledger account of a house purpose: settlement (asset at the custodian bank), fee_income,
        suspense (rail breaks). Inside a transaction only after `ensure_house_accounts`."""
        cached = self._house.get((purpose, currency))
        if cached is None:
            raise CreditstackError(f"house account {purpose} {currency} used before ensure_house_accounts")
        return cached

    def _house_account(self, purpose: str, currency: str) -> int:
        cached = self._house.get((purpose, currency))
        if cached is not None:
            return cached
        account_type = {"settlement": "asset", "fee_income": "income", "suspense": "asset"}[purpose]
        # hot house accounts: never a lock, insert-only deltas
        found = self.ledger.ensure_account(
            member=LEDGER_MEMBER,
            code=f"payments:{purpose}:{currency}",
            currency=currency,
            type=account_type,
            uses_deltas=True,
        )
        self._house[(purpose, currency)] = found.id
        return found.id

    # ------------------------------------------------------------ customers

    def register_customer(
        self,
        *,
        kind: CustomerKind | str,
        legal_name: str,
        national_id: str | None = None,
        date_of_birth: date | None = None,
        address: str | None = None,
        phone: str | None = None,
        kyc_tier: int = 1,
        incomes: Sequence[Income] = (),
        merchant_category: str | None = None,
        fee_bps: int | None = None,
        refund_fee_policy: str | None = None,
        reference_pattern: str | None = None,
        member: str | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Register a consumer, merchant or biller. Personal data is sealed; only the id is returned.

        With an idempotency key the customer's id derives from (member, key): a repeated request returns
        the same customer; the same key with other details is `idempotency.key_reused`."""
        details = self._checked_customer(
            kind=kind,
            legal_name=legal_name,
            national_id=national_id,
            date_of_birth=date_of_birth,
            address=address,
            phone=phone,
            kyc_tier=kyc_tier,
            incomes=incomes,
            merchant_category=merchant_category,
            fee_bps=fee_bps,
            refund_fee_policy=refund_fee_policy,
            reference_pattern=reference_pattern,
        )
        customer_id = new_id("cus") if key is None else keyed_id("cus", member or "", key)
        request_fingerprint = self._customer_fingerprint(details)
        lookup = self._national_id_hash(details)
        row = self._customer_row(customer_id, details)

        def work(conn: Connection) -> None:
            if key is not None:
                idempotency.check_key(key)
                stored = idempotency.lookup(conn, PLATFORM_CORE, member or "", key)
                if stored is not None:
                    stored.replay(request_fingerprint, key)
                    return
            if lookup is not None and repo.customer_by_national_id_hash(conn, details.kind.value, lookup):
                raise self._duplicate_customer(details)
            if key is not None:
                self._remember_creation(conn, member, key, request_fingerprint, "customer", customer_id)
            repo.insert_customer(conn, row)
            repo.insert_incomes(conn, customer_id, self._income_rows(details))

        self.db.run(work)
        return self.get_customer(customer_id)

    def register_batch(self, requests: Sequence[Onboarding], *, member: str) -> list[OnboardingResult]:
        """Many customers registered and their wallets opened at once: one result per request, in order, each
        the answer `register_customer(...)` followed by `open_wallet(customer_id, currency, ...)` would have
        given had the requests been sent one by one in this order — body `{"customer": …, "wallet": …}` (what
        the two calls return) with status 201, `replayed` when both keys had been used before; or an error
        as a value (`{"error": {...}}` with its HTTP status) that never stops the others.

        One transaction for the whole batch (joining the caller's `Database.batch()` when one is open), a
        handful of set-based statements, the wallets' ledger accounts opened in one insert
        (`LedgerService.open_accounts_in_transaction`). Each request is all or nothing: where the single
        calls would register the customer and then refuse the wallet (an unknown currency, a malformed
        wallet key, a wallet key used before for something else), the batch answers the same error and
        registers nothing. At most `ONBOARDING_BATCH_MAX` requests, else `request.limit_exceeded` for the
        whole batch. See payments/onboarding.py and payments/README.md.
        """
        answers = OnboardingBatch(self, requests, member).run()
        return [OnboardingResult(status, body, replayed=replayed) for status, body, replayed in answers]

    def _checked_customer(
        self,
        *,
        kind: CustomerKind | str,
        legal_name: str,
        national_id: str | None = None,
        date_of_birth: date | None = None,
        address: str | None = None,
        phone: str | None = None,
        kyc_tier: int = 1,
        incomes: Sequence[Income] = (),
        merchant_category: str | None = None,
        fee_bps: int | None = None,
        refund_fee_policy: str | None = None,
        reference_pattern: str | None = None,
    ) -> CustomerDetails:
        """`domain.check_customer` with this service's KYC tiers and today's date: the details checked and
        normalised, or `payments.invalid_customer` naming the first bad field."""
        return check_customer(
            kind=kind,
            legal_name=legal_name,
            national_id=national_id,
            date_of_birth=date_of_birth,
            address=address,
            phone=phone,
            kyc_tier=kyc_tier,
            incomes=incomes,
            merchant_category=merchant_category,
            fee_bps=fee_bps,
            refund_fee_policy=refund_fee_policy,
            reference_pattern=reference_pattern,
            tiers=self.tiers,
            today=self.clock.now().date(),
        )

    def _customer_fingerprint(self, details: CustomerDetails) -> str:
        """The registration's idempotency fingerprint: keyed, since a plain hash of personal data could be
        reversed by guessing."""
        return self.vault.lookup_hash(idempotency.canonical_json(details.fingerprint_source()), kind="request")

    def _national_id_hash(self, details: CustomerDetails) -> str | None:
        return self.vault.lookup_hash(details.national_id, kind="national_id") if details.national_id else None

    @staticmethod
    def _duplicate_customer(details: CustomerDetails) -> errors.DuplicateCustomer:
        return errors.DuplicateCustomer(f"a {details.kind.value} with this national id exists")

    def _customer_row(self, customer_id: str, details: CustomerDetails) -> dict[str, Any]:
        """The customer's row with its personal data sealed (each value bound to the customer and field)."""

        def seal(value: str | None, what: str) -> str | None:
            return None if value is None else self.vault.seal(value, context=f"{customer_id}:{what}")

        date_of_birth = details.date_of_birth
        return {
            "id": customer_id,
            "kind": details.kind.value,
            "legal_name_sealed": seal(details.legal_name, "legal_name"),
            "date_of_birth_sealed": seal(date_of_birth.isoformat() if date_of_birth else None, "date_of_birth"),
            "national_id_sealed": seal(details.national_id, "national_id"),
            "national_id_hash": self._national_id_hash(details),
            "address_sealed": seal(details.address, "address"),
            "phone_sealed": seal(details.phone, "phone"),
            "kyc_tier": details.kyc_tier,
            "merchant_category": details.merchant_category,
            "fee_bps": details.fee_bps,
            "refund_fee_policy": details.refund_fee_policy,
            "reference_pattern": details.reference_pattern,
            "created_at": self.clock.now(),
        }

    @staticmethod
    def _income_rows(details: CustomerDetails) -> list[tuple[date, int, str]]:
        return [(i.as_of, i.annual_income.amount_minor, i.annual_income.currency.code) for i in details.incomes]

    def get_customer(self, customer_id: str, *, owner: str | None = None) -> dict[str, Any]:
        """The customer without personal data (masked national id), as any authorised caller may see it."""
        if owner is not None and owner != customer_id:
            raise errors.CustomerNotFound(f"no customer {customer_id}")

        def work(conn: Connection) -> dict[str, Any]:
            row = repo.customer_row(conn, customer_id)
            if row is None:
                raise errors.CustomerNotFound(f"no customer {customer_id}")
            wallets = [w.id for w in repo.wallets_of(conn, customer_id)]
            return self._customer_json(row._mapping, self._unsealed_national_id(row._mapping), wallets)

        return self.db.run(work, readonly=True)

    def _unsealed_national_id(self, row: Mapping[str, Any]) -> str | None:
        sealed = row["national_id_sealed"]
        return self.vault.open(sealed, context=f"{row['id']}:national_id") if sealed else None

    @staticmethod
    def _customer_json(row: Mapping[str, Any], national_id: str | None, wallet_ids: list[str]) -> dict[str, Any]:
        """The customer as `get_customer` shows it, from its row's values, its national id in the clear (only
        the masked form leaves) and its wallets' ids."""
        masked = None
        if national_id:
            masked = national_id[:2] + "*" * (len(national_id) - 6) + national_id[-4:]
        return {
            "id": row["id"],
            "kind": row["kind"],
            "kyc_tier": int(row["kyc_tier"]),
            "national_id_masked": masked,
            "merchant_category": row["merchant_category"],
            "fee_bps": row["fee_bps"],
            "refund_fee_policy": row["refund_fee_policy"],
            "wallets": list(wallet_ids),
        }

    def customer_personal_data(self, customer_id: str) -> dict[str, Any]:
        """Unsealed personal data, for the operator's KYC view and the bureau furnishing job only."""

        def work(conn: Connection) -> dict[str, Any]:
            row = repo.customer_row(conn, customer_id)
            if row is None:
                raise errors.CustomerNotFound(f"no customer {customer_id}")

            def unseal(value: str | None, what: str) -> str | None:
                return None if value is None else self.vault.open(value, context=f"{customer_id}:{what}")

            return {
                "id": customer_id,
                "legal_name": unseal(row.legal_name_sealed, "legal_name"),
                "date_of_birth": unseal(row.date_of_birth_sealed, "date_of_birth"),
                "national_id": unseal(row.national_id_sealed, "national_id"),
                "address": unseal(row.address_sealed, "address"),
                "phone": unseal(row.phone_sealed, "phone"),
            }

        return self.db.run(work, readonly=True)

    def find_customer_by_national_id(self, national_id: str, kind: str = "consumer") -> str | None:
        lookup = self.vault.lookup_hash("".join(national_id.split()).upper(), kind="national_id")
        row = self.db.run(lambda conn: repo.customer_by_national_id_hash(conn, kind, lookup), readonly=True)
        return None if row is None else str(row.id)

    def average_annual_income(self, customer_id: str, as_of: date, years: int = 3) -> Money | None:
        """Mean of the annual incomes declared in the `years` before `as_of` (the lending caps use 3)."""
        rows = self.db.run(lambda conn: repo.incomes_of(conn, customer_id), readonly=True)
        window_start = (
            as_of.replace(year=as_of.year - years)
            if not (as_of.month == 2 and as_of.day == 29)
            else (as_of - timedelta(days=365 * years + 1))
        )
        recent = [r for r in rows if window_start < r.as_of <= as_of]
        if not recent:
            return None
        currency = recent[0].currency
        total = sum(int(r.annual_income_minor) for r in recent)
        return Money(total // len(recent), Currency.of(currency))

    def _remember_creation(
        self, conn: Connection, member: str | None, key: str, fingerprint: str, what: str, object_id: str
    ) -> None:
        """Store a creation's outcome under its idempotency key, in the creating transaction."""
        idempotency.store(
            conn,
            PLATFORM_CORE,
            member=member or "",
            key=key,
            request_hash_value=fingerprint,
            operation=f"payments.{what}",
            status_code=201,
            outcome={f"{what}_id": object_id},
            now=self.clock.now(),
        )

    # ------------------------------------------------------------ wallets

    def open_wallet(
        self,
        customer_id: str,
        currency: str = "CNY",
        *,
        owner: str | None = None,
        member: str | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Open a no-overdraft wallet. With an idempotency key the wallet's id derives from (member, key), so
        a repeated request — even one cut off half way — returns the same wallet."""
        Currency.of(currency)
        if owner is not None and owner != customer_id:
            raise errors.CustomerNotFound(f"no customer {customer_id}")
        if self.db.run(lambda conn: repo.customer_row(conn, customer_id), readonly=True) is None:
            raise errors.CustomerNotFound(f"no customer {customer_id}")
        request_fingerprint = self._wallet_fingerprint(customer_id, currency)
        if key is not None:
            idempotency.check_key(key)
            stored = self.db.run(lambda conn: idempotency.lookup(conn, PLATFORM_CORE, member or "", key), readonly=True)
            if stored is not None:
                stored.replay(request_fingerprint, key)
                return self.get_wallet(stored.outcome["wallet_id"])
        wallet_id = new_id("wal") if key is None else keyed_id("wal", member or "", key)
        spec = self._wallet_account(wallet_id, customer_id, currency)
        account = self.ledger.find_account(spec.code) or self.ledger.open_account(
            member=spec.member,
            code=spec.code,
            currency=spec.currency,
            type=spec.type,
            no_overdraft=spec.no_overdraft,
            metadata=spec.metadata,
        )

        def work(conn: Connection) -> None:
            if key is not None:
                self._remember_creation(conn, member, key, request_fingerprint, "wallet", wallet_id)
            repo.insert_wallet(conn, self._wallet_row(wallet_id, customer_id, currency, account.id))

        self.db.run(work)
        return self.get_wallet(wallet_id)

    @staticmethod
    def _wallet_fingerprint(customer_id: str, currency: str) -> str:
        return idempotency.request_hash("payments.wallet", [customer_id, currency])

    @staticmethod
    def _wallet_account(wallet_id: str, customer_id: str, currency: str) -> NewAccount:
        """The wallet's ledger account: a no-overdraft liability (what the platform owes the customer)."""
        return NewAccount(
            member=LEDGER_MEMBER,
            code=f"payments:wallet:{wallet_id}",
            currency=currency,
            type=AccountType.LIABILITY,
            no_overdraft=True,
            metadata={"wallet_id": wallet_id, "customer_id": customer_id},
        )

    def _wallet_row(self, wallet_id: str, customer_id: str, currency: str, ledger_account_id: int) -> dict[str, Any]:
        return {
            "id": wallet_id,
            "customer_id": customer_id,
            "currency": currency,
            "ledger_account_id": ledger_account_id,
            "status": WalletStatus.ACTIVE.value,
            "created_at": self.clock.now(),
        }

    def get_wallet(self, wallet_id: str, *, owner: str | None = None) -> dict[str, Any]:
        row = self.db.run(lambda conn: repo.wallet_row(conn, wallet_id), readonly=True)
        if row is None or (owner is not None and row.customer_id != owner):
            raise errors.WalletNotFound(f"no wallet {wallet_id}")
        account = self.ledger.get_account(int(row.ledger_account_id))
        return self._wallet_json(
            row._mapping, account.balance_minor, account.available_minor, account.pending_out_minor
        )

    def _wallet_json(
        self, row: Mapping[str, Any], balance_minor: int, available_minor: int, held_minor: int
    ) -> dict[str, Any]:
        """The wallet as `get_wallet` shows it, from its row (with its customer's kind and KYC tier, as
        `repository.wallet_row` reads it) and its ledger account's balance, available and held amounts."""
        currency = row["currency"]
        limits = self.tiers[int(row["kyc_tier"])]
        return {
            "id": row["id"],
            "customer_id": row["customer_id"],
            "customer_kind": row["customer_kind"],
            "currency": currency,
            "status": row["status"],
            "kyc_tier": int(row["kyc_tier"]),
            "balance": {"amount_minor": balance_minor, "currency": currency},
            "available": {"amount_minor": available_minor, "currency": currency},
            "held": {"amount_minor": held_minor, "currency": currency},
            "limits": {
                "per_transaction_minor": limits.per_transaction_minor,
                "daily_minor": limits.daily_minor,
                "monthly_minor": limits.monthly_minor,
                "daily_count_max": limits.daily_count_max,
            },
        }

    def wallet_ledger_account(self, wallet_id: str) -> tuple[int, str, str, str]:
        """(ledger account id, customer id, currency, status) of a wallet — for contexts that move money
        into or out of it through the ledger (lending's disbursements and repayments)."""
        row = self.db.run(lambda conn: repo.wallet_row(conn, wallet_id), readonly=True)
        if row is None:
            raise errors.WalletNotFound(f"no wallet {wallet_id}", field="wallet_id")
        return int(row.ledger_account_id), str(row.customer_id), str(row.currency), str(row.status)

    def wallet_owner(self, wallet_id: str) -> str | None:
        row = self.db.run(lambda conn: repo.wallet_row(conn, wallet_id), readonly=True)
        return None if row is None else str(row.customer_id)

    def set_wallet_frozen(self, wallet_id: str, frozen: bool) -> dict[str, Any]:
        def work(conn: Connection) -> None:
            row = repo.wallet_row(conn, wallet_id)
            if row is None:
                raise errors.WalletNotFound(f"no wallet {wallet_id}")
            if row.status == WalletStatus.CLOSED:
                raise errors.WalletClosed(f"wallet {wallet_id} is closed")
            repo.set_wallet_status(conn, wallet_id, WalletStatus.FROZEN if frozen else WalletStatus.ACTIVE)

        self.db.run(work)
        return self.get_wallet(wallet_id)

    def close_wallet(self, wallet_id: str, *, owner: str | None = None) -> dict[str, Any]:
        wallet = self.get_wallet(wallet_id, owner=owner)
        if wallet["status"] == WalletStatus.CLOSED:
            return wallet  # closing is idempotent
        if wallet["balance"]["amount_minor"] != 0 or wallet["held"]["amount_minor"] != 0:
            raise errors.WalletNotEmpty(f"wallet {wallet_id} holds {wallet['balance']['amount_minor']}")
        self.db.run(lambda conn: repo.set_wallet_status(conn, wallet_id, WalletStatus.CLOSED))
        return self.get_wallet(wallet_id)

    # ------------------------------------------------------------ shared machinery

    def _idempotent(
        self,
        member: str,
        key: str,
        operation: str,
        request: dict[str, Any],
        work: Callable[[Connection, str], tuple[int, dict[str, Any]]],
        currency: Currency,
    ) -> PaymentResult:
        """Run `work` once per (member, key): store its outcome with the request's hash, replay it after."""
        idempotency.check_key(key)
        self.ensure_house_accounts(currency.code)
        request_hash = idempotency.request_hash(operation, request)
        attempt = 0
        while True:
            try:
                return self.db.run(lambda conn: self._once(conn, member, key, operation, request_hash, work))
            except sa.exc.IntegrityError as exc:
                attempt += 1
                if attempt > KEY_COLLISION_RETRIES_MAX or "idempotency" not in str(exc).lower():
                    raise

    def _once(
        self,
        conn: Connection,
        member: str,
        key: str,
        operation: str,
        request_hash: str,
        work: Callable[[Connection, str], tuple[int, dict[str, Any]]],
    ) -> PaymentResult:
        status_code, body, replayed = idempotency.once(
            conn,
            PLATFORM_CORE,
            member=member,
            key=key,
            operation=operation,
            request_hash_value=request_hash,
            work=lambda: work(conn, request_hash),
            now=self.clock.now(),
        )
        if replayed and "payment_id" in body and "error" not in body:  # asynchronous payments: where they are now
            row = repo.payment_row(conn, body["payment_id"])
            if row is not None:
                body = self._payment_json(row)
        return PaymentResult(status_code, body, replayed=replayed)

    def _business_date(self, conn: Connection) -> date:
        return business_dates.current(conn, PLATFORM_CORE, SERVICE)

    def _wallet(self, conn: Connection, wallet_id: str, *, owner: str | None = None, role: str = "wallet") -> Any:
        return self._checked_wallet(repo.wallet_row(conn, wallet_id), wallet_id, owner=owner, role=role)

    @staticmethod
    def _checked_wallet(row: Any, wallet_id: str, *, owner: str | None = None, role: str = "wallet") -> Any:
        """The wallet row if a payment may use it (`row` as `repo.wallet_row` reads it, or None)."""
        if row is None or (owner is not None and row.customer_id != owner):
            raise errors.WalletNotFound(f"no {role} wallet {wallet_id}", field=f"{role}_wallet_id")
        if row.status == WalletStatus.FROZEN:
            raise errors.WalletFrozen(f"wallet {wallet_id} is frozen", field=f"{role}_wallet_id")
        if row.status == WalletStatus.CLOSED:
            raise errors.WalletClosed(f"wallet {wallet_id} is closed", field=f"{role}_wallet_id")
        return row

    @staticmethod
    def _amount(amount: Money, wallet: Any) -> None:
        if amount.amount_minor <= 0:
            raise ValidationFailed("amount must be positive", field="amount")
        if amount.currency.code != wallet.currency:
            raise errors.CurrencyMismatch(
                f"wallet {wallet.id} is in {wallet.currency}, not {amount.currency.code}", field="amount"
            )

    def _post(self, conn: Connection, commands: Sequence[Command]) -> list[CommandResult]:
        """Post in the payment's own transaction. Every key names one step of one payment
        (`payments:{payment id}:{step}`), taken once under the payment row's state machine and answered on a
        repeat from the payment's own idempotency record: the ledger keeps no outcome of its own for it."""
        return self.ledger.post_in_transaction(conn, commands, linked=len(commands) > 1, caller_keyed=True)

    def _payment_row(
        self,
        payment_id: str,
        kind: PaymentKind,
        status: PaymentStatus,
        member: str,
        key: str,
        amount: Money,
        business_date: date,
        **extra: Any,
    ) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "id": payment_id,
            "kind": kind.value,
            "status": status.value,
            "member": member,
            "idempotency_key": key,
            "amount_minor": amount.amount_minor,
            "currency": amount.currency.code,
            "business_date": business_date,
            "created_at": now,
            "updated_at": now,
            **extra,
        }

    @staticmethod
    def _payment_json(row: Any) -> dict[str, Any]:
        """The payment as the API shows it, from a stored row."""
        return PaymentsService._payment_json_of(row._mapping)

    @staticmethod
    def _payment_json_of(row: Mapping[str, Any]) -> dict[str, Any]:
        """`_payment_json` from a row's values: a stored row's mapping, or a row as the batch path writes it
        (columns it leaves out read as their defaults, as the database would fill them in)."""
        currency = row["currency"]
        body: dict[str, Any] = {
            "payment_id": row["id"],
            "kind": row["kind"],
            "status": row["status"],
            "amount": {"amount_minor": int(row["amount_minor"]), "currency": currency},
            "fee": {"amount_minor": int(row.get("fee_minor") or 0), "currency": currency},
            "refunded": {"amount_minor": int(row.get("refunded_minor") or 0), "currency": currency},
            "payer_wallet_id": row.get("payer_wallet_id"),
            "payee_wallet_id": row.get("payee_wallet_id"),
            "business_date": row["business_date"].isoformat(),
            "funding": row.get("funding") or "wallet",
        }
        for name in _PAYMENT_JSON_OPTIONAL:
            value = row.get(name)
            if value is not None:
                body[name] = value
        bill_due_date = row.get("bill_due_date")
        if bill_due_date is not None:
            body["bill_due_date"] = bill_due_date.isoformat()
        return body

    def _completed_event(self, row: dict[str, Any], counterparty: str | None) -> DomainEvent:
        return DomainEvent(
            TOPIC_COMPLETED,
            row["id"],
            row["business_date"],
            {
                "payment_id": row["id"],
                "kind": row["kind"],
                "amount_minor": row["amount_minor"],
                "currency": row["currency"],
                "merchant_category": row.get("merchant_category"),
                "payer_customer_id": row.get("payer_customer_id"),
                "payee_customer_id": row.get("payee_customer_id"),
                "counterparty_wallet_id": counterparty,
                "business_date": row["business_date"].isoformat(),
                "bill_due_date": row["bill_due_date"].isoformat() if row.get("bill_due_date") else None,
                "funding": row.get("funding", "wallet"),
            },
        )

    def _finish(
        self, conn: Connection, row: dict[str, Any], events_to_write: Sequence[DomainEvent]
    ) -> tuple[int, dict[str, Any]]:
        repo.insert_payment(conn, row)
        events.flush_events(conn, PLATFORM_CORE, events_to_write, self.clock.now())
        return self._answer(self._payment_json(repo.payment_row(conn, row["id"])), row)

    @staticmethod
    def _answer(body: dict[str, Any], row: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and body a new payment answers with (and stores under its key), from its JSON."""
        if row["status"] == PaymentStatus.REJECTED.value:
            code = row["error_code"]
            return 409, {**body, "error": {"code": code, "message": _REJECTION_MESSAGES.get(code, code)}}
        return (201 if row["status"] == PaymentStatus.COMPLETED.value else 202), body

    def _written_answer(self, row: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """What `_finish` answers for `row`, computed from the row as the batch path writes it (no read back)."""
        return self._answer(self._payment_json_of(row), row)

    def _outgoing_transfer(
        self,
        conn: Connection,
        *,
        kind: PaymentKind,
        member: str,
        key: str,
        payer: Any,
        payee: Any,
        amount: Money,
        fee_minor: int = 0,
        extra: dict[str, Any] | None = None,
        funding: FundingSource | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Limits, then one ledger entry payer → payee (and fee), then the payment row and its event."""
        bd = self._business_date(conn)
        payment_id = new_id("pay")
        day_key, month_key = period_keys(bd)
        base = self._outgoing_row(payment_id, kind, member, key, payer, payee, amount, bd, fee_minor, extra)
        if funding is None:
            usage = repo.lock_usage(conn, payer.id, day_key, month_key)
            try:
                check_limits(self.tiers[int(payer.kyc_tier)], usage, amount.amount_minor)
            except errors.LimitExceeded as exc:
                base.update(status=PaymentStatus.REJECTED.value, error_code=exc.code)
                status, body = self._finish(conn, base, [])
                return status, {**body, "error": exc.to_dict()}
            debit_account = int(payer.ledger_account_id)
        else:
            leg = funding.reserve(
                conn,
                customer_id=payer.customer_id,
                amount_minor=amount.amount_minor,
                currency=amount.currency.code,
                payment_id=payment_id,
            )
            debit_account = leg.ledger_account_id
            base["funding"] = funding.name
        result = self._post(conn, [self._outgoing_entry(payment_id, kind, debit_account, payee, amount, fee_minor)])[0]
        if not result.ok:
            if result.error_code != "ledger.insufficient_funds":
                raise CreditstackError(f"ledger refused payment: {result.error_code}")
            base.update(status=PaymentStatus.REJECTED.value, error_code=errors.InsufficientFunds.code)
            return self._finish(conn, base, [])
        if funding is None:
            repo.add_usage(conn, payer.id, (day_key, month_key), amount.amount_minor, 1)
        base["entry_seq"] = result.entry_seq
        source_events = list(leg.events) if funding is not None else []
        return self._finish(conn, base, [self._completed_event(base, payee.id), *source_events])

    def _outgoing_row(
        self,
        payment_id: str,
        kind: PaymentKind,
        member: str,
        key: str,
        payer: Any,
        payee: Any,
        amount: Money,
        bd: date,
        fee_minor: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The row of an outgoing payment, completed until a limit or the ledger says otherwise."""
        return self._payment_row(
            payment_id,
            kind,
            PaymentStatus.COMPLETED,
            member,
            key,
            amount,
            bd,
            payer_wallet_id=payer.id,
            payee_wallet_id=payee.id,
            payer_customer_id=payer.customer_id,
            payee_customer_id=payee.customer_id,
            fee_minor=fee_minor,
            **(extra or {}),
        )

    def _outgoing_entry(
        self, payment_id: str, kind: PaymentKind, debit_account: int, payee: Any, amount: Money, fee_minor: int
    ) -> PostEntry:
        """One ledger entry: the debit account pays the payee the amount less the fee, and fee income the fee."""
        currency = amount.currency.code
        postings = [
            PostingSpec(debit_account, Side.DEBIT, amount.amount_minor, currency),
            PostingSpec(int(payee.ledger_account_id), Side.CREDIT, amount.amount_minor - fee_minor, currency),
        ]
        if fee_minor:
            postings.append(PostingSpec(self.house_account("fee_income", currency), Side.CREDIT, fee_minor, currency))
        if amount.amount_minor - fee_minor == 0:
            postings.pop(1)
        return PostEntry(
            LEDGER_MEMBER, f"payments:{payment_id}:{kind.value}", tuple(postings), f"{kind.value} {payment_id}"
        )

    # ------------------------------------------------------------ peer, merchant and bill payments

    def transfer(
        self,
        *,
        member: str,
        key: str,
        payer_wallet_id: str,
        payee_wallet_id: str,
        amount: Money,
        owner: str | None = None,
    ) -> PaymentResult:
        """A peer-to-peer transfer between two consumers' wallets."""
        return self._single(Transfer(key, payer_wallet_id, payee_wallet_id, amount), member, owner)

    def pay_merchant(
        self,
        *,
        member: str,
        key: str,
        payer_wallet_id: str,
        merchant_wallet_id: str,
        amount: Money,
        funding: str = "wallet",
        owner: str | None = None,
    ) -> PaymentResult:
        """Pay a merchant from the wallet, or from a registered funding source (the credit line)."""
        return self._single(MerchantPayment(key, payer_wallet_id, merchant_wallet_id, amount, funding), member, owner)

    def pay_bill(
        self,
        *,
        member: str,
        key: str,
        payer_wallet_id: str,
        biller_wallet_id: str,
        reference: str,
        amount: Money,
        due_date: date | None = None,
        owner: str | None = None,
    ) -> PaymentResult:
        """Pay a registered biller; the reference must match the biller's format."""
        return self._single(
            BillPayment(key, payer_wallet_id, biller_wallet_id, reference, amount, due_date), member, owner
        )

    def submit_batch(self, requests: Sequence[PaymentRequest], *, member: str) -> list[PaymentResult]:
        """Many merchant payments, bill payments, transfers and top-ups at once: one result per request, in
        order, each the status code and body the single method (`pay_merchant`, `pay_bill`, `transfer`,
        `top_up`) would have answered had the requests been sent one by one in this order.

        One transaction for the whole batch (joining the caller's `Database.batch()` when one is open); reads
        and writes are set-based and all ledger entries go to the ledger in one call. A request refused by
        validation answers its error as a value (`{"error": {...}}` with the error's HTTP status) and stores
        nothing; it never stops the others. Top-ups are recorded in their own short transaction first, so
        that the rail is called only for instructions already on file, as `top_up` does (inside a caller's
        `Database.batch()` that transaction is the caller's, as it is for `top_up`); a rail that raises
        leaves its top-up pending instead of failing the batch. Credit-line merchant payments run through
        the single path at their place in the batch. At most `PAYMENT_BATCH_MAX` requests (and no more than
        the ledger's batch bound), else `request.limit_exceeded` for the whole batch. See payments/README.md.
        """
        answers = PaymentBatch(self, requests, member).run()
        return [PaymentResult(status, body, replayed=replayed) for status, body, replayed in answers]

    def _single(self, request: PaymentRequest, member: str, owner: str | None) -> PaymentResult:
        """One request through its own transaction (the single path)."""
        work = self._work(request, member, owner)
        result = self._idempotent(
            member, request.key, request.operation, request.request(), work, request.amount.currency
        )
        if isinstance(request, TopUp):
            return self._send_to_rail(result, "collect", request.bank_account_token)
        return result

    def _work(
        self, request: PaymentRequest, member: str, owner: str | None
    ) -> Callable[[Connection, str], tuple[int, dict[str, Any]]]:
        """The single path's unit of work for a request: validate, then pay (or record a rail payment)."""

        def wallets(conn: Connection) -> Callable[[str], Any]:
            return lambda wallet_id: repo.wallet_row(conn, wallet_id)

        def transfer(conn: Connection, _hash: str) -> tuple[int, dict[str, Any]]:
            assert isinstance(request, Transfer)
            payer, payee = self._transfer_parties(wallets(conn), request, owner)
            return self._outgoing_transfer(
                conn, kind=PaymentKind.P2P, member=member, key=request.key, payer=payer, payee=payee,
                amount=request.amount,
            )  # fmt: skip

        def merchant_payment(conn: Connection, _hash: str) -> tuple[int, dict[str, Any]]:
            assert isinstance(request, MerchantPayment)
            source, payer, merchant, fee = self._merchant_parties(wallets(conn), request, owner)
            return self._outgoing_transfer(
                conn,
                kind=PaymentKind.MERCHANT,
                member=member,
                key=request.key,
                payer=payer,
                payee=merchant,
                amount=request.amount,
                fee_minor=fee,
                extra={"merchant_category": merchant.merchant_category},
                funding=source,
            )

        def bill_payment(conn: Connection, _hash: str) -> tuple[int, dict[str, Any]]:
            assert isinstance(request, BillPayment)
            payer, biller = self._bill_parties(wallets(conn), request, owner)
            return self._outgoing_transfer(
                conn,
                kind=PaymentKind.BILL,
                member=member,
                key=request.key,
                payer=payer,
                payee=biller,
                amount=request.amount,
                extra={"biller_reference": request.reference, "bill_due_date": request.due_date},
            )

        def top_up(conn: Connection, _hash: str) -> tuple[int, dict[str, Any]]:
            assert isinstance(request, TopUp)
            wallet = self._top_up_wallet(wallets(conn), request, owner)
            return self._finish(conn, self._top_up_row(request, member, wallet, self._business_date(conn)), [])

        if isinstance(request, Transfer):
            return transfer
        if isinstance(request, MerchantPayment):
            return merchant_payment
        if isinstance(request, BillPayment):
            return bill_payment
        return top_up

    # Validation, shared by the single and the batch path: `find` reads a wallet row by id (None if unknown).

    def _transfer_parties(
        self, find: Callable[[str], Any], request: Transfer, owner: str | None = None
    ) -> tuple[Any, Any]:
        if request.payer_wallet_id == request.payee_wallet_id:
            raise errors.SelfTransfer("payer and payee are the same wallet", field="payee_wallet_id")
        payer = self._checked_wallet(find(request.payer_wallet_id), request.payer_wallet_id, owner=owner, role="payer")
        payee = self._checked_wallet(find(request.payee_wallet_id), request.payee_wallet_id, role="payee")
        self._amount(request.amount, payer)
        self._amount(request.amount, payee)
        return payer, payee

    def _merchant_parties(
        self, find: Callable[[str], Any], request: MerchantPayment, owner: str | None = None
    ) -> tuple[FundingSource | None, Any, Any, int]:
        """(funding source or None for the wallet, payer, merchant, fee)."""
        if request.payer_wallet_id == request.merchant_wallet_id:
            raise errors.SelfTransfer("payer and merchant are the same wallet", field="merchant_wallet_id")
        source = None
        if request.funding != "wallet":
            source = self.funding_sources.get(request.funding)
            if source is None:
                raise errors.FundingSourceUnavailable(f"no funding source {request.funding!r}", field="funding")
        payer = self._checked_wallet(find(request.payer_wallet_id), request.payer_wallet_id, owner=owner, role="payer")
        merchant = self._checked_wallet(find(request.merchant_wallet_id), request.merchant_wallet_id, role="merchant")
        if merchant.customer_kind != CustomerKind.MERCHANT:
            raise errors.WalletKindMismatch(
                f"wallet {request.merchant_wallet_id} is not a merchant's", field="merchant_wallet_id"
            )
        self._amount(request.amount, payer)
        self._amount(request.amount, merchant)
        return source, payer, merchant, merchant_fee(request.amount.amount_minor, int(merchant.fee_bps or 0))

    def _bill_parties(
        self, find: Callable[[str], Any], request: BillPayment, owner: str | None = None
    ) -> tuple[Any, Any]:
        payer = self._checked_wallet(find(request.payer_wallet_id), request.payer_wallet_id, owner=owner, role="payer")
        biller = self._checked_wallet(find(request.biller_wallet_id), request.biller_wallet_id, role="biller")
        if biller.customer_kind != CustomerKind.BILLER:
            raise errors.WalletKindMismatch(
                f"wallet {request.biller_wallet_id} is not a biller's", field="biller_wallet_id"
            )
        pattern = biller.reference_pattern or r"[0-9A-Za-z-]{1,64}"
        if len(request.reference) > 64 or not re.fullmatch(pattern, request.reference):
            raise errors.BillerReferenceInvalid(
                f"reference does not match the biller's format {pattern}", field="reference"
            )
        self._amount(request.amount, payer)
        self._amount(request.amount, biller)
        return payer, biller

    def _top_up_wallet(self, find: Callable[[str], Any], request: TopUp, owner: str | None = None) -> Any:
        wallet = self._checked_wallet(find(request.wallet_id), request.wallet_id, owner=owner)
        self._amount(request.amount, wallet)
        return wallet

    def _top_up_row(self, request: TopUp, member: str, wallet: Any, bd: date) -> dict[str, Any]:
        return self._rail_payment(
            PaymentKind.TOP_UP,
            member,
            request.key,
            request.amount,
            bd,
            request.bank_account_token,
            payee_wallet_id=wallet.id,
            payee_customer_id=wallet.customer_id,
        )

    def refund(
        self, *, member: str, key: str, payment_id: str, amount: Money, owner: str | None = None
    ) -> PaymentResult:
        """Refund part or all of a merchant payment; refunds together never exceed the payment.

        `owner`, when given, is the merchant customer who must own the payment's payee wallet.
        """
        request = {"payment_id": payment_id, "amount": amount.to_wire()}

        def work(conn: Connection, _hash: str) -> tuple[int, dict[str, Any]]:
            original = repo.payment_row(conn, payment_id, lock=True)
            if original is None or (owner is not None and original.payee_customer_id != owner):
                raise errors.PaymentNotFound(f"no payment {payment_id}", field="payment_id")
            if original.kind != PaymentKind.MERCHANT or original.status != PaymentStatus.COMPLETED:
                raise errors.NotRefundable(
                    f"payment {payment_id} is a {original.kind} ({original.status})", field="payment_id"
                )
            if amount.currency.code != original.currency:
                raise errors.CurrencyMismatch(f"payment is in {original.currency}", field="amount")
            if amount.amount_minor <= 0:
                raise ValidationFailed("amount must be positive", field="amount")
            merchant = repo.wallet_row(conn, original.payee_wallet_id)
            payer = repo.wallet_row(conn, original.payer_wallet_id)
            bd = self._business_date(conn)
            refund_id = new_id("pay")
            base = self._payment_row(
                refund_id,
                PaymentKind.REFUND,
                PaymentStatus.COMPLETED,
                member,
                key,
                amount,
                bd,
                payer_wallet_id=merchant.id,
                payee_wallet_id=payer.id,
                payer_customer_id=merchant.customer_id,
                payee_customer_id=payer.customer_id,
                original_payment_id=payment_id,
                merchant_category=original.merchant_category,
                funding=original.funding,
            )
            remaining = int(original.amount_minor) - int(original.refunded_minor)
            if amount.amount_minor > remaining:
                base.update(status=PaymentStatus.REJECTED.value, error_code=errors.RefundExceedsPayment.code)
                status, body = self._finish(conn, base, [])
                return status, {
                    **body,
                    "error": {
                        "code": errors.RefundExceedsPayment.code,
                        "message": f"only {remaining} is left to refund",
                        "details": {"remaining_minor": remaining},
                    },
                }
            fee_back = refund_fee_share(
                int(original.fee_minor),
                int(original.amount_minor),
                int(original.refunded_minor),
                amount.amount_minor,
                merchant.refund_fee_policy or RefundFeePolicy.PRO_RATA,
            )
            currency = amount.currency.code
            credit_account = int(payer.ledger_account_id)
            source_events: list[DomainEvent] = []
            if original.funding != "wallet":
                source = self.funding_sources.get(original.funding)
                if source is None:
                    raise errors.FundingSourceUnavailable(f"no funding source {original.funding!r}")
                leg = source.refunded(conn, payment_id=payment_id, amount_minor=amount.amount_minor, currency=currency)
                credit_account = leg.ledger_account_id
                source_events = list(leg.events)
            postings = [PostingSpec(credit_account, Side.CREDIT, amount.amount_minor, currency)]
            if amount.amount_minor - fee_back:
                postings.append(
                    PostingSpec(int(merchant.ledger_account_id), Side.DEBIT, amount.amount_minor - fee_back, currency)
                )
            if fee_back:
                postings.append(PostingSpec(self.house_account("fee_income", currency), Side.DEBIT, fee_back, currency))
            result = self._post(
                conn,
                [PostEntry(LEDGER_MEMBER, f"payments:{refund_id}:refund", tuple(postings), f"refund of {payment_id}")],
            )[0]
            if not result.ok:
                if result.error_code != "ledger.insufficient_funds":
                    raise CreditstackError(f"ledger refused refund: {result.error_code}")
                base.update(status=PaymentStatus.REJECTED.value, error_code=errors.MerchantInsufficientFunds.code)
                return self._finish(conn, base, [])
            repo.update_payment(
                conn,
                payment_id,
                self.clock.now(),
                refunded_minor=int(original.refunded_minor) + amount.amount_minor,
                refunded_fee_minor=int(original.refunded_fee_minor) + fee_back,
            )
            base.update(entry_seq=result.entry_seq, fee_minor=fee_back)
            return self._finish(conn, base, [self._completed_event(base, merchant.id), *source_events])

        return self._idempotent(member, key, "payments.refund", request, work, amount.currency)

    # ------------------------------------------------------------ the bank rail

    def top_up(
        self, *, member: str, key: str, wallet_id: str, amount: Money, bank_account_token: str, owner: str | None = None
    ) -> PaymentResult:
        """Collect from the customer's bank account; the wallet is credited only when the rail settles."""
        return self._single(TopUp(key, wallet_id, amount, bank_account_token), member, owner)

    def withdraw(
        self, *, member: str, key: str, wallet_id: str, amount: Money, bank_account_token: str, owner: str | None = None
    ) -> PaymentResult:
        """Pay out to the customer's bank account: funds are held first; a rail timeout leaves them held."""
        request = {"wallet": wallet_id, "amount": amount.to_wire(), "bank_account": bank_account_token}

        def work(conn: Connection, _hash: str) -> tuple[int, dict[str, Any]]:
            wallet = self._wallet(conn, wallet_id, owner=owner)
            self._amount(amount, wallet)
            bd = self._business_date(conn)
            row = self._rail_payment(
                PaymentKind.WITHDRAWAL,
                member,
                key,
                amount,
                bd,
                bank_account_token,
                payer_wallet_id=wallet.id,
                payer_customer_id=wallet.customer_id,
            )
            payment_id = row["id"]
            day_key, month_key = period_keys(bd)
            usage = repo.lock_usage(conn, wallet.id, day_key, month_key)
            try:
                check_limits(self.tiers[int(wallet.kyc_tier)], usage, amount.amount_minor)
            except errors.LimitExceeded as exc:
                row.update(status=PaymentStatus.REJECTED.value, error_code=exc.code)
                status, body = self._finish(conn, row, [])
                return status, {**body, "error": exc.to_dict()}
            settlement = self.house_account("settlement", amount.currency.code)
            # Rail holds never expire on their own: only the rail, a statement or an operator ends them.
            hold = self._post(
                conn,
                [
                    ReserveHold(
                        LEDGER_MEMBER,
                        f"payments:{payment_id}:hold",
                        int(wallet.ledger_account_id),
                        settlement,
                        amount.amount_minor,
                        amount.currency.code,
                        None,
                        f"withdrawal {payment_id}",
                    )
                ],
            )[0]
            if not hold.ok:
                row.update(status=PaymentStatus.REJECTED.value, error_code=errors.InsufficientFunds.code)
                return self._finish(conn, row, [])
            repo.add_usage(conn, wallet.id, (day_key, month_key), amount.amount_minor, 1)
            row["hold_id"] = hold.hold_id
            return self._finish(conn, row, [])

        result = self._idempotent(member, key, "payments.withdrawal", request, work, amount.currency)
        return self._send_to_rail(result, "pay_out", bank_account_token)

    def _rail_payment(
        self, kind: PaymentKind, member: str, key: str, amount: Money, bd: date, bank_account_token: str, **parties: Any
    ) -> dict[str, Any]:
        """A pending rail payment's row, with its end-to-end id (the rail's idempotency key)."""
        payment_id = new_id("pay")
        return self._payment_row(
            payment_id,
            kind,
            PaymentStatus.PENDING,
            member,
            key,
            amount,
            bd,
            end_to_end_id=_end_to_end_id(payment_id),
            funding=f"bank:{bank_account_token[:20]}",
            **parties,
        )

    def _send_to_rail(self, result: PaymentResult, direction: str, bank_account_token: str) -> PaymentResult:
        body = result.body
        if result.replayed or body.get("status") != PaymentStatus.PENDING.value:
            return result
        instruction = RailInstruction(
            body["end_to_end_id"],
            direction,
            body["amount"]["amount_minor"],
            body["amount"]["currency"],
            bank_account_token,
        )
        applied = self.apply_rail_outcome(instruction.end_to_end_id, self.rail.submit(instruction))
        return PaymentResult(result.status_code, applied.body)  # the status a replay will answer with too

    def retry_withdrawal(self, payment_id: str, bank_account_token: str) -> PaymentResult:
        """Send an unknown withdrawal to the rail again, with the same end-to-end id."""
        row = self.db.run(lambda conn: repo.payment_row(conn, payment_id), readonly=True)
        if row is None or row.kind not in (PaymentKind.WITHDRAWAL, PaymentKind.TOP_UP):
            raise errors.PaymentNotFound(f"no rail payment {payment_id}")
        if row.status not in (PaymentStatus.UNKNOWN, PaymentStatus.PENDING):
            raise errors.WithdrawalNotUnknown(f"payment {payment_id} is {row.status}")
        direction = "pay_out" if row.kind == PaymentKind.WITHDRAWAL else "collect"
        instruction = RailInstruction(
            row.end_to_end_id, direction, int(row.amount_minor), row.currency, bank_account_token
        )
        return self.apply_rail_outcome(row.end_to_end_id, self.rail.submit(instruction))

    def apply_rail_outcome(self, end_to_end_id: str, outcome: RailOutcome | str) -> PaymentResult:
        """Apply what the rail (or the bank statement) says about an instruction. Safe to repeat."""
        outcome = RailOutcome(outcome)
        known = self.db.run(lambda conn: repo.payment_by_end_to_end(conn, end_to_end_id), readonly=True)
        if known is None:
            raise errors.RailInstructionNotFound(f"no instruction {end_to_end_id}")
        self.ensure_house_accounts(known.currency)
        return self.db.run(lambda conn: self._apply_rail_outcome_in(conn, end_to_end_id, outcome))

    def _apply_rail_outcome_in(self, conn: Connection, end_to_end_id: str, outcome: RailOutcome) -> PaymentResult:
        """`apply_rail_outcome` inside the caller's transaction (house accounts already ensured)."""
        row = repo.payment_by_end_to_end(conn, end_to_end_id, lock=True)
        if row is None:
            raise errors.RailInstructionNotFound(f"no instruction {end_to_end_id}")
        now = self.clock.now()
        bd = self._business_date(conn)
        status = PaymentStatus(row.status)
        if status in (PaymentStatus.COMPLETED, PaymentStatus.REJECTED):
            return PaymentResult(200, self._payment_json(row), replayed=True)
        if status is PaymentStatus.RELEASED:
            if outcome is RailOutcome.SETTLED and row.error_code is None:
                self._suspense_break(conn, row, bd)
            return PaymentResult(200, self._payment_json(repo.payment_row(conn, row.id)))
        if outcome in (RailOutcome.TIMEOUT, RailOutcome.ACCEPTED):
            new_status = PaymentStatus.UNKNOWN if outcome is RailOutcome.TIMEOUT else PaymentStatus.PENDING
            repo.update_payment(conn, row.id, now, status=new_status.value)
        elif row.kind == PaymentKind.TOP_UP:
            if outcome is RailOutcome.SETTLED:
                wallet = repo.wallet_row(conn, row.payee_wallet_id)
                entry = self._post(
                    conn, [self._top_up_settle_entry(row.id, int(row.amount_minor), row.currency, wallet)]
                )[0]
                self._mark_settled(conn, row.id, entry.entry_seq, bd)
            else:
                self._mark_rail_rejected(conn, row.id)
        elif outcome is RailOutcome.SETTLED:  # a withdrawal the bank paid
            posted = self._post(
                conn,
                [PostHold(LEDGER_MEMBER, f"payments:{row.id}:settle", row.hold_id, None, f"withdrawal {row.id}")],
            )[0]
            self._mark_settled(conn, row.id, posted.entry_seq, bd)
        else:  # a withdrawal the bank rejected
            self._post(conn, [VoidHold(LEDGER_MEMBER, f"payments:{row.id}:void", row.hold_id)])
            self._return_usage(conn, row)
            self._mark_rail_rejected(conn, row.id)
        return PaymentResult(200, self._payment_json(repo.payment_row(conn, row.id)))

    def _top_up_settle_entry(self, payment_id: str, amount_minor: int, currency: str, wallet: Any) -> PostEntry:
        """The money the bank collected moves from settlement into the wallet."""
        return PostEntry(
            LEDGER_MEMBER,
            f"payments:{payment_id}:settle",
            (
                PostingSpec(self.house_account("settlement", currency), Side.DEBIT, amount_minor, currency),
                PostingSpec(int(wallet.ledger_account_id), Side.CREDIT, amount_minor, currency),
            ),
            f"top-up {payment_id}",
        )

    def _mark_settled(self, conn: Connection, payment_id: str, entry_seq: int | None, bd: date) -> None:
        repo.update_payment(
            conn,
            payment_id,
            self.clock.now(),
            status=PaymentStatus.COMPLETED.value,
            entry_seq=entry_seq,
            settled_business_date=bd,
        )
        self._emit_completed(conn, payment_id)

    def _mark_rail_rejected(self, conn: Connection, payment_id: str) -> None:
        repo.update_payment(
            conn,
            payment_id,
            self.clock.now(),
            status=PaymentStatus.REJECTED.value,
            error_code="payments.rail_rejected",
        )

    def release_withdrawal(self, payment_id: str) -> PaymentResult:
        """An operator gives up on an unknown withdrawal: the hold is voided and the funds are free again.
        If the bank settles it afterwards, the money is booked to suspense as a break."""

        def work(conn: Connection) -> PaymentResult:
            row = repo.payment_row(conn, payment_id, lock=True)
            if row is None or row.kind != PaymentKind.WITHDRAWAL:
                raise errors.PaymentNotFound(f"no withdrawal {payment_id}")
            if row.status == PaymentStatus.RELEASED:
                return PaymentResult(200, self._payment_json(row), replayed=True)  # releasing is idempotent
            if row.status != PaymentStatus.UNKNOWN:
                raise errors.WithdrawalNotUnknown(f"withdrawal {payment_id} is {row.status}")
            self._post(conn, [VoidHold(LEDGER_MEMBER, f"payments:{row.id}:release", row.hold_id)])
            self._return_usage(conn, row)
            repo.update_payment(conn, row.id, self.clock.now(), status=PaymentStatus.RELEASED.value)
            return PaymentResult(200, self._payment_json(repo.payment_row(conn, row.id)))

        return self.db.run(work)

    def _suspense_break(self, conn: Connection, row: Any, bd: date) -> None:
        suspense = self.house_account("suspense", row.currency)
        settlement = self.house_account("settlement", row.currency)
        entry = self._post(
            conn,
            [
                PostEntry(
                    LEDGER_MEMBER,
                    f"payments:{row.id}:late-settlement",
                    (
                        PostingSpec(suspense, Side.DEBIT, int(row.amount_minor), row.currency),
                        PostingSpec(settlement, Side.CREDIT, int(row.amount_minor), row.currency),
                    ),
                    f"withdrawal {row.id} settled after release",
                )
            ],
        )[0]
        repo.update_payment(
            conn,
            row.id,
            self.clock.now(),
            error_code="payments.settled_after_release",
            entry_seq=entry.entry_seq,
            settled_business_date=bd,
        )
        events.flush_events(
            conn,
            PLATFORM_CORE,
            [
                DomainEvent(
                    TOPIC_RAIL_BREAK,
                    row.id,
                    bd,
                    {
                        "payment_id": row.id,
                        "end_to_end_id": row.end_to_end_id,
                        "amount_minor": int(row.amount_minor),
                        "currency": row.currency,
                        "reason": "settled_after_release",
                    },
                )
            ],
            self.clock.now(),
        )

    def _return_usage(self, conn: Connection, row: Any) -> None:
        day_key, month_key = period_keys(row.business_date)
        repo.lock_usage(conn, row.payer_wallet_id, day_key, month_key)
        repo.add_usage(conn, row.payer_wallet_id, (day_key, month_key), -int(row.amount_minor), -1)

    def _emit_completed(self, conn: Connection, payment_id: str) -> None:
        row = repo.payment_row(conn, payment_id)
        as_dict = dict(row._mapping)
        counterparty = None
        events.flush_events(conn, PLATFORM_CORE, [self._completed_event(as_dict, counterparty)], self.clock.now())

    # ------------------------------------------------------------ reads

    def get_payment(self, payment_id: str, *, owner: str | None = None) -> dict[str, Any]:
        row = self.db.run(lambda conn: repo.payment_row(conn, payment_id), readonly=True)
        if row is None or (owner is not None and owner not in (row.payer_customer_id, row.payee_customer_id)):
            raise errors.PaymentNotFound(f"no payment {payment_id}")
        return self._payment_json(row)

    def history(
        self,
        wallet_id: str,
        *,
        owner: str | None = None,
        from_date: date | None = None,
        to_date: date | None = None,
        kind: str | None = None,
        counterparty: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        if not 1 <= limit <= HISTORY_PAGE_MAX:
            raise ValidationFailed(f"limit must be 1..{HISTORY_PAGE_MAX}", field="limit")
        if kind is not None and kind not in {k.value for k in PaymentKind}:
            raise ValidationFailed(f"unknown payment kind {kind!r}", field="kind")
        wallet = self.db.run(lambda conn: repo.wallet_row(conn, wallet_id), readonly=True)
        if wallet is None or (owner is not None and wallet.customer_id != owner):
            raise errors.WalletNotFound(f"no wallet {wallet_id}")
        rows = self.db.run(
            lambda conn: repo.history(
                conn,
                wallet_id,
                from_date=from_date,
                to_date=to_date,
                kind=kind,
                counterparty=counterparty,
                before_serial=before,
                limit=limit,
            ),
            readonly=True,
        )
        items = []
        for r in rows:
            item = self._payment_json(r)
            item["direction"] = "out" if r.payer_wallet_id == wallet_id else "in"
            items.append(item)
        return {"items": items, "next_before": int(rows[-1].serial) if len(rows) == limit else None}

    def settlement_items(self, *, from_date: date | None = None, to_date: date | None = None) -> list[Any]:
        """Rail payments as the ledger knows them, for reconciliation with the bank's statement."""
        return self.db.run(
            lambda conn: repo.settlement_items(conn, from_date=from_date, to_date=to_date), readonly=True
        )

    def reconcile_statement(
        self, data: bytes, statement_format: str = "camt053", *, timing_tolerance_business_days: int | None = None
    ) -> dict[str, Any]:
        """Parse a camt.05x message or a CSV statement and reconcile each statement in it against what the
        platform booked on its settlement account; every break is listed, nothing is rounded."""
        if statement_format == "csv":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StatementMalformed("a CSV statement must be UTF-8", field="data") from exc
            statements = [parse_statement_csv(text)]
        elif statement_format == "camt053":
            statements = parse_camt053(data)
        else:
            raise ValidationFailed(f"unknown statement format {statement_format!r}: camt053 or csv", field="format")
        tolerance = (
            self.timing_tolerance_business_days
            if timing_tolerance_business_days is None
            else timing_tolerance_business_days
        )
        rows = self.settlement_items()
        reports = []
        for statement in statements:
            as_of = statement_date(statement) or self.ledger.business_date()
            items = settlement_ledger_items(rows, statement, as_of)
            reports.append(reconcile(statement, items, timing_tolerance_business_days=tolerance, as_of=as_of).to_dict())
        return {
            "format": statement_format,
            "statements": len(reports),
            "reconciled": all(r["reconciled"] for r in reports),
            "reports": reports,
        }

    # ------------------------------------------------------------ the web console's reads

    def list_customers(self, kind: str = "consumer", *, after: str | None = None, limit: int = 50) -> dict[str, Any]:
        """Customers of one kind in id order, paged by `after` (the previous page's `next_after`): id, kind and
        KYC tier — no personal data, sealed or masked."""
        if not 1 <= limit <= HISTORY_PAGE_MAX:
            raise ValidationFailed(f"limit must be 1..{HISTORY_PAGE_MAX}", field="limit")
        if kind not in {"consumer", "merchant", "biller"}:
            raise ValidationFailed(f"unknown customer kind {kind!r}", field="kind")
        rows = self.db.run(lambda conn: repo.customers_page(conn, kind, after, limit), readonly=True)
        items = [{"id": r.id, "kind": r.kind, "kyc_tier": int(r.kyc_tier)} for r in rows]
        return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


def settlement_ledger_items(rows: Sequence[Any], statement: BankStatement, as_of: date) -> list[LedgerItem]:
    """What our ledger says moved through the settlement account, as the bank would see it.

    Top-ups are credits at the bank, withdrawals debits. Completed payments (and withdrawals the bank paid
    after an operator released them, booked to suspense) are posted on their settlement date; pending and
    unknown ones are pending items on their own date; rejected and unsettled released ones moved nothing.
    Only items in the statement's currency, dated up to `as_of` and, for posted ones, not before the
    statement period, take part.
    """
    start = statement.from_date
    if start is None:
        booked = [e.business_date for e in statement.entries if e.business_date is not None]
        start = min(booked) if booked else None
    items = []
    for row in rows:
        if row.currency != statement.currency_code:
            continue
        settled_after_release = (
            row.status == PaymentStatus.RELEASED and row.error_code == "payments.settled_after_release"
        )
        if row.status == PaymentStatus.COMPLETED or settled_after_release:
            status, when = LedgerStatus.POSTED, row.settled_business_date or row.business_date
            if start is not None and when < start:
                continue
        elif row.status in (PaymentStatus.PENDING, PaymentStatus.UNKNOWN):
            status, when = LedgerStatus.PENDING, row.business_date
        else:
            continue
        if when > as_of:
            continue
        direction = CreditDebit.CREDIT if row.kind == PaymentKind.TOP_UP else CreditDebit.DEBIT
        items.append(
            LedgerItem(
                row.id, row.end_to_end_id, Money.of(int(row.amount_minor), row.currency), direction, when, status
            )
        )
    return items


#: Columns `_payment_json` shows only when they hold a value.
_PAYMENT_JSON_OPTIONAL = (
    "merchant_category",
    "biller_reference",
    "original_payment_id",
    "end_to_end_id",
    "entry_seq",
    "error_code",
)
_REJECTION_MESSAGES = {
    errors.InsufficientFunds.code: "the wallet's available balance does not cover the payment",
    errors.MerchantInsufficientFunds.code: "the merchant's wallet cannot cover the refund",
    errors.LimitExceeded.code: "the payment would exceed a limit",
    errors.RefundExceedsPayment.code: "refunds would exceed the payment",
    "payments.rail_rejected": "the bank rejected the instruction",
}


def _end_to_end_id(payment_id: str) -> str:
    """ISO 20022 EndToEndId (max 35 characters) derived from our payment id."""
    return ("CS" + payment_id.removeprefix("pay_").upper())[:35]
