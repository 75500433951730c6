"""The gradient-boosting challenger: LightGBM with monotone constraints, a JSON calibration map, and
`pred_contrib` reasons.

Fitting (`fit_gbm`), inside the training rows only:

1. a stratified share (`calibration_share`, default 20 %) is held out for early stopping, the small
   tuning grid (`num_leaves_grid`, chosen by held-out log-loss) and the calibration map;
2. inputs become one float matrix: numbers as they are with sentinels as missing, categories as their
   smoothed bad rate on the fitting rows (so they are ordered by risk), missing and unseen as NaN;
3. monotone constraints are inferred per number from the fitting rows: the bad rate over up to ten
   quantile bins must have a rank correlation with the bin order of at least `monotone_rho_min` in
   absolute value, else the feature is left free; risk-ordered categories are constrained increasing;
4. the PD map — Platt (`logit PD = a + b · margin`, the default, which keeps the ranking and so the AUC)
   or isotonic (interpolated step function) — is fitted on the held-out margins and stored as JSON.

The artefact is LightGBM's own model text (`model.txt`) beside a JSON document (`model.json`) with the
preprocessing spec, encodings, constraints, calibration and scale. Serving builds the float matrix with
numpy and predicts with the booster (one thread for a single row). Reasons are the largest positive
contributions to the log-odds of bad (`pred_contrib`), one per characteristic group, at most four.
"""

# ruff: noqa: PLC0415 -- pandas, optbinning and scikit-learn are imported inside the fitting functions so
# that serving (and `import creditstack.scoring`) stays numpy-only and fast.

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from creditstack.scoring.columns import (
    ColumnSpec,
    FloatArray,
    IntArray,
    PreprocessSpec,
    ScoredBatch,
    ScoresColumns,
    build_reason_texts,
    check_training_rows,
    group_index,
    top_reasons_by_group,
)
from creditstack.scoring.domain import PD_MIN, REASONS_PER_SCORE_MAX, ScoreScale
from creditstack.scoring.errors import ModelFormatUnsupported
from creditstack.scoring.metrics import feature_baselines, performance_summary, score_baseline
from creditstack.scoring.scorecard import FitResult, fit_platt, stratified_holdout

if TYPE_CHECKING:
    import lightgbm as lgb

FORMAT = "creditstack.scoring.gbm"
FORMAT_VERSION = 1
TREES_MAX = 5000


@dataclass(frozen=True, slots=True)
class GbmParams:
    learning_rate: float = 0.05
    num_leaves_grid: tuple[int, ...] = (7, 15, 31)
    min_child_samples: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 5.0
    trees_max: int = 1000
    early_stopping_rounds: int = 100
    monotone: bool = True
    monotone_rho_min: float = 0.6
    category_smoothing: float = 20.0
    calibration: str = "platt"
    calibration_share: float = 0.2
    seed: int = 0
    num_threads: int = 0
    """Threads for training (0: LightGBM's default). Single-row serving always uses one."""

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["num_leaves_grid"] = list(self.num_leaves_grid)
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GbmParams:
        body = dict(data)
        if "num_leaves_grid" in body:
            body["num_leaves_grid"] = tuple(int(v) for v in body["num_leaves_grid"])
        return cls(**body)


@dataclass(frozen=True, slots=True)
class Feature:
    spec: ColumnSpec
    monotone: int
    category_values: tuple[float, ...] = ()
    """Categorical: the smoothed bad rate of each category code (the encoded value)."""

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.spec.name, "monotone": self.monotone}
        if self.spec.kind == "categorical":
            body["category_values"] = list(self.category_values)
        return body


