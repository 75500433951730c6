"""Scoring, for the platform operator: the registry's models, the scores lending decided with, their stability
against the champion's training data, and the fairness reports saved in the registry.

Reads, each set-based or bounded:

- the registry's manifests and the champion (`ScoringService.registry_models`, `champion`: verified by hash
  when loaded, kept while its files do not change);
- lending's `decision_scores` — one GROUP BY over the stored decisions: application month, model, score and
  outcome → how many (a few thousand rows at most, however many applications);
- lending's `decision_features` — the feature vectors stored with the latest month's champion decisions, at
  most `CSI_VECTORS_MAX` of them;
- the saved fairness reports (`ScoringService.fairness_reports`, at most 120 files).

An application is dated with the business date it was made on, so a month's counts stop changing once the
business date has left it: those are kept per month (`ClosedMonths`), so a month end costs one more month's
read, and only the current month is read on every view; the latest month's CSI is kept for the business
day (`cache.report_cache`). PSI and CSI are `scoring.metrics`' own functions on those counts and
vectors (`ScoringService.score_stability`, `feature_stability`). No customer appears: counts, scores and
rates only.
"""

# ruff: noqa: PLC0415 -- scoring.metrics (numpy) is imported when the page is drawn: the app starts without it

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from creditstack.analytics.portfolio import ratio
from creditstack.app.console.auth import OperatorSession
from creditstack.app.console.cache import report_cache
from creditstack.app.console.charts import HEIGHT, SCHEMA, Spec
from creditstack.app.console.nav import NavEntry
from creditstack.app.console.web import percent, render
from creditstack.app.platform import Platform
from creditstack.core.errors import CreditstackError
from creditstack.core.security import Role
from creditstack.lending.service import DECISION_SCORE_BAND_WIDTH
from creditstack.scoring.provider import CUTOFF_DEFAULT

router = APIRouter(prefix="/scoring")

OPERATOR = frozenset({Role.PLATFORM_OPERATOR})
NAV = (NavEntry("Scoring", "Models and monitoring", "/console/scoring", OPERATOR),)

