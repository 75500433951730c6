"""A self-contained HTML validation report: no scripts, no CDN, plots as inline SVG written here.

Sections: the model's identity (id, content hash, training-data fingerprint, parameters), performance on
the given rows (AUC, Gini, KS, Brier), ROC curve, KS curve (cumulative bads and goods by score),
calibration by decile (mean PD against observed bad rate), score distribution by outcome, score bands,
and the bin tables with points (scorecard) or the features with their monotone constraint and gain share
(gradient boosting). Every text from data or the manifest is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from creditstack.scoring.gbm import GbmModel
from creditstack.scoring.metrics import performance_summary, roc_points
from creditstack.scoring.scorecard import ScorecardModel

WIDTH, HEIGHT, MARGIN = 420, 300, 46
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#7f7f7f")
DISTRIBUTION_BAND_POINTS = 20


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _scale(values: Sequence[float], low: float, high: float, out_low: float, out_high: float) -> list[float]:
    span = (high - low) or 1.0
    return [out_low + (v - low) / span * (out_high - out_low) for v in values]


def _axes(
    title: str, x_label: str, y_label: str, x_range: tuple[float, float], y_range: tuple[float, float]
) -> list[str]:
    left, right, top, bottom = MARGIN, WIDTH - 12, 28, HEIGHT - MARGIN + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{_esc(title)}</text>',
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333"/>',
        f'<text x="{(left + right) / 2}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11">{_esc(x_label)}</text>',
        f'<text x="12" y="{(top + bottom) / 2}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 12 {(top + bottom) / 2})">{_esc(y_label)}</text>',
    ]
    for i in range(5):
        fx = x_range[0] + (x_range[1] - x_range[0]) * i / 4
        fy = y_range[0] + (y_range[1] - y_range[0]) * i / 4
        px = _scale([fx], *x_range, left, right)[0]
        py = _scale([fy], *y_range, bottom, top)[0]
        parts.append(f'<text x="{px:.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10">{fx:.3g}</text>')
        parts.append(f'<text x="{left - 4}" y="{py + 3:.1f}" text-anchor="end" font-size="10">{fy:.3g}</text>')
    return parts


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
) -> str:
    """An SVG line chart; `series` is (name, xs, ys)."""
    xs_all = [x for _, xs, _ in series for x in xs] or [0.0, 1.0]
    ys_all = [y for _, _, ys in series for y in ys] or [0.0, 1.0]
    xr = x_range or (min(xs_all), max(xs_all))
    yr = y_range or (min(0.0, *ys_all), max(ys_all))
    left, right, top, bottom = MARGIN, WIDTH - 12, 28, HEIGHT - MARGIN + 6
    parts = _axes(title, x_label, y_label, xr, yr)
    if diagonal:
        parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{top}" stroke="#aaa" stroke-dasharray="4 3"/>')
    for index, (name, xs, ys) in enumerate(series):
        px = _scale(list(xs), *xr, left, right)
        py = _scale(list(ys), *yr, bottom, top)
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(px, py, strict=True))
        colour = COLOURS[index % len(COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{right - 4}" y="{top + 14 + 13 * index}" text-anchor="end" font-size="11" '
            f'fill="{colour}">{_esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, x_label: str, y_label: str
) -> str:
    """Grouped bars; `series` is (name, one value per label)."""
    top_value = max([v for _, values in series for v in values] or [1.0]) or 1.0
    left, right, top, bottom = MARGIN, WIDTH - 12, 28, HEIGHT - MARGIN + 6
    parts = _axes(title, x_label, y_label, (0, 1), (0, top_value))
    parts = [p for p in parts if 'text-anchor="middle" font-size="10"' not in p]
    slot = (right - left) / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for s_index, (name, values) in enumerate(series):
        colour = COLOURS[s_index % len(COLOURS)]
        for l_index, value in enumerate(values):
            height = (bottom - top) * value / top_value
            x = left + slot * l_index + slot * 0.1 + bar * s_index
            parts.append(
                f'<rect x="{x:.1f}" y="{bottom - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                f'fill="{colour}" fill-opacity="0.8"><title>{_esc(labels[l_index])}: {value:.4f}</title></rect>'
            )
        parts.append(
            f'<text x="{right - 4}" y="{top + 14 + 13 * s_index}" text-anchor="end" font-size="11" '
            f'fill="{colour}">{_esc(name)}</text>'
        )
    step = max(1, len(labels) // 6)
    for l_index in range(0, len(labels), step):
        x = left + slot * (l_index + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10">{_esc(labels[l_index])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def ks_curve(y: npt.NDArray[np.int8], score: npt.NDArray[np.int64]) -> tuple[list[float], list[float], list[float]]:
    thresholds = np.unique(score)
    bads, goods = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    bad_scores, good_scores = np.sort(score[y == 1]), np.sort(score[y == 0])
    cum_bad = np.searchsorted(bad_scores, thresholds, side="right") / bads
    cum_good = np.searchsorted(good_scores, thresholds, side="right") / goods
    return thresholds.astype(float).tolist(), cum_bad.tolist(), cum_good.tolist()


def build_report(
    model: ScorecardModel | GbmModel,
    manifest: Mapping[str, Any],
    y: npt.NDArray[np.int8],
    pd: npt.NDArray[np.float64],
    score: npt.NDArray[np.int64],
    *,
    data_name: str = "",
) -> str:
    """The HTML document for a model scored on labelled rows."""
    summary = performance_summary(y, pd, score)
    fpr, tpr = roc_points(y, pd)
    thresholds, cum_bad, cum_good = ks_curve(y, score)
    deciles = summary["calibration_by_decile"]
    scale = model.scale
    low = scale.score_min + (int(score.min()) - scale.score_min) // DISTRIBUTION_BAND_POINTS * DISTRIBUTION_BAND_POINTS
    edges = list(range(low, int(score.max()) + DISTRIBUTION_BAND_POINTS + 1, DISTRIBUTION_BAND_POINTS))
    good_hist = np.histogram(score[y == 0], bins=edges)[0] / max(int((y == 0).sum()), 1)
    bad_hist = np.histogram(score[y == 1], bins=edges)[0] / max(int((y == 1).sum()), 1)
    calibration_top = max([0.01, *(d["pd_mean"] for d in deciles), *(d["bad_rate"] for d in deciles)])
    plots = [
        line_chart(
            f"ROC (AUC {summary['auc']:.4f})", [("model", fpr, tpr)], x_label="false-positive rate (goods)",
            y_label="true-positive rate (bads)", x_range=(0, 1), y_range=(0, 1), diagonal=True,
        ),
        line_chart(
            f"KS {summary['ks']:.4f}", [("bads", thresholds, cum_bad), ("goods", thresholds, cum_good)],
            x_label="score", y_label="cumulative share", y_range=(0, 1),
        ),
        line_chart(
            "Calibration by decile", [("observed", [d["pd_mean"] for d in deciles], [d["bad_rate"] for d in deciles])],
            x_label="mean predicted PD", y_label="observed bad rate",
            x_range=(0, calibration_top),
            y_range=(0, calibration_top),
            diagonal=True,
        ),
        bar_chart(
            "Score distribution by outcome", [str(e) for e in edges[:-1]],
            [("goods", good_hist.tolist()), ("bads", bad_hist.tolist())], x_label="score band start",
            y_label="share of outcome",
        ),
    ]  # fmt: skip
    metric_rows = [[k, summary[k]] for k in ("rows", "bad_rate", "auc", "gini", "ks", "brier")]
    decile_rows = [[d["decile"], d["rows"], d["bads"], d["pd_mean"], d["bad_rate"]] for d in deciles]
    band_rows = [[b["band"], b["rows"], b["share"], b["bads"], b["bad_rate"]] for b in summary["score_bands"]]
    sections = [
        f"<h1>Validation report — {_esc(manifest.get('model_id', model.model_id))}</h1>",
        _table(
            ["field", "value"],
            [
                ["kind", model.kind],
                ["content sha256", manifest.get("content_sha256", "")],
                ["training data sha256", manifest.get("training_data", {}).get("sha256", "")],
                ["training rows", manifest.get("training_data", {}).get("rows", "")],
                ["target", f"{model.preprocess.target} (bad = {model.preprocess.bad_value})"],
                ["validation data", data_name],
                ["score scale", json.dumps(scale.to_dict())],
            ],
        ),
        "<h2>Performance</h2>",
        _table(["metric", "value"], metric_rows),
        '<div class="plots">' + "".join(f"<figure>{p}</figure>" for p in plots) + "</div>",
        "<h2>Calibration by decile</h2>",
        _table(["decile", "rows", "bads", "mean PD", "bad rate"], decile_rows),
        "<h2>Score bands</h2>",
        _table(["band", "rows", "share", "bads", "bad rate"], band_rows),
    ]
    if isinstance(model, ScorecardModel):
        sections.append("<h2>Bin tables</h2>")
        for table in model.bin_tables():
            sections.append(
                f"<h3>{_esc(table['label'])} <small>(coefficient {table['coefficient']:.4f}, "
                f"IV {table['iv']:.4f})</small></h3>"
            )
            sections.append(
                _table(
                    ["bin", "count", "bads", "bad rate", "WoE", "points"],
                    [
                        [
                            b["label"],
                            b["count"],
                            b["bads"],
                            b["bads"] / b["count"] if b["count"] else 0.0,
                            b["woe"],
                            b["points"],
                        ]
                        for b in table["bins"]
                    ],
                )
            )
    else:
        sections.append("<h2>Features</h2>")
        sections.append(
            _table(
                ["feature", "group", "monotone constraint", "gain share"],
                [[r["name"], r["group"], r["monotone"], r["gain_share"]] for r in model.importance()],
            )
        )
    dropped = model.preprocess.dropped
    if dropped:
        sections.append("<h2>Columns not used</h2>")
        sections.append(_table(["column", "reason"], sorted(dropped.items())))
    notes = manifest.get("notes") or []
    if notes:
        sections.append("<h2>Fit notes</h2><ul>" + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
        "th{background:#f3f3f3}.plots{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Validation report {_esc(model.model_id)}</title><style>{style}</style></head><body>"
        + "".join(sections)
        + "</body></html>"
    )
