"""Payments, pure: kinds, KYC-tier limits, merchant fees and refunds, and the ports to the outside.

Fees: fee = amount × bps / 10,000, rounded half-even, posted to fee income. A refund returns the fee pro
rata (cumulatively, so that a payment refunded in parts returns exactly the whole fee in the end) or not
at all, per the merchant's agreement.

    >>> merchant_fee(10_000, 60)      # 0.6 % of CNY 100.00
    60
    >>> refund_fee_share(60, 10_000, 0, 3_333, "pro_rata")   # a third refunded first
    20
    >>> refund_fee_share(60, 10_000, 3_333, 6_667, "pro_rata")  # the rest: 60 in all
    40
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from fractions import Fraction
from typing import Any, ClassVar, Protocol

from creditstack.core.money import Money, basis_points_of, round_minor
from creditstack.payments import errors


class CustomerKind(StrEnum):
    CONSUMER = "consumer"
    MERCHANT = "merchant"
    BILLER = "biller"


class WalletStatus(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class PaymentKind(StrEnum):
    TOP_UP = "top_up"
    WITHDRAWAL = "withdrawal"
    P2P = "p2p"
    MERCHANT = "merchant"
    REFUND = "refund"
    BILL = "bill"


class PaymentStatus(StrEnum):
    PENDING = "pending"  # sent to the rail, no outcome yet
    UNKNOWN = "unknown"  # the rail timed out: funds stay held until the rail or a statement decides
    COMPLETED = "completed"
    REJECTED = "rejected"  # refused by a rule (funds, limits) or by the rail
    RELEASED = "released"  # an unknown withdrawal released by an operator


class RefundFeePolicy(StrEnum):
    PRO_RATA = "pro_rata"
    NONE = "none"


#: Outgoing kinds count against the payer's limits.
OUTGOING_KINDS = frozenset({PaymentKind.WITHDRAWAL, PaymentKind.P2P, PaymentKind.MERCHANT, PaymentKind.BILL})


@dataclass(frozen=True, slots=True)
class TierLimits:
    """Limits of a KYC tier in minor units of the wallet's currency; days and months are business dates."""

    tier: int
    per_transaction_minor: int
    daily_minor: int
    monthly_minor: int
    daily_count_max: int  # velocity: outgoing payments per business day


#: Default tiers (CNY), after the PBOC's classes of payment accounts (Class I/II/III, 2015 rules):
#: tier 1 is a lightly verified account, tier 3 fully verified.
DEFAULT_TIERS: dict[int, TierLimits] = {
    1: TierLimits(1, 200_000, 500_000, 1_000_000, 20),  # CNY 2,000 / 5,000 / 10,000
    2: TierLimits(2, 1_000_000, 5_000_000, 20_000_000, 50),  # CNY 10,000 / 50,000 / 200,000
    3: TierLimits(3, 5_000_000, 20_000_000, 100_000_000, 200),  # CNY 50,000 / 200,000 / 1,000,000
}


@dataclass(frozen=True, slots=True)
class LimitUsage:
    daily_minor: int
    daily_count: int
    monthly_minor: int


def check_limits(limits: TierLimits, usage: LimitUsage, amount_minor: int) -> None:
    """Raise `LimitExceeded` naming the first limit the payment would pass; equal to a limit passes."""
    checks = (
        ("per_transaction", amount_minor, limits.per_transaction_minor),
        ("daily", usage.daily_minor + amount_minor, limits.daily_minor),
        ("monthly", usage.monthly_minor + amount_minor, limits.monthly_minor),
        ("daily_count", usage.daily_count + 1, limits.daily_count_max),
    )
    for name, value, limit in checks:
        if value > limit:
            remaining = max(limit - (value - (1 if name == "daily_count" else amount_minor)), 0)
            raise errors.LimitExceeded(
                f"{name} limit of tier {limits.tier} is {limit}; this payment would make it {value}",
                limit=name,
                tier=limits.tier,
                limit_value=limit,
                would_be=value,
                remaining=remaining,
            )


def merchant_fee(amount_minor: int, fee_bps: int) -> int:
    return basis_points_of(amount_minor, fee_bps)


