"""HTTP API of lending under /v1/lending. Thin: parse, call `LendingService`, shape the answer.

Who may do what: a consumer applies for itself and acts on its own applications, loans and lines
(`owner=principal.member`; another customer's object is "not found", never "forbidden", so ids cannot be
probed), and repays only from its own wallet; the platform operator and services act on every object
(`owner=None`) and record repayments collected outside the wallet. Recoveries, end of day and reconcile
are the operator's. The APR calculator is open to any authenticated caller.

Every money-moving call (apply, accept, repay, convert, recover) carries an `Idempotency-Key` header,
unique per member: the first outcome is stored and returned on every replay with
`Idempotent-Replayed: true`; the same key with another request is `idempotency.key_reused`. A declined
application is stored too, and answered as problem+json `lending.application_declined` (409) naming each
reason, with the application under `application`. Amounts in request bodies are `amount_minor` integers in
the currency of the product or account they apply to; money in answers is `{"amount_minor", "currency"}`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from creditstack.app.auth import Authenticated, Borrower, Operator, PlatformDep
from creditstack.app.problems import stored_outcome
from creditstack.app.wire import AmountMinorIn
from creditstack.core.apikeys import Principal
from creditstack.core.errors import Forbidden
from creditstack.core.idempotency import IDEMPOTENCY_KEY_LENGTH_MAX
from creditstack.core.security import Role
from creditstack.lending.apr import compute_apr_request
from creditstack.lending.products import Product, ProductKind
from creditstack.lending.service import PAGE_MAX, LendingResult

router = APIRouter(prefix="/v1/lending", tags=["lending"])

#: Largest page of `GET /accounts` (the service's own bound).
ACCOUNTS_PAGE_MAX = PAGE_MAX
#: Roles that act on any customer's objects.
PLATFORM_ROLES = frozenset({Role.PLATFORM_OPERATOR, Role.SERVICE})
#: Longest public id (applications, accounts, customers, wallets) accepted in a path or body.
ID_LENGTH_MAX = 32
#: Longest product code.
PRODUCT_CODE_LENGTH_MAX = 40

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Client key; the first outcome is stored and returned on every replay.",
    ),
]
AccountRef = Annotated[
    str, Path(min_length=1, max_length=ID_LENGTH_MAX, description="The loan's or line's id (`loan_…`, `line_…`)")
]
ApplicationId = Annotated[str, Path(min_length=1, max_length=ID_LENGTH_MAX, description="`app_…`")]
_REJECTED: dict[int | str, dict[str, Any]] = {
    409: {"description": "Business rejection (problem+json with a stable code); a decline is stored and replayed"}
}
_APR_EXAMPLE = {
    "currency": "USD",
    "advances": [{"date": "2026-01-10", "amount_minor": 500_000}],
    "payments": [{"date": f"2026-{m:02d}-10", "amount_minor": 43_871} for m in range(2, 13)]
    + [{"date": "2027-01-10", "amount_minor": 43_871}],
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApplicationIn(Strict):
    customer_id: str = Field(min_length=1, max_length=ID_LENGTH_MAX, description="A consumer: its own id.")
    wallet_id: str = Field(
        min_length=1, max_length=ID_LENGTH_MAX, description="The applicant's wallet; a loan is disbursed into it."
    )
    product_code: str = Field(min_length=1, max_length=PRODUCT_CODE_LENGTH_MAX)
    amount_minor: AmountMinorIn = Field(description="Principal (instalment loan) or limit (line), in minor units.")
    term_months: int | None = Field(
        None, strict=True, description="Instalment loans only, within the product's range; lines take none."
    )
    income_3y_average_minor: AmountMinorIn | None = Field(
        None, description="Declared average annual income of the last 3 years; default: the registered incomes."
    )
    military_covered: bool = Field(False, strict=True, description="Covered borrower under a military rate cap.")


class RepaymentIn(Strict):
    amount_minor: AmountMinorIn = Field(description="In the account's currency.")
    source: Literal["wallet", "external"] = Field(
        "wallet", description="`wallet` (the consumer's) or `external` (collected at the bank; the platform only)."
    )


class ConversionIn(Strict):
    term_months: int = Field(strict=True, description="One of the product's conversion terms (3, 6, 12).")


class RecoveryIn(Strict):
    amount_minor: AmountMinorIn = Field(description="In the account's currency; at most what was charged off.")
    source: Literal["wallet", "external"] = "external"


def _iso_date(value: Any) -> Any:
    """Only a `YYYY-MM-DD` string is a date on the wire (not a timestamp, which pydantic would accept)."""
    if value is None or isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise ValueError("a date is a string YYYY-MM-DD")
    return date.fromisoformat(value)


class EodIn(Strict):
    business_date: Annotated[date | None, BeforeValidator(_iso_date)] = Field(
        None, description="The date to close, YYYY-MM-DD (default: the current business date)."
    )


def _owner(principal: Principal) -> str | None:
    """The customer whose objects the caller may touch; None for the platform (every object)."""
    return None if principal.role in PLATFORM_ROLES else principal.member


def _answer(result: LendingResult, subject: str) -> JSONResponse:
    return stored_outcome(result.status_code, result.body, result.replayed, subject)


def _money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount_minor, "currency": currency}


def product_json(product: Product) -> dict[str, Any]:
    """A product on the wire: the headline terms (money as money), then every term under `terms`."""
    view: dict[str, Any] = {
        "code": product.code,
        "kind": product.kind.value,
        "name": product.name,
        "currency": product.currency,
        "annual_rate_min": str(product.rate_min),
        "annual_rate_max": str(product.rate_max),
        "amount_min": _money(product.amount_min_minor, product.currency),
        "amount_max": _money(product.amount_max_minor, product.currency),
    }
    if product.kind is ProductKind.INSTALMENT:
        view["term_months_min"] = product.term_months_min
        view["term_months_max"] = product.term_months_max
    else:
        view["conversion_terms_months"] = list(product.conversion_terms)
    view["terms"] = product.to_json()
    return view


# ---------------------------------------------------------------- products and the APR calculator


@router.get("/products", summary="The products on offer, with their terms")
def list_products(platform: PlatformDep, _principal: Authenticated) -> dict[str, Any]:
    return {"items": [product_json(p) for _, p in sorted(platform.lending.products().items())]}


@router.get("/products/{product_code}", summary="One product and its terms")
def get_product(
    product_code: Annotated[str, Path(min_length=1, max_length=PRODUCT_CODE_LENGTH_MAX)],
    platform: PlatformDep,
    _principal: Authenticated,
) -> dict[str, Any]:
    return product_json(platform.lending.product(product_code))


@router.post("/apr", summary="Annual percentage rate of any cash-flow pattern (Regulation Z Appendix J)")
def apr(
    _principal: Authenticated,
    body: Annotated[Any, Body(openapi_examples={"monthly": {"value": _APR_EXAMPLE}})],
) -> dict[str, Any]:
    """Any authenticated caller may use the calculator; it reads and stores nothing. Answers
    `{"apr": "9.69", ...}` (percent, two decimals) with the unit period and each flow's position."""
    return compute_apr_request(body)


