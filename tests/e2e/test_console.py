"""The web console over HTTP (TestClient), on a lending book built through the services.

The book: the demo's three partner banks and fifteen borrowers (cash loans and credit lines, forty days of
end of day with repayments, some late, some never; daily settlement), then end of day on to 1 May 2026 so
that two month ends (March and April) have account-month snapshots; three borrowers pay a fourth 55 times
so that its payment history runs to two pages.

Checked here: logging in with an API key (a CSRF token on the login form too), the session cookie's flags,
logging out, a revoked key or an expired session ending the session, CSRF refusals, each role's pages and
the 403 page for another role's, 404 (never 403) for another consumer's or partner's objects, every page
rendering its data (money formatted exactly from minor units, no personal data), the API keeping
problem+json, and — on SQLite and PostgreSQL — the console's set-based portfolio reports agreeing with
`analytics`' per-account functions on the same snapshots.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import re
import shutil
import stat
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rich.console import Console

from creditstack.analytics.portfolio import (
    CLOSED_STATUSES,
    DPD_BOUNDARIES_DEFAULT,
    bucket_distribution,
    roll_rates,
    vintage_curves,
)
from creditstack.app import demo
from creditstack.app.console import CONTENT_SECURITY_POLICY, auth, reports
from creditstack.app.console.pages import partners as partner_pages
from creditstack.app.console.web import annual_rate, format_minor, major_units
from creditstack.app.main import create_app
from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.db import Database
from creditstack.core.money import CNY, Money
from creditstack.core.security import Role
from creditstack.core.settings import Settings
from creditstack.lending import tables as lending_tables

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
THROUGH = date(2026, 5, 1)  # end of day closes March and April: two month ends of snapshots
TRANSFERS = 55  # more than one page (50) of payment history
BORROWERS = 15  # the demo's forty, cut: still lines and loans, and two that never pay
PARTNER, OTHER_PARTNER = "demobank0", "demobank1"
PARTNER_MEMBER = "demo-bank-0"

Response = Any  # starlette's TestClient answers with its own httpx build's responses


@dataclass
class Book:
    platform: Platform
    app: FastAPI
    consumer: str  # a borrower with a credit line
    line: str
    wallet: str
    other_consumer: str  # a borrower with a cash loan
    other_loan: str
    other_wallet: str
    statement_day: str


def build_book(platform: Platform) -> None:
    """The demo's lending book (its merchant registered first; fewer borrowers, to keep the tests quick),
    closed through `THROUGH`; then three borrowers pay the first line's holder `TRANSFERS` times, so that
    its payment history runs to two pages (a tier-1 wallet makes at most 20 payments a day)."""
    demo._customer(
        platform, "DEMOM0000", kind="merchant", legal_name="Demo Merchant 0", merchant_category="5411", fee_bps=60
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "LOAN_CONSUMERS", BORROWERS)
        demo._lending_demo(platform, Console(quiet=True))
    platform.lending.eod.catch_up(THROUGH)
    accounts = platform.lending.list_accounts(limit=100)
    line = next(a for a in accounts if a["kind"] == "line")
    payers = [a["wallet_id"] for a in accounts if a["customer_id"] != line["customer_id"]][:3]
    for n in range(TRANSFERS):
        paid = platform.payments.transfer(
            member="console-test",
            key=f"page-{n}",
            payer_wallet_id=payers[n % len(payers)],
            payee_wallet_id=line["wallet_id"],
            amount=Money(100 + n, CNY),
        )
        assert paid.ok, paid.body


def book_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the book's var directory (database and keys). The book is built once per test session,
    by whichever of the console's test modules comes first (test_console.py and test_console_browser.py
    build it alike: the template is named after `build_book`'s source, so builders that differ do not
    share one), and copied for each."""
    digest = hashlib.sha256(inspect.getsource(build_book).encode()).hexdigest()[:12]
    template = tmp_path_factory.getbasetemp() / f"console-book-{digest}"
    if not (template / "built").exists():
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir()
        platform = open_platform(Settings(var_dir=template), FixedClock(START))
        try:
            build_book(platform)
        finally:
            platform.close()
        (template / "built").touch()
    copy = tmp_path_factory.mktemp("console")
    shutil.copytree(template, copy, dirs_exist_ok=True)
    return copy


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Book]:
    platform = open_platform(
        Settings(var_dir=book_directory(tmp_path_factory)), FixedClock(START), migrate_schema=False
    )
    accounts = platform.lending.list_accounts(limit=100)
    line = next(a for a in accounts if a["kind"] == "line")
    loan = next(a for a in accounts if a["kind"] == "loan" and a["customer_id"] != line["customer_id"])
    yield Book(
        platform=platform,
        app=create_app(platform),
        consumer=line["customer_id"],
        line=line["account_id"],
        wallet=line["wallet_id"],
        other_consumer=loan["customer_id"],
        other_loan=loan["account_id"],
        other_wallet=loan["wallet_id"],
        statement_day=platform.colending.statement_summaries(PARTNER, limit=1)[0]["business_date"],
    )
    platform.close()