def refund_fee_share(
    fee_minor: int, amount_minor: int, refunded_before_minor: int, refund_minor: int, policy: str
) -> int:
    """The part of the merchant fee returned with this refund: cumulative pro rata, or nothing."""
    if policy == RefundFeePolicy.NONE or fee_minor == 0:
        return 0
    before = round_minor(Fraction(fee_minor * refunded_before_minor, amount_minor))
    after = round_minor(Fraction(fee_minor * (refunded_before_minor + refund_minor), amount_minor))
    return after - before


def period_keys(business_date: date) -> tuple[str, str]:
    return f"D{business_date.isoformat()}", f"M{business_date.year:04d}-{business_date.month:02d}"


# ---------------------------------------------------------------- payment requests

#: Most requests one `PaymentsService.submit_batch` call may carry (the ledger's batch bound is the other).
PAYMENT_BATCH_MAX = 10_000


@dataclass(frozen=True, slots=True)
class MerchantPayment:
    """Pay a merchant from the wallet (`funding="wallet"`) or from a registered `FundingSource`."""

    key: str
    payer_wallet_id: str
    merchant_wallet_id: str
    amount: Money
    funding: str = "wallet"
    operation: ClassVar[str] = "payments.merchant"

    def request(self) -> dict[str, Any]:
        """The request as its idempotency hash sees it (the same for the single and the batch path)."""
        return {
            "payer": self.payer_wallet_id,
            "merchant": self.merchant_wallet_id,
            "amount": self.amount.to_wire(),
            "funding": self.funding,
        }


@dataclass(frozen=True, slots=True)
class BillPayment:
    """Pay a registered biller; `reference` must match the biller's format."""

    key: str
    payer_wallet_id: str
    biller_wallet_id: str
    reference: str
    amount: Money
    due_date: date | None = None
    operation: ClassVar[str] = "payments.bill"

    def request(self) -> dict[str, Any]:
        return {
            "payer": self.payer_wallet_id,
            "biller": self.biller_wallet_id,
            "reference": self.reference,
            "amount": self.amount.to_wire(),
            "due_date": self.due_date.isoformat() if self.due_date else None,
        }


@dataclass(frozen=True, slots=True)
class Transfer:
    """A peer-to-peer transfer between two wallets."""

    key: str
    payer_wallet_id: str
    payee_wallet_id: str
    amount: Money
    operation: ClassVar[str] = "payments.p2p"

    def request(self) -> dict[str, Any]:
        return {"payer": self.payer_wallet_id, "payee": self.payee_wallet_id, "amount": self.amount.to_wire()}


@dataclass(frozen=True, slots=True)
class TopUp:
    """Collect from the customer's bank account over the rail; the wallet is credited when the rail settles."""

    key: str
    wallet_id: str
    amount: Money
    bank_account_token: str
    operation: ClassVar[str] = "payments.top_up"

    def request(self) -> dict[str, Any]:
        return {"wallet": self.wallet_id, "amount": self.amount.to_wire(), "bank_account": self.bank_account_token}


#: One request of a payments batch.
PaymentRequest = MerchantPayment | BillPayment | Transfer | TopUp


# ---------------------------------------------------------------- customers

_NATIONAL_ID = re.compile(r"^[0-9A-Za-z-]{4,32}$")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_MERCHANT_CATEGORY = re.compile(r"\d{4}")
#: Longest biller reference pattern (its column's width).
REFERENCE_PATTERN_LENGTH_MAX = 200


