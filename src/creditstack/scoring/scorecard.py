"""The WoE logistic scorecard: fitted with optbinning, stored and served as a JSON points table.

Fitting (`fit_scorecard`, training only, pandas allowed):

1. the preprocessing spec is fitted on the training rows (`columns.fit_preprocess`);
2. a stratified share of the rows (`calibration_share`, default 20 %) is held out;
3. optbinning's `BinningProcess` bins every input on the rest — monotonic trend (ascending or descending,
   chosen by the solver) for numbers, event-rate ordered groups for categories, sentinels in a special
   bin, missing values in a missing bin; characteristics with an information value below `iv_min` are
   dropped, then those whose logistic coefficient has the wrong sign (a higher WoE must never add risk),
   one at a time;
4. optbinning's `Scorecard` (binning process + logistic regression) is fitted on the kept
   characteristics, and a Platt map `logit(PD) = a + b · logit_model` is fitted on the held-out rows;
5. both are folded into one points table on the `ScoreScale`:
   `points(bin) = −factor · b · β · WoE(bin) + base / characteristics`, so the sum of the points is the
   (unclipped) score, and the PD is read back from it.

Serving (`ScorecardModel`) uses numpy only: bin lookup by `searchsorted` on the stored splits, category
codes through a lookup array, sentinels to the special bin, missing values and unseen categories to the
missing bin (whose points are neutral, WoE 0, when training had none). Reasons are the characteristics
furthest below their best points (over bins that held training rows), one per group, at most four.
"""

# ruff: noqa: PLC0415 -- pandas, optbinning and scikit-learn are imported inside the fitting functions so
# that serving (and `import creditstack.scoring`) stays numpy-only and fast.

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from creditstack.scoring.columns import (
    ColumnSpec,
    FloatArray,
    IntArray,
    PreprocessSpec,
    ScoredBatch,
    ScoresColumns,
    check_training_rows,
    group_index,
    reason_text,
    top_reasons_by_group,
)
from creditstack.scoring.domain import PD_MIN, REASONS_PER_SCORE_MAX, ScoreScale
from creditstack.scoring.errors import ModelFormatUnsupported
from creditstack.scoring.metrics import feature_baselines, performance_summary, score_baseline

# The bundled highspy build does not load (undefined symbol); cvxpy logs that on import through optbinning.
# optbinning does not use HiGHS, so only that one message is filtered.
logging.getLogger("__cvxpy__").addFilter(lambda record: "importing solver HIGHS" not in record.getMessage())

FORMAT = "creditstack.scoring.scorecard"
EMPIRICAL = {"metric_special": "empirical", "metric_missing": "empirical"}
"""Special and missing bins get their own WoE (optbinning's default would set both to 0)."""
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ScorecardParams:
    monotonic_trend: str = "auto_asc_desc"
    max_n_bins: int = 10
    min_bin_size: float = 0.05
    iv_min: float = 0.01
    enforce_coefficient_signs: bool = True
    regularisation_c: float = 1.0
    calibration_share: float = 0.2
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Characteristic:
    """One row group of the points table: how a cleaned value finds its bin, and each bin's points."""

    spec: ColumnSpec
    splits: tuple[float, ...]
    """Numeric: bin i holds splits[i−1] ≤ x < splits[i] (optbinning's convention)."""
    category_bins: tuple[int, ...]
    """Categorical: bin index per category code of `spec.categories`; −1 when the category has no bin."""
    bin_labels: tuple[str, ...]
    """Regular bins, then `Special`, then `Missing`."""
    points: tuple[float, ...]
    counts: tuple[int, ...]
    bads: tuple[int, ...]
    woe: tuple[float, ...]
    coefficient: float
    iv: float

    @property
    def special_bin(self) -> int:
        return len(self.bin_labels) - 2

    @property
    def missing_bin(self) -> int:
        return len(self.bin_labels) - 1

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.spec.name, "kind": self.spec.kind}
        if self.spec.kind == "numeric":
            body["splits"] = list(self.splits)
        else:
            body["category_bins"] = list(self.category_bins)
        body["coefficient"] = self.coefficient
        body["iv"] = self.iv
        body["bins"] = [
            {"label": label, "points": points, "count": count, "bads": bads, "woe": woe}
            for label, points, count, bads, woe in zip(
                self.bin_labels, self.points, self.counts, self.bads, self.woe, strict=True
            )
        ]
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], spec: ColumnSpec) -> Characteristic:
        bins = data["bins"]
        return cls(
            spec=spec,
            splits=tuple(float(v) for v in data.get("splits", ())),
            category_bins=tuple(int(v) for v in data.get("category_bins", ())),
            bin_labels=tuple(str(b["label"]) for b in bins),
            points=tuple(float(b["points"]) for b in bins),
            counts=tuple(int(b["count"]) for b in bins),
            bads=tuple(int(b["bads"]) for b in bins),
            woe=tuple(float(b["woe"]) for b in bins),
            coefficient=float(data["coefficient"]),
            iv=float(data["iv"]),
        )


