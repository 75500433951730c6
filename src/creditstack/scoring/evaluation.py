"""Fitting and evaluating models on a table, and the repeated stratified cross-validation harness.

`fit_model` is the training use case (spec fitted on the training rows, then a scorecard or a GBM);
`evaluate_model` measures a stored model on labelled rows. `cross_validate` compares our two models with
a default LightGBM (`LGBMClassifier()` with its defaults) and a default optbinning scorecard
(`Scorecard(BinningProcess(names), LogisticRegression())`) in the same run, on the same folds:
`RepeatedStratifiedKFold(n_splits, n_repeats, random_state=seed)`. Everything learnt from data — column
typing, sentinels, categories, binning, monotone constraints, tuning, early stopping, calibration — is
fitted inside each training fold; the test fold is only scored. All four models see the same input
columns (identifiers and excluded protected attributes removed, messy cells cleaned by the fold's spec).
"""

# ruff: noqa: PLC0415 -- pandas, optbinning and scikit-learn are imported inside the fitting functions so
# that serving (and `import creditstack.scoring`) stays numpy-only and fast.

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from creditstack.scoring.columns import (
    FloatArray,
    IntArray,
    PreprocessSpec,
    encode_target,
    fit_preprocess,
    infer_bad_value,
)
from creditstack.scoring.domain import MODEL_KINDS, ScoreScale
from creditstack.scoring.errors import TargetColumnMissing, UnknownModelKind
from creditstack.scoring.gbm import GbmModel, GbmParams, fit_gbm
from creditstack.scoring.metrics import auc, brier, ks, performance_summary
from creditstack.scoring.scorecard import (
    FitResult,
    ScorecardModel,
    ScorecardParams,
    fit_scorecard,
    optbinning_warnings_silenced,
)

Columns = Mapping[str, Sequence[Any] | npt.NDArray[Any]]
Progress = Callable[[int, int, str], None]
OUR_MODELS = ("scorecard", "gbm")
BASELINES = ("lightgbm_default", "scorecard_default")
DEFAULT_SEED = 20240601


def _subset(columns: Columns, index: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[Any]]:
    return {name: np.asarray(values, dtype=object)[index] for name, values in columns.items()}


def fit_model(
    kind: str,
    columns: Columns,
    target: str,
    *,
    bad_value: str | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
    special_codes: Mapping[str, Sequence[float]] | None = None,
    groups: Mapping[str, str] | None = None,
    scale: ScoreScale | None = None,
    params: Mapping[str, Any] | None = None,
    reason_texts: Mapping[str, str] | None = None,
) -> FitResult:
    """Fit the preprocessing spec and a `scorecard` or `gbm` on all rows with a target."""
    if kind not in MODEL_KINDS:
        raise UnknownModelKind(f"model kind must be one of {MODEL_KINDS}, not {kind!r}", field="model")
    spec = fit_preprocess(
        columns, target, bad_value=bad_value, exclude=exclude, categorical=categorical,
        special_codes=special_codes, groups=groups,
    )  # fmt: skip
    labels, present = spec.target_labels(columns[target])
    rows = np.nonzero(present)[0]
    cleaned = spec.clean(_subset(columns, rows))
    result = _fit_cleaned(kind, spec, cleaned, labels[rows], scale=scale, params=params, reason_texts=reason_texts)
    dropped_rows = int((~present).sum())
    if dropped_rows:
        result.notes.append(f"{dropped_rows} rows without a target value were not used")
    return result


def _fit_cleaned(
    kind: str,
    spec: PreprocessSpec,
    cleaned: Mapping[str, FloatArray | IntArray],
    y: npt.NDArray[np.int8],
    *,
    scale: ScoreScale | None = None,
    params: Mapping[str, Any] | None = None,
    reason_texts: Mapping[str, str] | None = None,
) -> FitResult:
    if kind == "scorecard":
        return fit_scorecard(
            spec, cleaned, y, params=ScorecardParams(**(params or {})), scale=scale, reason_texts=reason_texts
        )
    return fit_gbm(spec, cleaned, y, params=GbmParams.from_dict(params or {}), scale=scale, reason_texts=reason_texts)


