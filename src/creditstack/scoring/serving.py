"""Serving: a verified model scoring feature dicts in-process (numpy only), and in batch.

`Scorer.load(directory)` resolves a model artefact or a registry (its champion), checks every file
against the manifest's hashes (`registry.verify_model`; a pickle or a changed byte refuses to load), and
keeps the model in memory. `ChampionCache` follows a registry: it reloads — and so re-verifies — when the
champion changes or a file of its artefact changes on disk.

One score (`Scorer.score`) takes a dict of feature name → value: every model input must be present
(`null` where the value is missing), numbers for numeric inputs, text (or whole numbers) for categorical
ones; other keys are ignored. It returns the score on the model's scale (default 600 at 50:1 good:bad,
20 PDO, clipped to 300–900), the PD, the model id and at most four reasons, one per characteristic group,
with their adverse-action texts. The hot path is numpy (the scorecard's bin look-ups; LightGBM's booster
with one thread for one row) — no pandas.

In batch, `Scorer.score_rows` checks every row and returns the bad ones as `RecordError`s naming the row
(the good ones are scored all the same), and `Scorer.score_columns` scores whole columns vectorised.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from creditstack.core.errors import CreditstackError, LimitExceeded, RecordError
from creditstack.scoring.columns import (
    CATEGORY_MISSING,
    CATEGORY_UNSEEN,
    ColumnSpec,
    FloatArray,
    IntArray,
    ScoredBatch,
    group_index,
    reason_text,
)
from creditstack.scoring.domain import PD_MIN, REASONS_PER_SCORE_MAX, Reason, ScoreResult
from creditstack.scoring.errors import (
    FeaturesMissing,
    FeatureTypeInvalid,
    ModelInputsUnavailable,
    ModelIntegrityFailed,
    ModelNotFound,
)
from creditstack.scoring.gbm import GbmModel
from creditstack.scoring.registry import (
    MANIFEST,
    REGISTRY_FILE,
    Model,
    ModelRegistry,
    load_model,
    resolve_model_dir,
    verify_model,
)
from creditstack.scoring.scorecard import ScorecardModel

#: A reason's least impact (`columns.top_reasons_by_group`'s default): smaller is no reason.
REASON_IMPACT_MIN = 1e-9
#: Most rows `score_rows` takes in one call.
BATCH_ROWS_MAX = 1_000_000
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class RowScores:
    """The outcome of a batch of rows: a result per good row (`None` for a bad one) and every bad row's error."""

    results: list[ScoreResult | None]
    errors: list[RecordError]


