"""Pure scoring types: the points-to-double-the-odds score scale, reasons and score results.

Standard library and `core` only. Worked example (Siddiqi, *Credit Risk Scorecards*, 2006, ch. 6 —
"scaling"): 600 points at good:bad odds of 50:1 and 20 points to double the odds give

    factor = pdo / ln 2            = 20 / 0.693147 = 28.8539
    offset = base_score − factor · ln(base_odds) = 600 − 28.8539 · ln 50 = 487.1229
    score  = offset + factor · ln(odds_good_to_bad)

so odds of 100:1 score 620, 25:1 score 580, and a PD of 1/51 (odds 50:1) scores 600.

>>> scale = ScoreScale()
>>> round(scale.factor, 4), round(scale.offset, 4)
(28.8539, 487.1229)
>>> scale.score_from_pd(1 / 51), scale.score_from_pd(1 / 101), scale.score_from_pd(1 / 26)
(600, 620, 580)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from creditstack.scoring.errors import InvalidScoreScale

ModelKind = Literal["scorecard", "gbm"]
MODEL_KINDS: tuple[ModelKind, ...] = ("scorecard", "gbm")
REASONS_PER_SCORE_MAX = 4
PD_MIN = 1e-9
"""PDs are kept inside [PD_MIN, 1 − PD_MIN] so that log-odds stay finite."""


@dataclass(frozen=True, slots=True)
class ScoreScale:
    """A linear map from log-odds (good:bad) to points, clipped to `[score_min, score_max]`."""

    base_score: float = 600.0
    base_odds: float = 50.0
    """Good:bad odds at `base_score` (50 means 50 goods per bad)."""
    pdo: float = 20.0
    """Points to double the odds."""
    score_min: int = 300
    score_max: int = 900

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pdo) and self.pdo > 0):
            raise InvalidScoreScale("points to double the odds must be positive", field="pdo")
        if not (math.isfinite(self.base_odds) and self.base_odds > 0):
            raise InvalidScoreScale("base odds must be positive", field="base_odds")
        if not math.isfinite(self.base_score):
            raise InvalidScoreScale("base score must be finite", field="base_score")
        if self.score_min >= self.score_max:
            raise InvalidScoreScale("score_min must be below score_max", field="score_min")

    @property
    def factor(self) -> float:
        """Points per unit of natural log-odds: pdo / ln 2."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Points at odds 1:1: base_score − factor · ln(base_odds)."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def raw_score_from_log_odds_bad(self, log_odds_bad: float) -> float:
        """Unclipped, unrounded points for natural log-odds of bad (logit of PD)."""
        return self.offset - self.factor * log_odds_bad

    def score_from_log_odds_bad(self, log_odds_bad: float) -> int:
        return self.clip(self.raw_score_from_log_odds_bad(log_odds_bad))

    def score_from_pd(self, pd: float) -> int:
        """Rounded (half to even) and clipped score for a probability of default."""
        pd = min(max(pd, PD_MIN), 1.0 - PD_MIN)
        return self.score_from_log_odds_bad(math.log(pd / (1.0 - pd)))

    def pd_from_score(self, score: float) -> float:
        """The PD that a (raw, unclipped) score stands for."""
        log_odds_bad = (self.offset - score) / self.factor
        return 1.0 / (1.0 + math.exp(-log_odds_bad))

    def clip(self, raw_score: float) -> int:
        return int(min(max(round(raw_score), self.score_min), self.score_max))

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_score": self.base_score,
            "base_odds": self.base_odds,
            "pdo": self.pdo,
            "score_min": self.score_min,
            "score_max": self.score_max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreScale:
        return cls(
            base_score=float(data["base_score"]),
            base_odds=float(data["base_odds"]),
            pdo=float(data["pdo"]),
            score_min=int(data["score_min"]),
            score_max=int(data["score_max"]),
        )


@dataclass(frozen=True, slots=True)
class Reason:
    """One principal reason for a score, usable in an adverse-action notice.

    `code` is stable per characteristic group (the column name without a trailing period number, so
    `PAY_0`…`PAY_6` share `PAY`); `impact` is in points below the characteristic's best bin (scorecard)
    or in log-odds of bad added (gradient boosting) — larger is worse.
    """

    code: str
    characteristic: str
    text: str
    impact: float
    value: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "characteristic": self.characteristic,
            "text": self.text,
            "impact": round(self.impact, 4),
            "value": self.value,
        }


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """A score, its probability of default and up to four reasons (worst first)."""

    score: int
    pd: float
    reasons: tuple[Reason, ...] = field(default_factory=tuple)
    model_id: str = ""

    def __post_init__(self) -> None:
        if len(self.reasons) > REASONS_PER_SCORE_MAX:
            raise ValueError(f"at most {REASONS_PER_SCORE_MAX} reasons per score")

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "pd": round(self.pd, 6),
            "reasons": [reason.to_dict() for reason in self.reasons],
            "model_id": self.model_id,
        }