def keyed_id(prefix: str, member: str, key: str) -> str:
    """An object id derived from the caller's idempotency key, so a retried creation finds its object."""
    return f"{prefix}_" + hashlib.sha256(f"{member}\n{key}".encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Income:
    as_of: date
    annual_income: Money


def valid_cn_resident_id(value: str) -> bool:
    """ISO 7064 MOD 11-2 check digit of an 18-character PRC resident identity number (GB 11643-1999)."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _CN_ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == value[17].upper()


@dataclass(frozen=True, slots=True)
class CustomerDetails:
    """A customer's details as `check_customer` accepted them: the kind parsed, the national id normalised
    (no spaces, upper case), a merchant's refund-fee policy defaulted. What both the single path
    (`register_customer`) and the batch path (`register_batch`) seal, store and fingerprint."""

    kind: CustomerKind
    legal_name: str
    national_id: str | None
    date_of_birth: date | None
    address: str | None
    phone: str | None
    kyc_tier: int
    incomes: tuple[Income, ...]
    merchant_category: str | None
    fee_bps: int | None
    refund_fee_policy: str | None
    reference_pattern: str | None

    def fingerprint_source(self) -> list[Any]:
        """The request as its idempotency fingerprint sees it (kept as it was before the batch path existed,
        so that keys stored earlier still replay)."""
        return [
            self.kind.value,
            self.legal_name,
            self.national_id,
            self.date_of_birth,
            self.address,
            self.phone,
            self.kyc_tier,
            [(i.as_of, i.annual_income.to_wire()) for i in self.incomes],
            self.merchant_category,
            self.fee_bps,
            self.refund_fee_policy,
            self.reference_pattern,
        ]


def check_customer(
    *,
    kind: CustomerKind | str,
    legal_name: str,
    national_id: str | None,
    date_of_birth: date | None,
    address: str | None,
    phone: str | None,
    kyc_tier: int,
    incomes: Sequence[Income],
    merchant_category: str | None,
    fee_bps: int | None,
    refund_fee_policy: str | None,
    reference_pattern: str | None,
    tiers: Collection[int],
    today: date,
) -> CustomerDetails:
    """A registration's details checked and normalised, or `InvalidCustomer` naming the first bad field.

    The one definition of a valid customer, for `register_customer` and `register_batch` alike: a known
    kind and KYC tier (one of `tiers`); a legal name of 1..200 characters; a consumer with a national id and
    a date of birth before `today`; a national id of 4..32 letters, digits or hyphens (spaces dropped, upper
    case), whose check digit matches if it looks like an 18-character PRC resident id; a merchant with a fee
    in 0..10,000 bps and a 4-digit MCC; a reference pattern of at most 200 characters that compiles; no
    negative income and at most one income per date. (An unknown refund-fee policy, a longer pattern and two
    incomes on one date were unhandled errors before these checks.)"""
    try:
        customer_kind = CustomerKind(kind)
    except ValueError as exc:
        raise errors.InvalidCustomer(f"unknown customer kind {kind!r}", field="kind") from exc
    if not legal_name or len(legal_name) > 200:
        raise errors.InvalidCustomer("legal name must be 1..200 characters", field="legal_name")
    if kyc_tier not in tiers:
        raise errors.InvalidCustomer(f"unknown KYC tier {kyc_tier}", field="kyc_tier")
    if customer_kind is CustomerKind.CONSUMER:
        if national_id is None or date_of_birth is None:
            raise errors.InvalidCustomer("a consumer needs a national id and a date of birth", field="national_id")
        if date_of_birth >= today:
            raise errors.InvalidCustomer("date of birth must be in the past", field="date_of_birth")
    if national_id is not None:
        national_id = "".join(national_id.split()).upper()
        if not _NATIONAL_ID.match(national_id):
            raise errors.InvalidCustomer("national id must be 4..32 letters or digits", field="national_id")
        if len(national_id) == 18 and national_id[:17].isdigit() and not valid_cn_resident_id(national_id):
            raise errors.InvalidCustomer("resident id check digit does not match", field="national_id")
    if customer_kind is CustomerKind.MERCHANT:
        if fee_bps is None or not 0 <= fee_bps <= 10_000:
            raise errors.InvalidCustomer("a merchant needs fee_bps in 0..10000", field="fee_bps")
        if merchant_category is None or not _MERCHANT_CATEGORY.fullmatch(merchant_category):
            raise errors.InvalidCustomer("merchant category must be a 4-digit MCC", field="merchant_category")
        try:
            refund_fee_policy = RefundFeePolicy(refund_fee_policy or RefundFeePolicy.PRO_RATA).value
        except ValueError as exc:
            raise errors.InvalidCustomer(
                f"unknown refund fee policy {refund_fee_policy!r}", field="refund_fee_policy"
            ) from exc
    if reference_pattern is not None:
        if len(reference_pattern) > REFERENCE_PATTERN_LENGTH_MAX:
            raise errors.InvalidCustomer(
                f"reference pattern must be at most {REFERENCE_PATTERN_LENGTH_MAX} characters",
                field="reference_pattern",
            )
        try:
            re.compile(reference_pattern)
        except re.error as exc:
            raise errors.InvalidCustomer(
                "reference pattern is not a regular expression", field="reference_pattern"
            ) from exc
    for income in incomes:
        if income.annual_income.amount_minor < 0:
            raise errors.InvalidCustomer("income cannot be negative", field="incomes")
    if len({income.as_of for income in incomes}) != len(incomes):
        raise errors.InvalidCustomer("one income per date", field="incomes")
    return CustomerDetails(
        customer_kind,
        legal_name,
        national_id,
        date_of_birth,
        address,
        phone,
        kyc_tier,
        tuple(incomes),
        merchant_category,
        fee_bps,
        refund_fee_policy,
        reference_pattern,
    )


#: Most requests one `PaymentsService.register_batch` call may carry.
ONBOARDING_BATCH_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Onboarding:
    """One request of `PaymentsService.register_batch`: register a customer and open their wallet — what
    `register_customer(...)` followed by `open_wallet(customer_id, currency, ...)` do, as one request.

    The fields are `register_customer`'s (a consumer by default) plus the wallet's `currency`. Two
    idempotency keys, as the two single calls have: `key` for the registration (the customer's id derives
    from it) and `wallet_key` for the wallet (its id derives from that); without a `wallet_key` the
    wallet's is `key + ":wallet"`, so one key per request is enough. Either key replays what the single
    call under that key did, so a client may move between the two paths freely.
    """

    key: str
    legal_name: str
    national_id: str | None = None
    date_of_birth: date | None = None
    currency: str = "CNY"
    kind: str = CustomerKind.CONSUMER.value
    address: str | None = None
    phone: str | None = None
    kyc_tier: int = 1
    incomes: tuple[Income, ...] = ()
    merchant_category: str | None = None
    fee_bps: int | None = None
    refund_fee_policy: str | None = None
    reference_pattern: str | None = None
    wallet_key: str | None = None

    @property
    def wallet_idempotency_key(self) -> str:
        """The wallet's idempotency key: `wallet_key`, or `key + ":wallet"` without one."""
        return self.wallet_key if self.wallet_key is not None else f"{self.key}:wallet"


# ---------------------------------------------------------------- ports


class RailOutcome(StrEnum):
    SETTLED = "settled"
    REJECTED = "rejected"
    TIMEOUT = "timeout"  # no answer in time: the outcome is unknown, not a failure
    ACCEPTED = "accepted"  # taken, will settle (or be rejected) later


@dataclass(frozen=True, slots=True)
class RailInstruction:
    """One instruction to the custodian bank; `end_to_end_id` is its idempotency key and reconciliation id."""

    end_to_end_id: str
    direction: str  # "collect" (top-up, money into settlement) | "pay_out" (withdrawal)
    amount_minor: int
    currency: str
    account_reference: str  # the customer's bank account token at the bank (never a raw account number)


class BankRail(Protocol):
    """The custodian bank's payment rail. Submitting the same end-to-end id again must not pay twice.

    A rail may also offer `submit_many(instructions) -> list[RailOutcome | None]` (each answered as `submit`
    would, in order; None where the submission raised): the payments batch path then sends its top-ups in
    one call."""

    def submit(self, instruction: RailInstruction) -> RailOutcome: ...


@dataclass(frozen=True, slots=True)
class FundingLeg:
    """The debit side of a merchant payment when it is not funded from the wallet."""

    ledger_account_id: int
    source_reference: str  # e.g. the credit line id, for the source's own records
    events: tuple[Any, ...] = ()  # the source's own outbox events; payments writes them with the payment's


class FundingSource(Protocol):
    """Something other than the wallet that can pay a merchant (lending implements it for credit lines).

    `reserve` is called inside the payment's transaction (`transaction` is that database connection, so
    the source's own rows commit atomically with the payment); it returns the ledger account to debit, or
    raises a `CreditstackError` (e.g. over the line's limit). `refunded` is told, in the refund's
    transaction, when a funded payment is refunded, and returns the account to credit back.
    """

    name: str

    def reserve(
        self, transaction: Any, *, customer_id: str, amount_minor: int, currency: str, payment_id: str
    ) -> FundingLeg: ...

    def refunded(self, transaction: Any, *, payment_id: str, amount_minor: int, currency: str) -> FundingLeg: ...