# ---------------------------------------------------------------- applications


@router.post(
    "/applications",
    status_code=201,
    summary="Apply for a loan or a credit line: scored, checked against the rules in force, decided",
    responses=_REJECTED,
)
def apply(body: ApplicationIn, key: IdempotencyKey, platform: PlatformDep, principal: Borrower) -> JSONResponse:
    """An approval (201) carries the offer: rate, APR, fees, total cost, first due date, expiry. A decline
    (409 `lending.application_declined`) names every reason: policy rule ids with their numbers, score
    reasons, product limits."""
    result = platform.lending.apply(
        member=principal.member,
        key=key,
        customer_id=body.customer_id,
        wallet_id=body.wallet_id,
        product_code=body.product_code,
        amount_minor=body.amount_minor,
        term_months=body.term_months,
        income_3y_average_minor=body.income_3y_average_minor,
        military_covered=body.military_covered,
        owner=_owner(principal),
    )
    return _answer(result, "application")


@router.get("/applications/{application_id}", summary="An application, its decision and its offer")
def get_application(application_id: ApplicationId, platform: PlatformDep, principal: Borrower) -> dict[str, Any]:
    return platform.lending.get_application(application_id, owner=_owner(principal))


@router.post(
    "/applications/{application_id}/accept",
    status_code=201,
    summary="Accept an approved offer: open the loan (disbursed into the wallet) or the line",
    responses=_REJECTED,
)
def accept(
    application_id: ApplicationId, key: IdempotencyKey, platform: PlatformDep, principal: Borrower
) -> JSONResponse:
    """The borrower caps are checked again at acceptance; the answer is the new account."""
    result = platform.lending.accept(
        member=principal.member, key=key, application_id=application_id, owner=_owner(principal)
    )
    return _answer(result, "account")


# ---------------------------------------------------------------- accounts


