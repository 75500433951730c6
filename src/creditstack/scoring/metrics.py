"""Discrimination, calibration, stability and fairness measures on plain numpy arrays.

`y` is 1 for bad and 0 for good throughout; `pd` is the probability of default; scores rise with quality.

- AUC (Mann–Whitney with tied ranks), Gini = 2·AUC − 1, KS (largest gap between the cumulative score
  distributions of bads and goods), Brier score, calibration by decile of PD, score bands.
- PSI of the score and CSI of each feature against the training baseline:
  Σ (actual − expected) · ln(actual / expected) over bins; below 0.10 stable, 0.10–0.25 watch,
  0.25 and above act (Siddiqi 2006; Yurdakul 2018).
- Fairness by a protected attribute given at evaluation time: approval-rate ratio of each group to the
  most-approved group, checked against the four-fifths rule (29 CFR § 1607.4(D)), and the
  equal-opportunity difference — the spread of approval rates among the truly good (Hardt et al. 2016).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt

from creditstack.scoring.columns import CATEGORY_MISSING, CATEGORY_UNSEEN, ColumnSpec, is_missing_token, parse_numeric

FloatArray = npt.NDArray[np.float64]

PSI_WATCH = 0.10
PSI_ACT = 0.25
FOUR_FIFTHS = 0.8
PSI_EPSILON = 1e-4
"""Proportions are floored at this before the logarithm, so an empty bin does not make PSI infinite."""
BASELINE_BINS = 10
ROC_POINTS_MAX = 200


class FeatureStability(TypedDict):
    """CSI of one feature against its training baseline, and its status."""

    csi: float
    status: str


class GroupFairness(TypedDict):
    """One protected group's row of the fairness report (rates are NaN for a group without rows)."""

    group: str
    rows: int
    approval_rate: float
    bad_rate: float
    true_positive_rate_goods: float
    approval_rate_ratio: NotRequired[float]
    four_fifths_pass: NotRequired[bool | None]


def average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks with ties given their average rank (as `scipy.stats.rankdata`), in numpy."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    first = np.nonzero(starts)[0]
    counts = np.diff(np.r_[first, len(values)])
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = (first + (counts + 1) / 2.0)[group]
    return ranks


def _labels(y: npt.ArrayLike) -> npt.NDArray[np.int8]:
    return np.asarray(y, dtype=np.int8)