class ScorecardModel(ScoresColumns):
    """A scorecard points table with a numpy-only scorer. Build it with `fit_scorecard` or `from_dict`."""

    kind = "scorecard"

    def __init__(
        self,
        *,
        scale: ScoreScale,
        preprocess: PreprocessSpec,
        characteristics: Sequence[Characteristic],
        base_points: float,
        calibration: Mapping[str, Any],
        logistic_intercept: float,
        params: Mapping[str, Any],
        reason_texts: Mapping[str, str] | None = None,
        baseline: Mapping[str, Any] | None = None,
        model_id: str = "",
    ) -> None:
        self.scale = scale
        self.preprocess = preprocess
        self.characteristics = tuple(characteristics)
        self.base_points = base_points
        self.calibration = dict(calibration)
        self.logistic_intercept = logistic_intercept
        self.params = dict(params)
        self.reason_texts = dict(reason_texts or {})
        self.baseline = dict(baseline or {})
        self.model_id = model_id
        self._specs = tuple(c.spec for c in self.characteristics)
        self._groups = group_index(self._specs) if self._specs else np.zeros(0, dtype=np.int64)
        self._key_points: list[FloatArray] = []
        self._key_texts: list[npt.NDArray[np.object_]] = []
        self._key_values: list[npt.NDArray[np.object_]] = []
        self._category_keys: list[IntArray] = []
        self._best: list[float] = []
        for characteristic in self.characteristics:
            self._prepare(characteristic)

    # The "key" of a value is its bin (numeric) or its category code + 2 (categorical: 0 unseen,
    # 1 missing), so points, texts and values are one array look-up each.
    def _prepare(self, c: Characteristic) -> None:
        points = np.asarray(c.points, dtype=np.float64)
        held = np.asarray(c.counts) > 0
        self._best.append(float(points[held].max()) if held.any() else float(points.max()))
        label, templates = c.spec.label, self.reason_texts
        template = templates.get(c.spec.name) or templates.get(c.spec.group)
        if c.spec.kind == "numeric":
            values = [_bin_words(bin_label) for bin_label in c.bin_labels]
            values[c.special_bin] = "a special code"
            values[c.missing_bin] = "not provided"
            self._key_points.append(points)
            self._key_values.append(np.array(values, dtype=object))
            self._category_keys.append(np.zeros(0, dtype=np.int64))
        else:
            bins = [c.missing_bin, c.missing_bin] + [b if b >= 0 else c.missing_bin for b in c.category_bins]
            values = ["a value not seen in the model's development data", "not provided", *c.spec.categories]
            self._key_points.append(points[np.asarray(bins, dtype=np.int64)])
            self._key_values.append(np.array(values, dtype=object))
            self._category_keys.append(np.asarray(bins, dtype=np.int64))
        self._key_texts.append(np.array([reason_text(template, label, v) for v in values], dtype=object))

    def keys(self, cleaned: Mapping[str, FloatArray | IntArray]) -> IntArray:
        """rows × characteristics look-up keys (see `_prepare`)."""
        rows = len(next(iter(cleaned.values()))) if cleaned else 0
        out = np.empty((rows, len(self.characteristics)), dtype=np.int64)
        for j, c in enumerate(self.characteristics):
            values = cleaned[c.spec.name]
            if c.spec.kind == "numeric":
                numbers = np.asarray(values, dtype=np.float64)
                key = np.searchsorted(np.asarray(c.splits, dtype=np.float64), numbers, side="right")
                if c.spec.special_codes:
                    key[np.isin(numbers, c.spec.special_codes)] = c.special_bin
                key[np.isnan(numbers)] = c.missing_bin
            else:
                key = np.asarray(values, dtype=np.int64) + 2
            out[:, j] = key
        return out

    def points_matrix(self, keys: IntArray) -> FloatArray:
        out = np.empty(keys.shape, dtype=np.float64)
        for j in range(keys.shape[1]):
            out[:, j] = self._key_points[j][keys[:, j]]
        return out

    def score_cleaned(self, cleaned: Mapping[str, FloatArray | IntArray], *, with_reasons: bool = True) -> ScoredBatch:
        keys = self.keys(cleaned)
        points = self.points_matrix(keys)
        raw = points.sum(axis=1) + self.base_points
        scale = self.scale
        pd = 1.0 / (1.0 + np.exp(-((scale.offset - raw) / scale.factor)))
        pd = np.clip(pd, PD_MIN, 1.0 - PD_MIN)
        score = np.clip(np.round(raw), scale.score_min, scale.score_max).astype(np.int64)
        if not with_reasons:
            none = np.full((len(score), REASONS_PER_SCORE_MAX), -1, dtype=np.int64)
            empty = np.full(none.shape, "", dtype=object)
            return ScoredBatch(score, pd, none, np.zeros(none.shape), empty, empty, self._specs, self.model_id)
        impact = np.asarray(self._best, dtype=np.float64)[None, :] - points
        reason_columns, reason_impacts = top_reasons_by_group(impact, self._groups)
        texts = np.full(reason_columns.shape, "", dtype=object)
        values = np.full(reason_columns.shape, "", dtype=object)
        for slot in range(reason_columns.shape[1]):
            chosen = reason_columns[:, slot]
            for j in np.unique(chosen[chosen >= 0]).tolist():
                rows = np.nonzero(chosen == j)[0]
                key = keys[rows, j]
                texts[rows, slot] = self._key_texts[j][key]
                values[rows, slot] = self._key_values[j][key]
        return ScoredBatch(score, pd, reason_columns, reason_impacts, texts, values, self._specs, self.model_id)

    def bin_tables(self) -> list[dict[str, Any]]:
        return [c.to_dict() | {"label": c.spec.label, "group": c.spec.group} for c in self.characteristics]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "scale": self.scale.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "characteristics": [c.to_dict() for c in self.characteristics],
            "base_points": self.base_points,
            "calibration": self.calibration,
            "logistic_intercept": self.logistic_intercept,
            "params": self.params,
            "reason_texts": self.reason_texts,
            "baseline": self.baseline,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, model_id: str = "") -> ScorecardModel:
        if data.get("format") != FORMAT or int(data.get("format_version", 0)) != FORMAT_VERSION:
            raise ModelFormatUnsupported(f"not a {FORMAT} v{FORMAT_VERSION} artefact")
        preprocess = PreprocessSpec.from_dict(data["preprocess"])
        specs = {spec.name: spec for spec in preprocess.columns}
        return cls(
            scale=ScoreScale.from_dict(data["scale"]),
            preprocess=preprocess,
            characteristics=[Characteristic.from_dict(c, specs[c["name"]]) for c in data["characteristics"]],
            base_points=float(data["base_points"]),
            calibration=dict(data["calibration"]),
            logistic_intercept=float(data["logistic_intercept"]),
            params=data.get("params", {}),
            reason_texts=data.get("reason_texts", {}),
            baseline=data.get("baseline", {}),
            model_id=model_id,
        )


