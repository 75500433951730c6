"""Consumer pages: the wallet and its payments, loans and lines with their schedules and statements.

A consumer sees its own customer (its API key's member) and nothing else: any other customer's id, or a
wallet or account that is not the customer's, is "not found" (404), never "forbidden", so ids cannot be
probed. The platform operator sees any consumer, read-only, through the same pages.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from creditstack.app.console import charts
from creditstack.app.console.auth import ConsumerOrOperator, OperatorSession, Session, require
from creditstack.app.console.nav import NavEntry
from creditstack.app.console.web import render
from creditstack.app.platform import Platform
from creditstack.core.errors import NotFound
from creditstack.core.security import Role

router = APIRouter()

#: Payments per page of a wallet's history.
HISTORY_PAGE = 50
#: Loans and lines per page on a consumer's overview.
ACCOUNTS_PAGE = 50
#: Customers per page of the operator's list.
CUSTOMERS_PAGE = 50
#: Longest id accepted in a path (the services' ids are shorter).
ID_LENGTH_MAX = 32

CustomerId = Annotated[str, Path(min_length=1, max_length=ID_LENGTH_MAX)]
ObjectId = Annotated[str, Path(min_length=1, max_length=ID_LENGTH_MAX)]

NAV = (
    NavEntry("Accounts", "My wallet and loans", "/console/me", frozenset({Role.CONSUMER})),
    NavEntry("Accounts", "Consumers", "/console/consumers", frozenset({Role.PLATFORM_OPERATOR})),
)


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def visible_customer(platform: Platform, session: Session, customer_id: str) -> dict[str, Any]:
    """The consumer if the session may see it: a consumer its own only, the operator any; else 404."""
    if session.role is Role.CONSUMER and session.member != customer_id:
        raise NotFound(f"no consumer {customer_id}")
    customer = platform.payments.get_customer(customer_id)
    if customer["kind"] != "consumer":
        raise NotFound(f"no consumer {customer_id}")
    return customer


def _base(customer_id: str) -> str:
    return f"/console/consumers/{customer_id}"


@router.get("/me", include_in_schema=False)
def me(session: Annotated[Session, require(Role.CONSUMER)]) -> RedirectResponse:
    return RedirectResponse(_base(session.member), status_code=303)


@router.get("/consumers", response_class=HTMLResponse)
def consumers(
    request: Request,
    _session: OperatorSession,
    after: Annotated[str | None, Query(min_length=1, max_length=ID_LENGTH_MAX)] = None,
) -> HTMLResponse:
    page = _platform(request).payments.list_customers("consumer", after=after, limit=CUSTOMERS_PAGE)
    return render(request, "consumers/list.html", {"page": page, "after": after})


@router.get("/consumers/{customer_id}", response_class=HTMLResponse)
def consumer(
    request: Request,
    customer_id: CustomerId,
    session: ConsumerOrOperator,
    after: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    platform = _platform(request)
    customer = visible_customer(platform, session, customer_id)
    wallets = [platform.payments.get_wallet(w, owner=customer_id) for w in customer["wallets"]]
    accounts = platform.lending.list_accounts(customer_id=customer_id, after=after, limit=ACCOUNTS_PAGE)
    next_after = accounts[-1]["position"] if len(accounts) == ACCOUNTS_PAGE else None
    return render(
        request,
        "consumers/overview.html",
        {
            "customer": customer,
            "wallets": wallets,
            "accounts": accounts,
            "next_after": next_after,
            "base": _base(customer_id),
        },
    )


@router.get("/consumers/{customer_id}/wallets/{wallet_id}", response_class=HTMLResponse)
def wallet(
    request: Request,
    customer_id: CustomerId,
    wallet_id: ObjectId,
    session: ConsumerOrOperator,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    platform = _platform(request)
    customer = visible_customer(platform, session, customer_id)
    wallet = platform.payments.get_wallet(wallet_id, owner=customer_id)
    history = platform.payments.history(wallet_id, owner=customer_id, before=before, limit=HISTORY_PAGE)
    return render(
        request,
        "consumers/wallet.html",
        {
            "customer": customer,
            "wallet": wallet,
            "history": history,
            "before": before,
            "base": _base(customer_id),
        },
    )


@router.get("/consumers/{customer_id}/accounts/{account_ref}", response_class=HTMLResponse)
def account(
    request: Request, customer_id: CustomerId, account_ref: ObjectId, session: ConsumerOrOperator
) -> HTMLResponse:
    platform = _platform(request)
    customer = visible_customer(platform, session, customer_id)
    account = platform.lending.get_account(account_ref, owner=customer_id)
    statements = platform.lending.statements(account_ref, owner=customer_id) if account["kind"] == "line" else []
    chart = None
    if account["instalments"]:
        chart = charts.schedule(account["instalments"])
    statements_chart = charts.statements(list(reversed(statements))) if statements else None
    return render(
        request,
        "consumers/account.html",
        {
            "customer": customer,
            "account": account,
            "statements": statements,
            "schedule_chart": chart,
            "statements_chart": statements_chart,
            "base": _base(customer_id),
        },
    )
