"""The one place errors become HTTP: problem+json (RFC 9457) with a stable `code`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from creditstack.core.errors import CreditstackError

PROBLEM_TYPE_BASE = "https://creditstack.dev/errors/"


class MalformedJson(CreditstackError):
    """The request body is not valid JSON."""

    code = "request.malformed_json"
    http_status = 400
    title = "Malformed JSON"


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def stored_outcome(status_code: int, body: dict[str, Any], replayed: bool, subject: str) -> JSONResponse:
    """A service's stored outcome as HTTP: the body as it is, or its error as problem+json with the rest of
    the body under `subject`; a replay says so in `Idempotent-Replayed`."""
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    error = body.get("error")
    if not isinstance(error, dict):
        return JSONResponse(body, status_code=status_code, headers=headers)
    response = problem(
        status_code,
        error["code"],
        "Rejected",
        str(error.get("message") or error["code"]),
        field=error.get("field"),
        details=error.get("details"),
        **{subject: {k: v for k, v in body.items() if k != "error"} or None},
    )
    response.headers.update(headers)
    return response


def error_response(exc: CreditstackError) -> JSONResponse:
    return problem(exc.http_status, exc.code, exc.title, exc.message, field=exc.field, details=exc.details or None)


def _validation_code(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if "." in kind:  # our own PydanticCustomError codes, e.g. money.invalid_amount
        return kind
    if kind == "json_invalid":
        return MalformedJson.code
    return "request.invalid"


def install(app: FastAPI) -> None:
    @app.exception_handler(CreditstackError)
    async def _creditstack_error(_request: Request, exc: CreditstackError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "code": _validation_code(e),
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "message": str(e.get("msg", "")),
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"code": "request.invalid", "field": "", "message": "invalid request"}
        status = 400 if first["code"] == MalformedJson.code else 422
        return problem(
            status,
            first["code"],
            "Invalid request",
            first["message"],
            field=first["field"] or None,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            404: "request.not_found",
            405: "request.method_not_allowed",
            413: "request.limit_exceeded",
        }.get(exc.status_code, "request.http_error")
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail))