def _bin_words(label: str) -> str:
    """optbinning's `[a, b)` bin labels as words: `(-inf, 0.50)` → `below 0.5`, `[2.50, inf)` → `2.5 or more`."""
    text = label.strip()
    if not (text[:1] in "[(" and text[-1:] in "])" and "," in text):
        return text
    low, high = (part.strip() for part in text[1:-1].split(",", 1))
    if low == "-inf" and high == "inf":
        return "any value"
    if low == "-inf":
        return f"below {_trim(high)}"
    if high == "inf":
        return f"{_trim(low)} or more"
    return f"from {_trim(low)} to below {_trim(high)}"


def _trim(number: str) -> str:
    try:
        value = float(number)
    except ValueError:
        return number
    return str(int(value)) if value.is_integer() else f"{value:g}"


# ---------------------------------------------------------------------------------------------- fitting
@dataclass(slots=True)
class FitResult:
    """A fitted model and what was measured while fitting it, on the held-out calibration rows."""

    model: Any
    validation: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _frame(spec: PreprocessSpec, cleaned: Mapping[str, FloatArray | IntArray], names: Sequence[str]) -> Any:
    import pandas as pd  # training only: serving never imports pandas

    data: dict[str, Any] = {}
    specs = {s.name: s for s in spec.columns}
    for name in names:
        column = specs[name]
        if column.kind == "numeric":
            data[name] = np.asarray(cleaned[name], dtype=np.float64)
        else:
            categories = np.array([*column.categories, None, None], dtype=object)
            data[name] = pd.Series(categories[np.asarray(cleaned[name], dtype=np.int64)], dtype=object)
    return pd.DataFrame(data)


