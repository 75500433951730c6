"""`ModelScoreProvider`: lending's `ScoreProvider` port served by the champion model on feature-store data.

For an application on business date D it reads the applicant's feature vector as of D — the events before
D, so never the application itself; the store's stored state plus the events its consumer has not folded
yet, read without writing (the decision calls it inside its own transaction) — scores it with the
registry's champion (verified by hash when loaded), approves at `score ≥ cutoff`, and places the offer on
the product's rate band by PD:

    grade = ln(PD / pd_best) / ln(pd_at_cutoff / pd_best), clipped to [0, 1]

so a PD at or below `pd_best` gets the best rate (grade 0), a PD at the cutoff the worst (grade 1), and the
grade is linear in log-odds between them — as the score is. The result carries the reasons (adverse-action
texts, one per characteristic group, worst first), the model id, and the feature vector, so lending's
stored decision holds everything the score was made from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from creditstack.lending.ports import Reason, ScoreRequest, ScoreResult
from creditstack.scoring.features import FEATURE_NAMES, json_values
from creditstack.scoring.service import ScoringService

CUTOFF_DEFAULT = 560
PD_BEST_DEFAULT = 0.005
GRADE_STEP = Decimal("0.0001")


def grade_from_pd(pd: float, pd_best: float, pd_at_cutoff: float) -> Decimal:
    """0 (best) … 1 (worst), linear in log PD between `pd_best` and `pd_at_cutoff`.

    >>> grade_from_pd(0.005, 0.005, 0.05), grade_from_pd(0.05, 0.005, 0.05), grade_from_pd(0.0158, 0.005, 0.05)
    (Decimal('0.0000'), Decimal('1.0000'), Decimal('0.4997'))
    """
    if pd_at_cutoff <= pd_best:
        return Decimal(0 if pd <= pd_best else 1).quantize(GRADE_STEP)
    position = math.log(max(pd, 1e-12) / pd_best) / math.log(pd_at_cutoff / pd_best)
    return Decimal(repr(round(min(max(position, 0.0), 1.0), 4))).quantize(GRADE_STEP)


@dataclass(frozen=True, slots=True)
class ModelScoreProvider:
    """Scores applications with the champion of `scoring`'s registry on the applicant's store features."""

    scoring: ScoringService
    cutoff: int = CUTOFF_DEFAULT
    pd_best: float = PD_BEST_DEFAULT

    def score(self, request: ScoreRequest) -> ScoreResult:
        as_of = self.scoring.business_date()
        scorer = self.scoring.champion()
        scorer.require_inputs(FEATURE_NAMES)
        vector = self.scoring.features(request.customer_id, as_of)
        result = scorer.score(vector.values)
        pd_at_cutoff = scorer.model.scale.pd_from_score(self.cutoff)
        return ScoreResult(
            score=result.score,
            grade=grade_from_pd(result.pd, self.pd_best, pd_at_cutoff),
            approve=result.score >= self.cutoff,
            reasons=tuple(Reason(reason.code, reason.text) for reason in result.reasons),
            model=result.model_id,
            features={
                "as_of": vector.as_of.isoformat(),
                "outbox_position": vector.position,
                "values": json_values(vector.values),
            },
        )