def encode(features: Sequence[Feature], cleaned: Mapping[str, FloatArray | IntArray]) -> FloatArray:
    """rows × features float matrix for LightGBM (numpy only)."""
    rows = len(next(iter(cleaned.values()))) if cleaned else 0
    out = np.empty((rows, len(features)), dtype=np.float64)
    for j, feature in enumerate(features):
        values = cleaned[feature.spec.name]
        if feature.spec.kind == "numeric":
            column = np.array(values, dtype=np.float64)
            if feature.spec.special_codes:
                column[np.isin(column, feature.spec.special_codes)] = np.nan
        else:
            codes = np.asarray(values, dtype=np.int64)
            table = np.r_[np.nan, np.nan, np.asarray(feature.category_values, dtype=np.float64)]
            column = table[codes + 2]
        out[:, j] = column
    return out


class GbmModel(ScoresColumns):
    """A LightGBM booster with its encodings, calibration map and scale. Build with `fit_gbm` or `load`."""

    kind = "gbm"

    def __init__(
        self,
        *,
        booster_text: str,
        scale: ScoreScale,
        preprocess: PreprocessSpec,
        features: Sequence[Feature],
        calibration: Mapping[str, Any],
        params: Mapping[str, Any],
        reason_texts: Mapping[str, str] | None = None,
        baseline: Mapping[str, Any] | None = None,
        model_id: str = "",
    ) -> None:
        self.booster_text = booster_text
        import lightgbm as lgb  # imported on use: the CLI and the platform start without it

        self.booster = lgb.Booster(model_str=booster_text)
        self.scale = scale
        self.preprocess = preprocess
        self.features = tuple(features)
        self.calibration = dict(calibration)
        self.params = dict(params)
        self.reason_texts = dict(reason_texts or {})
        self.baseline = dict(baseline or {})
        self.model_id = model_id
        self._specs = tuple(f.spec for f in self.features)
        self._groups = group_index(self._specs)
        if self.calibration.get("method") == "isotonic":
            self._iso_x = np.asarray(self.calibration["x"], dtype=np.float64)
            self._iso_y = np.asarray(self.calibration["y"], dtype=np.float64)

    def margin(self, matrix: FloatArray) -> FloatArray:
        threads = 1 if matrix.shape[0] == 1 else 0
        return np.asarray(self.booster.predict(matrix, raw_score=True, num_threads=threads), dtype=np.float64)

    def pd_from_margin(self, margin: FloatArray) -> FloatArray:
        if self.calibration.get("method") == "isotonic":
            pd = np.interp(margin, self._iso_x, self._iso_y)
        else:
            logit = float(self.calibration["intercept"]) + float(self.calibration["slope"]) * margin
            pd = 1.0 / (1.0 + np.exp(-logit))
        return np.clip(pd, PD_MIN, 1.0 - PD_MIN)

    def score_cleaned(self, cleaned: Mapping[str, FloatArray | IntArray], *, with_reasons: bool = True) -> ScoredBatch:
        matrix = encode(self.features, cleaned)
        threads = 1 if matrix.shape[0] == 1 else 0
        if with_reasons:
            contributions = np.asarray(
                self.booster.predict(matrix, pred_contrib=True, num_threads=threads), dtype=np.float64
            )
            margin = contributions.sum(axis=1)
        else:
            margin = self.margin(matrix)
        pd = self.pd_from_margin(margin)
        scale = self.scale
        raw = scale.offset - scale.factor * np.log(pd / (1.0 - pd))
        score = np.clip(np.round(raw), scale.score_min, scale.score_max).astype(np.int64)
        rows = matrix.shape[0]
        if with_reasons:
            slope = float(self.calibration.get("slope", 1.0))
            reason_columns, impacts = top_reasons_by_group(contributions[:, :-1] * slope, self._groups)
            texts, values = build_reason_texts(reason_columns, cleaned, self._specs, self.reason_texts)
        else:
            reason_columns = np.full((rows, REASONS_PER_SCORE_MAX), -1, dtype=np.int64)
            impacts = np.zeros((rows, REASONS_PER_SCORE_MAX))
            texts = values = np.full((rows, REASONS_PER_SCORE_MAX), "", dtype=object)
        return ScoredBatch(score, pd, reason_columns, impacts, texts, values, self._specs, self.model_id)

    def importance(self) -> list[dict[str, Any]]:
        gains = self.booster.feature_importance(importance_type="gain")
        total = float(gains.sum()) or 1.0
        rows = [
            {"name": f.spec.name, "group": f.spec.group, "monotone": f.monotone, "gain_share": round(g / total, 6)}
            for f, g in zip(self.features, gains.tolist(), strict=True)
        ]
        return sorted(rows, key=lambda r: -r["gain_share"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON document stored beside `model.txt` (the booster text is not in it)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "scale": self.scale.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "features": [f.to_dict() for f in self.features],
            "calibration": self.calibration,
            "params": self.params,
            "reason_texts": self.reason_texts,
            "baseline": self.baseline,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], booster_text: str, *, model_id: str = "") -> GbmModel:
        if data.get("format") != FORMAT or int(data.get("format_version", 0)) != FORMAT_VERSION:
            raise ModelFormatUnsupported(f"not a {FORMAT} v{FORMAT_VERSION} artefact")
        preprocess = PreprocessSpec.from_dict(data["preprocess"])
        specs = {spec.name: spec for spec in preprocess.columns}
        features = [
            Feature(specs[f["name"]], int(f["monotone"]), tuple(float(v) for v in f.get("category_values", ())))
            for f in data["features"]
        ]
        return cls(
            booster_text=booster_text,
            scale=ScoreScale.from_dict(data["scale"]),
            preprocess=preprocess,
            features=features,
            calibration=data["calibration"],
            params=data.get("params", {}),
            reason_texts=data.get("reason_texts", {}),
            baseline=data.get("baseline", {}),
            model_id=model_id,
        )


