"""What the console's browser tests share (loaded by path; not collected): Chromium and Playwright's
presence, a uvicorn server in a thread with a browser, and a logged-in visitor that collects every console
error and Content-Security-Policy violation."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from creditstack.app.main import create_app
from creditstack.app.platform import Platform
from creditstack.core.security import Role

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
#: Reports every Content-Security-Policy violation as a console error, which the visitor collects.
CSP_PROBE = (
    "document.addEventListener('securitypolicyviolation', e => "
    "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
)


def load_sibling(filename: str, name: str) -> ModuleType:
    """A module of tests/e2e loaded by path (the tests are not a package), once per session."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(filename))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]


def browser_available() -> None:
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


@contextmanager
def served(platform: Platform, name: str) -> Iterator[tuple[str, Any]]:
    """The platform's app on a free port (uvicorn in a thread) and a headless Chromium: (base URL, browser)."""
    browser_available()
    import uvicorn
    from playwright.sync_api import sync_playwright

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(platform), host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
        )
    )
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield f"http://127.0.0.1:{port}", browser
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Visitor:
    """A browser context logged in as one role, collecting every console error and CSP violation.
    `site` has `platform`, `base_url` and `browser`."""

    def __init__(self, site: Any, role: Role, member: str) -> None:
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

    def status(self, path: str) -> int:
        """Open a page expected to be refused; its status (the browser's own log of it is expected)."""
        self.refused.add(self.site.base_url + path)
        return int(self.open(path).status)

    def drawn_charts(self) -> list[dict[str, Any]]:
        """Wait until every chart of the open page is drawn; each chart's id, data rows, SVGs, marks (bars,
        lines, points) and rule marks."""
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
                rules: view.querySelectorAll('svg.marks g.mark-rule.role-mark line').length,
            }))""",
        )
        return charts

    def close(self) -> None:
        self.context.close()
        assert self.problems == [], self.problems
