"""Scorecard and GBM: fit on messy synthetic data, serve with numpy, reasons as the issue states them."""

from __future__ import annotations

import numpy as np
import pytest

from creditstack.scoring.domain import REASONS_PER_SCORE_MAX
from creditstack.scoring.evaluation import fit_model
from creditstack.scoring.gbm import GbmModel
from creditstack.scoring.metrics import auc
from creditstack.scoring.scorecard import ScorecardModel

GBM_FAST = {"num_leaves_grid": [7], "trees_max": 200, "learning_rate": 0.1}


@pytest.fixture(scope="module")
def scorecard(messy_columns: dict[str, np.ndarray]) -> ScorecardModel:
    model = fit_model("scorecard", messy_columns, "bad", exclude=["sex"]).model
    assert isinstance(model, ScorecardModel)
    return model


@pytest.fixture(scope="module")
def gbm(messy_columns: dict[str, np.ndarray]) -> GbmModel:
    model = fit_model("gbm", messy_columns, "bad", exclude=["sex"], params=GBM_FAST).model
    assert isinstance(model, GbmModel)
    return model


def test_scorecard_points_table_agrees_with_optbinning(messy_columns: dict[str, np.ndarray]) -> None:
    result = fit_model("scorecard", messy_columns, "bad", exclude=["sex"])
    assert result.validation["optbinning_logit_max_abs_difference"] < 1e-9
    assert result.validation["auc"] > 0.7


def test_scorecard_score_is_the_sum_of_points_and_pd_follows_the_scale(
    scorecard: ScorecardModel, messy_columns: dict[str, np.ndarray]
) -> None:
    cleaned = scorecard.preprocess.clean(messy_columns)
    points = scorecard.points_matrix(scorecard.keys(cleaned)).sum(axis=1)
    batch = scorecard.score_cleaned(cleaned)
    scale = scorecard.scale
    expected = np.clip(np.round(points), scale.score_min, scale.score_max)
    assert np.array_equal(batch.score, expected)
    assert batch.pd[0] == pytest.approx(scale.pd_from_score(points[0]))
    y = (messy_columns["bad"] == "1").astype(int)
    assert auc(y, batch.pd) > 0.7


def test_scorecard_reasons_are_points_below_the_best_bin_one_per_group(scorecard: ScorecardModel) -> None:
    row = {"utilisation": "95%", "income": "5,000", "late_payments": "98", "region": "west", "PAY_1": "2", "PAY_2": "3"}
    result = scorecard.score_row(row)
    assert 0 < len(result.reasons) <= REASONS_PER_SCORE_MAX
    codes = [r.code for r in result.reasons]
    assert len(codes) == len(set(codes))  # PAY_1 and PAY_2 share the group PAY
    impacts = [r.impact for r in result.reasons]
    assert impacts == sorted(impacts, reverse=True) and impacts[-1] > 0
    assert all(r.text.startswith(r.characteristic) or ":" in r.text for r in result.reasons)
    region = [r for r in result.reasons if r.characteristic == "region"]
    if region:  # an unseen category is scored as missing, and says so
        assert "not seen" in region[0].text


def test_best_applicant_has_no_reasons(scorecard: ScorecardModel) -> None:
    best_keys = []
    for j, characteristic in enumerate(scorecard.characteristics):
        held = [i for i, count in enumerate(characteristic.counts) if count > 0]
        best_keys.append(max(held, key=lambda i: characteristic.points[i]))
        del j
    impact = np.asarray(scorecard._best) - np.array(
        [c.points[k] for c, k in zip(scorecard.characteristics, best_keys, strict=True)]
    )
    assert np.allclose(impact, 0.0)


def test_batch_and_single_row_agree(scorecard: ScorecardModel, messy_columns: dict[str, np.ndarray]) -> None:
    batch = scorecard.score_batch({k: v[:5] for k, v in messy_columns.items()})
    for i in range(5):
        single = scorecard.score_row({k: v[i] for k, v in messy_columns.items()})
        assert single == batch.result(i)


def test_gbm_is_calibrated_monotone_and_explains_with_contributions(
    gbm: GbmModel, messy_columns: dict[str, np.ndarray]
) -> None:
    constraints = {f.spec.name: f.monotone for f in gbm.features}
    assert constraints["utilisation"] == 1 and constraints["income"] == -1
    y = (messy_columns["bad"] == "1").astype(int)
    batch = gbm.score_batch(messy_columns)
    assert auc(y, batch.pd) > 0.7
    assert abs(batch.pd.mean() - y.mean()) < 0.05
    result = gbm.score_row({k: v[0] for k, v in messy_columns.items()})
    assert result == batch.result(0)
    codes = [r.code for r in result.reasons]
    assert len(codes) == len(set(codes)) <= REASONS_PER_SCORE_MAX
    assert all(r.impact > 0 for r in result.reasons)


def test_gbm_isotonic_calibration_is_stored_as_json(messy_columns: dict[str, np.ndarray]) -> None:
    model = fit_model("gbm", messy_columns, "bad", params=GBM_FAST | {"calibration": "isotonic"}).model
    assert model.calibration["method"] == "isotonic"
    assert len(model.calibration["x"]) == len(model.calibration["y"]) > 1
    pd = model.predict_pd(messy_columns)
    assert ((pd > 0) & (pd < 1)).all()
