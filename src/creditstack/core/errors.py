"""The error root. Every error states a fact, has a docstring and a stable `code`.

Codes are `context.snake_case_fact` and never change once published; `docs/errors.md` is the catalogue
(a test keeps the two in step). The HTTP edge maps every `CreditstackError` to problem+json (RFC 9457)
once, in `creditstack.app.problems`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar


class CreditstackError(Exception):
    """Root of every error creditstack raises on purpose."""

    code: ClassVar[str] = "creditstack.error"
    http_status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, message: str = "", *, field: str | None = None, **details: Any) -> None:
        super().__init__(message or self.__doc__ or self.code)
        self.message = message or (self.__doc__ or self.code).strip().splitlines()[0]
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class ValidationFailed(CreditstackError):
    """The request is malformed; nothing was done."""

    code = "request.invalid"
    http_status = 422
    title = "Invalid request"


class NotFound(CreditstackError):
    """The object does not exist (or is not visible to the caller)."""

    code = "request.not_found"
    http_status = 404
    title = "Not found"


class BusinessRuleViolated(CreditstackError):
    """The request is well formed but the current state does not allow it."""

    code = "request.rejected"
    http_status = 409
    title = "Rejected"


class Unauthenticated(CreditstackError):
    """No valid credentials were presented."""

    code = "auth.unauthenticated"
    http_status = 401
    title = "Unauthenticated"


class Forbidden(CreditstackError):
    """The caller's role or member may not do this."""

    code = "auth.forbidden"
    http_status = 403
    title = "Forbidden"


class IdempotencyKeyReused(CreditstackError):
    """The idempotency key was used before with a different request."""

    code = "idempotency.key_reused"
    http_status = 422
    title = "Idempotency key reused"


class IdempotencyInProgress(CreditstackError):
    """A request with this idempotency key is still being processed."""

    code = "idempotency.in_progress"
    http_status = 409
    title = "Request in progress"


class LimitExceeded(ValidationFailed):
    """A size limit (page, batch, upload) was exceeded."""

    code = "request.limit_exceeded"
    http_status = 413
    title = "Too large"


@dataclass(frozen=True, slots=True)
class RecordError:
    """One bad record in a batch or file, as a value: batches report every one, never just the first."""

    index: int
    code: str
    message: str
    field: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_error(cls, index: int, error: CreditstackError) -> RecordError:
        return cls(index, error.code, error.message, error.field, dict(error.details))

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


def all_error_classes() -> list[type[CreditstackError]]:
    """Every subclass of `CreditstackError` that has been imported, for the catalogue test."""
    seen: list[type[CreditstackError]] = []
    stack: list[type[CreditstackError]] = [CreditstackError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