def evaluate_model(model: ScorecardModel | GbmModel, columns: Columns, *, target: str | None = None) -> dict[str, Any]:
    """AUC, Gini, KS, Brier, calibration by decile and score bands of a model on labelled rows."""
    target_name = target or model.preprocess.target
    if target_name not in columns:
        raise TargetColumnMissing(f"target column {target_name!r} is not in the data", field="target")
    labels, present = encode_target(columns[target_name], model.preprocess.bad_value)
    rows = np.nonzero(present)[0]
    subset = _subset(columns, rows)
    batch = model.score_batch(subset, with_reasons=False)
    summary = performance_summary(labels[rows], batch.pd, batch.score)
    return {"model_id": model.model_id, "kind": model.kind, "target": target_name} | summary


# ---------------------------------------------------------------------------------------------- baselines
def _baseline_frame(
    spec: PreprocessSpec, cleaned: Mapping[str, FloatArray | IntArray], *, categorical_dtype: bool
) -> Any:
    import pandas as pd

    data: dict[str, Any] = {}
    for column in spec.columns:
        values = cleaned[column.name]
        if column.kind == "numeric":
            data[column.name] = np.asarray(values, dtype=np.float64)
            continue
        codes = np.where(np.asarray(values) >= 0, values, -1)
        if categorical_dtype:
            data[column.name] = pd.Categorical.from_codes(codes, categories=list(column.categories))
        else:
            table = np.array([*column.categories, None], dtype=object)
            data[column.name] = pd.Series(table[codes], dtype=object)
    return pd.DataFrame(data)


def fit_default_lightgbm(
    spec: PreprocessSpec, cleaned: Mapping[str, FloatArray | IntArray], y: npt.NDArray[np.int8], seed: int
) -> Callable[[Mapping[str, FloatArray | IntArray]], FloatArray]:
    """`LGBMClassifier()` with its defaults (a seed for reproducibility), categories as pandas categoricals."""
    import lightgbm as lgb

    classifier = lgb.LGBMClassifier(random_state=seed, verbose=-1)
    classifier.fit(_baseline_frame(spec, cleaned, categorical_dtype=True), y)

    def predict(rows: Mapping[str, FloatArray | IntArray]) -> FloatArray:
        frame = _baseline_frame(spec, rows, categorical_dtype=True)
        # predict_proba is annotated as possibly sparse or a list (pred_contrib=True); here it is a dense array
        probabilities = np.asarray(classifier.predict_proba(frame), dtype=np.float64)
        return probabilities[:, 1]

    return predict


def fit_default_scorecard(
    spec: PreprocessSpec, cleaned: Mapping[str, FloatArray | IntArray], y: npt.NDArray[np.int8]
) -> Callable[[Mapping[str, FloatArray | IntArray]], FloatArray]:
    """optbinning's `Scorecard(BinningProcess(names), LogisticRegression())` with every default."""
    from optbinning import BinningProcess, Scorecard
    from sklearn.linear_model import LogisticRegression

    names = spec.names
    categorical = [c.name for c in spec.columns if c.kind == "categorical"]
    scorecard = Scorecard(BinningProcess(names, categorical_variables=categorical), LogisticRegression())
    with optbinning_warnings_silenced():
        scorecard.fit(_baseline_frame(spec, cleaned, categorical_dtype=False), y)

    def predict(rows: Mapping[str, FloatArray | IntArray]) -> FloatArray:
        frame = _baseline_frame(spec, rows, categorical_dtype=False)
        with optbinning_warnings_silenced():
            return np.asarray(scorecard.predict_proba(frame)[:, 1], dtype=np.float64)

    return predict


# ---------------------------------------------------------------------------------------------- CV
@dataclass(frozen=True, slots=True)
class FoldResult:
    model: str
    repeat: int
    fold: int
    auc: float
    ks: float
    brier: float
    fit_seconds: float
    reasons: bool


