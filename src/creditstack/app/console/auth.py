"""Console sessions: log in with an API key, a signed session cookie, CSRF on every POST, roles per page.

The login form takes the API's own credential (an API key); the console keeps no passwords. A successful
login issues a session cookie signed with the console's secret (itsdangerous, HMAC-SHA-256) carrying the
key's id, role and member, a random session id and a random CSRF token; the signature's timestamp gives it
an absolute lifetime of `SESSION_SECONDS`. The cookie never carries the API key itself.

On every request the session is verified (signature, age, not logged out here) and its key is looked up
again by id: a key revoked since login, or whose role or member changed, ends the session at once.

Every POST carries the session's CSRF token (form field `csrf_token`, or header `X-CSRF-Token` for htmx).
The login form, which has no session yet, is protected by a signed double-submit token: a pre-session
cookie holds the signed token, the form echoes it, and both must agree.

Cookies: HttpOnly, SameSite=Strict, Path=/console, Secure when the request came over https.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from creditstack.app.platform import Platform
from creditstack.core.errors import Forbidden
from creditstack.core.security import Role

#: Where the console lives; its cookies are scoped to this path.
CONSOLE_PATH = "/console"
SESSION_COOKIE = "cs_console_session"
LOGIN_CSRF_COOKIE = "cs_console_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: A session lasts this long from login, however active (absolute, not sliding).
SESSION_SECONDS = 8 * 3600
#: A login form must be sent back within this long.
LOGIN_FORM_SECONDS = 3600
#: Roles that have console pages. Others (merchants, services, bureau and supervisor roles) are refused at
#: login until their pages exist.
CONSOLE_ROLES = frozenset({Role.CONSUMER, Role.PLATFORM_OPERATOR, Role.PARTNER_BANK})
#: Longest API key accepted in the login form (a real one is about 60 characters).
API_KEY_LENGTH_MAX = 200
#: Sessions ended by logout are remembered (until they would have expired anyway) up to this many.
LOGGED_OUT_MAX = 10_000
#: Bytes of the console's signing secret.
SECRET_BYTES = 32
SECRET_ENV = "CREDITSTACK_CONSOLE_SECRET"  # noqa: S105 - the variable's name, not a secret
_SESSION_SALT = "creditstack.console.session"
_LOGIN_SALT = "creditstack.console.login-csrf"


class LoginRequired(Exception):
    """No valid session: the console answers with the login page (a redirect, or HX-Redirect for htmx)."""


class CsrfRejected(Exception):
    """A POST without the session's CSRF token (or the login form's): refused, nothing done."""


class ConsoleSecretInvalid(ValueError):
    """The configured console secret is not base64 of at least `SECRET_BYTES` bytes."""


@dataclass(frozen=True, slots=True)
class Session:
    """Who is using the console: an API key's id, role and member; a session id; the CSRF token."""

    session_id: str
    key_id: str
    role: Role
    member: str
    csrf_token: str


def load_console_secret(var_dir: Path, env: dict[str, str] | None = None) -> bytes:
    """The signing secret from `CREDITSTACK_CONSOLE_SECRET` (base64, ≥ 32 bytes; the same in every process
    of a deployment), else from `{var_dir}/keys/console.key`, created with 32 random bytes and mode 0600 on
    first use (the embedded default, like the PII vault's keys). Never in the repository."""
    env = dict(os.environ) if env is None else env
    configured = env.get(SECRET_ENV)
    if configured:
        try:
            secret = base64.b64decode(configured, validate=True)
        except ValueError as exc:
            raise ConsoleSecretInvalid(f"{SECRET_ENV} is not base64") from exc
        if len(secret) < SECRET_BYTES:
            raise ConsoleSecretInvalid(f"{SECRET_ENV} must hold at least {SECRET_BYTES} random bytes")
        return secret
    path = var_dir / "keys" / "console.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode())
    secret = base64.b64decode(path.read_text().strip())
    if len(secret) < SECRET_BYTES:
        raise ConsoleSecretInvalid(f"{path} must hold at least {SECRET_BYTES} random bytes, base64")
    return secret