#: Application months shown: the business date's and the ones before it.
MONTHS_SHOWN = 24
#: Most stored feature vectors read for the latest month's CSI (the month's first ones; CSI over ten bins
#: moves by well under 0.01 between two samples of this size).
CSI_VECTORS_MAX = 2_000
#: The histogram's bands: lending's (20 points).
BAND_WIDTH = DECISION_SCORE_BAND_WIDTH
MEAN_PLACES = Decimal("0.1")
ModelQuery = Annotated[str | None, Query(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._:-]+$")]
STATUS_COLOURS = {"stable": "#4caf7d", "watch": "#e6a700", "act": "#d7301f"}


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


# ---------------------------------------------------------------------------------------------- months


def month_start(day: date) -> date:
    return day.replace(day=1)


def months_before(first: date, months: int) -> date:
    """The first of the month `months` months before `first` (a first of a month)."""
    index = first.year * 12 + first.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def month_after(first: date) -> date:
    return months_before(first, -1)


# ---------------------------------------------------------------------------------------------- the counts


@dataclass(slots=True)
class MonthCounts:
    """One application month's decisions by one model: how many, approved, declined, and the scores' sum."""

    month: str
    model: str
    decisions: int = 0
    approved: int = 0
    declined: int = 0
    score_sum: int = 0

    @property
    def approval_rate(self) -> Decimal:
        return ratio(self.approved, self.decisions)

    @property
    def mean_score(self) -> Decimal:
        if not self.decisions:
            return Decimal(0)
        return (Decimal(self.score_sum) / self.decisions).quantize(MEAN_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class DecisionSummary:
    """Lending's score counts (`band` = the exact score) gathered for the page."""

    months: dict[tuple[str, str], MonthCounts]  # (month, model) → counts, oldest month first
    bands: dict[tuple[str, str, int], list[int]]  # (model, month, band's lowest score) → [approved, declined]
    scores: dict[tuple[str, str], Counter[int]]  # (model, month) → score → how many

    def models(self) -> list[tuple[str, int]]:
        """Each model that decided, with how many decisions, most first."""
        totals: Counter[str] = Counter()
        for (_, model), counts in self.months.items():
            totals[model] += counts.decisions
        return sorted(totals.items(), key=lambda item: (-item[1], item[0]))

    def rows_of(self, model: str) -> list[MonthCounts]:
        return [counts for (_, m), counts in self.months.items() if m == model]


def summarise(rows: Iterable[Mapping[str, Any]], band_width: int = BAND_WIDTH) -> DecisionSummary:
    """Gather `decision_scores(band_width=1)` rows (each score apart) into per-month counts, `band_width`
    histogram bands and per-month score counts (exact: integer counts and sums only)."""
    months: dict[tuple[str, str], MonthCounts] = {}
    bands: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    scores: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for row in sorted(rows, key=lambda r: (r["month"], r["model"], r["band"], r["outcome"])):
        month, model, score, n = row["month"], row["model"], int(row["band"]), int(row["decisions"])
        counts = months.setdefault((month, model), MonthCounts(month, model))
        counts.decisions += n
        counts.score_sum += score * n
        approved = row["outcome"] == "approved"
        if approved:
            counts.approved += n
        else:
            counts.declined += n
        bands[(model, month, score // band_width * band_width)][0 if approved else 1] += n
        scores[(model, month)][score] += n
    return DecisionSummary(months, dict(bands), dict(scores))


def pick_model(models: Sequence[tuple[str, int]], wanted: str | None, champion: str | None) -> str | None:
    """The model whose scores the histogram shows: the one asked for, else the champion, else the busiest."""
    names = [name for name, _ in models]
    for choice in (wanted, champion):
        if choice in names:
            return choice
    return names[0] if names else None


# ---------------------------------------------------------------------------------------------- charts


def _spec(description: str, values: list[dict[str, Any]], parse: Mapping[str, str], **body: Any) -> Spec:
    return {
        "$schema": SCHEMA,
        "description": description,
        "data": {"values": values, "format": {"parse": dict(parse)}},
        "config": {"view": {"stroke": None}, "axis": {"labelLimit": 200}, "legend": {"labelLimit": 320}},
        "width": "container",
    } | body


def _threshold_rules(axis: str, thresholds: Sequence[tuple[float, str, str]]) -> list[dict[str, Any]]:
    """A dashed rule and its label per threshold (value, label, colour) across the chart. Each layer has one
    empty datum of its own: with the chart's data it would draw one rule per row."""
    layers: list[dict[str, Any]] = []
    once: dict[str, Any] = {"values": [{}]}
    for value, label, colour in thresholds:
        layers.append(
            {
                "data": once,
                "mark": {"type": "rule", "strokeDash": [5, 4], "color": colour},
                "encoding": {axis: {"datum": value}},
            }
        )
        text = {"type": "text", "color": colour, "fontSize": 11}
        if axis == "y":
            text |= {"align": "right", "baseline": "bottom", "x": "width", "dy": -2}
        else:
            text |= {"align": "left", "baseline": "top", "y": 0, "dx": 3}
        layers.append({"data": once, "mark": text, "encoding": {axis: {"datum": value}, "text": {"value": label}}})
    return layers


def thresholds() -> dict[str, float]:
    """`scoring.metrics`' stability thresholds (PSI and CSI: watch, act) and the four-fifths ratio."""
    from creditstack.scoring.metrics import FOUR_FIFTHS, PSI_ACT, PSI_WATCH

    return {"watch": PSI_WATCH, "act": PSI_ACT, "four_fifths": FOUR_FIFTHS}


def _stability_rules(axis: str) -> list[dict[str, Any]]:
    limits = thresholds()
    return _threshold_rules(
        axis,
        (
            (limits["watch"], f"watch {limits['watch']:.2f}", STATUS_COLOURS["watch"]),
            (limits["act"], f"act {limits['act']:.2f}", STATUS_COLOURS["act"]),
        ),
    )


def calibration_chart(deciles: Sequence[Mapping[str, Any]], model_id: str) -> Spec:
    """Predicted (mean PD) beside observed bad rate per PD decile of the validation fold."""
    values = []
    for row in deciles:
        for series, key in (("predicted (mean PD)", "pd_mean"), ("observed bad rate", "bad_rate")):
            rate = Decimal(str(row[key]))
            values.append(
                {
                    "decile": int(row["decile"]),
                    "series": series,
                    "rate": str(rate),
                    "rate_text": percent(rate),
                    "rows": int(row["rows"]),
                    "bads": int(row["bads"]),
                }
            )
    return _spec(
        f"Calibration by decile of {model_id}: predicted against observed bad rate",
        values,
        {"rate": "number"},
        height=HEIGHT,
        mark={"type": "line", "point": True},
        encoding={
            "x": {
                "field": "decile",
                "type": "ordinal",
                "title": "decile of predicted PD (1 = safest)",
                "axis": {"labelAngle": 0},
            },
            "y": {"field": "rate", "type": "quantitative", "title": "bad rate", "axis": {"format": "%"}},
            "color": {"field": "series", "type": "nominal", "title": None},
            "tooltip": [
                {"field": "decile"},
                {"field": "series", "title": "measure"},
                {"field": "rate_text", "title": "rate"},
                {"field": "rows"},
                {"field": "bads"},
            ],
        },
    )


def distribution_chart(summary: DecisionSummary, model: str, band_width: int = BAND_WIDTH) -> Spec:
    """A heat map of the model's scores: application month by score band, shaded by the share of the month's
    decisions in the band."""
    totals = {counts.month: counts.decisions for counts in summary.rows_of(model)}
    values = []
    for (m, month, band), (approved, declined) in sorted(summary.bands.items()):
        if m != model:
            continue
        share = ratio(approved + declined, totals[month])
        values.append(
            {
                "month": month,
                "band": band,
                "band_end": band + band_width,
                "band_text": f"{band}–{band + band_width - 1}",
                "decisions": approved + declined,
                "approved": approved,
                "declined": declined,
                "share": str(share),
                "share_text": percent(share),
            }
        )
    return _spec(
        f"Scores of {model} by application month, in bands of {band_width} points",
        values,
        {"share": "number", "band": "number", "band_end": "number"},
        height=max(HEIGHT // 2, 22 * len(totals)),
        mark="rect",
        encoding={
            "x": {"field": "band", "type": "quantitative", "title": "score", "scale": {"zero": False}},
            "x2": {"field": "band_end"},
            "y": {"field": "month", "type": "ordinal", "title": "application month"},
            "color": {
                "field": "share",
                "type": "quantitative",
                "title": "share of the month",
                "scale": {"scheme": "blues"},
                "legend": {"format": "%"},
            },
            "tooltip": [
                {"field": "month", "title": "application month"},
                {"field": "band_text", "title": "score band"},
                {"field": "decisions"},
                {"field": "approved"},
                {"field": "declined"},
                {"field": "share_text", "title": "share of the month"},
            ],
        },
    )


def psi_chart(rows: Sequence[Mapping[str, Any]], model_id: str) -> Spec:
    """The champion's score PSI per application month against its training baseline, with the watch and act
    lines."""
    values = [
        {"month": r["month"], "psi": f"{r['psi']:.6f}", "status": r["status"], "decisions": r["rows"]}
        for r in rows
        if r["psi"] is not None
    ]
    return _spec(
        f"Score PSI of {model_id} per application month against its training baseline",
        values,
        {"psi": "number"},
        height=HEIGHT,
        layer=[
            {
                "mark": {"type": "line", "point": True},
                "encoding": {
                    "x": {"field": "month", "type": "ordinal", "title": "application month"},
                    "y": {"field": "psi", "type": "quantitative", "title": "PSI", "scale": {"domainMin": 0}},
                    "tooltip": [
                        {"field": "month", "title": "application month"},
                        {"field": "decisions"},
                        {"field": "psi", "title": "PSI", "format": ".4f"},
                        {"field": "status"},
                    ],
                },
            },
            *_stability_rules("y"),
        ],
    )


def csi_chart(features: Mapping[str, Mapping[str, Any]], month: str) -> Spec:
    """CSI of each model input in one month against the training baseline, worst first."""
    values = [
        {"feature": name, "csi": f"{body['csi']:.6f}", "status": body["status"], "order": n}
        for n, (name, body) in enumerate(features.items())
    ]
    return _spec(
        f"CSI of each model input in {month} against the training baseline",
        values,
        {"csi": "number"},
        height=max(HEIGHT // 2, 20 * len(values)),
        layer=[
            {
                "mark": "bar",
                "encoding": {
                    "y": {"field": "feature", "type": "nominal", "title": None, "sort": {"field": "order"}},
                    "x": {"field": "csi", "type": "quantitative", "title": "CSI", "scale": {"domainMin": 0}},
                    "color": {
                        "field": "status",
                        "type": "nominal",
                        "title": "status",
                        "scale": {"domain": list(STATUS_COLOURS), "range": list(STATUS_COLOURS.values())},
                    },
                    "tooltip": [
                        {"field": "feature"},
                        {"field": "csi", "title": "CSI", "format": ".4f"},
                        {"field": "status"},
                    ],
                },
            },
            *_stability_rules("x"),
        ],
    )


def fairness_chart(reports: Sequence[Mapping[str, Any]]) -> Spec:
    """Per saved report: the lowest approval-rate ratio between groups (four-fifths line at 0.8) and the
    equal-opportunity difference, by report date and protected attribute."""
    values = []
    for report in reports:
        for measure, key in (
            ("lowest approval-rate ratio", "approval_rate_ratio_min"),
            ("equal-opportunity difference", "equal_opportunity_difference"),
        ):
            value = report.get(key)
            if value is None:
                continue
            values.append(
                {
                    "report_date": report["report_date"],
                    "series": f"{measure} ({report.get('protected', '?')})",
                    "value": f"{float(value):.6f}",
                    "model": str(report.get("model_id", "")),
                    "rows": report.get("rows"),
                }
            )
    return _spec(
        "Fairness of the saved reports by date: approval-rate ratio and equal-opportunity difference",
        values,
        {"value": "number"},
        height=HEIGHT,
        layer=[
            {
                "mark": {"type": "line", "point": True},
                "encoding": {
                    "x": {"field": "report_date", "type": "ordinal", "title": "report date"},
                    "y": {"field": "value", "type": "quantitative", "title": None, "scale": {"domain": [0, 1]}},
                    "color": {"field": "series", "type": "nominal", "title": None},
                    "tooltip": [
                        {"field": "report_date", "title": "report date"},
                        {"field": "series", "title": "measure"},
                        {"field": "value", "format": ".4f"},
                        {"field": "model"},
                        {"field": "rows"},
                    ],
                },
            },
            *_threshold_rules("y", ((thresholds()["four_fifths"], "four-fifths 0.8", STATUS_COLOURS["act"]),)),
        ],
    )


# ---------------------------------------------------------------------------------------------- the page


class ClosedMonths:
    """The score counts of application months that are over, kept per month for the app's life.

    An application is dated with the business date it was made on, so a month's decisions stop changing once
    the business date has left it — give or take an application in flight while end of day turns the date:
    a month is taken as over only from the second business day after it (`live_from`). Months missing here
    are read in one query (all of them after a start, the one just closed after a month end); months before
    the page's window are dropped, so at most `MONTHS_SHOWN` are kept."""

    def __init__(self) -> None:
        self._months: dict[date, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def rows(self, lending: Any, since: date, live_from: date) -> list[dict[str, Any]]:
        wanted = []
        month = since
        while month < live_from:
            wanted.append(month)
            month = month_after(month)
        with self._lock:
            missing = [m for m in wanted if m not in self._months]
        if missing:
            read = lending.decision_scores(missing[0], before=month_after(missing[-1]), band_width=1)
            by_month: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for row in read:
                by_month[row["month"]].append(row)
            with self._lock:
                for m in missing:
                    self._months[m] = by_month.get(m.isoformat()[:7], [])
                for m in [m for m in self._months if m < since]:
                    del self._months[m]
        with self._lock:
            return [row for m in wanted for row in self._months.get(m, ())]


_CLOSED_LOCK = threading.Lock()


def _closed_months(request: Request) -> ClosedMonths:
    state = request.app.state
    found: ClosedMonths | None = getattr(state, "console_scoring_months", None)
    if found is None:
        with _CLOSED_LOCK:
            found = getattr(state, "console_scoring_months", None)
            if found is None:
                found = ClosedMonths()
                state.console_scoring_months = found
    return found


def _decision_rows(request: Request, since: date, business_date: date) -> list[dict[str, Any]]:
    """Every score count since `since`: the months that are over from `ClosedMonths`, the rest read now."""
    lending = _platform(request).lending
    live_from = month_start(business_date - timedelta(days=1))
    return [*_closed_months(request).rows(lending, since, live_from), *lending.decision_scores(live_from, band_width=1)]


def _feature_stability(request: Request, month: str, business_date: date, scorer: Any) -> dict[str, Any]:
    """CSI of the champion's inputs over (at most `CSI_VECTORS_MAX` of) the vectors stored with its decisions
    in `month`: a closed month's is kept until the champion changes, the current month's for the business day
    (end of day, or a new champion, computes it again)."""
    platform = _platform(request)

    def compute() -> dict[str, Any]:
        vectors = platform.lending.decision_features(month, scorer.model_id, limit=CSI_VECTORS_MAX)
        return {"vectors": len(vectors), "features": platform.scoring.feature_stability(vectors, scorer=scorer)}

    day = business_date if month >= business_date.isoformat()[:7] else None
    return report_cache(request).get(("scoring.csi", month, day, scorer.content_sha256), compute)


@router.get("", response_class=HTMLResponse)
def scoring(request: Request, _session: OperatorSession, model: ModelQuery = None) -> HTMLResponse:
    platform = _platform(request)
    service = platform.scoring
    models = service.registry_models()
    champion = next((m for m in models if m["role"] == "champion"), None)
    scorer, model_problem = None, None
    if champion is not None:
        try:
            scorer = service.champion()
        except CreditstackError as error:
            model_problem = f"{error.code}: {error}"

    business_date = platform.ledger.business_date()
    current = month_start(business_date)
    since = months_before(current, MONTHS_SHOWN - 1)
    summary = summarise(_decision_rows(request, since, business_date))
    decided = summary.models()
    champion_id = scorer.model_id if scorer is not None else None
    shown = pick_model(decided, model, champion_id)

    psi_rows: list[dict[str, Any]] = []
    stability: dict[str, Any] | None = None
    has_baseline = scorer is not None and bool(scorer.model.baseline.get("score"))
    if scorer is not None and has_baseline:
        for counts in summary.rows_of(scorer.model_id):
            result = service.score_stability(summary.scores[(scorer.model_id, counts.month)], scorer=scorer)
            psi_rows.append({"month": counts.month} | result)
        if psi_rows:
            latest = psi_rows[-1]["month"]
            stability = {"month": latest} | _feature_stability(request, latest, business_date, scorer)

    fairness = service.fairness_reports()
    reports = fairness["reports"]
    return render(
        request,
        "scoring/overview.html",
        {
            "models": models,
            "champion": champion,
            "scorer": scorer,
            "model_problem": model_problem,
            "has_baseline": has_baseline,
            "calibration_chart": (
                calibration_chart(champion["metrics"]["calibration_by_decile"], champion["model_id"])
                if champion is not None and champion["metrics"].get("calibration_by_decile")
                else None
            ),
            "since": since.isoformat()[:7],
            "decided": decided,
            "shown": shown,
            "shown_rows": summary.rows_of(shown) if shown else [],
            "distribution_chart": distribution_chart(summary, shown) if shown else None,
            "band_width": BAND_WIDTH,
            "cutoff": CUTOFF_DEFAULT,
            "psi_rows": psi_rows,
            "psi_chart": psi_chart(psi_rows, champion_id) if psi_rows and champion_id else None,
            "stability": stability,
            "csi_vectors_max": CSI_VECTORS_MAX,
            "csi_chart": (
                csi_chart(stability["features"], stability["month"]) if stability and stability["features"] else None
            ),
            "thresholds": thresholds(),
            "reports": reports,
            "unreadable_reports": fairness["unreadable"],
            "fairness_chart": fairness_chart(reports) if reports else None,
            "models_dir": str(service.models_dir) if service.models_dir is not None else "var/models",
        },
    )
