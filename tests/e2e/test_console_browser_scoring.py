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

import importlib.util
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from creditstack.app.main import create_app
from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
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
CHART_TIMEOUT_MS = 15_000
#: Reports every Content-Security-Policy violation as a console error, which the tests collect.
CSP_PROBE = (
    "document.addEventListener('securitypolicyviolation', e => "
    "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
)
CHARTS = ("calibration-chart", "distribution-chart", "psi-chart", "csi-chart", "fairness-chart")
#: Threshold rules drawn on each chart that has them (watch and act; four-fifths).
RULES = {"psi-chart": 2, "csi-chart": 2, "fairness-chart": 1}


def _book_module() -> ModuleType:
    """test_console_scoring.py, loaded by path (the tests are not a package) for its book builder."""
    name = "_console_scoring_book"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_console_scoring.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Site:
    platform: Platform
    base_url: str
    consumer: str
    browser: Any


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    _browser_available()
    import uvicorn
    from playwright.sync_api import sync_playwright

    book = _book_module()
    platform = open_platform(
        Settings(var_dir=book.book_directory(tmp_path_factory)), FixedClock(book.START), migrate_schema=False
    )
    consumer = platform.payments.list_customers("consumer", limit=1)["items"][0]["id"]
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(platform), host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
        )
    )
    thread = threading.Thread(target=server.run, name="console-scoring-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield Site(platform, f"http://127.0.0.1:{port}", consumer, browser)
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
        self.refused: set[str] = set()  # pages opened to be refused: the browser logs their 403 status
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

    def status(self, path: str) -> int:
        self.refused.add(self.site.base_url + path)
        return int(self.open(path).status)

    def close(self) -> None:
        self.context.close()
        assert self.problems == [], self.problems


def test_the_scoring_page_draws_every_chart_under_the_csp(site: Site) -> None:
    operator = Visitor(site, Role.PLATFORM_OPERATOR, "ops")
    with operator.page.expect_navigation():
        operator.page.click('nav.side a[href="/console/scoring"]')
    assert operator.page.url.endswith("/console/scoring")
    assert operator.page.locator('nav.side a[aria-current="page"]').inner_text() == "Models and monitoring"
    operator.page.wait_for_function(
        "() => [...document.querySelectorAll('[data-chart]')].every(e => e.dataset.state === 'drawn')",
        timeout=CHART_TIMEOUT_MS,
    )
    charts: list[dict[str, Any]] = operator.page.eval_on_selector_all(
        "[data-chart]",
        """views => views.map(view => ({
            id: view.dataset.chart,
            data: JSON.parse(document.getElementById(view.dataset.chart).textContent).data.values.length,
            svg: view.querySelectorAll('svg.marks').length,
            marks: view.querySelectorAll('svg.marks g.mark-rect path, svg.marks g.mark-line path, '
                + 'svg.marks g.mark-symbol path').length,
            rules: view.querySelectorAll('svg.marks g.mark-rule.role-mark line').length,
        }))""",
    )
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