def _login_form(client: TestClient) -> str:
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def login_with(app: FastAPI, token: str, *, base_url: str = "http://testserver") -> tuple[TestClient, Response]:
    client = TestClient(app, follow_redirects=False, base_url=base_url)
    csrf = _login_form(client)
    return client, client.post("/console/login", data={"api_key": token, "csrf_token": csrf})


def login(book: Book, role: Role, member: str) -> TestClient:
    _, token = book.platform.keys.create(role, member, "console test")
    client, answer = login_with(book.app, token)
    assert answer.status_code == 303, answer.text
    return client


def session_csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def assert_page(response: Response, status: int, *texts: str) -> str:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    for text in texts:
        assert text in response.text, text
    return str(response.text)


def chart_specs(html: str) -> dict[str, dict[str, Any]]:
    blocks = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html, flags=re.S)
    return {name: json.loads(body) for name, body in blocks}


def set_cookies(response: Response) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}


# ------------------------------------------------------------------------------------------------ sessions


def test_login_issues_a_hardened_session_cookie_and_security_headers(book: Book) -> None:
    _, token = book.platform.keys.create(Role.PLATFORM_OPERATOR, "ops", "console test")
    client = TestClient(book.app, follow_redirects=False)
    form = client.get("/console/login")
    assert form.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert form.headers["x-frame-options"] == "DENY"
    assert form.headers["referrer-policy"] == "same-origin"
    assert form.headers["cache-control"] == "no-store"
    login_cookie = set_cookies(form)[auth.LOGIN_CSRF_COOKIE].lower()
    for flag in ("httponly", "samesite=strict", "path=/console"):
        assert flag in login_cookie
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post("/console/login", data={"api_key": token, "csrf_token": csrf.group(1)})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/portfolio"
    session_cookie = set_cookies(answer)[auth.SESSION_COOKIE]
    lowered = session_cookie.lower()
    for flag in ("httponly", "samesite=strict", "path=/console", f"max-age={auth.SESSION_SECONDS}"):
        assert flag in lowered
    assert "secure" not in lowered  # plain http here
    assert token not in session_cookie and token.split("_")[2] not in session_cookie  # never the key itself
    assert_page(client.get("/console/portfolio"), 200, "Balances")

    _, over_tls = login_with(book.app, token, base_url="https://testserver")
    assert "secure" in set_cookies(over_tls)[auth.SESSION_COOKIE].lower()


def test_the_login_form_needs_its_csrf_token(book: Book) -> None:
    _, token = book.platform.keys.create(Role.PLATFORM_OPERATOR, "ops", "console test")
    stranger = TestClient(book.app, follow_redirects=False)
    refused = stranger.post("/console/login", data={"api_key": token, "csrf_token": "forged"})
    assert_page(refused, 403, "Form refused")
    assert auth.SESSION_COOKIE not in set_cookies(refused)

    client = TestClient(book.app, follow_redirects=False)
    _login_form(client)  # a genuine cookie, but the form's token does not match it
    refused = client.post("/console/login", data={"api_key": token, "csrf_token": "forged"})
    assert_page(refused, 403, "Form refused")
    assert auth.SESSION_COOKIE not in set_cookies(refused)
    assert client.get("/console/portfolio").status_code == 303  # still logged out


