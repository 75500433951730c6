"""HTTP API of scoring under /v1/scoring. Thin: parse, call `ScoringService`, shape the answer.

`POST /v1/scoring/score` scores with the platform's champion model (the registry under `var/models`), for
the platform operator and services only: either `{"customer_id": …}` — the customer's vector from the
feature store as of the current business date (`as_of` to choose an earlier date the store can still
serve), returned with the score — or `{"features": {name: value, …}}`, every model input present (`null`
for a missing value). Errors are problem+json with a stable code: `scoring.score_request_invalid`,
`scoring.features_missing`, `scoring.feature_type_invalid` (422), `scoring.customer_unknown`,
`scoring.model_not_found` (404), `scoring.model_integrity_failed` (a changed model file: it never scores).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from creditstack.app.auth import OperatorOrService, PlatformDep
from creditstack.scoring.errors import ScoreRequestInvalid

router = APIRouter(prefix="/v1/scoring", tags=["scoring"])

#: Longest customer id accepted.
ID_LENGTH_MAX = 32
#: Most keys in a `features` object.
FEATURES_MAX = 500


class ScoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(
        default=None, min_length=1, max_length=ID_LENGTH_MAX, description="Score this customer from the store."
    )
    as_of: date | None = Field(
        default=None, description="With `customer_id`: the as-of business date (default: the current one)."
    )
    features: dict[str, Any] | None = Field(
        default=None,
        max_length=FEATURES_MAX,
        description="Score these features: every model input, numbers for numeric inputs, `null` when missing.",
    )


@router.post("/score", summary="A score, PD, model id and up to four reasons, for a customer or a feature dict")
def score(body: ScoreIn, platform: PlatformDep, _principal: OperatorOrService) -> dict[str, Any]:
    if (body.customer_id is None) == (body.features is None):
        raise ScoreRequestInvalid("give either customer_id or features", field="customer_id")
    if body.customer_id is not None:
        return platform.scoring.score_customer(body.customer_id, as_of=body.as_of)
    if body.as_of is not None:
        raise ScoreRequestInvalid("as_of goes with customer_id", field="as_of")
    assert body.features is not None
    return platform.scoring.score_features(body.features)