@router.get("/accounts", summary="Loans and lines, oldest first (a consumer sees its own)")
def list_accounts(
    platform: PlatformDep,
    principal: Borrower,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=ID_LENGTH_MAX)] = None,
    after: Annotated[int, Query(ge=0, description="The service's position cursor: accounts after it")] = 0,
    limit: Annotated[int, Query(ge=1, le=ACCOUNTS_PAGE_MAX)] = 100,
) -> dict[str, Any]:
    owner = _owner(principal)
    if owner is not None:
        if customer_id is not None and customer_id != owner:
            return {"items": [], "next_after": None}  # another customer's accounts are invisible, not forbidden
        customer_id = owner
    items = platform.lending.list_accounts(customer_id=customer_id, after=after, limit=limit)
    return {"items": items, "next_after": items[-1]["position"] if len(items) == limit else None}


@router.get("/accounts/{account_ref}", summary="A loan or line: balances, delinquency, schedule")
def get_account(account_ref: AccountRef, platform: PlatformDep, principal: Borrower) -> dict[str, Any]:
    return platform.lending.get_account(account_ref, owner=_owner(principal))


@router.get("/accounts/{account_ref}/statements", summary="A line's statements, newest first")
def statements(account_ref: AccountRef, platform: PlatformDep, principal: Borrower) -> dict[str, Any]:
    return {"account_id": account_ref, "items": platform.lending.statements(account_ref, owner=_owner(principal))}


@router.get("/accounts/{account_ref}/payoff", summary="What settles the account if paid on a date")
def payoff(
    account_ref: AccountRef,
    platform: PlatformDep,
    principal: Borrower,
    on: Annotated[date | None, Query(description="YYYY-MM-DD, not before the business date (default: it)")] = None,
) -> dict[str, Any]:
    return platform.lending.payoff_quote(account_ref, on, owner=_owner(principal))


@router.post(
    "/accounts/{account_ref}/repayments",
    status_code=201,
    summary="Repay: oldest instalment first, in the product's order; any excess per the product",
    responses=_REJECTED,
)
def repay(
    account_ref: AccountRef, body: RepaymentIn, key: IdempotencyKey, platform: PlatformDep, principal: Borrower
) -> JSONResponse:
    """A consumer repays from its own wallet; `external` (money collected at the bank) is recorded by the
    platform only."""
    owner = _owner(principal)
    if owner is not None and body.source != "wallet":
        raise Forbidden("a consumer repays from its wallet; external repayments are recorded by the platform")
    result = platform.lending.repay(
        member=principal.member,
        key=key,
        account_id=account_ref,
        amount_minor=body.amount_minor,
        source=body.source,
        owner=owner,
    )
    return _answer(result, "repayment")


@router.post(
    "/accounts/{account_ref}/conversions",
    status_code=201,
    summary="Convert a line's open statement into 3, 6 or 12 monthly instalments",
    responses=_REJECTED,
)
def convert(
    account_ref: AccountRef, body: ConversionIn, key: IdempotencyKey, platform: PlatformDep, principal: Borrower
) -> JSONResponse:
    result = platform.lending.convert_statement(
        member=principal.member, key=key, account_id=account_ref, term_months=body.term_months, owner=_owner(principal)
    )
    return _answer(result, "conversion")


@router.post(
    "/accounts/{account_ref}/recoveries",
    status_code=201,
    summary="Record money collected on a charged-off account (up to what was charged off)",
    responses=_REJECTED,
)
def recover(
    account_ref: AccountRef, body: RecoveryIn, key: IdempotencyKey, platform: PlatformDep, principal: Operator
) -> JSONResponse:
    result = platform.lending.recover(
        member=principal.member, key=key, account_id=account_ref, amount_minor=body.amount_minor, source=body.source
    )
    return _answer(result, "recovery")


# ---------------------------------------------------------------- end of day and reconcile


@router.post("/eod", summary="Run end of day: finish an interrupted run, then close the business date")
def run_eod(
    platform: PlatformDep, _principal: Operator, body: Annotated[EodIn | None, Body()] = None
) -> dict[str, Any]:
    """Closing date D moves the online business date to D+1. Answers each run's per-step timings (an
    interrupted earlier run first) and the business date now in force. Closing a date already closed
    answers `already_complete`; a future date is `lending.eod_date_invalid`."""
    reports = platform.lending.eod.run(body.business_date if body is not None else None)
    return {
        "reports": [report.to_json() for report in reports],
        "business_date": platform.ledger.business_date().isoformat(),
    }


@router.get("/reconcile", summary="Subledger against ledger, per product and general-ledger account")
def reconcile(platform: PlatformDep, _principal: Operator) -> dict[str, Any]:
    """`clean` is true when every difference is zero. Run it on a quiet book (after end of day)."""
    return platform.lending.reconcile()
