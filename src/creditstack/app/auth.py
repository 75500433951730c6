"""Authentication and authorisation at the HTTP edge: every endpoint declares the roles it admits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from creditstack.app.platform import Platform
from creditstack.core.apikeys import Principal
from creditstack.core.errors import Forbidden, Unauthenticated
from creditstack.core.security import Role

_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token: `Authorization: Bearer cs_…`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key in a header")


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def current_principal(
    platform: PlatformDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The caller. Verified keys are remembered briefly, so a hot path needs no database read."""
    token = bearer.credentials if bearer is not None else header
    if not token:
        raise Unauthenticated("an API key is required (Authorization: Bearer … or X-API-Key)")
    cached = platform.keys.cached(token)
    if cached is not None:
        return cached
    return await run_in_threadpool(platform.keys.authenticate_cached, token)


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only the given roles."""
    allowed = frozenset(roles)

    async def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(
                f"role {principal.role.value} may not do this; needs one of "
                f"{', '.join(sorted(r.value for r in allowed))}"
            )
        return principal

    dependency.__name__ = "require_" + "_or_".join(sorted(r.value for r in allowed))
    return dependency


LedgerWriter = Annotated[Principal, Depends(require(Role.PLATFORM_OPERATOR, Role.SERVICE))]
Operator = Annotated[Principal, Depends(require(Role.PLATFORM_OPERATOR))]
OperatorOrService = Annotated[Principal, Depends(require(Role.PLATFORM_OPERATOR, Role.SERVICE))]
#: A wallet holder (consumer or merchant, acting on its own objects) or the platform (acting on any).
WalletUser = Annotated[Principal, Depends(require(Role.CONSUMER, Role.MERCHANT, Role.PLATFORM_OPERATOR, Role.SERVICE))]
#: A merchant (refunding its own payments) or the platform.
MerchantOrOperator = Annotated[Principal, Depends(require(Role.MERCHANT, Role.PLATFORM_OPERATOR, Role.SERVICE))]
#: A borrower (a consumer, acting on its own applications, loans and lines) or the platform (acting on any).
Borrower = Annotated[Principal, Depends(require(Role.CONSUMER, Role.PLATFORM_OPERATOR, Role.SERVICE))]
#: A partner bank (reading its own partner record, statements and portfolio) or the platform operator.
PartnerBankOrOperator = Annotated[Principal, Depends(require(Role.PARTNER_BANK, Role.PLATFORM_OPERATOR))]
#: Any authenticated caller.
Authenticated = Annotated[Principal, Depends(current_principal)]
