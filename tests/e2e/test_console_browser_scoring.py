"""The console's scoring page in a real browser: Chromium (Debian's, driven by Playwright) against uvicorn.

The book is test_console_scoring.py's — a champion and a challenger registered under the platform's
`var/models` before the applications were made (so the stored decisions carry the champion's scores and
feature vectors), two saved fairness reports — built once per test session by whichever of the two modules
comes first (its builder is loaded from that module, so there is one builder). Served by a real uvicorn in
a thread, as in test_console_browser.py: the operator reaches the page from the navigation, every chart on it
is drawn by vega-embed (an SVG with marks from non-empty data, the threshold rules too) under the console's
Content-Security-Policy, with no console error and no CSP violation; a consumer is refused it.

Needs /usr/bin/chromium; without it the tests skip with a message — except in CI (CI=true), where they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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
Visitor = kit.Visitor
CHARTS = ("calibration-chart", "distribution-chart", "psi-chart", "csi-chart", "fairness-chart")
#: Threshold rules drawn on each chart that has them (watch and act; four-fifths).
RULES = {"psi-chart": 2, "csi-chart": 2, "fairness-chart": 1}


@dataclass
class Site:
    platform: Platform
    base_url: str
    consumer: str
    browser: Any


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    kit.browser_available()
    book = kit.load_sibling("test_console_scoring.py", "_console_scoring_book")
    platform = open_platform(
        Settings(var_dir=book.book_directory(tmp_path_factory)), FixedClock(book.START), migrate_schema=False
    )
    consumer = platform.payments.list_customers("consumer", limit=1)["items"][0]["id"]
    try:
        with kit.served(platform, "console-scoring-uvicorn") as (base_url, browser):
            yield Site(platform, base_url, consumer, browser)
    finally:
        platform.close()


def test_the_scoring_page_draws_every_chart_under_the_csp(site: Site) -> None:
    operator = Visitor(site, Role.PLATFORM_OPERATOR, "ops")
    with operator.page.expect_navigation():
        operator.page.click('nav.side a[href="/console/scoring"]')
    assert operator.page.url.endswith("/console/scoring")
    assert operator.page.locator('nav.side a[aria-current="page"]').inner_text() == "Models and monitoring"
    charts = operator.drawn_charts()
    assert [chart["id"] for chart in charts] == list(CHARTS)
    for chart in charts:
        assert chart["data"] > 0 and chart["svg"] == 1 and chart["marks"] > 0, chart
        assert chart["rules"] == RULES.get(chart["id"], 0), chart
    assert operator.page.locator("#psi tbody tr").count() == 3  # March, April and May
    assert operator.page.locator("#csi tbody tr").count() > 0
    operator.close()

    consumer = Visitor(site, Role.CONSUMER, site.consumer)
    assert consumer.status("/console/scoring") == 403
    assert "Your role may not open this page" in consumer.page.content()
    assert consumer.page.locator('a[href="/console/scoring"]').count() == 0
    consumer.close()