def cross_validate(
    columns: Columns,
    target: str,
    *,
    bad_value: str | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
    n_splits: int = 5,
    n_repeats: int = 5,
    seed: int = DEFAULT_SEED,
    models: Sequence[str] = (*OUR_MODELS, *BASELINES),
    gbm_params: Mapping[str, Any] | None = None,
    scorecard_params: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Repeated stratified k-fold out-of-fold AUC, KS and Brier: mean and sample sd per model."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    if target not in columns:
        raise TargetColumnMissing(f"target column {target!r} is not in the data", field="target")
    resolved_bad = bad_value if bad_value is not None else infer_bad_value(columns[target])
    labels, present = encode_target(columns[target], resolved_bad)
    rows = np.nonzero(present)[0]
    data = _subset(columns, rows)
    y_all = labels[rows]
    splitter = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    total = n_splits * n_repeats
    results: list[FoldResult] = []
    for index, (train, test) in enumerate(splitter.split(np.zeros(len(y_all)), y_all)):
        repeat, fold = divmod(index, n_splits)
        train_cols, test_cols = _subset(data, train), _subset(data, test)
        spec = fit_preprocess(train_cols, target, bad_value=resolved_bad, exclude=exclude, categorical=categorical)
        clean_train, clean_test = spec.clean(train_cols), spec.clean(test_cols)
        y_train, y_test = y_all[train], y_all[test]
        fold_seed = seed + index
        for name in models:
            started = time.perf_counter()
            with warnings.catch_warnings():
                # sklearn's feature-name check when LightGBM/optbinning mix frames and arrays; not ours
                warnings.filterwarnings("ignore", message="X does not have valid feature names")
                pd_test, reasons = _fit_predict(
                    name, spec, clean_train, y_train, clean_test, fold_seed, gbm_params, scorecard_params
                )
            elapsed = time.perf_counter() - started
            results.append(
                FoldResult(
                    name,
                    repeat,
                    fold,
                    auc(y_test, pd_test),
                    ks(y_test, pd_test),
                    brier(y_test, pd_test),
                    elapsed,
                    reasons,
                )
            )
        if progress is not None:
            progress(index + 1, total, f"repeat {repeat + 1} fold {fold + 1}")
    return {
        "rows": len(y_all),
        "bad_rate": round(float(y_all.mean()), 6),
        "bad_value": resolved_bad,
        "n_splits": n_splits,
        "n_repeats": n_repeats,
        "seed": seed,
        "excluded": list(exclude),
        "models": summarise(results),
    }


def _fit_predict(
    name: str,
    spec: PreprocessSpec,
    clean_train: Mapping[str, FloatArray | IntArray],
    y_train: npt.NDArray[np.int8],
    clean_test: Mapping[str, FloatArray | IntArray],
    seed: int,
    gbm_params: Mapping[str, Any] | None,
    scorecard_params: Mapping[str, Any] | None,
) -> tuple[FloatArray, bool]:
    if name == "scorecard":
        params = {"seed": seed} | dict(scorecard_params or {})
        model = _fit_cleaned("scorecard", spec, clean_train, y_train, params=params).model
        return model.score_cleaned(clean_test, with_reasons=False).pd, True
    if name == "gbm":
        params = {"seed": seed} | dict(gbm_params or {})
        model = _fit_cleaned("gbm", spec, clean_train, y_train, params=params).model
        return model.score_cleaned(clean_test, with_reasons=False).pd, True
    if name == "lightgbm_default":
        return fit_default_lightgbm(spec, clean_train, y_train, seed)(clean_test), False
    if name == "scorecard_default":
        return fit_default_scorecard(spec, clean_train, y_train)(clean_test), False
    raise UnknownModelKind(f"unknown model {name!r}", field="models")


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    sd = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), sd


def summarise(results: Sequence[FoldResult]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r.model for r in results):
        rows = [r for r in results if r.model == name]
        body: dict[str, Any] = {"folds": len(rows), "reasons": rows[0].reasons}
        for metric in ("auc", "ks", "brier", "fit_seconds"):
            mean, sd = _mean_sd([getattr(r, metric) for r in rows])
            body[metric] = {"mean": round(mean, 5), "sd": round(sd, 5)}
        out[name] = body
    return out
