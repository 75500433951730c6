"""Logging in with an API key, logging out, and each role's home page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from creditstack.app.console.auth import (
    API_KEY_LENGTH_MAX,
    CONSOLE_ROLES,
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    AnySession,
    CsrfRejected,
    check_csrf,
    clear_login_cookie,
    clear_session_cookie,
    optional_session,
    sessions_of,
    set_login_cookie,
    set_session_cookie,
)
from creditstack.app.console.web import render
from creditstack.app.platform import Platform
from creditstack.core.apikeys import Principal
from creditstack.core.errors import Unauthenticated
from creditstack.core.security import Role

router = APIRouter()

HOME = {
    Role.CONSUMER: "/console/me",
    Role.PLATFORM_OPERATOR: "/console/portfolio",
    Role.PARTNER_BANK: "/console/partner",
}


def _login_form(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    sessions = sessions_of(request)
    token, cookie = sessions.login_token()
    response = render(request, "login.html", {"login_csrf": token, "error": error}, status=status)
    set_login_cookie(request, response, cookie)
    return response


@router.get("/", include_in_schema=False)
def home(session: AnySession) -> RedirectResponse:
    return RedirectResponse(HOME[session.role], status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    session = optional_session(request)
    if session is not None:
        return RedirectResponse(HOME[session.role], status_code=303)
    return _login_form(request)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    submitted_csrf = form.get(CSRF_FIELD)
    sessions = sessions_of(request)
    if not sessions.login_token_matches(
        request.cookies.get(LOGIN_CSRF_COOKIE), submitted_csrf if isinstance(submitted_csrf, str) else None
    ):
        raise CsrfRejected("the login form's CSRF token is missing or does not match")
    api_key = form.get("api_key")
    if not isinstance(api_key, str) or not api_key.strip() or len(api_key) > API_KEY_LENGTH_MAX:
        return _login_form(request, "Enter your API key.", status=400)
    platform: Platform = request.app.state.platform
    try:
        principal: Principal = await run_in_threadpool(platform.keys.authenticate_cached, api_key.strip())
    except Unauthenticated:
        return _login_form(request, "That API key is unknown or revoked.", status=401)
    if principal.role not in CONSOLE_ROLES:
        return _login_form(request, f"The console has no pages for the role {principal.role.value} yet.", status=403)
    _, cookie = sessions.issue(principal.key_id, principal.role, principal.member)
    response = RedirectResponse(HOME[principal.role], status_code=303)
    set_session_cookie(request, response, cookie)
    clear_login_cookie(request, response)
    return response


@router.post("/logout")
async def logout(request: Request, session: AnySession) -> Response:
    await check_csrf(request, session)
    sessions_of(request).end(session)
    response = RedirectResponse("/console/login", status_code=303)
    clear_session_cookie(request, response)
    return response
