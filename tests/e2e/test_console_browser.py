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

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.security import Role
from creditstack.core.settings import Settings


def _kit() -> Any:
    import importlib.util
    import sys

    name = "_console_browser_kit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("_browser_kit.py"))
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


kit = _kit()
book = kit.load_sibling("test_console.py", "_console_book")  # the one builder of the console's test book
START, PARTNER, OTHER_PARTNER, PARTNER_MEMBER = book.START, book.PARTNER, book.OTHER_PARTNER, book.PARTNER_MEMBER


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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    kit.browser_available()
    platform = open_platform(
        Settings(var_dir=book.book_directory(tmp_path_factory)), FixedClock(START), migrate_schema=False
    )
    accounts = platform.lending.list_accounts(limit=100)
    line = next(a for a in accounts if a["kind"] == "line")
    loan = next(a for a in accounts if a["kind"] == "loan" and a["customer_id"] != line["customer_id"])
    try:
        with kit.served(platform, "console-uvicorn") as (base_url, browser):
            yield Site(
                platform=platform,
                base_url=base_url,
                consumer=line["customer_id"],
                wallet=line["wallet_id"],
                line=line["account_id"],
                other_consumer=loan["customer_id"],
                other_loan=loan["account_id"],
                statement_day=platform.colending.statement_summaries(PARTNER, limit=1)[0]["business_date"],
                browser=browser,
            )
    finally:
        platform.close()


class Visitor(kit.Visitor):
    """The shared visitor, and a check that every chart on a page is drawn."""

    def charts_drawn(self, path: str, expected: int) -> list[dict[str, Any]]:
        """Open a page and wait until each of its charts is an SVG with marks drawn from non-empty data."""
        response = self.open(path)
        assert response.status == 200, path
        charts = self.drawn_charts()
        assert len(charts) == expected, (path, charts)
        for chart in charts:
            assert chart["data"] > 0 and chart["svg"] == 1 and chart["marks"] > 0, (path, chart)
        return charts


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
