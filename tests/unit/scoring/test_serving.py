"""Serving: a verified model scores one feature dict as the batch does, with at most four reasons one per
characteristic group and their adverse-action texts; bad input and tampered files give their codes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from creditstack.scoring import registry
from creditstack.scoring.domain import REASONS_PER_SCORE_MAX, ScoreScale
from creditstack.scoring.errors import (
    FeaturesMissing,
    FeatureTypeInvalid,
    ModelInputsUnavailable,
    ModelIntegrityFailed,
    ModelNotFound,
)
from creditstack.scoring.evaluation import fit_model
from creditstack.scoring.features import FEATURE_NAMES, FEATURES_BY_NAME, GROUP_STATEMENTS, feature_groups
from creditstack.scoring.features import feature_reason_texts as reason_texts
from creditstack.scoring.registry import ModelRegistry, save_model
from creditstack.scoring.service import MANIFEST_FILE, REGISTRY_FILE, champion_exists
from creditstack.scoring.serving import ChampionCache, Scorer

GBM_FAST = {"num_leaves_grid": [7], "trees_max": 150, "learning_rate": 0.1}


def feature_table(rows: int = 2_500, seed: int = 3) -> dict[str, np.ndarray]:
    """Feature-store columns for a synthetic population, with a `bad` outcome driven by a few of them."""
    rng = np.random.default_rng(seed)
    columns = {name: np.full(rows, np.nan) for name in FEATURE_NAMES}
    credit = rng.uniform(size=rows) < 0.7
    late_bills = rng.beta(2, 6, rows)
    dpd = np.where(credit, rng.choice([0, 0, 0, 0, 1, 30, 60], rows), np.nan)
    line = rng.uniform(size=rows) < 0.5
    utilisation = np.where(line, rng.uniform(0, 1.1, rows), np.nan)
    tenure = rng.integers(15, 1_500, rows).astype(float)
    cv = rng.gamma(2.0, 0.2, rows)
    logit = -2.0 + 3.0 * late_bills + 0.03 * np.nan_to_num(dpd) + 1.5 * np.nan_to_num(utilisation, nan=0.3)
    logit += -0.0008 * tenure + 1.2 * cv
    columns["bad"] = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(float)
    columns["tenure_days"] = tenure
    columns["inflow_monthly_mean_minor_6m"] = rng.lognormal(13, 0.6, rows)
    columns["inflow_monthly_cv_6m"] = cv
    columns["bill_on_time_share_12m"] = 1 - late_bills
    columns["bill_days_late_mean_12m"] = late_bills * 12
    columns["line_utilisation_ratio"] = utilisation
    columns["repayment_on_time_share_12m"] = np.where(credit, 1 - late_bills * rng.uniform(0.5, 1.5, rows), np.nan)
    for k in (3, 6, 12):
        columns[f"dpd_worst_days_{k}m"] = dpd if k == 12 else np.where(rng.uniform(size=rows) < 0.5, dpd, 0 * dpd)
        columns[f"applications_count_{k}m"] = rng.poisson(0.3 * k / 3, rows).astype(float)
    columns["spend_share_gambling_cash_12m"] = rng.beta(1, 12, rows)
    return columns


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serving")
    table = feature_table()
    out = {}
    for kind, params in (("scorecard", None), ("gbm", GBM_FAST)):
        result = fit_model(
            kind, table, "bad", groups=feature_groups(), reason_texts=reason_texts(), params=params
        )  # fmt: skip
        save_model(result.model, root / kind, training_data={"rows": 2_500}, metrics=result.validation)
        out[kind] = root / kind
    return out


def rows(count: int = 40, seed: int = 9) -> list[dict[str, Any]]:
    table = feature_table(count, seed)
    return [
        {name: (None if math.isnan(v := float(table[name][i])) else v) for name in FEATURE_NAMES} for i in range(count)
    ]


@pytest.mark.parametrize("kind", ["scorecard", "gbm"])
def test_one_row_scores_as_the_batch_does_on_the_default_scale(artefacts: dict[str, Path], kind: str) -> None:
    scorer = Scorer.load(artefacts[kind])
    assert scorer.kind == kind and scorer.model_id.startswith(kind)
    sample = rows(300 if kind == "scorecard" else 120)  # one row runs its own (plain Python) path
    singles = [scorer.score(row) for row in sample]
    batch = scorer.score_rows(sample)
    assert batch.errors == [] and [r.to_dict() if r else None for r in batch.results] == [s.to_dict() for s in singles]
    columns = {name: np.array([np.nan if r[name] is None else r[name] for r in sample]) for name in scorer.input_names}
    vectorised = scorer.score_columns(columns)
    assert vectorised.score.tolist() == [s.score for s in singles]
    scale = ScoreScale()
    assert scorer.model.scale == scale  # 600 at 50:1, 20 PDO, 300–900
    for single in singles:
        assert 300 <= single.score <= 900 and single.model_id == scorer.model_id
        assert scale.score_from_pd(single.pd) == single.score


@pytest.mark.parametrize("kind", ["scorecard", "gbm"])
def test_reasons_are_at_most_four_one_per_group_with_adverse_action_texts(
    artefacts: dict[str, Path], kind: str
) -> None:
    scorer = Scorer.load(artefacts[kind])
    seen_some = False
    for row in rows(60):
        reasons = scorer.score(row).reasons
        codes = [r.code for r in reasons]
        assert len(codes) == len(set(codes)) <= REASONS_PER_SCORE_MAX
        assert [r.impact for r in reasons] == sorted((r.impact for r in reasons), reverse=True)
        for reason in reasons:
            feature = FEATURES_BY_NAME[reason.characteristic]
            assert reason.code == feature.group
            assert reason.text.startswith(f"{GROUP_STATEMENTS[feature.group]} ({feature.label}: ")
            seen_some = True
    assert seen_some


def test_bad_input_gets_its_code_and_names_the_field(artefacts: dict[str, Path]) -> None:
    scorer = Scorer.load(artefacts["scorecard"])
    row = rows(1)[0]
    name = scorer.input_names[0]
    with pytest.raises(FeaturesMissing) as missing:
        scorer.score({k: v for k, v in row.items() if k != name})
    assert missing.value.code == "scoring.features_missing" and missing.value.details["missing"] == [name]
    for wrong in ("12", True, [1], {"a": 1}):
        with pytest.raises(FeatureTypeInvalid) as invalid:
            scorer.score(row | {name: wrong})
        assert invalid.value.code == "scoring.feature_type_invalid" and invalid.value.field == name
    # null is a missing value the model bins; integers are numbers; unknown keys are ignored
    assert 300 <= scorer.score(row | {name: None, "unrelated": "x"}).score <= 900
    assert scorer.score(row | {name: 3}).score == scorer.score(row | {name: 3.0}).score


def test_a_batch_reports_each_bad_row_by_its_index_and_scores_the_rest(artefacts: dict[str, Path]) -> None:
    scorer = Scorer.load(artefacts["gbm"])
    sample = rows(6)
    name = scorer.input_names[-1]
    sample[2] = sample[2] | {name: "high"}
    sample[4] = {k: v for k, v in sample[4].items() if k != name}
    outcome = scorer.score_rows([*sample, "not a row"])  # type: ignore[list-item]
    assert [(e.index, e.code, e.field) for e in outcome.errors] == [
        (2, "scoring.feature_type_invalid", name),
        (4, "scoring.features_missing", name),
        (6, "scoring.feature_type_invalid", "row"),
    ]
    assert [r is None for r in outcome.results] == [False, False, True, False, True, False, True]
    assert outcome.results[3] == scorer.score(sample[3])


def test_a_model_that_needs_inputs_the_store_lacks_is_refused(artefacts: dict[str, Path]) -> None:
    scorer = Scorer.load(artefacts["scorecard"])
    scorer.require_inputs(FEATURE_NAMES)
    needed = scorer.input_names[0]
    with pytest.raises(ModelInputsUnavailable) as raised:
        scorer.require_inputs([name for name in FEATURE_NAMES if name != needed])
    assert raised.value.details["missing"] == [needed]
    assert not any(name.startswith("bureau_") for name in scorer.input_names)  # all missing: never an input


def _copy(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_a_tampered_champion_is_reloaded_and_refused(artefacts: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert not champion_exists(root)
    registry_ = ModelRegistry(root)
    first = registry_.register(artefacts["scorecard"])
    assert champion_exists(root) and (MANIFEST_FILE, REGISTRY_FILE) == (registry.MANIFEST, registry.REGISTRY_FILE)
    cache = ChampionCache(root)
    assert cache.get().model_id == first and cache.get() is cache.get()  # loaded once
    second = registry_.register(artefacts["gbm"], role="champion")
    assert cache.get().model_id == second  # a new champion is picked up
    model_json = registry_.path_of(second) / "model.json"
    document = json.loads(model_json.read_text())
    document["calibration"]["intercept"] = 0.0
    model_json.write_text(json.dumps(document))
    with pytest.raises(ModelIntegrityFailed) as raised:
        cache.get()
    assert raised.value.code == "scoring.model_integrity_failed" and raised.value.http_status == 503
    loaded = Scorer.load(_copy(artefacts["scorecard"], tmp_path / "copy"))
    (tmp_path / "copy" / "model.json").write_text("{}")
    with pytest.raises(ModelIntegrityFailed):
        loaded.verify()
    with pytest.raises(ModelNotFound):
        ChampionCache(tmp_path / "empty").get()


def test_one_scorecard_score_imports_no_pandas(artefacts: dict[str, Path]) -> None:
    row = json.dumps(rows(1)[0])
    program = (
        "import json, sys\n"
        "from creditstack.scoring.serving import Scorer\n"
        f"scorer = Scorer.load({str(artefacts['scorecard'])!r})\n"
        f"result = scorer.score(json.loads({row!r}))\n"
        "print(json.dumps({'pandas': 'pandas' in sys.modules, 'score': result.score}))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60)
    answer = json.loads(done.stdout)
    assert answer["pandas"] is False and 300 <= answer["score"] <= 900
