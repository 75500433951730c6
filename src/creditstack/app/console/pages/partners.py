"""Partner bank pages: its share of the portfolio and its settlement statements.

A partner bank (a `partner_bank` key whose member is the partner's member) sees its own partner only; any
other partner's id, or a statement that is not its own, is "not found" (404). The platform operator sees
every partner, read-only, through the same pages.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from creditstack.analytics.portfolio import DPD_BOUNDARIES_DEFAULT, bucket_labels
from creditstack.app.console import charts
from creditstack.app.console.auth import PartnerOrOperator, Session, require
from creditstack.app.console.nav import NavEntry
from creditstack.app.console.web import render
from creditstack.app.platform import Platform
from creditstack.colending.service import PartnerNotFound
from creditstack.core.security import Role

router = APIRouter()

PARTNER = frozenset({Role.PARTNER_BANK})
NAV = (
    NavEntry("Partners", "Our portfolio", "/console/partner", PARTNER),
    NavEntry("Partners", "Statements", "/console/partner/statements", PARTNER),
)
#: Statements per page of the list.
STATEMENTS_PAGE = 30
#: Account lines shown on a statement's page (the CSV has them all).
STATEMENT_LINES_SHOWN = 500
PARTNER_ID_LENGTH_MAX = 32

PartnerId = Annotated[str, Path(min_length=1, max_length=PARTNER_ID_LENGTH_MAX)]
#: Lending's bucket index → its label (default products' buckets), and the portfolio's own key.
BUCKET_LABELS = {str(n): label for n, label in enumerate(bucket_labels(DPD_BOUNDARIES_DEFAULT))} | {
    "not_yet_reported": "not yet in a month-end snapshot"
}


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def visible_partner(platform: Platform, session: Session, partner_id: str) -> dict[str, Any]:
    """The partner if the session may see it: a partner bank its own only, the operator any; else 404."""
    if session.role is Role.PARTNER_BANK and platform.colending.partner_for_member(session.member) != partner_id:
        raise PartnerNotFound(f"no partner bank {partner_id}", field="partner_id")
    return platform.colending.get_partner(partner_id)


def _own_partner(platform: Platform, session: Session) -> str:
    partner_id = platform.colending.partner_for_member(session.member)
    if partner_id is None:
        raise PartnerNotFound("no partner bank for this key's member")
    return partner_id


@router.get("/partner", include_in_schema=False)
def own_portfolio(request: Request, session: Annotated[Session, require(Role.PARTNER_BANK)]) -> RedirectResponse:
    return RedirectResponse(f"/console/partners/{_own_partner(_platform(request), session)}", status_code=303)


@router.get("/partner/statements", include_in_schema=False)
def own_statements(request: Request, session: Annotated[Session, require(Role.PARTNER_BANK)]) -> RedirectResponse:
    partner_id = _own_partner(_platform(request), session)
    return RedirectResponse(f"/console/partners/{partner_id}/statements", status_code=303)


@router.get("/partners/{partner_id}", response_class=HTMLResponse)
def portfolio(request: Request, partner_id: PartnerId, session: PartnerOrOperator) -> HTMLResponse:
    platform = _platform(request)
    partner = visible_partner(platform, session, partner_id)
    snapshots = platform.lending.snapshot_buckets(platform.colending.participation_refs(partner_id))
    view = platform.colending.portfolio(partner_id, snapshots)
    month_end = snapshots[0]["month_end"] if snapshots else None
    return render(
        request,
        "partners/portfolio.html",
        {
            "partner": partner,
            "view": view,
            "month_end": month_end,
            "bucket_labels": BUCKET_LABELS,
            "buckets_chart": charts.partner_buckets(view["buckets"], BUCKET_LABELS) if view["buckets"] else None,
            "exposure_chart": charts.partner_exposure(
                [
                    {
                        "label": partner["name"],
                        "currency": partner["currency"],
                        "outstanding_minor": view["exposure"]["amount_minor"],
                        "cap_minor": view["limits"]["agreement_exposure_cap"]["amount_minor"],
                        "tier1_limit_minor": view["limits"]["tier1_capital_25pct"]["amount_minor"],
                    }
                ]
            ),
        },
    )


@router.get("/partners/{partner_id}/statements", response_class=HTMLResponse)
def statements(
    request: Request,
    partner_id: PartnerId,
    session: PartnerOrOperator,
    before: Annotated[date | None, Query()] = None,
) -> HTMLResponse:
    platform = _platform(request)
    partner = visible_partner(platform, session, partner_id)
    items = platform.colending.statement_summaries(partner_id, before=before, limit=STATEMENTS_PAGE)
    next_before = items[-1]["business_date"] if len(items) == STATEMENTS_PAGE else None
    return render(
        request,
        "partners/statements.html",
        {"partner": partner, "items": items, "before": before, "next_before": next_before},
    )


@router.get("/partners/{partner_id}/statements/{business_date}.csv")
def statement_csv(request: Request, partner_id: PartnerId, business_date: date, session: PartnerOrOperator) -> Response:
    platform = _platform(request)
    visible_partner(platform, session, partner_id)
    return Response(
        platform.colending.statement_csv(partner_id, business_date),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{partner_id}-{business_date.isoformat()}.csv"'},
    )


@router.get("/partners/{partner_id}/statements/{business_date}", response_class=HTMLResponse)
def statement(request: Request, partner_id: PartnerId, business_date: date, session: PartnerOrOperator) -> HTMLResponse:
    platform = _platform(request)
    partner = visible_partner(platform, session, partner_id)
    detail = platform.colending.statement(partner_id, business_date)
    lines = detail["accounts"]
    return render(
        request,
        "partners/statement.html",
        {
            "partner": partner,
            "statement": detail,
            "lines": lines[:STATEMENT_LINES_SHOWN],
            "lines_total": len(lines),
        },
    )
