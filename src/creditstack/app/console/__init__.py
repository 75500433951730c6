"""The web console: server-rendered pages (Jinja2, htmx, Vega-Lite charts) inside the platform's app.

`mount(app)` adds the console under `/console`: its pages, its static files (every script vendored, nothing
from a CDN), security headers on every console response, and HTML error pages for console paths (the API
keeps problem+json). See README.md in this package for the pages, roles and security model.

Adding a page: a router module under `pages/` with `router` and `NAV`, a template, and its module listed in
`PAGE_MODULES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditstack.app.console.auth import CONSOLE_PATH, CsrfRejected, LoginRequired
from creditstack.app.console.nav import NavEntry
from creditstack.app.console.pages import consumers, login, partners, portfolio, scoring
from creditstack.app.console.web import STATIC_DIR, STATIC_PATH, error_page
from creditstack.core.errors import CreditstackError

#: Page modules, each with a `router` (paths under /console) and its `NAV` entries.
PAGE_MODULES: tuple[ModuleType, ...] = (consumers, portfolio, partners, scoring)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)


def _router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)
    router.include_router(login.router)
    for module in PAGE_MODULES:
        router.include_router(module.router)
    return router


router = _router()
NAV: tuple[NavEntry, ...] = tuple(entry for module in PAGE_MODULES for entry in module.NAV)


def is_console(request: Request) -> bool:
    path = request.url.path
    return path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")


class SecurityHeaders:
    """Adds the console's security headers to every response under /console; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(STATIC_PATH + "/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dict(SECURITY_HEADERS)]
                headers += list(SECURITY_HEADERS)
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


Handler = Callable[[Request, Any], Awaitable[Response]]


def _login_redirect(request: Request) -> Response:
    if request.headers.get("HX-Request") == "true":  # htmx follows a redirect inside the fragment; send it home
        return Response(status_code=401, headers={"HX-Redirect": f"{CONSOLE_PATH}/login"})
    return RedirectResponse(f"{CONSOLE_PATH}/login", status_code=303)


async def _page(request: Request, status: int, title: str, message: str) -> Response:
    return await run_in_threadpool(error_page, request, status, title, message)


async def _console_error(request: Request, exc: CreditstackError) -> Response:
    if exc.http_status == 401:
        return _login_redirect(request)
    if exc.http_status == 403:
        return await _page(request, 403, "Not allowed", "Your role may not open this page.")
    if exc.http_status == 404:
        return await _page(request, 404, "Not found", "There is nothing here, or it is not yours to see.")
    if exc.http_status == 413:
        return await _page(request, 413, "Too large", "The request is larger than the console accepts.")
    if exc.http_status < 500:
        return await _page(request, exc.http_status, exc.title, "The request could not be completed.")
    return await _page(request, 500, "Something went wrong", "The console could not show this page.")


def mount(app: FastAPI) -> None:
    """Add the console to the platform's app: pages, static files, headers, HTML errors under /console."""
    app.state.console_nav = NAV
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="console-static")
    app.add_middleware(SecurityHeaders)
    api_handlers: dict[Any, Handler] = dict(app.exception_handlers)

    def dispatch(kind: type[Exception], console_handler: Handler) -> None:
        api_handler = api_handlers.get(kind)

        async def handler(request: Request, exc: Exception) -> Response:
            if is_console(request):
                return await console_handler(request, exc)
            if api_handler is None:
                raise exc
            return await api_handler(request, exc)

        app.add_exception_handler(kind, handler)

    async def on_creditstack_error(request: Request, exc: CreditstackError) -> Response:
        return await _console_error(request, exc)

    async def on_validation_error(request: Request, _exc: RequestValidationError) -> Response:
        return await _page(request, 400, "Bad request", "The address or the form is not valid.")

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return await _page(request, 404, "Not found", "There is nothing here, or it is not yours to see.")
        if exc.status_code == 405:
            return await _page(request, 405, "Not allowed", "This page does not take that kind of request.")
        return await _page(request, exc.status_code, "Error", "The request could not be completed.")

    async def on_login_required(request: Request, _exc: Exception) -> Response:
        return _login_redirect(request)

    async def on_csrf_rejected(request: Request, _exc: Exception) -> Response:
        return await _page(
            request,
            403,
            "Form refused",
            "The form expired or did not come from this console. Reload the page and try again.",
        )

    dispatch(CreditstackError, on_creditstack_error)
    dispatch(RequestValidationError, on_validation_error)
    dispatch(StarletteHTTPException, on_http_error)
    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(CsrfRejected, on_csrf_rejected)


__all__ = ["NAV", "PAGE_MODULES", "mount", "router"]