# ---------------------------------------------------------------------------------------------- fitting
def infer_monotone(values: FloatArray, y: npt.NDArray[np.int8], rho_min: float, bins: int = 10) -> int:
    """+1 (risk rises with the value), −1, or 0 when the binned bad rate is not monotone enough."""
    from scipy.stats import spearmanr

    present = ~np.isnan(values)
    x, target = values[present], y[present]
    if x.size < 50 or np.unique(x).size < 2:
        return 0
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(edges, x, side="right")
    counts = np.bincount(index)
    used = counts > 0
    if used.sum() < 2:
        return 0
    rates = np.bincount(index, weights=target.astype(np.float64))[used] / counts[used]
    if used.sum() == 2:
        return int(np.sign(rates[1] - rates[0]))
    rho = float(spearmanr(np.arange(used.sum()), rates).statistic)
    if not math.isfinite(rho) or abs(rho) < rho_min:
        return 0
    return 1 if rho > 0 else -1


def _category_values(codes: IntArray, y: npt.NDArray[np.int8], categories: int, smoothing: float) -> tuple[float, ...]:
    prior = float(y.mean())
    known = codes >= 0
    counts = np.bincount(codes[known], minlength=categories)[:categories].astype(np.float64)
    bads = np.bincount(codes[known], weights=y[known].astype(np.float64), minlength=categories)[:categories]
    return tuple(float(v) for v in (bads + smoothing * prior) / (counts + smoothing))


def _booster_params(params: GbmParams, num_leaves: int, constraints: Sequence[int]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "objective": "binary",
        "learning_rate": params.learning_rate,
        "num_leaves": num_leaves,
        "min_child_samples": params.min_child_samples,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": params.lambda_l2,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": params.num_threads,
        "verbosity": -1,
    }
    if params.monotone and any(constraints):
        body["monotone_constraints"] = list(constraints)
        body["monotone_constraints_method"] = "intermediate"  # "advanced" is ~10× slower on HMEQ
    return body


