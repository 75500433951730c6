"""The web console in a real browser: Chromium (Debian's, driven by Playwright) against uvicorn.

The book is the demo's lending book (as in test_console.py), served by a real uvicorn server in a thread on
a free port. Each role logs in through the form; every chart on its pages is drawn by vega-embed (an SVG
with marks, from non-empty data) under the console's Content-Security-Policy, with no console error and
no CSP violation anywhere; htmx pages through a wallet's history; a role cannot open another role's pages,
nor another consumer's or partner's objects; logging out ends the session.

Needs /usr/bin/chromium (Debian's `chromium` package; Playwright downloads no browser here). Without it the
tests skip with a message — except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from creditstack.app import demo
from creditstack.app.main import create_app
from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.money import CNY, Money
from creditstack.core.security import Role
from creditstack.core.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
THROUGH = date(2026, 5, 1)
TRANSFERS = 55  # more than one page (50) of payment history
BORROWERS = 15  # the demo's forty, cut: still lines and loans, and two that never pay
PARTNER, OTHER_PARTNER, PARTNER_MEMBER = "demobank0", "demobank1", "demo-bank-0"
CHART_TIMEOUT_MS = 15_000
#: Reports every Content-Security-Policy violation as a console error, which the tests collect.
CSP_PROBE = (
    "document.addEventListener('securitypolicyviolation', e => "
    "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
)


def _browser_available() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[test]')"
    if problem is not None:
        if IN_CI:
            pytest.fail(f"the console's browser tests must run in CI: {problem}")
        pytest.skip(f"console browser tests skipped: {problem}")


@dataclass
class Site:
    platform: Platform
    base_url: str
    consumer: str
    wallet: str
    line: str
    other_consumer: str
    other_loan: str
    statement_day: str
    browser: Any


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    _browser_available()
    import uvicorn
    from playwright.sync_api import sync_playwright

    platform = open_platform(
        Settings(var_dir=book_directory(tmp_path_factory)), FixedClock(START), migrate_schema=False
    )
    accounts = platform.lending.list_accounts(limit=100)
    line = next(a for a in accounts if a["kind"] == "line")
    loan = next(a for a in accounts if a["kind"] == "loan" and a["customer_id"] != line["customer_id"])

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(platform), host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
        )
    )
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield Site(
                platform=platform,
                base_url=f"http://127.0.0.1:{port}",
                consumer=line["customer_id"],
                wallet=line["wallet_id"],
                line=line["account_id"],
                other_consumer=loan["customer_id"],
                other_loan=loan["account_id"],
                statement_day=platform.colending.statement_summaries(PARTNER, limit=1)[0]["business_date"],
                browser=browser,
            )
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        platform.close()


class Visitor:
    """A browser context logged in as one role, collecting every console error and CSP violation."""

    def __init__(self, site: Site, role: Role, member: str) -> None:
        self.site = site
        self.context = site.browser.new_context()
        self.context.add_init_script(CSP_PROBE)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.refused: set[str] = set()  # pages opened to be refused: the browser logs their 403/404 status
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        _, token = site.platform.keys.create(role, member, "browser test")
        self.open("/console/login")
        self.page.fill("#api_key", token)
        with self.page.expect_navigation():
            self.page.click("form.login button[type=submit]")
        assert "/console/login" not in self.page.url, self.page.content()[:500]

    def _console(self, message: Any) -> None:
        if message.type not in {"error", "warning"}:
            return
        url = str(message.location.get("url", ""))
        if message.text.startswith("Failed to load resource") and url in self.refused:
            return
        self.problems.append(f"{message.type}: {message.text} ({url})")

    def open(self, path: str) -> Any:
        response = self.page.goto(self.site.base_url + path)
        assert response is not None
        return response

    def charts_drawn(self, path: str, expected: int) -> list[dict[str, Any]]:
        """Open a page and wait until each of its charts is an SVG with marks drawn from non-empty data."""
        response = self.open(path)
        assert response.status == 200, path
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('[data-chart]')].every(e => e.dataset.state === 'drawn')",
            timeout=CHART_TIMEOUT_MS,
        )
        charts: list[dict[str, Any]] = self.page.eval_on_selector_all(
            "[data-chart]",
            """views => views.map(view => ({
                id: view.dataset.chart,
                data: JSON.parse(document.getElementById(view.dataset.chart).textContent).data.values.length,
                svg: view.querySelectorAll('svg.marks').length,
                marks: view.querySelectorAll('svg.marks g.mark-rect path, svg.marks g.mark-line path, '
                    + 'svg.marks g.mark-symbol path').length,
            }))""",
        )
        assert len(charts) == expected, (path, charts)
        for chart in charts:
            assert chart["data"] > 0 and chart["svg"] == 1 and chart["marks"] > 0, (path, chart)
        return charts

    def status(self, path: str) -> int:
        """Open a page expected to be refused; its status (the browser's own log of it is expected)."""
        self.refused.add(self.site.base_url + path)
        return int(self.open(path).status)

    def close(self) -> None:
        self.context.close()
        assert self.problems == [], self.problems


def test_the_operator_sees_every_chart_drawn_under_the_csp(site: Site) -> None:
    operator = Visitor(site, Role.PLATFORM_OPERATOR, "ops")
    assert operator.page.url.endswith("/console/portfolio")
    for path in (
        "/console/portfolio",
        "/console/portfolio/originations",
        "/console/portfolio/delinquency",
        "/console/portfolio/vintages",
        "/console/portfolio/vintages?metric=ever_60_plus",
        "/console/portfolio/roll-rates",
        "/console/portfolio/partners",
    ):
        operator.charts_drawn(path, expected=1)
    operator.charts_drawn(f"/console/partners/{OTHER_PARTNER}", expected=2)  # any partner, read-only
    operator.charts_drawn(f"/console/consumers/{site.other_consumer}/accounts/{site.other_loan}", expected=1)
    operator.open("/console/consumers")
    with operator.page.expect_navigation():
        operator.page.click(f'a[href="/console/consumers/{site.consumer}"]')
    assert operator.page.locator("#wallets tbody tr").count() == 1
    assert operator.status("/console/me") == 403
    operator.close()


def test_the_consumer_pages_through_its_history_and_sees_only_its_own(site: Site) -> None:
    consumer = Visitor(site, Role.CONSUMER, site.consumer)
    assert consumer.page.url.endswith(f"/console/consumers/{site.consumer}")
    consumer.charts_drawn(f"/console/consumers/{site.consumer}/accounts/{site.line}", expected=2)

    consumer.open(f"/console/consumers/{site.consumer}/wallets/{site.wallet}")
    first_page = consumer.page.locator("#history tbody tr").all_inner_texts()
    assert len(first_page) == 50
    with consumer.page.expect_response(lambda r: "before=" in r.url and r.request.headers.get("hx-request") == "true"):
        consumer.page.click("text=Older payments")  # htmx swaps the history section in place
    consumer.page.wait_for_function("() => document.querySelector('#history h2').textContent.includes('older')")
    assert "before=" in consumer.page.url  # pushed into the address bar
    second_page = consumer.page.locator("#history tbody tr").all_inner_texts()
    assert second_page and not set(second_page) & set(first_page)

    for path in ("/console/portfolio", "/console/consumers", f"/console/partners/{PARTNER}"):
        assert consumer.status(path) == 403, path
        assert "Your role may not open this page" in consumer.page.content()
    for path in (
        f"/console/consumers/{site.other_consumer}",
        f"/console/consumers/{site.other_consumer}/accounts/{site.other_loan}",
        f"/console/consumers/{site.consumer}/accounts/{site.other_loan}",
    ):
        assert consumer.status(path) == 404, path

    consumer.open(f"/console/consumers/{site.consumer}")
    with consumer.page.expect_navigation():
        consumer.page.click("form.logout button")
    assert consumer.page.url.endswith("/console/login")
    consumer.open(f"/console/consumers/{site.consumer}")
    assert consumer.page.url.endswith("/console/login")  # logged out: back to the form
    consumer.close()


def test_the_partner_bank_sees_its_share_and_statements_and_nothing_else(site: Site) -> None:
    partner = Visitor(site, Role.PARTNER_BANK, PARTNER_MEMBER)
    assert partner.page.url.endswith(f"/console/partners/{PARTNER}")
    partner.charts_drawn(f"/console/partners/{PARTNER}", expected=2)
    partner.open("/console/partner/statements")
    assert partner.page.url.endswith(f"/console/partners/{PARTNER}/statements")
    with partner.page.expect_navigation():
        partner.page.click(f'a[href="/console/partners/{PARTNER}/statements/{site.statement_day}"]')
    assert partner.page.locator("#lines tbody tr").count() > 0
    with partner.page.expect_download() as download:
        partner.page.click("text=Download CSV")
    saved = Path(download.value.path())
    expected = site.platform.colending.statement_csv(PARTNER, date.fromisoformat(site.statement_day))
    assert saved.read_bytes().decode() == expected  # as sent: CSV lines end in CRLF

    for path in (
        f"/console/partners/{OTHER_PARTNER}",
        f"/console/partners/{OTHER_PARTNER}/statements",
        f"/console/partners/{OTHER_PARTNER}/statements/{site.statement_day}",
    ):
        assert partner.status(path) == 404, path
    for path in ("/console/portfolio", f"/console/consumers/{site.consumer}"):
        assert partner.status(path) == 403, path
    partner.close()