def _binning_process(names: Sequence[str], spec: PreprocessSpec, params: ScorecardParams) -> Any:
    from optbinning import BinningProcess

    specs = {s.name: s for s in spec.columns}
    fit_params: dict[str, dict[str, Any]] = {}
    for name in names:
        column = specs[name]
        entry: dict[str, Any] = {}
        if column.kind == "numeric":
            entry["monotonic_trend"] = params.monotonic_trend
            if column.special_codes:
                entry["special_codes"] = list(column.special_codes)
        fit_params[name] = entry
    return BinningProcess(
        list(names),
        categorical_variables=[n for n in names if specs[n].kind == "categorical"],
        max_n_bins=params.max_n_bins,
        min_bin_size=params.min_bin_size,
        binning_fit_params=fit_params,
    )


def _logistic(c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=1000)


def fit_platt(raw_logit: FloatArray, y: npt.NDArray[np.int8]) -> tuple[float, float]:
    """`logit(PD) = a + b · raw_logit`, fitted by maximum likelihood (no penalty to speak of)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return 0.0, 1.0
    fitted = LogisticRegression(C=1e6, max_iter=1000).fit(raw_logit.reshape(-1, 1), y)
    slope = float(fitted.coef_[0, 0])
    if not math.isfinite(slope) or slope <= 0:
        return 0.0, 1.0
    return float(fitted.intercept_[0]), slope


def stratified_holdout(y: npt.NDArray[np.int8], share: float, seed: int) -> tuple[IntArray, IntArray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    fit_index, held_index = train_test_split(index, test_size=share, stratify=y, random_state=seed)
    return np.sort(fit_index).astype(np.int64), np.sort(held_index).astype(np.int64)


@contextmanager
def optbinning_warnings_silenced() -> Iterator[None]:
    """Two pandas-3 deprecations inside optbinning 1.0 (not in our code) are ignored, by message: its WoE
    transform writes floats into the object columns of categorical variables ("Setting an item of
    incompatible dtype") and `Scorecard.fit` calls `reset_index(inplace=True)`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting an item of incompatible dtype is deprecated")
        warnings.filterwarnings("ignore", message="The inplace keyword in DataFrame.reset_index is deprecated")
        yield


