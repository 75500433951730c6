"""HTTP API of the lending context under /v1/lending (so far: the APR calculator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from creditstack.app.auth import current_principal
from creditstack.core.apikeys import Principal
from creditstack.lending.apr import compute_apr_request

router = APIRouter(prefix="/v1/lending", tags=["lending"])

_EXAMPLE = {
    "currency": "USD",
    "advances": [{"date": "2026-01-10", "amount_minor": 500_000}],
    "payments": [{"date": f"2026-{m:02d}-10", "amount_minor": 43_871} for m in range(2, 13)]
    + [{"date": "2027-01-10", "amount_minor": 43_871}],
}


@router.post("/apr", summary="Annual percentage rate of any cash-flow pattern (Regulation Z Appendix J)")
def apr(
    principal: Annotated[Principal, Depends(current_principal)],
    body: Annotated[Any, Body(openapi_examples={"monthly": {"value": _EXAMPLE}})],
) -> dict[str, Any]:
    """Any authenticated caller may use the calculator; it reads and stores nothing. Answers
    `{"apr": "9.69", ...}` (percent, two decimals) with the unit period and each flow's position."""
    del principal
    return compute_apr_request(body)