class Sessions:
    """Issues and verifies session and login-form tokens; remembers sessions ended by logout."""

    def __init__(self, secret: bytes) -> None:
        self._sessions = URLSafeTimedSerializer(secret, salt=_SESSION_SALT)
        self._login = URLSafeTimedSerializer(secret, salt=_LOGIN_SALT)
        self._logged_out: dict[str, float] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- sessions

    def issue(self, key_id: str, role: Role, member: str) -> tuple[Session, str]:
        session = Session(secrets.token_urlsafe(16), key_id, role, member, secrets.token_urlsafe(32))
        cookie = self._sessions.dumps(
            {"sid": session.session_id, "kid": key_id, "role": role.value, "member": member, "csrf": session.csrf_token}
        )
        return session, cookie

    def verify(self, cookie: str | None) -> Session | None:
        """The session in a cookie if it is genuine, younger than `SESSION_SECONDS` and not logged out."""
        if not cookie:
            return None
        try:
            data: Any = self._sessions.loads(cookie, max_age=SESSION_SECONDS)
            session = Session(
                str(data["sid"]), str(data["kid"]), Role(data["role"]), str(data["member"]), str(data["csrf"])
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        with self._lock:
            if session.session_id in self._logged_out:
                return None
        return session

    def end(self, session: Session) -> None:
        """Forget a session in this process (logout): its cookie no longer opens anything here."""
        now = time.monotonic()
        with self._lock:
            for sid, until in list(self._logged_out.items()):
                if until <= now:
                    del self._logged_out[sid]
            if len(self._logged_out) >= LOGGED_OUT_MAX:
                self._logged_out.pop(next(iter(self._logged_out)))
            self._logged_out[session.session_id] = now + SESSION_SECONDS

    # ---------------------------------------------------------------- the login form's CSRF token

    def login_token(self) -> tuple[str, str]:
        """A fresh (form token, cookie value) pair for the login form."""
        token = secrets.token_urlsafe(32)
        return token, self._login.dumps(token)

    def login_token_matches(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted:
            return False
        try:
            expected = self._login.loads(cookie, max_age=LOGIN_FORM_SECONDS)
        except BadSignature:
            return False
        return isinstance(expected, str) and hmac.compare_digest(expected.encode(), submitted.encode())


_STATE_LOCK = threading.Lock()


def sessions_of(request: Request) -> Sessions:
    """The app's session signer, made on first use from the platform's settings."""
    state = request.app.state
    found: Sessions | None = getattr(state, "console_sessions", None)
    if found is None:
        with _STATE_LOCK:
            found = getattr(state, "console_sessions", None)
            if found is None:
                platform: Platform = state.platform
                found = Sessions(load_console_secret(platform.settings.var_dir))
                state.console_sessions = found
    return found


def _cookie_flags(request: Request) -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "strict",
        "path": CONSOLE_PATH,
        "secure": request.url.scheme == "https",
    }


def set_session_cookie(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, **_cookie_flags(request))


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, **_cookie_flags(request))


def set_login_cookie(request: Request, response: Response, cookie: str) -> None:
    response.set_cookie(LOGIN_CSRF_COOKIE, cookie, max_age=LOGIN_FORM_SECONDS, **_cookie_flags(request))


def clear_login_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(LOGIN_CSRF_COOKIE, **_cookie_flags(request))


def key_still_grants(platform: Platform, session: Session) -> bool:
    """The session's API key still exists, is not revoked, and still has the session's role and member.

    One primary-key read per page. (The API's `authenticate_cached` needs the key's secret, which the
    session deliberately does not hold; this reads the same `api_keys` row by the key's id.)"""
    k = platform.keys.tables.api_keys.c
    row = platform.db.run(
        lambda conn: conn.execute(
            sa.select(k.role, k.member, k.revoked_at).where(k.key_id == session.key_id)
        ).one_or_none(),
        readonly=True,
    )
    return (
        row is not None and row.revoked_at is None and row.role == session.role.value and row.member == session.member
    )


def current_session(request: Request) -> Session:
    """The verified session of this request, or `LoginRequired`."""
    session = sessions_of(request).verify(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired()
    platform: Platform = request.app.state.platform
    if not key_still_grants(platform, session):
        raise LoginRequired()
    request.state.console_session = session
    return session


def optional_session(request: Request) -> Session | None:
    try:
        return current_session(request)
    except LoginRequired:
        return None


async def check_csrf(request: Request, session: Session) -> None:
    """A POST must carry the session's CSRF token (header for htmx, else the form field)."""
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None:
        form = await request.form(max_files=0, max_fields=20)
        value = form.get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    if submitted is None or not hmac.compare_digest(submitted.encode(), session.csrf_token.encode()):
        raise CsrfRejected("the form did not carry this session's CSRF token")


def require(*roles: Role) -> Any:
    """A dependency admitting a session of one of `roles`; any other role is 403."""
    allowed = frozenset(roles)

    def dependency(session: Annotated[Session, Depends(current_session)]) -> Session:
        if session.role not in allowed:
            raise Forbidden(f"role {session.role.value} may not open this page")
        return session

    dependency.__name__ = "console_" + "_or_".join(sorted(r.value for r in allowed))
    return Depends(dependency)


AnySession = Annotated[Session, Depends(current_session)]
OperatorSession = Annotated[Session, require(Role.PLATFORM_OPERATOR)]
ConsumerOrOperator = Annotated[Session, require(Role.CONSUMER, Role.PLATFORM_OPERATOR)]
PartnerOrOperator = Annotated[Session, require(Role.PARTNER_BANK, Role.PLATFORM_OPERATOR)]