def fit_scorecard(
    spec: PreprocessSpec,
    cleaned: Mapping[str, FloatArray | IntArray],
    y: npt.NDArray[np.int8],
    *,
    params: ScorecardParams | None = None,
    scale: ScoreScale | None = None,
    reason_texts: Mapping[str, str] | None = None,
) -> FitResult:
    """Fit on cleaned training rows (`spec.clean` of the training columns) and labels (1 = bad)."""
    with optbinning_warnings_silenced():
        return _fit_scorecard(spec, cleaned, y, params=params, scale=scale, reason_texts=reason_texts)


def _fit_scorecard(
    spec: PreprocessSpec,
    cleaned: Mapping[str, FloatArray | IntArray],
    y: npt.NDArray[np.int8],
    *,
    params: ScorecardParams | None = None,
    scale: ScoreScale | None = None,
    reason_texts: Mapping[str, str] | None = None,
) -> FitResult:
    params = params or ScorecardParams()
    scale = scale or ScoreScale()
    check_training_rows(y)
    fit_index, held_index = stratified_holdout(y, params.calibration_share, params.seed)
    fit_rows: dict[str, FloatArray | IntArray] = {name: v[fit_index] for name, v in cleaned.items()}
    held_rows: dict[str, FloatArray | IntArray] = {name: v[held_index] for name, v in cleaned.items()}
    y_fit, y_held = y[fit_index], y[held_index]
    notes: list[str] = []

    names = spec.names
    frame = _frame(spec, fit_rows, names)
    process = _binning_process(names, spec, params).fit(frame, y_fit)
    ivs = {name: float(process.get_binned_variable(name).binning_table.iv) for name in names}
    kept = [name for name in names if ivs[name] >= params.iv_min]
    for name in names:
        if name not in kept:
            notes.append(f"{name}: dropped, information value {ivs[name]:.4f} < {params.iv_min}")
    if not kept:
        kept = [max(names, key=lambda n: ivs[n])]
    if params.enforce_coefficient_signs:
        woe = np.asarray(process.transform(frame, metric="woe", **EMPIRICAL), dtype=np.float64)
        position = {name: i for i, name in enumerate(names)}
        while len(kept) > 1:
            fitted = _logistic(params.regularisation_c).fit(woe[:, [position[n] for n in kept]], y_fit)
            coefficients = fitted.coef_[0]
            worst = int(np.argmax(coefficients))
            if coefficients[worst] <= 0:
                break
            notes.append(f"{kept[worst]}: dropped, its coefficient had the wrong sign given the others")
            kept.pop(worst)

    from optbinning import Scorecard

    scorecard = Scorecard(_binning_process(kept, spec, params), _logistic(params.regularisation_c))
    scorecard.fit(frame[kept], y_fit, **EMPIRICAL)
    process = scorecard.binning_process_
    coefficients = scorecard.estimator_.coef_[0]
    intercept = float(scorecard.estimator_.intercept_[0])

    specs = {s.name: s for s in spec.columns}
    tables = []
    for name, beta in zip(kept, coefficients, strict=True):
        tables.append(_table_from_binning(process.get_binned_variable(name), specs[name], float(beta)))
    raw_fit_model = _raw_logit(tables, intercept)
    optbinning_logit = scorecard.estimator_.decision_function(
        scorecard.binning_process_.transform(frame[kept], metric="woe", **EMPIRICAL)
    )
    agreement = float(np.max(np.abs(raw_fit_model(fit_rows) - optbinning_logit)))

    a, b = fit_platt(raw_fit_model(held_rows), y_held)
    base = scale.offset - scale.factor * (a + b * intercept)
    per = base / len(tables)
    characteristics = []
    for table in tables:
        points = tuple(round(-scale.factor * b * table["beta"] * w + per, 6) for w in table["woe"])
        characteristics.append(
            Characteristic(
                spec=table["spec"],
                splits=table["splits"],
                category_bins=table["category_bins"],
                bin_labels=table["labels"],
                points=points,
                counts=table["counts"],
                bads=table["bads"],
                woe=table["woe"],
                coefficient=table["beta"],
                iv=table["iv"],
            )
        )
    kept_spec = PreprocessSpec(
        spec.target,
        spec.bad_value,
        tuple(specs[name] for name in kept),
        spec.dropped | {name: "not selected" for name in names if name not in kept},
    )
    model = ScorecardModel(
        scale=scale,
        preprocess=kept_spec,
        characteristics=characteristics,
        base_points=0.0,
        calibration={"method": "platt", "intercept": a, "slope": b},
        logistic_intercept=intercept,
        params=params.to_dict(),
        reason_texts=reason_texts,
    )
    held_batch = model.score_cleaned(held_rows)
    fit_batch = model.score_cleaned(fit_rows)
    model.baseline = {
        "score": score_baseline(fit_batch.score),
        "features": feature_baselines(kept_spec.columns, fit_rows),
    }
    model = ScorecardModel.from_dict(model.to_dict())
    validation = performance_summary(y_held, held_batch.pd, held_batch.score)
    validation["optbinning_logit_max_abs_difference"] = agreement
    return FitResult(model, validation, notes)


