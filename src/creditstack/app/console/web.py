"""Rendering: the Jinja2 environment, exact money and rate formatting, pages and error pages.

Money is formatted from integer minor units with integer arithmetic only (the currency's ISO 4217
exponent places the point); rates and shares are `Decimal`s rounded once, half-even, for display.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from creditstack import __version__
from creditstack.app.console.auth import CSRF_FIELD, CSRF_HEADER, Session
from creditstack.app.console.nav import NavEntry, nav_for
from creditstack.core.money import Currency, Money

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
STATIC_PATH = "/console/static"
PERCENT_PLACES = Decimal("0.01")
RATE_PLACES = Decimal("0.01")


def format_minor(amount_minor: int, currency: str) -> str:
    """`123456, "CNY"` → `1,234.56 CNY`; exact for any integer (no float anywhere)."""
    if type(amount_minor) is not int:
        raise TypeError(f"money is an int of minor units, not {type(amount_minor).__name__}")
    exponent = Currency.of(currency).exponent
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    text = f"{whole:,}" + (f".{fraction:0{exponent}d}" if exponent else "")
    return f"{'-' if amount_minor < 0 else ''}{text} {currency}"


def major_units(amount_minor: int, currency: str) -> str:
    """`123456, "CNY"` → `"1234.56"`: an exact decimal string (charts parse it to plot)."""
    exponent = Currency.of(currency).exponent
    return str(Decimal(amount_minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent)))


def money(value: Any) -> str:
    """A wire money object (`{"amount_minor", "currency"}`) or a `Money`, formatted exactly."""
    if isinstance(value, Money):
        return format_minor(value.amount_minor, value.currency.code)
    if isinstance(value, dict):
        return format_minor(value["amount_minor"], value["currency"])
    raise TypeError(f"not money: {type(value).__name__}")


def percent(share: Decimal | str | int) -> str:
    """A share of one (`Decimal("0.123456")`) as `12.35 %` (half-even)."""
    value = (Decimal(share) * 100).quantize(PERCENT_PLACES, rounding=ROUND_HALF_EVEN)
    return f"{value} %"


def annual_rate(rate: Decimal | str) -> str:
    """An annual rate as a fraction (`"0.106846"`) as a percentage with every place it has (`10.6846 %`)."""
    value = (Decimal(rate) * 100).normalize()
    if value == value.quantize(RATE_PLACES):
        value = value.quantize(RATE_PLACES)  # at least two places: 24.00 %
    return f"{value:f} %"


def static_url(path: str) -> str:
    return f"{STATIC_PATH}/{path}?v={__version__}"


ENVIRONMENT = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.filters["money"] = money
ENVIRONMENT.filters["percent"] = percent
ENVIRONMENT.filters["rate"] = annual_rate
ENVIRONMENT.globals["static"] = static_url
ENVIRONMENT.globals["format_minor"] = format_minor
ENVIRONMENT.globals["CSRF_FIELD"] = CSRF_FIELD
ENVIRONMENT.globals["CSRF_HEADER"] = CSRF_HEADER


def _active(entries: tuple[NavEntry, ...], path: str) -> str | None:
    matches = [e.path for e in entries if path == e.path or path.startswith(e.path.rstrip("/") + "/")]
    return max(matches, key=len) if matches else None


def render(request: Request, template: str, context: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
    """A page: the template with the session, its role's navigation and the business date around it."""
    session: Session | None = getattr(request.state, "console_session", None)
    entries: tuple[NavEntry, ...] = getattr(request.app.state, "console_nav", ())
    values: dict[str, Any] = {
        "request": request,
        "session": session,
        "nav": nav_for(entries, session.role) if session else (),
        "active_path": _active(entries, request.url.path),
        "business_date": None,
    }
    if session is not None:
        values["business_date"] = request.app.state.platform.ledger.business_date()
    values.update(context or {})
    body = ENVIRONMENT.get_template(template).render(values)
    return HTMLResponse(body, status_code=status)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", {"status": status, "title": title, "message": message}, status=status)