class Scorer:
    """A loaded, hash-verified model with a strict single-row front door."""

    def __init__(self, model: Model, manifest: Mapping[str, Any], directory: Path) -> None:
        self.model = model
        self.manifest = dict(manifest)
        self.directory = directory
        self.model_id = str(manifest["model_id"])
        self.kind = str(manifest["kind"])
        self.content_sha256 = str(manifest["content_sha256"])
        self.inputs: tuple[ColumnSpec, ...] = tuple(model.preprocess.columns)
        self.input_names: tuple[str, ...] = tuple(spec.name for spec in self.inputs)
        self._lookups = [
            {category: code for code, category in enumerate(spec.categories)} if spec.kind == "categorical" else None
            for spec in self.inputs
        ]
        self._row: _ScorecardRow | _GbmRow = (
            _ScorecardRow(model, self.input_names)
            if isinstance(model, ScorecardModel)
            else _GbmRow(model, self.input_names)
        )

    @classmethod
    def load(cls, directory: str | Path) -> Scorer:
        """Verify (hashes, no pickle) and load a model directory, or a registry's champion."""
        path = resolve_model_dir(directory)
        manifest = verify_model(path)
        model = load_model(path)
        if model.model_id != manifest["model_id"]:  # the files changed between the two reads
            raise ModelIntegrityFailed("the model changed while it was being loaded", field="model")
        return cls(model, manifest, path)

    def verify(self) -> None:
        """Check the artefact on disk still is the one loaded (same content hash, files intact)."""
        if verify_model(self.directory)["content_sha256"] != self.content_sha256:
            raise ModelIntegrityFailed("the model on disk is not the one loaded", field="model")

    def require_inputs(self, available: Iterable[str]) -> None:
        missing = sorted(set(self.input_names) - set(available))
        if missing:
            raise ModelInputsUnavailable(
                f"model {self.model_id} needs inputs the feature store does not compute: {', '.join(missing[:20])}",
                field="model",
                missing=missing,
            )

    # ------------------------------------------------------------ one row
    def row_values(self, features: Mapping[str, Any]) -> list[float | int]:
        """Check one feature dict: per input, a float (NaN for missing) or a category code."""
        values: list[float | int] = []
        missing: list[str] = []
        for spec, lookup in zip(self.inputs, self._lookups, strict=True):
            value = features.get(spec.name, _ABSENT)
            if value is _ABSENT:
                missing.append(spec.name)
                continue
            values.append(_number(spec.name, value) if lookup is None else _category(spec.name, value, lookup))
        if missing:
            raise FeaturesMissing(
                f"{len(missing)} model input(s) missing: {', '.join(missing[:20])}; send null for a missing value",
                field="features",
                missing=missing,
            )
        return values

    def clean_row(self, features: Mapping[str, Any]) -> dict[str, FloatArray | IntArray]:
        """Check one feature dict and turn it into the model's cleaned one-row columns."""
        cleaned: dict[str, FloatArray | IntArray] = {}
        for spec, lookup, value in zip(self.inputs, self._lookups, self.row_values(features), strict=True):
            if lookup is None:
                cleaned[spec.name] = np.array([value], dtype=np.float64)
            else:
                cleaned[spec.name] = np.array([value], dtype=np.int64)
        return cleaned

    def score(self, features: Mapping[str, Any]) -> ScoreResult:
        """Score one feature dict: score, PD, model id and at most four reasons (one per group)."""
        return self._row.score(self.row_values(features))

    # ------------------------------------------------------------ many rows
    def score_columns(
        self, columns: Mapping[str, Sequence[Any] | np.ndarray[Any, Any]], *, with_reasons: bool = True
    ) -> ScoredBatch:
        """Score whole columns (numbers, or category texts) vectorised; every input column must be given."""
        missing = [name for name in self.input_names if name not in columns]
        if missing:
            raise FeaturesMissing(
                f"{len(missing)} model input column(s) missing: {', '.join(missing[:20])}",
                field="columns",
                missing=missing,
            )
        return self.model.score_batch(columns, with_reasons=with_reasons)

    def score_rows(self, rows: Sequence[Mapping[str, Any]], *, with_reasons: bool = True) -> RowScores:
        """Score many feature dicts; a bad row is reported by its index (0-based) and field, never raised."""
        if len(rows) > BATCH_ROWS_MAX:
            raise LimitExceeded(f"at most {BATCH_ROWS_MAX} rows per call", field="rows")
        width = len(self.inputs)
        numbers = np.full((len(rows), width), np.nan)
        codes = np.full((len(rows), width), CATEGORY_MISSING, dtype=np.int64)
        good = np.ones(len(rows), dtype=bool)
        errors: list[RecordError] = []
        for index, row in enumerate(rows):
            try:
                if not isinstance(row, Mapping):
                    raise FeatureTypeInvalid("a row is an object of feature name → value", field="row")
                missing = [name for name in self.input_names if name not in row]
                if missing:
                    raise FeaturesMissing(
                        f"{len(missing)} model input(s) missing: {', '.join(missing[:20])}",
                        field=missing[0],
                        missing=missing,
                    )
                for j, (spec, lookup) in enumerate(zip(self.inputs, self._lookups, strict=True)):
                    if lookup is None:
                        numbers[index, j] = _number(spec.name, row[spec.name])
                    else:
                        codes[index, j] = _category(spec.name, row[spec.name], lookup)
            except CreditstackError as error:
                good[index] = False
                errors.append(RecordError.from_error(index, error))
        chosen = np.nonzero(good)[0]
        cleaned: dict[str, FloatArray | IntArray] = {}
        for j, (spec, lookup) in enumerate(zip(self.inputs, self._lookups, strict=True)):
            cleaned[spec.name] = numbers[chosen, j] if lookup is None else codes[chosen, j]
        results: list[ScoreResult | None] = [None] * len(rows)
        if len(chosen):
            batch = self.model.score_cleaned(cleaned, with_reasons=with_reasons)
            for k, index in enumerate(chosen.tolist()):
                results[index] = batch.result(k)
        return RowScores(results, errors)


