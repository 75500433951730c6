"""Platform operations: the book's balances, originations, delinquency, vintages, roll rates, partner exposure.

Each page is one or two set-based reads of lending's aggregates (or co-lending's partner list) and the
portfolio arithmetic of `analytics` on them (see `reports`), shown as a Vega-Lite chart and a small table.
The platform operator only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from creditstack.analytics.portfolio import DPD_BOUNDARIES_DEFAULT, bucket_labels, ratio
from creditstack.app.console import charts, reports
from creditstack.app.console.auth import OperatorSession
from creditstack.app.console.cache import report_cache
from creditstack.app.console.nav import NavEntry
from creditstack.app.console.web import render
from creditstack.app.platform import Platform
from creditstack.core.money import Currency
from creditstack.core.security import Role

router = APIRouter(prefix="/portfolio")
T = TypeVar("T")

OPERATOR = frozenset({Role.PLATFORM_OPERATOR})
NAV = (
    NavEntry("Portfolio", "Balances", "/console/portfolio", OPERATOR),
    NavEntry("Portfolio", "Originations", "/console/portfolio/originations", OPERATOR),
    NavEntry("Portfolio", "Delinquency", "/console/portfolio/delinquency", OPERATOR),
    NavEntry("Portfolio", "Vintages", "/console/portfolio/vintages", OPERATOR),
    NavEntry("Portfolio", "Roll rates", "/console/portfolio/roll-rates", OPERATOR),
    NavEntry("Partners", "Partner exposure", "/console/portfolio/partners", OPERATOR),
)

CurrencyQuery = Annotated[str | None, Query(min_length=3, max_length=3, pattern="^[A-Z]{3}$")]
#: Vintage metrics: lending's days-past-due threshold (None: charged off only) and the page's title.
VINTAGE_METRICS: dict[str, tuple[int | None, str]] = {
    "ever_30_plus": (30, "ever 30+ days past due"),
    "ever_60_plus": (60, "ever 60+ days past due"),
    "ever_90_plus": (90, "ever 90+ days past due"),
    "charged_off": (None, "charged off"),
}
VintageMetric = Literal["ever_30_plus", "ever_60_plus", "ever_90_plus", "charged_off"]


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def _snapshot_report(request: Request, name: str, compute: Callable[[], T], *params: Hashable) -> T:
    """A report on the month-end snapshots, computed once per state of the snapshots (see `cache`)."""
    state = _platform(request).lending.snapshot_state()
    return report_cache(request).get((name, state, *params), compute)


def _currency_context(available: list[str], wanted: str | None) -> dict[str, Any]:
    return {"currencies": available, "currency": reports.pick_currency(available, wanted)}


@router.get("", response_class=HTMLResponse)
def balances(request: Request, _session: OperatorSession, currency: CurrencyQuery = None) -> HTMLResponse:
    rows = _platform(request).lending.balances_by_product()
    context = _currency_context(reports.currencies(rows), currency)
    chosen = context["currency"]
    shown = [r for r in rows if r["currency"] == chosen]
    active = [r for r in shown if r["status"] == "active"]
    totals = {
        "accounts": sum(r["accounts"] for r in active),
        "principal_minor": sum(r["principal_minor"] for r in active),
        "balance_minor": sum(r["balance_minor"] for r in active),
        "past_due_accounts": sum(r["past_due_accounts"] for r in active),
    }
    return render(
        request,
        "portfolio/balances.html",
        context
        | {
            "rows": shown,
            "totals": totals,
            "past_due_share": ratio(totals["past_due_accounts"], totals["accounts"]),
            "chart": charts.balances(shown, chosen) if chosen else None,
        },
    )


@router.get("/originations", response_class=HTMLResponse)
def originations(request: Request, _session: OperatorSession, currency: CurrencyQuery = None) -> HTMLResponse:
    rows = _platform(request).lending.originations_by_month()
    context = _currency_context(reports.currencies(rows), currency)
    chosen = context["currency"]
    shown = [r for r in rows if r["currency"] == chosen]
    return render(
        request,
        "portfolio/originations.html",
        context | {"rows": shown, "chart": charts.originations(shown, chosen) if chosen else None},
    )


@router.get("/delinquency", response_class=HTMLResponse)
def delinquency(request: Request, _session: OperatorSession, currency: CurrencyQuery = None) -> HTMLResponse:
    lending = _platform(request).lending
    rows = _snapshot_report(request, "bands", lambda: lending.snapshot_bands(DPD_BOUNDARIES_DEFAULT))
    context = _currency_context(reports.currencies(rows), currency)
    chosen = context["currency"]
    labels = bucket_labels(DPD_BOUNDARIES_DEFAULT)
    history = reports.delinquency_history(rows, chosen) if chosen else []
    return render(
        request,
        "portfolio/delinquency.html",
        context
        | {
            "history": history,
            "labels": labels,
            "chart": charts.delinquency(history, chosen, labels) if history and chosen else None,
        },
    )


@router.get("/vintages", response_class=HTMLResponse)
def vintages(request: Request, _session: OperatorSession, metric: VintageMetric = "ever_30_plus") -> HTMLResponse:
    dpd_min, title = VINTAGE_METRICS[metric]
    lending = _platform(request).lending
    points = _snapshot_report(
        request, "vintages", lambda: reports.vintage_points(lending.vintage_counts(dpd_min)), metric
    )
    by_vintage: dict[str, list[Any]] = {}
    for point in points:
        by_vintage.setdefault(point.vintage, []).append(point)
    mob_max = max((p.months_on_book for p in points), default=-1)
    return render(
        request,
        "portfolio/vintages.html",
        {
            "metric": metric,
            "metrics": VINTAGE_METRICS,
            "title": title,
            "by_vintage": by_vintage,
            "mobs": list(range(mob_max + 1)),
            "chart": charts.vintages(points, title) if points else None,
        },
    )


@router.get("/roll-rates", response_class=HTMLResponse)
def roll_rates(
    request: Request,
    _session: OperatorSession,
    from_month: Annotated[date | None, Query(alias="from")] = None,
    to_month: Annotated[date | None, Query(alias="to")] = None,
) -> HTMLResponse:
    lending = _platform(request).lending
    month_ends = lending.snapshot_month_ends()
    pair = reports.default_roll_months(month_ends)
    if from_month in month_ends and to_month in month_ends and from_month is not None and to_month is not None:
        pair = (from_month, to_month) if from_month < to_month else pair
    matrix = None
    if pair is not None:
        start, end = pair
        matrix = _snapshot_report(
            request,
            "roll_rates",
            lambda: reports.roll_rates_from(
                lending.snapshot_transitions(start, end, DPD_BOUNDARIES_DEFAULT), start, end
            ),
            start,
            end,
        )
    return render(
        request,
        "portfolio/roll_rates.html",
        {
            "month_ends": month_ends,
            "pair": pair,
            "matrix": matrix,
            "chart": charts.roll_rates(matrix) if matrix is not None and any(matrix.populations.values()) else None,
        },
    )


@router.get("/partners", response_class=HTMLResponse)
def partners(request: Request, _session: OperatorSession) -> HTMLResponse:
    rows = []
    for p in _platform(request).colending.list_partners():
        outstanding = p["outstanding"]["amount_minor"]
        cap = p["agreement"]["exposure_cap"]["amount_minor"]
        tier1_limit = p["net_tier1_capital"]["amount_minor"] // 4
        rows.append(
            {
                "partner_id": p["partner_id"],
                "label": f"{p['name']} ({p['partner_id']})",
                "name": p["name"],
                "currency": Currency.of(p["currency"]).code,
                "outstanding_minor": outstanding,
                "cap_minor": cap,
                "tier1_limit_minor": tier1_limit,
                "cap_used": ratio(outstanding, cap),
                "tier1_used": ratio(outstanding, tier1_limit),
            }
        )
    return render(
        request,
        "portfolio/partners.html",
        {"rows": rows, "chart": charts.partner_exposure(rows) if rows else None},
    )
