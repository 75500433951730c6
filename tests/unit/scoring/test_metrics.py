"""Metrics against hand-worked examples and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from creditstack.scoring.metrics import (
    auc,
    brier,
    calibration_by_decile,
    fairness_report,
    ks,
    protected_groups,
    psi,
    stability_status,
)


def test_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    pd = np.round(rng.uniform(size=500) * 0.5 + y * 0.2, 1)
    assert auc(y, pd) == pytest.approx(roc_auc_score(y, pd))


def test_ks_brier_and_deciles_on_a_small_example() -> None:
    y = np.array([0, 0, 0, 1, 1])
    pd = np.array([0.1, 0.2, 0.6, 0.4, 0.9])
    assert ks(y, pd) == pytest.approx(2 / 3)  # at PD 0.2: 2/3 of goods, 0 of bads
    assert brier(y, pd) == pytest.approx(np.mean((pd - y) ** 2))
    deciles = calibration_by_decile(y, pd, groups=5)
    assert [d["rows"] for d in deciles] == [1] * 5


def test_psi_thresholds() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    value = psi([0.25] * 4, [0.1, 0.2, 0.3, 0.4])
    assert value == pytest.approx(sum((a - 0.25) * np.log(a / 0.25) for a in [0.1, 0.2, 0.3, 0.4]))
    assert stability_status(0.05) == "stable"
    assert stability_status(0.10) == "watch"
    assert stability_status(0.25) == "act"


def test_fairness_four_fifths_and_equal_opportunity() -> None:
    # group a: 10 rows, 8 approved; group b: 10 rows, 6 approved → ratio 0.75 fails four-fifths
    groups = np.array(["a"] * 10 + ["b"] * 10, dtype=object)
    score = np.array([700] * 8 + [500] * 2 + [700] * 6 + [500] * 4)
    y = np.zeros(20, dtype=np.int8)
    report = fairness_report(y, score, groups, cutoff=600)
    assert report["approval_rate_ratio_min"] == pytest.approx(0.75)
    assert report["four_fifths_pass"] is False
    assert report["equal_opportunity_difference"] == pytest.approx(0.2)


def test_numeric_protected_attributes_are_banded() -> None:
    labels = protected_groups(np.array(["22", "30", "45", "70", ""], dtype=object), [25, 40, 60])
    assert labels.tolist() == ["< 25", "25–40", "40–60", "≥ 60", "missing"]