def _log_loss(y: npt.NDArray[np.int8], margin: FloatArray) -> float:
    p = np.clip(1.0 / (1.0 + np.exp(-margin)), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_gbm(
    spec: PreprocessSpec,
    cleaned: Mapping[str, FloatArray | IntArray],
    y: npt.NDArray[np.int8],
    *,
    params: GbmParams | None = None,
    scale: ScoreScale | None = None,
    reason_texts: Mapping[str, str] | None = None,
) -> FitResult:
    """Fit on cleaned training rows (`spec.clean` of the training columns) and labels (1 = bad)."""
    import lightgbm as lgb
    from sklearn.isotonic import IsotonicRegression

    params = params or GbmParams()
    scale = scale or ScoreScale()
    if params.calibration not in ("platt", "isotonic"):
        raise ValueError("calibration must be 'platt' or 'isotonic'")
    check_training_rows(y)
    fit_index, held_index = stratified_holdout(y, params.calibration_share, params.seed)
    fit_rows: dict[str, FloatArray | IntArray] = {name: v[fit_index] for name, v in cleaned.items()}
    held_rows: dict[str, FloatArray | IntArray] = {name: v[held_index] for name, v in cleaned.items()}
    y_fit, y_held = y[fit_index], y[held_index]

    features = []
    for column in spec.columns:
        if column.kind == "numeric":
            values = np.array(fit_rows[column.name], dtype=np.float64)
            if column.special_codes:
                values[np.isin(values, column.special_codes)] = np.nan
            monotone = infer_monotone(values, y_fit, params.monotone_rho_min) if params.monotone else 0
            features.append(Feature(column, monotone))
        else:
            codes = np.asarray(fit_rows[column.name], dtype=np.int64)
            rates = _category_values(codes, y_fit, len(column.categories), params.category_smoothing)
            features.append(Feature(column, 1 if params.monotone else 0, rates))
    x_fit, x_held = encode(features, fit_rows), encode(features, held_rows)
    constraints = [f.monotone for f in features]
    names = [f"f{j}" for j in range(len(features))]

    best: tuple[float, lgb.Booster, int] | None = None
    notes = []
    for num_leaves in params.num_leaves_grid:
        booster = lgb.train(
            _booster_params(params, num_leaves, constraints),
            lgb.Dataset(x_fit, y_fit, feature_name=names, free_raw_data=True),
            num_boost_round=min(params.trees_max, TREES_MAX),
            valid_sets=[lgb.Dataset(x_held, y_held, feature_name=names)],
            callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
        )
        margin = np.asarray(
            booster.predict(x_held, raw_score=True, num_iteration=booster.best_iteration), dtype=np.float64
        )
        loss = _log_loss(y_held, margin)
        notes.append(f"num_leaves={num_leaves}: {booster.best_iteration} trees, held-out log-loss {loss:.5f}")
        if best is None or loss < best[0]:
            best = (loss, booster, num_leaves)
    assert best is not None
    _, booster, num_leaves = best
    booster_text = booster.model_to_string(num_iteration=booster.best_iteration)
    margin_held = np.asarray(lgb.Booster(model_str=booster_text).predict(x_held, raw_score=True), dtype=np.float64)

    calibration: dict[str, Any]
    if params.calibration == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=PD_MIN, y_max=1 - PD_MIN).fit(margin_held, y_held)
        calibration = {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    else:
        a, b = fit_platt(margin_held, y_held)
        calibration = {"method": "platt", "intercept": a, "slope": b}
    chosen = params.to_dict() | {"num_leaves": num_leaves, "trees": booster.best_iteration}
    model = GbmModel(
        booster_text=booster_text,
        scale=scale,
        preprocess=spec,
        features=features,
        calibration=calibration,
        params=chosen,
        reason_texts=reason_texts,
    )
    held_batch = model.score_cleaned(held_rows, with_reasons=False)
    fit_batch = model.score_cleaned(fit_rows, with_reasons=False)
    model.baseline = {
        "score": score_baseline(fit_batch.score),
        "features": feature_baselines(spec.columns, fit_rows),
    }
    validation = performance_summary(y_held, held_batch.pd, held_batch.score)
    return FitResult(model, validation, notes)