class _ScorecardRow:
    """One row through a scorecard in plain Python (`bisect`, list look-ups) — the vectorised path's
    arithmetic and reason selection step for step, without numpy's per-call cost on one-element arrays.
    It reads the look-up tables the model prepared for its own scorer, so texts and points are the same;
    tests/unit/scoring/test_serving.py checks that one row and the batch give equal results."""

    def __init__(self, model: ScorecardModel, input_names: Sequence[str]) -> None:
        position = {name: i for i, name in enumerate(input_names)}
        self.model = model
        self.columns = []
        for j, c in enumerate(model.characteristics):
            self.columns.append(
                (
                    position[c.spec.name],
                    c.spec.kind == "numeric",
                    list(c.splits),
                    frozenset(c.spec.special_codes),
                    c.special_bin,
                    c.missing_bin,
                    model._key_points[j].tolist(),
                    model._key_texts[j].tolist(),
                    model._key_values[j].tolist(),
                    model._best[j],
                    int(model._groups[j]),
                    c.spec,
                )
            )
        self.groups = max((column[10] for column in self.columns), default=-1) + 1

    def score(self, values: Sequence[float | int]) -> ScoreResult:
        model, scale = self.model, self.model.scale
        keys, points = [], []
        for index, numeric, splits, specials, special_bin, missing_bin, table, *_ in self.columns:
            value = values[index]
            if numeric:
                if math.isnan(value):
                    key = missing_bin
                elif value in specials:
                    key = special_bin
                else:
                    key = bisect.bisect_right(splits, value)
            else:
                key = int(value) + 2  # category code: −2 unseen → 0, −1 missing → 1
            keys.append(key)
            points.append(table[key])
        raw = np.add.reduce(np.array(points, dtype=np.float64)) + model.base_points if points else model.base_points
        pds = 1.0 / (1.0 + np.exp(-((scale.offset - np.array([raw])) / scale.factor)))
        pd = float(np.clip(pds, PD_MIN, 1.0 - PD_MIN)[0])
        score = int(min(max(round(float(raw)), scale.score_min), scale.score_max))
        impacts = [column[9] - points[j] for j, column in enumerate(self.columns)]
        reasons = []
        for j, impact in _top_reasons(impacts, [column[10] for column in self.columns], self.groups):
            spec = self.columns[j][11]
            text, value = self.columns[j][7][keys[j]], self.columns[j][8][keys[j]]
            reasons.append(Reason(spec.group, spec.name, str(text), float(impact), str(value)))
        return ScoreResult(score, pd, tuple(reasons), model.model_id)