def test_a_bad_key_or_a_role_without_pages_shows_the_form_again(book: Book) -> None:
    _, bad = login_with(book.app, "cs_0000000000000000_not-a-real-secret")
    assert_page(bad, 401, "unknown or revoked")
    assert auth.SESSION_COOKIE not in set_cookies(bad)
    _, merchant_token = book.platform.keys.create(Role.MERCHANT, "shop", "console test")
    _, merchant = login_with(book.app, merchant_token)
    assert_page(merchant, 403, "no pages for the role merchant")
    _, empty = login_with(book.app, "   ")
    assert_page(empty, 400, "Enter your API key")


def test_without_a_session_every_page_goes_to_the_login_page(book: Book) -> None:
    client = TestClient(book.app, follow_redirects=False)
    for path in ("/console/", "/console/portfolio", f"/console/consumers/{book.consumer}", "/console/partner"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login", path
    htmx = client.get("/console/portfolio", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/console/login"
    client.cookies.set(auth.SESSION_COOKIE, "forged.cookie.value", path="/console")
    assert client.get("/console/portfolio").headers["location"] == "/console/login"


def test_logout_needs_the_csrf_token_and_ends_the_session(book: Book) -> None:
    client = login(book, Role.PLATFORM_OPERATOR, "ops")
    csrf = session_csrf(client, "/console/portfolio")
    assert_page(client.post("/console/logout"), 403, "Form refused")
    assert_page(client.post("/console/logout", data={"csrf_token": "forged"}), 403)
    assert_page(client.post("/console/logout", headers={"X-CSRF-Token": "forged"}), 403)
    assert client.get("/console/portfolio").status_code == 200  # refused logouts changed nothing
    old_cookie = client.cookies.get(auth.SESSION_COOKIE)
    out = client.post("/console/logout", headers={"X-CSRF-Token": csrf, "HX-Request": "true"})
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    assert f'{auth.SESSION_COOKIE}=""' in out.headers["set-cookie"] or "max-age=0" in out.headers["set-cookie"].lower()
    assert client.get("/console/portfolio").headers["location"] == "/console/login"
    replay = TestClient(book.app, follow_redirects=False)
    assert old_cookie is not None
    replay.cookies.set(auth.SESSION_COOKIE, old_cookie, path="/console")
    assert replay.get("/console/portfolio").headers["location"] == "/console/login"  # a logged-out cookie is dead


def test_a_revoked_key_or_an_expired_session_logs_out(book: Book, monkeypatch: pytest.MonkeyPatch) -> None:
    principal, token = book.platform.keys.create(Role.CONSUMER, book.consumer, "console test")
    client, answer = login_with(book.app, token)
    assert answer.status_code == 303
    assert client.get("/console/me").status_code == 303
    assert client.get(f"/console/consumers/{book.consumer}").status_code == 200
    book.platform.keys.revoke(principal.key_id)
    assert client.get(f"/console/consumers/{book.consumer}").headers["location"] == "/console/login"

    operator = login(book, Role.PLATFORM_OPERATOR, "ops")
    assert operator.get("/console/portfolio").status_code == 200
    monkeypatch.setattr(auth, "SESSION_SECONDS", -1)  # every session is now older than its lifetime
    assert operator.get("/console/portfolio").headers["location"] == "/console/login"


def test_the_signing_secret_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = auth.load_console_secret(tmp_path, env={})
    path = tmp_path / "keys" / "console.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == auth.SECRET_BYTES and auth.load_console_secret(tmp_path, env={}) == first
    configured = auth.load_console_secret(tmp_path, env={auth.SECRET_ENV: "A" * 44})
    assert configured != first and len(configured) == 33
    with pytest.raises(auth.ConsoleSecretInvalid):
        auth.load_console_secret(tmp_path, env={auth.SECRET_ENV: "c2hvcnQ="})


# ------------------------------------------------------------------------------------------------ roles and ownership


def test_each_role_is_refused_the_other_roles_pages(book: Book) -> None:
    consumer = login(book, Role.CONSUMER, book.consumer)
    for path in (
        "/console/portfolio",
        "/console/portfolio/vintages",
        "/console/consumers",
        f"/console/partners/{PARTNER}",
        "/console/partner",
    ):
        assert_page(consumer.get(path), 403, "Your role may not open this page")
    partner = login(book, Role.PARTNER_BANK, PARTNER_MEMBER)
    for path in ("/console/portfolio/roll-rates", f"/console/consumers/{book.consumer}", "/console/me"):
        assert_page(partner.get(path), 403, "Your role may not open this page")
    operator = login(book, Role.PLATFORM_OPERATOR, "ops")
    assert_page(operator.get("/console/me"), 403)
    assert_page(operator.get("/console/partner"), 403)


def test_another_consumers_or_partners_objects_are_not_found(book: Book) -> None:
    consumer = login(book, Role.CONSUMER, book.consumer)
    nothing_here = "There is nothing here, or it is not yours to see."
    for path in (
        f"/console/consumers/{book.other_consumer}",
        f"/console/consumers/{book.other_consumer}/wallets/{book.other_wallet}",
        f"/console/consumers/{book.other_consumer}/accounts/{book.other_loan}",
        f"/console/consumers/{book.consumer}/wallets/{book.other_wallet}",  # own id, another's wallet
        f"/console/consumers/{book.consumer}/accounts/{book.other_loan}",  # own id, another's loan
        "/console/consumers/cus_nobody",
        "/console/nothing-here",
    ):
        assert_page(consumer.get(path), 404, nothing_here)
    partner = login(book, Role.PARTNER_BANK, PARTNER_MEMBER)
    for path in (
        f"/console/partners/{OTHER_PARTNER}",
        f"/console/partners/{OTHER_PARTNER}/statements",
        f"/console/partners/{OTHER_PARTNER}/statements/{book.statement_day}",
        f"/console/partners/{OTHER_PARTNER}/statements/{book.statement_day}.csv",
        f"/console/partners/{PARTNER}/statements/2020-01-01",  # its own id, no such statement
        "/console/partners/bank_nobody",
    ):
        assert_page(partner.get(path), 404, nothing_here)
    orphan = login(book, Role.PARTNER_BANK, "no-such-bank")
    assert_page(orphan.get("/console/partner"), 404)
    operator = login(book, Role.PLATFORM_OPERATOR, "ops")
    assert_page(operator.get("/console/consumers/cus_nobody"), 404)
    assert_page(operator.get(f"/console/consumers/{book.consumer}/wallets/{book.other_wallet}"), 404)
    merchant = book.platform.payments.list_customers("merchant", limit=1)["items"][0]["id"]
    assert_page(operator.get(f"/console/consumers/{merchant}"), 404)  # the consumer pages show consumers only


def test_the_api_keeps_problem_json(book: Book) -> None:
    _, token = book.platform.keys.create(Role.CONSUMER, book.consumer, "console test")
    api = TestClient(book.app)
    api.headers["Authorization"] = f"Bearer {token}"
    missing = api.get(f"/v1/lending/accounts/{book.other_loan}")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    forbidden = api.get("/v1/lending/reconcile")
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "auth.forbidden"
    assert api.get("/v1/nothing").headers["content-type"].startswith("application/problem+json")
    assert "content-security-policy" not in api.get("/healthz").headers
    bad_query = TestClient(book.app, follow_redirects=False).get("/console/portfolio/vintages", params={"metric": "x"})
    assert bad_query.status_code == 303  # the session comes first: no page before login
    operator = login(book, Role.PLATFORM_OPERATOR, "ops")
    assert_page(operator.get("/console/portfolio/vintages", params={"metric": "nonsense"}), 400, "not valid")


# ------------------------------------------------------------------------------------------------ pages


def test_the_consumer_sees_its_wallet_history_loans_and_statements(book: Book) -> None:
    platform = book.platform
    client = login(book, Role.CONSUMER, book.consumer)
    home = client.get("/console/me")
    assert home.headers["location"] == f"/console/consumers/{book.consumer}"
    wallet = platform.payments.get_wallet(book.wallet)
    customer = platform.payments.get_customer(book.consumer)
    overview = assert_page(
        client.get(home.headers["location"]),
        200,
        book.line,
        format_minor(wallet["balance"]["amount_minor"], "CNY"),
        str(customer["national_id_masked"]),
        "My wallet and loans",
    )
    personal = platform.payments.customer_personal_data(book.consumer)
    assert personal["legal_name"] not in overview and personal["national_id"] not in overview
    assert "Portfolio" not in overview  # the operator's section is not in a consumer's navigation

    first = assert_page(client.get(f"/console/consumers/{book.consumer}/wallets/{book.wallet}"), 200, "Older payments")
    history = platform.payments.history(book.wallet, limit=50)
    assert first.count("<code>") == 50
    for item in history["items"][:5]:
        assert item["payment_id"] in first
    older = f"/console/consumers/{book.consumer}/wallets/{book.wallet}?before={history['next_before']}"
    assert older in first.replace("&amp;", "&")
    second = assert_page(client.get(older, headers={"HX-Request": "true"}), 200, "(older)")
    rest = platform.payments.history(book.wallet, before=history["next_before"], limit=50)
    for item in rest["items"]:
        assert item["payment_id"] in second

    account = platform.lending.get_account(book.line)
    page = assert_page(
        client.get(f"/console/consumers/{book.consumer}/accounts/{book.line}"),
        200,
        "Credit line",
        format_minor(account["balances"]["total_owed"]["amount_minor"], "CNY"),
        format_minor(account["limit"]["amount_minor"], "CNY"),
    )
    statements = platform.lending.statements(book.line)
    assert statements, "the line has statements after two months"
    for statement in statements:
        assert statement["statement_date"] in page
    assert "statements-chart" in chart_specs(page)


def test_the_operator_sees_any_consumer_read_only(book: Book) -> None:
    client = login(book, Role.PLATFORM_OPERATOR, "ops")
    listing = assert_page(client.get("/console/consumers"), 200, "Consumers")
    everyone = book.platform.payments.list_customers("consumer", limit=50)["items"]
    for item in everyone:
        assert f'/console/consumers/{item["id"]}"' in listing
    assert ("Next page" in listing) == (len(everyone) == 50)
    later = assert_page(client.get("/console/consumers", params={"after": everyone[9]["id"]}), 200, "First page")
    assert everyone[9]["id"] not in later and everyone[10]["id"] in later
    loan = book.platform.lending.get_account(book.other_loan)
    page = assert_page(
        client.get(f"/console/consumers/{book.other_consumer}/accounts/{book.other_loan}"),
        200,
        "Loan",
        format_minor(loan["original_principal"]["amount_minor"], "CNY"),
    )
    spec = chart_specs(page)["schedule-chart"]
    due = {v["due_date"] for v in spec["data"]["values"]}
    assert due == {r["due_date"] for r in loan["instalments"]}
    assert "<form" not in page.split("</header>", 1)[1]  # read-only: no form but the header's logout


def test_the_operator_pages_show_the_book(book: Book) -> None:
    lending = book.platform.lending
    client = login(book, Role.PLATFORM_OPERATOR, "ops")
    accounts = lending.list_accounts(limit=500)

    balances = assert_page(client.get("/console/portfolio"), 200, "Outstanding principal")
    active = [a for a in accounts if a["status"] == "active"]
    principal = sum(a["balances"]["principal"]["amount_minor"] for a in active)
    assert f'id="outstanding-principal">{format_minor(principal, "CNY")}<' in balances
    values = chart_specs(balances)["balances-chart"]["data"]["values"]
    assert sum(Money.from_decimal(v["amount"], "CNY").amount_minor for v in values) == principal

    originations = assert_page(client.get("/console/portfolio/originations"), 200)
    expected: Counter[tuple[str, str]] = Counter()
    for a in accounts:
        amount = a["limit"] if a["kind"] == "line" else a["original_principal"]
        expected[(a["opened_on"][:7], a["product_code"])] += amount["amount_minor"]
    spec = chart_specs(originations)["originations-chart"]
    assert {
        (v["month"], v["product"]): Money.from_decimal(v["amount"], "CNY").amount_minor for v in spec["data"]["values"]
    } == dict(expected)
    assert "width" not in spec and "vconcat" in spec

    delinquency = assert_page(client.get("/console/portfolio/delinquency"), 200, "2026-03-31", "2026-04-30")
    spec = chart_specs(delinquency)["delinquency-chart"]
    months = {v["month_end"] for v in spec["data"]["values"]}
    assert months == {"2026-03-31", "2026-04-30"}

    vintages = assert_page(client.get("/console/portfolio/vintages"), 200, "ever 30+ days past due", "2026-03")
    assert chart_specs(vintages)["vintages-chart"]["data"]["values"]
    for metric in ("ever_60_plus", "ever_90_plus", "charged_off"):
        assert_page(client.get("/console/portfolio/vintages", params={"metric": metric}), 200)

    rolls = assert_page(client.get("/console/portfolio/roll-rates"), 200, "2026-03 → 2026-04")
    assert chart_specs(rolls)["roll-rates-chart"]["data"]["values"]
    picked = client.get("/console/portfolio/roll-rates", params={"from": "2026-03-31", "to": "2026-04-30"})
    assert_page(picked, 200, "2026-03 → 2026-04")
    assert_page(client.get("/console/portfolio/roll-rates", params={"from": "2026-04-30", "to": "2026-03-31"}), 200)

    partners = assert_page(client.get("/console/portfolio/partners"), 200, "Demo Rural Bank", "Demo Trust Bank")
    for p in book.platform.colending.list_partners():
        assert format_minor(p["outstanding"]["amount_minor"], "CNY") in partners
    assert_page(client.get(f"/console/partners/{OTHER_PARTNER}"), 200, "Demo City Bank")  # any partner


def test_the_partner_bank_sees_its_portfolio_and_statements(book: Book, monkeypatch: pytest.MonkeyPatch) -> None:
    colending = book.platform.colending
    client = login(book, Role.PARTNER_BANK, PARTNER_MEMBER)
    home = client.get("/console/partner")
    assert home.headers["location"] == f"/console/partners/{PARTNER}"
    snapshots = book.platform.lending.account_months(colending.participation_refs(PARTNER))
    view = colending.portfolio(PARTNER, snapshots)  # the API's way: the console's cheaper read agrees
    page = assert_page(
        client.get(home.headers["location"]),
        200,
        "Demo Rural Bank",
        f'id="partner-outstanding">{format_minor(view["outstanding"]["amount_minor"], "CNY")}<',
        format_minor(view["interest_earned"]["amount_minor"], "CNY"),
    )
    for amount in view["buckets"].values():
        assert format_minor(amount["amount_minor"], "CNY") in page
    assert set(chart_specs(page)) == {"buckets-chart", "exposure-chart"}

    monkeypatch.setattr(partner_pages, "STATEMENTS_PAGE", 10)
    listing = assert_page(client.get("/console/partner/statements", follow_redirects=True), 200, book.statement_day)
    summaries = colending.statement_summaries(PARTNER, limit=10)
    assert len(summaries) == 10 and "Older statements" in listing
    for summary in summaries:
        assert f'statements/{summary["business_date"]}"' in listing
        assert format_minor(summary["net"]["amount_minor"], "CNY") in listing
    older = client.get(f"/console/partners/{PARTNER}/statements", params={"before": summaries[-1]["business_date"]})
    shown = re.findall(r"statements/(\d{4}-\d\d-\d\d)\"", assert_page(older, 200, "Newest"))
    expected = colending.statement_summaries(
        PARTNER, before=date.fromisoformat(summaries[-1]["business_date"]), limit=10
    )
    assert shown == [s["business_date"] for s in expected] and shown[0] < summaries[-1]["business_date"]

    statement = colending.statement(PARTNER, date.fromisoformat(book.statement_day))
    assert_page(
        client.get(f"/console/partners/{PARTNER}/statements/{book.statement_day}"),
        200,
        f'id="statement-net">{format_minor(statement["net"]["amount_minor"], "CNY")}',
    )
    csv = client.get(f"/console/partners/{PARTNER}/statements/{book.statement_day}.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text == colending.statement_csv(PARTNER, date.fromisoformat(book.statement_day))
    assert csv.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_static_files_are_served_with_the_same_headers(book: Book) -> None:
    client = TestClient(book.app)
    for name in (
        "console.js",
        "console.css",
        "vendor/vega.min.js",
        "vendor/vega-lite.min.js",
        "vendor/vega-embed.min.js",
        "vendor/htmx.min.js",
    ):
        answer = client.get(f"/console/static/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["x-frame-options"] == "DENY" and "cache-control" not in answer.headers
    assert client.get("/console/static/../auth.py").status_code == 404


# ------------------------------------------------------------------------------------------------ money


def test_money_is_formatted_exactly_from_minor_units() -> None:
    assert format_minor(123_456, "CNY") == "1,234.56 CNY"
    assert format_minor(-5, "CNY") == "-0.05 CNY"
    assert format_minor(2**53 + 1, "CNY") == "90,071,992,547,409.93 CNY"
    assert format_minor(1_234, "JPY") == "1,234 JPY"
    assert format_minor(1_234, "BHD") == "1.234 BHD"
    assert major_units(-1_050, "CNY") == "-10.50" and major_units(7, "JPY") == "7"
    assert annual_rate("0.106846") == "10.6846 %" and annual_rate("0.24") == "24.00 %"
    with pytest.raises(TypeError):
        format_minor(1.5, "CNY")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ reports = analytics


def _synthetic_snapshots(seed: int = 5) -> list[dict[str, Any]]:
    """Six vintages of accounts over eight month ends: they age, cure, charge off (and stay), or close (and
    leave the snapshots the month after)."""
    rng = random.Random(seed)
    month_ends = [date(2025, m + 1, 1) - timedelta(days=1) for m in range(5, 12)] + [date(2025, 12, 31)]
    rows = []
    for n in range(400):
        opened = date(2025, 5, 1) + timedelta(days=rng.randrange(0, 180))
        principal = rng.randrange(0, 5_000_000)
        dpd, status = 0, "active"
        for month_end in month_ends:
            if month_end < opened:
                continue
            if status == "closed":
                break
            if status == "active":
                roll = rng.random()
                if roll < 0.05:
                    status, dpd = "closed", 0
                elif dpd >= 150 and roll < 0.6:
                    status = "charged_off"
                else:
                    dpd = dpd + rng.choice([30, 31]) if dpd or roll < 0.15 else 0
                    if dpd and roll > 0.9:
                        dpd = 0  # cured
            rows.append(
                {
                    "month_end": month_end,
                    "account_id": 10_000 + n,
                    "ref": f"loan_syn{n:04d}",
                    "customer_id": f"cus_syn{n:04d}",
                    "product_code": "cash-cny",
                    "kind": "loan",
                    "currency": "CNY",
                    "opened_on": opened,
                    "original_principal_minor": principal,
                    "balance_minor": 0 if status != "active" else rng.randrange(0, principal + 1),
                    "principal_minor": 0,
                    "dpd": dpd,
                    "bucket": 0,
                    "status": status,
                    "funding": {},
                }
            )
    return rows


def test_the_portfolio_reports_agree_with_analytics(db_url: str, tmp_path: Path) -> None:
    rows = _synthetic_snapshots()
    database = Database(db_url)
    database.run(lambda conn: conn.execute(lending_tables.snapshots.insert(), rows))
    database.dispose()
    platform = open_platform(Settings(database_url=db_url, var_dir=tmp_path), FixedClock(START), migrate_schema=False)
    try:
        lending = platform.lending
        analytic = [
            {
                "account_id": r["account_id"],
                "origination_month": r["opened_on"],
                "snapshot_month": r["month_end"],
                "original_principal_minor": r["original_principal_minor"],
                "balance_minor": r["balance_minor"],
                "dpd": r["dpd"],
                "status": r["status"],
                "charged_off": r["status"] == "charged_off",
            }
            for r in rows
        ]
        for metric, dpd_min in (
            ("ever_30_plus", 30),
            ("ever_60_plus", 60),
            ("ever_90_plus", 90),
            ("charged_off", None),
        ):
            assert reports.vintage_points(lending.vintage_counts(dpd_min)) == vintage_curves(analytic, metric), metric

        month_ends = lending.snapshot_month_ends()
        assert month_ends == sorted({r["month_end"] for r in rows})
        for start, end in [(month_ends[i], month_ends[i + 1]) for i in range(len(month_ends) - 1)] + [
            (month_ends[0], month_ends[-1])
        ]:
            ours = reports.roll_rates_from(lending.snapshot_transitions(start, end, DPD_BOUNDARIES_DEFAULT), start, end)
            assert ours == roll_rates(analytic, start, end), (start, end)

        history = reports.delinquency_history(lending.snapshot_bands(DPD_BOUNDARIES_DEFAULT), "CNY")
        assert [m.month_end for m in history] == month_ends
        by_month: dict[date, list[dict[str, Any]]] = defaultdict(list)
        for r in analytic:
            by_month[r["snapshot_month"]].append(r)
        for month in history:
            on_book = [
                r for r in by_month[month.month_end] if r["status"] not in CLOSED_STATUSES and not r["charged_off"]
            ]
            assert list(month.buckets) == bucket_distribution(on_book)
            charged = [r for r in by_month[month.month_end] if r["charged_off"]]
            assert month.charged_off_accounts == len(charged)

        assert lending.snapshot_state() == (month_ends[-1], len(by_month[month_ends[-1]]))
    finally:
        platform.close()


def test_the_cheaper_partner_read_matches_account_months(book: Book) -> None:
    refs = book.platform.colending.participation_refs(PARTNER)
    full = book.platform.lending.account_months(refs)
    cut = book.platform.lending.snapshot_buckets(refs)
    assert full and sorted((r["month_end"], r["account_id"], r["bucket"]) for r in full) == sorted(
        (r["month_end"], r["account_id"], r["bucket"]) for r in cut
    )
    march = date(2026, 3, 31)
    assert len(book.platform.lending.snapshot_buckets(refs, march)) == len(
        book.platform.lending.account_months(refs, march)
    )


def test_the_consumer_list_holds_no_personal_data(book: Book) -> None:
    page = book.platform.payments.list_customers("consumer", limit=3)
    assert [set(item) for item in page["items"]] == [{"id", "kind", "kyc_tier"}] * 3
    everyone: list[str] = []
    after = None
    while True:
        chunk = book.platform.payments.list_customers("consumer", after=after, limit=7)
        everyone += [c["id"] for c in chunk["items"]]
        after = chunk["next_after"]
        if after is None:
            break
    assert everyone == sorted(everyone) and len(everyone) == len(set(everyone))
    count = book.platform.db.run(
        lambda conn: conn.execute(
            sa.text("SELECT count(*) FROM payments_customers WHERE kind = 'consumer'")
        ).scalar_one(),
        readonly=True,
    )
    assert len(everyone) == count
    assert os.environ.get("CREDITSTACK_CONSOLE_SECRET") is None  # the tests use the var_dir's key file