def auc(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    """Area under the ROC curve of PD against bad; NaN when one class is absent."""
    labels = _labels(y)
    probabilities = np.asarray(pd, dtype=np.float64)
    bads = int(labels.sum())
    goods = len(labels) - bads
    if bads == 0 or goods == 0:
        return math.nan
    ranks = average_ranks(probabilities)
    return float((ranks[labels == 1].sum() - bads * (bads + 1) / 2) / (bads * goods))


def gini(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    return 2.0 * auc(y, pd) - 1.0


def ks(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    """Kolmogorov–Smirnov statistic between the PD distributions of bads and goods (ties grouped)."""
    labels = _labels(y)
    probabilities = np.asarray(pd, dtype=np.float64)
    bads = int(labels.sum())
    goods = len(labels) - bads
    if bads == 0 or goods == 0:
        return math.nan
    order = np.argsort(probabilities, kind="stable")
    sorted_pd, sorted_y = probabilities[order], labels[order]
    last_of_tie = np.r_[sorted_pd[1:] != sorted_pd[:-1], True]
    cum_bad = np.cumsum(sorted_y)[last_of_tie] / bads
    cum_good = np.cumsum(1 - sorted_y)[last_of_tie] / goods
    return float(np.max(np.abs(cum_bad - cum_good)))


def brier(y: npt.ArrayLike, pd: npt.ArrayLike) -> float:
    labels = _labels(y).astype(np.float64)
    return float(np.mean((np.asarray(pd, dtype=np.float64) - labels) ** 2))


def roc_points(y: npt.ArrayLike, pd: npt.ArrayLike) -> tuple[list[float], list[float]]:
    """False- and true-positive rates (bad = positive), thinned to at most `ROC_POINTS_MAX` points."""
    labels = _labels(y)
    probabilities = np.asarray(pd, dtype=np.float64)
    order = np.argsort(-probabilities, kind="stable")
    sorted_pd, sorted_y = probabilities[order], labels[order]
    last_of_tie = np.r_[sorted_pd[1:] != sorted_pd[:-1], True]
    tpr = np.r_[0.0, np.cumsum(sorted_y)[last_of_tie] / max(int(labels.sum()), 1)]
    fpr = np.r_[0.0, np.cumsum(1 - sorted_y)[last_of_tie] / max(len(labels) - int(labels.sum()), 1)]
    keep = np.unique(np.linspace(0, len(tpr) - 1, min(len(tpr), ROC_POINTS_MAX)).astype(int))
    return fpr[keep].tolist(), tpr[keep].tolist()


def calibration_by_decile(y: npt.ArrayLike, pd: npt.ArrayLike, groups: int = 10) -> list[dict[str, Any]]:
    """Rows sorted by PD, cut into `groups` equal-count groups: mean PD beside the observed bad rate."""
    labels = _labels(y)
    probabilities = np.asarray(pd, dtype=np.float64)
    order = np.argsort(probabilities, kind="stable")
    out = []
    for decile, index in enumerate(np.array_split(order, groups), start=1):
        if index.size == 0:
            continue
        out.append(
            {
                "decile": decile,
                "rows": int(index.size),
                "bads": int(labels[index].sum()),
                "pd_mean": round(float(probabilities[index].mean()), 6),
                "bad_rate": round(float(labels[index].mean()), 6),
                "pd_min": round(float(probabilities[index].min()), 6),
                "pd_max": round(float(probabilities[index].max()), 6),
            }
        )
    return out


def score_bands(
    y: npt.ArrayLike | None, score: npt.ArrayLike, *, width: int = 50, low: int = 300, high: int = 900
) -> list[dict[str, Any]]:
    """Counts (and bad rates, when outcomes are known) per score band of `width` points."""
    scores = np.asarray(score, dtype=np.float64)
    labels = None if y is None else _labels(y)
    out = []
    for start in range(low, high + 1, width):
        end = start + width
        mask = (scores >= start) & (scores < end) if end <= high else (scores >= start) & (scores <= high)
        rows = int(mask.sum())
        if rows == 0:
            continue
        band: dict[str, Any] = {
            "band": f"{start}-{min(end - 1, high)}",
            "rows": rows,
            "share": round(rows / max(len(scores), 1), 6),
        }
        if labels is not None:
            band["bads"] = int(labels[mask].sum())
            band["bad_rate"] = round(float(labels[mask].mean()), 6)
        out.append(band)
    return out


def performance_summary(y: npt.ArrayLike, pd: npt.ArrayLike, score: npt.ArrayLike | None = None) -> dict[str, Any]:
    labels = _labels(y)
    area = auc(labels, pd)
    summary: dict[str, Any] = {
        "rows": len(labels),
        "bad_rate": round(float(labels.mean()), 6) if len(labels) else math.nan,
        "auc": round(area, 6),
        "gini": round(2 * area - 1, 6),
        "ks": round(ks(labels, pd), 6),
        "brier": round(brier(labels, pd), 6),
        "calibration_by_decile": calibration_by_decile(labels, pd),
    }
    if score is not None:
        summary["score_bands"] = score_bands(labels, score)
    return summary


# ---------------------------------------------------------------------------------------------- stability
def stability_status(value: float) -> str:
    """`stable` below 0.10, `watch` from 0.10, `act` from 0.25."""
    if value >= PSI_ACT:
        return "act"
    if value >= PSI_WATCH:
        return "watch"
    return "stable"


def psi(expected: Sequence[float] | FloatArray, actual: Sequence[float] | FloatArray) -> float:
    """Population stability index between two distributions over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_baseline(
    values: FloatArray, special_codes: Sequence[float] = (), bins: int = BASELINE_BINS
) -> dict[str, Any]:
    """Quantile edges of the regular values, and the share of rows per bin, special and missing."""
    regular = values[~np.isnan(values) & ~np.isin(values, list(special_codes))]
    if regular.size:
        inner = np.unique(np.quantile(regular, np.linspace(0, 1, bins + 1)[1:-1]))
    else:
        inner = np.array([], dtype=np.float64)
    baseline = {"kind": "numeric", "edges": inner.tolist(), "special_codes": list(special_codes)}
    baseline["proportions"] = distribution(baseline, values).tolist()
    return baseline


def categorical_baseline(codes: npt.NDArray[np.int64], categories: int) -> dict[str, Any]:
    baseline: dict[str, Any] = {"kind": "categorical", "categories": categories}
    baseline["proportions"] = distribution(baseline, codes).tolist()
    return baseline


def distribution(baseline: Mapping[str, Any], values: npt.NDArray[Any]) -> FloatArray:
    """Shares of `values` in the baseline's bins: numeric → regular bins, special, missing;
    categorical → each category, missing, unseen."""
    total = max(len(values), 1)
    if baseline["kind"] == "numeric":
        numbers = np.asarray(values, dtype=np.float64)
        edges = np.asarray(baseline["edges"], dtype=np.float64)
        specials = np.isin(numbers, baseline["special_codes"])
        missing = np.isnan(numbers)
        regular = ~specials & ~missing
        counts = np.bincount(np.searchsorted(edges, numbers[regular], side="right"), minlength=len(edges) + 1)
        shares: FloatArray = np.r_[counts, specials.sum(), missing.sum()].astype(np.float64) / total
        return shares
    codes = np.asarray(values, dtype=np.int64)
    categories = int(baseline["categories"])
    known = codes >= 0
    counts = np.bincount(codes[known], minlength=categories)[:categories]
    category_shares: FloatArray = (
        np.r_[counts, (codes == CATEGORY_MISSING).sum(), (codes == CATEGORY_UNSEEN).sum()].astype(np.float64) / total
    )
    return category_shares


def feature_baselines(specs: Sequence[ColumnSpec], cleaned: Mapping[str, npt.NDArray[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in specs:
        values = cleaned[spec.name]
        if spec.kind == "numeric":
            out[spec.name] = numeric_baseline(np.asarray(values, dtype=np.float64), spec.special_codes)
        else:
            out[spec.name] = categorical_baseline(np.asarray(values, dtype=np.int64), len(spec.categories))
    return out


def score_baseline(scores: npt.ArrayLike, bins: int = BASELINE_BINS) -> dict[str, Any]:
    return numeric_baseline(np.asarray(scores, dtype=np.float64), (), bins)


def stability_report(
    score_base: Mapping[str, Any],
    feature_bases: Mapping[str, Mapping[str, Any]],
    scores: npt.ArrayLike,
    cleaned: Mapping[str, npt.NDArray[Any]],
) -> dict[str, Any]:
    """PSI of the score and CSI of every feature against the training baseline, with their status."""
    score_psi = psi(score_base["proportions"], distribution(score_base, np.asarray(scores, dtype=np.float64)))
    features: dict[str, FeatureStability] = {}
    for name, base in feature_bases.items():
        if name not in cleaned:
            continue
        value = psi(base["proportions"], distribution(base, cleaned[name]))
        features[name] = {"csi": round(value, 6), "status": stability_status(value)}
    worst = max([score_psi, *(f["csi"] for f in features.values())], default=0.0)
    return {
        "thresholds": {"watch": PSI_WATCH, "act": PSI_ACT},
        "score_psi": round(score_psi, 6),
        "score_status": stability_status(score_psi),
        "features": dict(sorted(features.items(), key=lambda item: -item[1]["csi"])),
        "overall_status": stability_status(worst),
    }


# ---------------------------------------------------------------------------------------------- fairness
def protected_groups(
    values: Sequence[Any] | npt.NDArray[Any], edges: Sequence[float] | None = None
) -> npt.NDArray[np.object_]:
    """Group labels for a protected attribute: its categories, or ranges for a numeric one (such as age).

    A column with more than ten distinct numbers is cut at `edges` (default: its quartiles)."""
    array = np.asarray(values, dtype=object)
    numbers = parse_numeric(array)
    present = ~np.isnan(numbers)
    given = np.fromiter((not is_missing_token(v) for v in array), dtype=bool, count=len(array))
    numeric = given.sum() > 0 and present.sum() >= 0.95 * given.sum()
    labels = np.empty(len(array), dtype=object)
    if numeric and (edges is not None or len(np.unique(numbers[present])) > 10):
        cut = (
            np.asarray(sorted(edges), dtype=np.float64)
            if edges is not None
            else np.unique(np.quantile(numbers[present], [0.25, 0.5, 0.75]))
        )
        index = np.searchsorted(cut, numbers, side="right")
        names = [f"< {_fmt(cut[0])}"] + [f"{_fmt(a)}–{_fmt(b)}" for a, b in itertools.pairwise(cut)]
        names.append(f"≥ {_fmt(cut[-1])}")
        for i in range(len(array)):
            labels[i] = names[index[i]] if present[i] else "missing"
        return labels
    for i, value in enumerate(array):
        labels[i] = "missing" if is_missing_token(value) else str(value).strip()
    return labels


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:.4g}"


def fairness_report(
    y: npt.ArrayLike, score: npt.ArrayLike, groups: npt.NDArray[np.object_], *, cutoff: float
) -> dict[str, Any]:
    """Approval (score ≥ cutoff) by group; ratio to the most-approved group against four-fifths, and the
    equal-opportunity difference (max − min approval rate among actual goods)."""
    labels = _labels(y)
    scores = np.asarray(score, dtype=np.float64)
    approved = scores >= cutoff
    rows: list[GroupFairness] = []
    for group in sorted({str(g) for g in groups}):
        mask = groups == group
        goods = mask & (labels == 0)
        rows.append(
            {
                "group": group,
                "rows": int(mask.sum()),
                "approval_rate": float(approved[mask].mean()) if mask.any() else math.nan,
                "bad_rate": float(labels[mask].mean()) if mask.any() else math.nan,
                "true_positive_rate_goods": float(approved[goods].mean()) if goods.any() else math.nan,
            }
        )
    rates = [r["approval_rate"] for r in rows if not math.isnan(r["approval_rate"])]
    best = max(rates, default=math.nan)
    for row in rows:
        ratio = row["approval_rate"] / best if best and best > 0 else math.nan
        row["approval_rate_ratio"] = round(ratio, 6)
        row["four_fifths_pass"] = bool(ratio >= FOUR_FIFTHS) if not math.isnan(ratio) else None
        row["approval_rate"] = round(row["approval_rate"], 6)
        row["bad_rate"] = round(row["bad_rate"], 6)
        row["true_positive_rate_goods"] = round(row["true_positive_rate_goods"], 6)
    tprs = [r["true_positive_rate_goods"] for r in rows if not math.isnan(r["true_positive_rate_goods"])]
    ratios = [r["approval_rate_ratio"] for r in rows if not math.isnan(r["approval_rate_ratio"])]
    return {
        "cutoff": cutoff,
        "approval_rate_overall": round(float(approved.mean()), 6),
        "groups": rows,
        "approval_rate_ratio_min": round(min(ratios), 6) if ratios else None,
        "four_fifths_pass": bool(min(ratios) >= FOUR_FIFTHS) if ratios else None,
        "equal_opportunity_difference": round(max(tprs) - min(tprs), 6) if tprs else None,
    }
