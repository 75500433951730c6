"""HTTP API of co-lending under /v1/colending. Thin: parse, call `ColendingService`, shape the answer.

Who may do what: the platform operator registers partner banks, lists them, runs the daily settlement
and reconciles. A partner bank (an API key of role `partner_bank` whose member is the partner's `member`)
reads its own partner record, statements and portfolio; any other partner's id is "not found"
(`colending.partner_not_found`, 404), never "forbidden", so ids cannot be probed; the operator's endpoints
answer it 403 (`auth.forbidden`). The operator reads every partner.

Registering a partner: the capital and loan figures are `_minor` integers in the partner's currency; the
agreement's ranges are the service's to check (`colending.invalid_agreement`, 422, naming the field).
`bank_rate` is an annual fraction as a decimal string (`"0.045"`), never a JSON number, so it stays exact.
A member has one partner bank: registering a second one for it is 409 with the existing partner's id.

Settlement (`POST /settlements`) nets each partner's unsettled movements up to the business date (default:
the day before the platform's) into one ledger entry and one bank-rail payment; a date already settled for
a partner is `colending.settlement_exists` (409). A statement comes as JSON or, with `?format=csv`, as
`text/csv` whose account lines sum, per component, to the statement's lines, and whose cash components
sum to its net.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from creditstack.app.auth import Operator, PartnerBankOrOperator, PlatformDep
from creditstack.app.platform import Platform
from creditstack.app.wire import AmountMinorIn, IsoDate
from creditstack.colending.service import Agreement, InvalidAgreement, PartnerNotFound
from creditstack.core.apikeys import MEMBER_LENGTH_MAX, Principal, check_member
from creditstack.core.security import Role

router = APIRouter(prefix="/v1/colending", tags=["colending"])

#: Longest partner id accepted in a path (`bank_…`).
PARTNER_ID_LENGTH_MAX = 32
#: Longest partner name (the column's width).
PARTNER_NAME_LENGTH_MAX = 200
#: Most product codes in one agreement.
AGREEMENT_PRODUCTS_MAX = 50
#: Longest product code.
PRODUCT_CODE_LENGTH_MAX = 40
#: Largest page of `GET /partners/{id}/statements` (the service's own bound).
STATEMENTS_PAGE_MAX = 500
#: Highest bank rate accepted: 100 % a year (the rate is stored in micro-units in a 32-bit column).
BANK_RATE_MAX = Decimal(1)
#: Longest bank rate string.
BANK_RATE_LENGTH_MAX = 20
#: Integer agreement terms (basis points, score floor, months) must fit the database's 32-bit columns.
INT32_MAX = 2**31 - 1

PartnerId = Annotated[
    str, Path(min_length=1, max_length=PARTNER_ID_LENGTH_MAX, description="The partner bank's id (`bank_…`)")
]
StatementDate = Annotated[IsoDate, Path(description="The statement's business date, YYYY-MM-DD")]
Int32 = Annotated[int, Field(strict=True, ge=-INT32_MAX - 1, le=INT32_MAX)]
ProductCode = Annotated[str, Field(min_length=1, max_length=PRODUCT_CODE_LENGTH_MAX)]


def _bank_rate(value: Any) -> Decimal:
    """A decimal string: exact, finite, 0..`BANK_RATE_MAX` (the service checks the places and the sign)."""
    if not isinstance(value, str) or len(value) > BANK_RATE_LENGTH_MAX:
        raise PydanticCustomError(
            InvalidAgreement.code, 'bank_rate is an annual fraction as a decimal string, e.g. "0.045"', {}
        )
    try:
        rate = Decimal(value)
    except InvalidOperation:
        rate = Decimal("NaN")
    if not rate.is_finite():
        raise PydanticCustomError(InvalidAgreement.code, "bank_rate {value!r} is not a decimal", {"value": value})
    if rate > BANK_RATE_MAX:
        raise PydanticCustomError(InvalidAgreement.code, "bank_rate is at most 1 (100 % a year)", {})
    return rate


BankRate = Annotated[Decimal, BeforeValidator(_bank_rate)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgreementIn(Strict):
    products: list[ProductCode] = Field(
        max_length=AGREEMENT_PRODUCTS_MAX, description="Lending product codes the bank co-funds."
    )
    share_min_bps: Int32 = Field(description="Smallest share of a loan the bank takes (0..share_max_bps).")
    share_max_bps: Int32 = Field(description="Largest share of a loan the bank takes (..10,000).")
    exposure_cap_minor: AmountMinorIn = Field(description="Most outstanding principal with the platform.")
    score_floor: Int32 = Field(description="Lowest borrower score the bank funds.")
    term_months_max: Int32 = Field(description="Longest instalment loan the bank funds, in months.")
    bank_rate: BankRate = Field(
        description="The bank's annual rate as a decimal string (six places at most); it earns "
        "min(borrower rate, bank rate) on its participation."
    )
    fees_to: Literal["platform", "pro_rata"] = Field("pro_rata", description="Who gets the fees.")
    penalty_to: Literal["platform", "pro_rata"] = Field("platform", description="Who gets penalty interest.")

    def to_agreement(self) -> Agreement:
        return Agreement(
            products=tuple(self.products),
            share_min_bps=self.share_min_bps,
            share_max_bps=self.share_max_bps,
            exposure_cap_minor=self.exposure_cap_minor,
            score_floor=self.score_floor,
            term_months_max=self.term_months_max,
            bank_rate=self.bank_rate,
            fees_to=self.fees_to,
            penalty_to=self.penalty_to,
        )


class PartnerIn(Strict):
    name: str = Field(min_length=1, max_length=PARTNER_NAME_LENGTH_MAX)
    member: str = Field(
        min_length=1,
        max_length=MEMBER_LENGTH_MAX,
        description="The API member the bank's `partner_bank` keys belong to (letters, digits, '-', '_', ':').",
    )
    currency: str = Field(min_length=3, max_length=3, description="ISO 4217; every figure below is in it.")
    net_tier1_capital_minor: AmountMinorIn
    total_loans_minor: AmountMinorIn
    joint_loans_elsewhere_minor: AmountMinorIn = Field(0, description="Joint loans with other platforms.")
    bank_account_token: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[0-9A-Za-z_:-]+$",
        description="The bank's settlement account as a token at the custodian bank (default: derived).",
    )
    agreement: AgreementIn


class SettlementIn(Strict):
    business_date: IsoDate | None = Field(
        None, description="Settle movements up to this date, YYYY-MM-DD (default: the day before the business date)."
    )


def _visible_partner(platform: Platform, principal: Principal, partner_id: str) -> dict[str, Any]:
    """The partner if the caller may see it: the operator sees every one, a partner bank its own only."""
    if principal.role is Role.PARTNER_BANK and platform.colending.partner_for_member(principal.member) != partner_id:
        raise PartnerNotFound(f"no partner bank {partner_id}", field="partner_id")
    return platform.colending.get_partner(partner_id)


# ---------------------------------------------------------------- partners


@router.post("/partners", status_code=201, summary="Register a partner bank and its agreement")
def register_partner(body: PartnerIn, platform: PlatformDep, _principal: Operator) -> dict[str, Any]:
    """Out-of-range terms are `colending.invalid_agreement` (422) naming the field; an unknown currency is
    `money.unknown_currency`; a member that already has a partner bank is `colending.partner_taken` (409)."""
    member = check_member(body.member)
    return platform.colending.register_partner(
        name=body.name,
        member=member,
        currency=body.currency,
        net_tier1_capital_minor=body.net_tier1_capital_minor,
        total_loans_minor=body.total_loans_minor,
        joint_loans_elsewhere_minor=body.joint_loans_elsewhere_minor,
        bank_account_token=body.bank_account_token or "",
        agreement=body.agreement.to_agreement(),
    )


@router.get("/partners", summary="Every partner bank with its agreement and exposure")
def list_partners(platform: PlatformDep, _principal: Operator) -> dict[str, Any]:
    return {"items": platform.colending.list_partners()}


@router.get("/partners/{partner_id}", summary="A partner bank: figures, agreement, exposure")
def get_partner(partner_id: PartnerId, platform: PlatformDep, principal: PartnerBankOrOperator) -> dict[str, Any]:
    return _visible_partner(platform, principal, partner_id)


@router.get("/partners/{partner_id}/statements", summary="The partner's settlement statements, newest first")
def list_statements(
    partner_id: PartnerId,
    platform: PlatformDep,
    principal: PartnerBankOrOperator,
    limit: Annotated[int, Query(ge=1, le=STATEMENTS_PAGE_MAX)] = 100,
) -> dict[str, Any]:
    _visible_partner(platform, principal, partner_id)
    return {"partner_id": partner_id, "items": platform.colending.statements(partner_id, limit=limit)}


@router.get(
    "/partners/{partner_id}/statements/{business_date}",
    summary="One day's statement: lines per component, the net and its direction, the accounts behind it",
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with `?format=csv`"}},
)
def get_statement(
    partner_id: PartnerId,
    business_date: StatementDate,
    platform: PlatformDep,
    principal: PartnerBankOrOperator,
    output: Annotated[Literal["json", "csv"], Query(alias="format", description="`json` (default) or `csv`")] = "json",
) -> Any:
    """No settlement for the partner on that date is `request.not_found` (404). The CSV has one row per
    account and component, then a `TOTAL` row per component and a `NET` row."""
    _visible_partner(platform, principal, partner_id)
    if output == "csv":
        return Response(
            platform.colending.statement_csv(partner_id, business_date),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{partner_id}-{business_date.isoformat()}.csv"'},
        )
    return platform.colending.statement(partner_id, business_date)


@router.get("/partners/{partner_id}/portfolio", summary="The partner's view of its participations")
def portfolio(
    partner_id: PartnerId,
    platform: PlatformDep,
    principal: PartnerBankOrOperator,
    month_end: Annotated[
        IsoDate | None, Query(description="Delinquency buckets as of this month end (default: the latest)")
    ] = None,
) -> dict[str, Any]:
    """Outstanding principal, funded, repaid, interest and fees earned, losses and recoveries, outstanding by
    delinquency bucket (from lending's month-end snapshots; `month_end` is null before the first one), and
    the exposure against the agreement's cap and 25 % of the bank's net tier-1 capital."""
    _visible_partner(platform, principal, partner_id)
    snapshots = platform.lending.account_months(platform.colending.participation_refs(partner_id), month_end)
    view = platform.colending.portfolio(partner_id, snapshots)
    view["month_end"] = snapshots[0]["month_end"] if snapshots else (month_end.isoformat() if month_end else None)
    return view


# ---------------------------------------------------------------- settlement and reconcile


@router.post("/settlements", summary="Run the daily net settlement of every partner bank")
def settle(
    platform: PlatformDep, _principal: Operator, body: Annotated[SettlementIn | None, Body()] = None
) -> dict[str, Any]:
    """Answers the statements made (a partner with nothing to settle has none)."""
    business_date: date | None = body.business_date if body is not None else None
    items = platform.colending.settle(business_date)
    return {"items": items}


@router.get("/reconcile", summary="Partner subledger against the ledger, to the unit")
def reconcile(platform: PlatformDep, _principal: Operator) -> dict[str, Any]:
    """`clean` is true when every partner's difference and `due_to_partner` balance are zero."""
    return platform.colending.reconcile()