class _GbmRow:
    """One row through the gradient-boosting model: the float row built in plain Python, LightGBM's
    `pred_contrib` with one thread, the calibration and scale on one-element arrays (the vectorised code's
    own functions), and the reasons picked in plain Python as `columns.top_reasons_by_group` picks them."""

    def __init__(self, model: GbmModel, input_names: Sequence[str]) -> None:
        position = {name: i for i, name in enumerate(input_names)}
        self.model = model
        self.features = [
            (
                position[f.spec.name],
                f.spec,
                frozenset(f.spec.special_codes),
                [math.nan, math.nan, *f.category_values] if f.spec.kind == "categorical" else None,
            )
            for f in model.features
        ]
        self.group_ids = [int(g) for g in group_index([f.spec for f in model.features])]
        self.groups = max(self.group_ids, default=-1) + 1
        self.slope = float(model.calibration.get("slope", 1.0))

    def score(self, values: Sequence[float | int]) -> ScoreResult:
        model, scale = self.model, self.model.scale
        row = []
        for index, _spec, specials, table in self.features:
            value = values[index]
            if table is not None:
                row.append(table[int(value) + 2])
            else:
                row.append(math.nan if value in specials else float(value))
        matrix = np.array([row], dtype=np.float64)
        contributions = np.asarray(model.booster.predict(matrix, pred_contrib=True, num_threads=1), dtype=np.float64)
        pd = model.pd_from_margin(contributions.sum(axis=1))
        raw = scale.offset - scale.factor * np.log(pd / (1.0 - pd))
        score = int(np.clip(np.round(raw), scale.score_min, scale.score_max)[0])
        impacts = (contributions[0, :-1] * self.slope).tolist()
        texts = model.reason_texts
        reasons = []
        for j, impact in _top_reasons(impacts, self.group_ids, self.groups):
            index, spec, _, _ = self.features[j]
            described = spec.describe(values[index])
            text = reason_text(texts.get(spec.name) or texts.get(spec.group), spec.label, described)
            reasons.append(Reason(spec.group, spec.name, text, float(impact), described))
        return ScoreResult(score, float(pd[0]), tuple(reasons), model.model_id)


def _top_reasons(impacts: Sequence[float], group_ids: Sequence[int], groups: int) -> list[tuple[int, float]]:
    """`columns.top_reasons_by_group` for one row: per group its first largest impact, the groups by
    impact (stable), at most four, none at or below `REASON_IMPACT_MIN`."""
    best_value = [-math.inf] * groups
    best_column = [-1] * groups
    for j, impact in enumerate(impacts):
        group = group_ids[j]
        if impact > best_value[group]:
            best_value[group] = impact
            best_column[group] = j
    order = sorted(range(groups), key=lambda g: -best_value[g])[:REASONS_PER_SCORE_MAX]
    return [(best_column[g], best_value[g]) for g in order if best_value[g] > REASON_IMPACT_MIN]


def _number(name: str, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise FeatureTypeInvalid(f"{name} takes a number or null, not {type(value).__name__}", field=name)
    number = float(value)
    return number if math.isfinite(number) else math.nan


def _category(name: str, value: Any, lookup: Mapping[str, int]) -> int:
    if value is None:
        return CATEGORY_MISSING
    if isinstance(value, str):
        text = value.strip()
    elif _whole(value):
        text = str(int(value))
    else:
        raise FeatureTypeInvalid(f"{name} takes text (a category) or null, not {type(value).__name__}", field=name)
    return lookup.get(text, CATEGORY_UNSEEN)


def _whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | np.integer):
        return True
    return isinstance(value, float | np.floating) and float(value).is_integer()


class ChampionCache:
    """The champion of a registry (or a fixed artefact directory), reloaded and re-verified whenever the
    champion or one of its files changes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._key: tuple[Any, ...] | None = None
        self._scorer: Scorer | None = None

    def _directory(self) -> Path:
        if (self.root / MANIFEST).is_file():
            return self.root
        if not (self.root / REGISTRY_FILE).is_file():
            raise ModelNotFound(f"no model registry at {self.root}", field="model")
        return ModelRegistry(self.root).path_of("champion")

    def get(self) -> Scorer:
        directory = self._directory()
        try:
            key = (
                str(directory),
                *sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in directory.iterdir() if p.is_file()),
            )
        except OSError as error:
            raise ModelNotFound(f"cannot read the model at {directory}", field="model") from error
        if self._scorer is None or key != self._key:
            self._scorer = Scorer.load(directory)
            self._key = key
        return self._scorer
