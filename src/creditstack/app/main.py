"""FastAPI app factories. `create_app()` serves the platform (the bureau and supervisor join later)."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from creditstack import __version__
from creditstack.app import console, problems
from creditstack.app.platform import Platform, open_platform
from creditstack.colending.api import router as colending_router
from creditstack.core.errors import LimitExceeded
from creditstack.core.settings import Settings, get_settings
from creditstack.ledger.api import router as ledger_router
from creditstack.lending.api import router as lending_router
from creditstack.payments.api import router as payments_router
from creditstack.scoring.api import router as scoring_router


def create_app(platform: Platform | None = None, settings: Settings | None = None) -> FastAPI:
    """The platform's HTTP API. Pass a `Platform` to share one (tests, the demo); else one is opened."""
    settings = settings or (platform.settings if platform else get_settings())
    owns_platform = platform is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.platform is None:
            app.state.platform = open_platform(settings)
        yield
        if owns_platform and app.state.platform is not None:
            app.state.platform.close()

    app = FastAPI(
        title="creditstack platform API",
        version=__version__,
        description="Wallets and payments, the double-entry ledger, lending and co-lending. Money is "
        '`{"amount_minor": int, "currency": "XXX"}`; errors are problem+json with a stable `code`.',
        lifespan=lifespan,
    )
    app.state.platform = platform
    problems.install(app)
    body_max = settings.request_body_bytes_max

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > body_max:
            return problems.error_response(LimitExceeded(f"request body larger than {body_max} bytes"))
        return await call_next(request)

    @app.get("/healthz", tags=["meta"], summary="Liveness and the platform's business date")
    def healthz(request: Request) -> dict[str, Any]:
        p: Platform = request.app.state.platform
        return {"status": "ok", "business_date": p.ledger.business_date().isoformat(), "version": __version__}

    app.include_router(ledger_router)
    app.include_router(lending_router)
    app.include_router(payments_router)
    app.include_router(colending_router)
    app.include_router(scoring_router)
    console.mount(app)
    return app


#: Seconds between GIL hand-offs in a server process. Python's default (5 ms) makes the group-commit
#: writer thread wait behind request handling; a shorter interval keeps commit latency low.
SERVER_SWITCH_INTERVAL_SECONDS = 0.0005


#: Garbage-collector thresholds in a server process. Long-lived objects made at start-up are frozen out of
#: collection (`gc.freeze`), so a full collection no longer walks the whole application (those pauses were
#: the HTTP latency tail: p99 70 ms → 17 ms in benchmarks/ledger_throughput.py). A moderately larger
#: young generation than Python's 700 cuts the number of collections; a much larger one (50,000) makes
#: each young collection itself a 20–30 ms pause.
SERVER_GC_THRESHOLD = (5_000, 20, 1_000)


def app_factory() -> FastAPI:
    """For `uvicorn --factory creditstack.app.main:app_factory` (a server process of its own)."""
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL_SECONDS)
    app = create_app()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_GC_THRESHOLD)
    return app
