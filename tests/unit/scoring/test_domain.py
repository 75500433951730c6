"""Score scale arithmetic: the points-to-double-the-odds worked example (Siddiqi 2006, ch. 6)."""

from __future__ import annotations

import math

import pytest

from creditstack.scoring.domain import Reason, ScoreResult, ScoreScale
from creditstack.scoring.errors import InvalidScoreScale


def test_600_at_50_to_1_with_20_pdo_gives_factor_20_over_ln2_and_offset() -> None:
    scale = ScoreScale()
    assert scale.factor == pytest.approx(20 / math.log(2))  # 28.8539
    assert scale.factor == pytest.approx(28.8539, abs=1e-4)
    assert scale.offset == pytest.approx(600 - 20 / math.log(2) * math.log(50))  # 487.1229
    assert scale.offset == pytest.approx(487.1229, abs=1e-4)


def test_doubling_the_odds_adds_pdo_points() -> None:
    scale = ScoreScale()
    assert scale.score_from_pd(1 / 51) == 600  # odds 50:1
    assert scale.score_from_pd(1 / 101) == 620  # odds 100:1
    assert scale.score_from_pd(1 / 26) == 580  # odds 25:1
    assert scale.raw_score_from_log_odds_bad(0.0) == pytest.approx(scale.offset)  # odds 1:1


def test_scores_are_clipped_and_pd_round_trips() -> None:
    scale = ScoreScale()
    assert scale.score_from_pd(0.999999) == 300
    assert scale.score_from_pd(1e-12) == 900
    assert scale.pd_from_score(600) == pytest.approx(1 / 51)


def test_scale_is_configurable() -> None:
    scale = ScoreScale(base_score=500, base_odds=20, pdo=50, score_min=0, score_max=1000)
    assert scale.score_from_pd(1 / 21) == 500
    assert scale.score_from_pd(1 / 41) == 550
    assert ScoreScale.from_dict(scale.to_dict()) == scale


@pytest.mark.parametrize("kwargs", [{"pdo": 0}, {"pdo": -20}, {"base_odds": 0}, {"score_min": 900, "score_max": 300}])
def test_invalid_scales_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidScoreScale) as raised:
        ScoreScale(**kwargs)  # type: ignore[arg-type]
    assert raised.value.code == "scoring.invalid_score_scale"


def test_a_result_holds_at_most_four_reasons() -> None:
    reason = Reason("PAY", "PAY_0", "PAY_0: 2", 1.0)
    assert len(ScoreResult(600, 0.02, (reason,) * 4).reasons) == 4
    with pytest.raises(ValueError, match="at most 4"):
        ScoreResult(600, 0.02, (reason,) * 5)
