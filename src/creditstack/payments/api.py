"""HTTP API of payments under /v1/payments. Thin: parse, call `PaymentsService`, shape the answer.

Who may do what: consumers and merchants act on their own objects only (`owner=principal.member`; another
customer's wallet or payment is "not found", never "forbidden", so ids cannot be probed); the platform
operator and services act on every object (`owner=None`). Registering customers, freezing wallets,
applying rail outcomes and reconciling statements are the platform's.

Every money-moving call carries an `Idempotency-Key` header, unique per member: the first outcome
(success or business rejection) is stored and returned on every replay with `Idempotent-Replayed: true`;
the same key with another request is `idempotency.key_reused`. Business rejections are problem+json with
their stable code and the rejected payment under `payment`. Rail follow-ups (outcomes, retries, releases)
are keyed by the payment itself: repeating them changes nothing.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from creditstack.app.auth import MerchantOrOperator, Operator, OperatorOrService, PlatformDep, WalletUser
from creditstack.app.problems import stored_outcome
from creditstack.app.wire import MoneyIn
from creditstack.core.apikeys import Principal
from creditstack.core.idempotency import IDEMPOTENCY_KEY_LENGTH_MAX
from creditstack.core.money import Money
from creditstack.core.security import Role
from creditstack.payments.domain import RailOutcome
from creditstack.payments.reconciliation import (
    TOLERANCE_BUSINESS_DAYS_MAX,
)
from creditstack.payments.service import HISTORY_PAGE_MAX, Income, PaymentResult
from creditstack.payments.statement_errors import StatementMalformed, StatementTooLarge
from creditstack.payments.statements import (
    STATEMENT_SIZE_BYTES_MAX,
)

router = APIRouter(prefix="/v1/payments", tags=["payments"])

#: Most declared incomes in one registration.
INCOMES_MAX = 50
#: Largest statement upload, in bytes (the parser's own limit).
STATEMENT_UPLOAD_BYTES_MAX = STATEMENT_SIZE_BYTES_MAX
#: Roles that act on any customer's objects.
PLATFORM_ROLES = frozenset({Role.PLATFORM_OPERATOR, Role.SERVICE})

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Client key; the first outcome is stored and returned on every replay.",
    ),
]
WalletId = Annotated[str, Field(min_length=1, max_length=32)]
BankAccountToken = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z_:-]+$",
        description="The customer's bank account as a token at the custodian bank, never a raw account number.",
    ),
]
_REJECTED: dict[int | str, dict[str, Any]] = {
    409: {"description": "Business rejection, stored and replayed (problem+json)"}
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncomeIn(Strict):
    as_of: date
    annual_income: MoneyIn


class CustomerIn(Strict):
    kind: Literal["consumer", "merchant", "biller"]
    legal_name: str = Field(min_length=1, max_length=200)
    national_id: str | None = Field(None, min_length=1, max_length=40)
    date_of_birth: date | None = None
    address: str | None = Field(None, max_length=500)
    phone: str | None = Field(None, max_length=40)
    kyc_tier: int = Field(1, strict=True)
    incomes: list[IncomeIn] = Field(default_factory=list, max_length=INCOMES_MAX)
    merchant_category: str | None = Field(None, description="Merchants: 4-digit MCC.")
    fee_bps: int | None = Field(None, strict=True, description="Merchants: fee in basis points (0..10000).")
    refund_fee_policy: Literal["pro_rata", "none"] | None = Field(
        None, description="Merchants: a refund returns the fee pro rata, or not at all."
    )
    reference_pattern: str | None = Field(
        None, max_length=200, description="Billers: regular expression a biller reference must match."
    )


class WalletIn(Strict):
    customer_id: str = Field(min_length=1, max_length=32)
    currency: str = Field("CNY", min_length=3, max_length=3)


class RailPaymentIn(Strict):
    wallet_id: WalletId
    amount: MoneyIn
    bank_account_token: BankAccountToken


class RetryIn(Strict):
    bank_account_token: BankAccountToken


class RailOutcomeIn(Strict):
    end_to_end_id: str = Field(min_length=1, max_length=35)
    outcome: Literal["settled", "rejected", "timeout", "accepted"]


class TransferIn(Strict):
    payer_wallet_id: WalletId
    payee_wallet_id: WalletId
    amount: MoneyIn


class MerchantPaymentIn(Strict):
    payer_wallet_id: WalletId
    merchant_wallet_id: WalletId
    amount: MoneyIn
    funding: str = Field("wallet", min_length=1, max_length=32, description="`wallet` or a funding source name.")


class RefundIn(Strict):
    payment_id: str = Field(min_length=1, max_length=32)
    amount: MoneyIn


class BillPaymentIn(Strict):
    payer_wallet_id: WalletId
    biller_wallet_id: WalletId
    reference: str = Field(min_length=1, max_length=64)
    amount: MoneyIn
    due_date: date | None = None


def _owner(principal: Principal) -> str | None:
    """The customer whose objects the caller may touch; None for the platform (every object)."""
    return None if principal.role in PLATFORM_ROLES else principal.member


def _money(value: MoneyIn) -> Money:
    return Money.of(value.amount_minor, value.currency)


def _answer(result: PaymentResult) -> JSONResponse:
    return stored_outcome(result.status_code, result.body, result.replayed, "payment")


# ---------------------------------------------------------------- customers and wallets


@router.post("/customers", status_code=201, summary="Register a consumer, merchant or biller")
def register_customer(
    body: CustomerIn, key: IdempotencyKey, platform: PlatformDep, principal: OperatorOrService
) -> dict[str, Any]:
    """Personal data is sealed at rest; the answer carries the id and a masked national id only. A replay
    of the same key returns the same customer."""
    return platform.payments.register_customer(
        member=principal.member,
        key=key,
        kind=body.kind,
        legal_name=body.legal_name,
        national_id=body.national_id,
        date_of_birth=body.date_of_birth,
        address=body.address,
        phone=body.phone,
        kyc_tier=body.kyc_tier,
        incomes=[Income(i.as_of, _money(i.annual_income)) for i in body.incomes],
        merchant_category=body.merchant_category,
        fee_bps=body.fee_bps,
        refund_fee_policy=body.refund_fee_policy,
        reference_pattern=body.reference_pattern,
    )


@router.get("/customers/{customer_id}", summary="A customer, without personal data")
def get_customer(customer_id: str, platform: PlatformDep, principal: WalletUser) -> dict[str, Any]:
    return platform.payments.get_customer(customer_id, owner=_owner(principal))


@router.post("/wallets", status_code=201, summary="Open a wallet (no overdraft) for a customer")
def open_wallet(body: WalletIn, key: IdempotencyKey, platform: PlatformDep, principal: WalletUser) -> dict[str, Any]:
    """A replay of the same key returns the same wallet."""
    return platform.payments.open_wallet(
        body.customer_id, body.currency, owner=_owner(principal), member=principal.member, key=key
    )


@router.get("/wallets/{wallet_id}", summary="A wallet: balance, available, held, limits")
def get_wallet(wallet_id: str, platform: PlatformDep, principal: WalletUser) -> dict[str, Any]:
    return platform.payments.get_wallet(wallet_id, owner=_owner(principal))


@router.post("/wallets/{wallet_id}/freeze", summary="Freeze a wallet: it can neither send nor receive")
def freeze_wallet(wallet_id: str, platform: PlatformDep, _principal: Operator) -> dict[str, Any]:
    return platform.payments.set_wallet_frozen(wallet_id, True)


@router.post("/wallets/{wallet_id}/unfreeze", summary="Unfreeze a wallet")
def unfreeze_wallet(wallet_id: str, platform: PlatformDep, _principal: Operator) -> dict[str, Any]:
    return platform.payments.set_wallet_frozen(wallet_id, False)


@router.post("/wallets/{wallet_id}/close", summary="Close a wallet (zero balance, nothing held)")
def close_wallet(wallet_id: str, platform: PlatformDep, principal: WalletUser) -> dict[str, Any]:
    return platform.payments.close_wallet(wallet_id, owner=_owner(principal))


@router.get("/wallets/{wallet_id}/payments", summary="A wallet's payments, newest first (paged by `before`)")
def wallet_history(
    wallet_id: str,
    platform: PlatformDep,
    principal: WalletUser,
    from_date: Annotated[date | None, Query(description="First business date")] = None,
    to_date: Annotated[date | None, Query(description="Last business date")] = None,
    kind: Annotated[str | None, Query(max_length=12)] = None,
    counterparty: Annotated[str | None, Query(max_length=32, description="The other wallet's id")] = None,
    before: Annotated[int | None, Query(ge=1, description="`next_before` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=HISTORY_PAGE_MAX)] = 50,
) -> dict[str, Any]:
    return platform.payments.history(
        wallet_id,
        owner=_owner(principal),
        from_date=from_date,
        to_date=to_date,
        kind=kind,
        counterparty=counterparty,
        before=before,
        limit=limit,
    )


# ---------------------------------------------------------------- the bank rail


@router.post(
    "/top-ups", summary="Collect from the customer's bank; credited when the rail settles", responses=_REJECTED
)
def top_up(body: RailPaymentIn, key: IdempotencyKey, platform: PlatformDep, principal: WalletUser) -> JSONResponse:
    result = platform.payments.top_up(
        member=principal.member,
        key=key,
        wallet_id=body.wallet_id,
        amount=_money(body.amount),
        bank_account_token=body.bank_account_token,
        owner=_owner(principal),
    )
    return _answer(result)


@router.post("/withdrawals", summary="Pay out to the customer's bank; funds held until the rail decides")
def withdraw(body: RailPaymentIn, key: IdempotencyKey, platform: PlatformDep, principal: WalletUser) -> JSONResponse:
    result = platform.payments.withdraw(
        member=principal.member,
        key=key,
        wallet_id=body.wallet_id,
        amount=_money(body.amount),
        bank_account_token=body.bank_account_token,
        owner=_owner(principal),
    )
    return _answer(result)


@router.post("/withdrawals/{payment_id}/retry", summary="Send an unknown rail payment again, same end-to-end id")
def retry_withdrawal(payment_id: str, body: RetryIn, platform: PlatformDep, principal: WalletUser) -> JSONResponse:
    platform.payments.get_payment(payment_id, owner=_owner(principal))  # not found unless the caller's
    return _answer(platform.payments.retry_withdrawal(payment_id, body.bank_account_token))


@router.post("/withdrawals/{payment_id}/release", summary="Give up on an unknown withdrawal: void its hold")
def release_withdrawal(payment_id: str, platform: PlatformDep, _principal: Operator) -> JSONResponse:
    return _answer(platform.payments.release_withdrawal(payment_id))


@router.post("/rail/outcomes", summary="Apply what the rail or the bank statement says about an instruction")
def apply_rail_outcome(body: RailOutcomeIn, platform: PlatformDep, _principal: OperatorOrService) -> JSONResponse:
    return _answer(platform.payments.apply_rail_outcome(body.end_to_end_id, RailOutcome(body.outcome)))


# ---------------------------------------------------------------- payments between wallets


@router.post("/transfers", summary="A peer-to-peer transfer", responses=_REJECTED)
def transfer(body: TransferIn, key: IdempotencyKey, platform: PlatformDep, principal: WalletUser) -> JSONResponse:
    result = platform.payments.transfer(
        member=principal.member,
        key=key,
        payer_wallet_id=body.payer_wallet_id,
        payee_wallet_id=body.payee_wallet_id,
        amount=_money(body.amount),
        owner=_owner(principal),
    )
    return _answer(result)


@router.post("/merchant-payments", summary="Pay a merchant (merchant fee in basis points)", responses=_REJECTED)
def pay_merchant(
    body: MerchantPaymentIn, key: IdempotencyKey, platform: PlatformDep, principal: WalletUser
) -> JSONResponse:
    result = platform.payments.pay_merchant(
        member=principal.member,
        key=key,
        payer_wallet_id=body.payer_wallet_id,
        merchant_wallet_id=body.merchant_wallet_id,
        amount=_money(body.amount),
        funding=body.funding,
        owner=_owner(principal),
    )
    return _answer(result)


@router.post("/refunds", summary="Refund all or part of a merchant payment", responses=_REJECTED)
def refund(body: RefundIn, key: IdempotencyKey, platform: PlatformDep, principal: MerchantOrOperator) -> JSONResponse:
    result = platform.payments.refund(
        member=principal.member,
        key=key,
        payment_id=body.payment_id,
        amount=_money(body.amount),
        owner=_owner(principal),
    )
    return _answer(result)


@router.post("/bill-payments", summary="Pay a registered biller with a biller reference", responses=_REJECTED)
def pay_bill(body: BillPaymentIn, key: IdempotencyKey, platform: PlatformDep, principal: WalletUser) -> JSONResponse:
    result = platform.payments.pay_bill(
        member=principal.member,
        key=key,
        payer_wallet_id=body.payer_wallet_id,
        biller_wallet_id=body.biller_wallet_id,
        reference=body.reference,
        amount=_money(body.amount),
        due_date=body.due_date,
        owner=_owner(principal),
    )
    return _answer(result)


@router.get("/payments/{payment_id}", summary="A payment and its status")
def get_payment(payment_id: str, platform: PlatformDep, principal: WalletUser) -> dict[str, Any]:
    return platform.payments.get_payment(payment_id, owner=_owner(principal))


# ---------------------------------------------------------------- reconciliation


@router.post(
    "/reconciliations",
    summary="Reconcile the custodian bank's statement (camt.053 XML or CSV, as the request body)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/xml": {"schema": {"type": "string", "format": "binary"}},
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def reconcile_statement(
    request: Request,
    platform: PlatformDep,
    _principal: Operator,
    statement_format: Annotated[
        Literal["camt053", "csv"], Query(alias="format", description="camt053 (also .052/.054) or csv")
    ] = "camt053",
    timing_tolerance_business_days: Annotated[int | None, Query(ge=0, le=TOLERANCE_BUSINESS_DAYS_MAX)] = None,
) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > STATEMENT_UPLOAD_BYTES_MAX:
            raise StatementTooLarge(
                f"statement larger than {STATEMENT_UPLOAD_BYTES_MAX} bytes", size_bytes_max=STATEMENT_UPLOAD_BYTES_MAX
            )
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise StatementMalformed("the request body is empty; send the statement file as the body", field="body")
    return await run_in_threadpool(
        platform.payments.reconcile_statement,
        data,
        statement_format,
        timing_tolerance_business_days=timing_tolerance_business_days,
    )