def _table_from_binning(optb: Any, spec: ColumnSpec, beta: float) -> dict[str, Any]:
    table = optb.binning_table.build()
    body = table.iloc[:-1]  # drop Totals
    labels = tuple(v if isinstance(v, str) else _category_label(v) for v in body["Bin"])
    counts = tuple(int(v) for v in body["Count"])
    bads = tuple(int(v) for v in body["Event"])
    woe = tuple(float(v) if v != "" else 0.0 for v in body["WoE"])
    if spec.kind == "numeric":
        splits = tuple(float(v) for v in optb.splits)
        category_bins: tuple[int, ...] = ()
    else:
        splits = ()
        lookup = {category: code for code, category in enumerate(spec.categories)}
        bins = [-1] * len(spec.categories)
        for index, group in enumerate(optb.splits):
            for category in group:
                code = lookup.get(str(category))
                if code is not None:
                    bins[code] = index
        category_bins = tuple(bins)
    return {
        "spec": spec,
        "splits": splits,
        "category_bins": category_bins,
        "labels": labels,
        "counts": counts,
        "bads": bads,
        "woe": woe,
        "beta": beta,
        "iv": float(optb.binning_table.iv),
    }


def _category_label(values: Any) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _raw_logit(tables: Sequence[Mapping[str, Any]], intercept: float) -> Any:
    """The uncalibrated model, `β₀ + Σ β·WoE`, over cleaned columns — via a provisional points table."""
    characteristics = [
        Characteristic(
            spec=t["spec"],
            splits=t["splits"],
            category_bins=t["category_bins"],
            bin_labels=t["labels"],
            points=tuple(t["beta"] * w for w in t["woe"]),
            counts=t["counts"],
            bads=t["bads"],
            woe=t["woe"],
            coefficient=t["beta"],
            iv=t["iv"],
        )
        for t in tables
    ]
    scorer = ScorecardModel(
        scale=ScoreScale(),
        preprocess=PreprocessSpec("", "", tuple(c.spec for c in characteristics)),
        characteristics=characteristics,
        base_points=0.0,
        calibration={},
        logistic_intercept=intercept,
        params={},
    )

    def raw(cleaned: Mapping[str, FloatArray | IntArray]) -> FloatArray:
        keys = scorer.keys(cleaned)
        return np.asarray(scorer.points_matrix(keys).sum(axis=1) + intercept, dtype=np.float64)

    return raw
