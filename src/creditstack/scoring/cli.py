"""`creditstack scoring …`: train, evaluate, score, report, monitor and fairness on any CSV; batch scores and
the feature store on the platform's database.

Every command prints JSON to stdout (`score` and `batch` print one JSON object per row, JSON Lines);
progress goes to stderr. Errors print `{"error": {"code", "message", …}}` to stderr and exit with status 2.
A `--model` directory is a model artefact (`manifest.json` …) or a registry (its champion).
`fairness --save REGISTRY` also files its report in the registry as `reports/fairness-YYYY-MM-DD.json`, where
the web console charts the reports by date.

On the platform (`--url`, default: the configured database): `batch --model DIR --as-of DATE` scores every
customer of the feature store as of a business date (from the store when it can serve the date, else
recomputed from the outbox's history); `features update` runs the store's consumer; `features show`
prints one customer's vector; `features export` writes the population's vectors as CSV, for training.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from creditstack.app.clikit import Url, date_option, platform_for
from creditstack.core.errors import CreditstackError
from creditstack.scoring.columns import Table, encode_target, read_table
from creditstack.scoring.domain import ScoreScale
from creditstack.scoring.errors import (
    ProtectedAttributeAsInput,
    ProtectedAttributeMissing,
    TargetColumnMissing,
    UnknownModelKind,
)
from creditstack.scoring.evaluation import evaluate_model, fit_model
from creditstack.scoring.features import FEATURE_NAMES, feature_groups, feature_reason_texts, json_values
from creditstack.scoring.metrics import fairness_report, protected_groups, stability_report
from creditstack.scoring.registry import ModelRegistry, json_safe, load_manifest, load_model, save_model
from creditstack.scoring.report import build_report
from creditstack.scoring.service import fairness_report_path

app = typer.Typer(
    name="scoring",
    help="Credit scoring: models on any CSV (train, evaluate, score, report, monitor, fairness); batch scores and "
    "the feature store on the platform (batch, features).",
    no_args_is_help=True,
    add_completion=False,
)
stderr = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

DataOption = Annotated[Path, typer.Option("--data", help="CSV file with a header row.")]
ModelOption = Annotated[Path, typer.Option("--model", help="Model directory (or a registry: its champion).")]


def _emit(body: Any) -> None:
    sys.stdout.write(json.dumps(json_safe(body), ensure_ascii=False) + "\n")


def _handle_errors(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CreditstackError as error:
            sys.stderr.write(json.dumps({"error": error.to_dict()}) + "\n")
            raise typer.Exit(code=2) from error

    return wrapper  # type: ignore[return-value]


@contextmanager
def _spinner(message: str) -> Iterator[None]:
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=stderr, transient=True
    ) as progress:
        progress.add_task(message, total=None)
        yield


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


@app.command()
@_handle_errors
def train(
    data: DataOption,
    target: Annotated[str, typer.Option("--target", help="Outcome column.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the model artefact to.")],
    model: Annotated[str, typer.Option("--model", help="scorecard or gbm.")] = "scorecard",
    bad_value: Annotated[str | None, typer.Option("--bad-value", help="Target value meaning bad.")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Columns never to use (protected attributes); repeatable.")
    ] = None,
    categorical: Annotated[
        list[str] | None, typer.Option("--categorical", help="Columns to treat as categories; repeatable.")
    ] = None,
    base_score: Annotated[float, typer.Option(help="Score at the base odds.")] = 600.0,
    base_odds: Annotated[float, typer.Option(help="Good:bad odds at the base score.")] = 50.0,
    pdo: Annotated[float, typer.Option(help="Points to double the odds.")] = 20.0,
    score_min: Annotated[int, typer.Option(help="Lowest score.")] = 300,
    score_max: Annotated[int, typer.Option(help="Highest score.")] = 900,
    calibration: Annotated[str, typer.Option(help="GBM calibration: platt or isotonic.")] = "platt",
    seed: Annotated[int, typer.Option(help="Seed for the held-out split and LightGBM.")] = 0,
    reason_texts: Annotated[
        Path | None,
        typer.Option(help="JSON {column or group: text}; {label} and {value} are filled in."),
    ] = None,
    register: Annotated[Path | None, typer.Option(help="Also register the model in this registry.")] = None,
    role: Annotated[str | None, typer.Option(help="Registry role: champion or challenger.")] = None,
) -> None:
    """Fit a scorecard or GBM, calibrated on a held-out fold, and write it as a hashed artefact."""
    if model not in ("scorecard", "gbm"):
        raise UnknownModelKind(f"--model must be scorecard or gbm, not {model!r}", field="model")
    scale = ScoreScale(base_score, base_odds, pdo, score_min, score_max)
    texts = json.loads(reason_texts.read_text("utf-8")) if reason_texts else None
    with _spinner(f"reading {data.name}"):
        table = read_table(data)
    # columns named as the feature store's get its characteristic groups (one reason per group) and texts
    groups = feature_groups(table.columns)
    if groups and texts is None:
        texts = feature_reason_texts(table.columns)
    params: dict[str, Any] = {"seed": seed}
    if model == "gbm":
        params["calibration"] = calibration
    with _spinner(f"fitting {model} on {table.rows} rows"):
        result = fit_model(
            model, table.columns, target, bad_value=bad_value, exclude=_split(exclude),
            categorical=_split(categorical), groups=groups, scale=scale, params=params, reason_texts=texts,
        )  # fmt: skip
    fitted = result.model
    labels, present = encode_target(table.columns[target], fitted.preprocess.bad_value)
    training_data = {
        "file": data.name,
        "sha256": table.sha256,
        "rows": table.rows,
        "rows_with_target": int(present.sum()),
        "columns": len(table.columns),
        "bad_rate": round(float(labels[present].mean()), 6),
        "target": target,
        "bad_value": fitted.preprocess.bad_value,
        "ragged_rows": table.ragged_rows,
    }
    manifest = save_model(fitted, out, training_data=training_data, metrics=result.validation, notes=result.notes)
    body: dict[str, Any] = {
        "model_id": manifest["model_id"],
        "kind": manifest["kind"],
        "out": str(out),
        "content_sha256": manifest["content_sha256"],
        "inputs": fitted.preprocess.names,
        "dropped": fitted.preprocess.dropped,
        "validation": {k: result.validation[k] for k in ("rows", "auc", "gini", "ks", "brier")},
        "notes": result.notes,
    }
    if register is not None:
        registry = ModelRegistry(register)
        registry.register(out, role=role)
        body["registry"] = {"root": str(register), **registry.roles()}
    _emit(body)


def _load(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    return load_model(model_dir), load_manifest(model_dir)


def _read(data: Path) -> Table:
    with _spinner(f"reading {data.name}"):
        return read_table(data)


@app.command()
@_handle_errors
def evaluate(
    model: ModelOption,
    data: DataOption,
    target: Annotated[str | None, typer.Option(help="Outcome column (default: the training target).")] = None,
) -> None:
    """AUC, Gini, KS, Brier, calibration by decile and score bands on labelled rows (JSON)."""
    fitted, _ = _load(model)
    table = _read(data)
    with _spinner("scoring"):
        result = evaluate_model(fitted, table.columns, target=target)
    _emit(result | {"data": data.name, "data_sha256": table.sha256})


@app.command()
@_handle_errors
def score(
    model: ModelOption,
    data: DataOption,
    id_column: Annotated[str | None, typer.Option(help="Column to echo as `id` on each line.")] = None,
    reasons: Annotated[bool, typer.Option(help="Include reason codes.")] = True,
) -> None:
    """Score, PD and up to four reasons per row, one JSON object per line."""
    fitted, _ = _load(model)
    table = _read(data)
    with _spinner(f"scoring {table.rows} rows"):
        batch = fitted.score_batch(table.columns, with_reasons=reasons)
    ids = table.columns.get(id_column) if id_column else None
    out = sys.stdout
    for index in range(len(batch)):
        result = batch.result(index).to_dict()
        if not reasons:
            result.pop("reasons")
        line = {"row": index + 1} | ({"id": str(ids[index])} if ids is not None else {}) | result
        out.write(json.dumps(line, ensure_ascii=False) + "\n")


def _labels(fitted: Any, table: Table, target: str | None) -> tuple[np.ndarray, np.ndarray]:
    name = target or fitted.preprocess.target
    if name not in table.columns:
        raise TargetColumnMissing(f"target column {name!r} is not in the data", field="target")
    return encode_target(table.columns[name], fitted.preprocess.bad_value)


@app.command()
@_handle_errors
def report(
    model: ModelOption,
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")],
    target: Annotated[str | None, typer.Option(help="Outcome column (default: the training target).")] = None,
) -> None:
    """A self-contained HTML validation report (ROC, KS, calibration, score distribution, bin tables)."""
    fitted, manifest = _load(model)
    table = _read(data)
    labels, present = _labels(fitted, table, target)
    rows = np.nonzero(present)[0]
    with _spinner("scoring and plotting"):
        batch = fitted.score_batch(table.subset(rows), with_reasons=False)
        document = build_report(fitted, manifest, labels[rows], batch.pd, batch.score, data_name=data.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, "utf-8")
    _emit({"report": str(out), "model_id": fitted.model_id, "rows": len(rows), "bytes": len(document.encode())})


@app.command()
@_handle_errors
def monitor(model: ModelOption, data: DataOption) -> None:
    """PSI of the score and CSI of each feature against the training baseline (0.10 watch, 0.25 act)."""
    fitted, _ = _load(model)
    table = _read(data)
    cleaned = fitted.preprocess.clean(table.columns)
    batch = fitted.score_cleaned(cleaned, with_reasons=False)
    baseline = fitted.baseline
    result = stability_report(baseline["score"], baseline["features"], batch.score, cleaned)
    _emit({"model_id": fitted.model_id, "rows": table.rows, "data": data.name} | result)


@app.command()
@_handle_errors
def fairness(
    model: ModelOption,
    data: DataOption,
    protected: Annotated[str, typer.Option(help="Protected attribute column (never a model input).")],
    cutoff: Annotated[float | None, typer.Option(help="Approve at score ≥ cutoff (default: base score).")] = None,
    edges: Annotated[str | None, typer.Option(help="Cut points for a numeric attribute, e.g. 25,35,50.")] = None,
    target: Annotated[str | None, typer.Option(help="Outcome column (default: the training target).")] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="Also save the report in this model registry (e.g. var/models) as "
            "reports/fairness-YYYY-MM-DD.json, where the console charts it; a report of the same date is replaced.",
        ),
    ] = None,
    report_date: Annotated[
        str | None, typer.Option("--report-date", help="The date a saved report is filed under (default: today, UTC).")
    ] = None,
) -> None:
    """Approval-rate ratio (four-fifths rule) and equal-opportunity difference by a protected attribute."""
    fitted, _ = _load(model)
    if protected in fitted.preprocess.names:
        raise ProtectedAttributeAsInput(f"{protected!r} is an input of this model", field="protected")
    table = _read(data)
    if protected not in table.columns:
        raise ProtectedAttributeMissing(f"column {protected!r} is not in the data", field="protected")
    labels, present = _labels(fitted, table, target)
    rows = np.nonzero(present)[0]
    batch = fitted.score_batch(table.subset(rows), with_reasons=False)
    cut_points = [float(v) for v in edges.split(",")] if edges else None
    groups = protected_groups(table.columns[protected][rows], cut_points)
    threshold = cutoff if cutoff is not None else fitted.scale.base_score
    result = fairness_report(labels[rows], batch.score, groups, cutoff=threshold)
    body = {"model_id": fitted.model_id, "protected": protected, "rows": len(rows)} | result
    if save is not None:
        day = date_option(report_date, "--report-date") or datetime.now(UTC).date()
        saved = {"report_date": day.isoformat(), "data": data.name, "data_sha256": table.sha256} | body
        body["saved"] = str(_save_report(fairness_report_path(save, day), saved))
    _emit(body)


def _save_report(path: Path, body: Mapping[str, Any]) -> Path:
    """Write a report as JSON, atomically (a reader sees the old file or the new one, never half of one)."""
    if not path.parent.parent.is_dir():
        raise typer.BadParameter(f"--save takes an existing model registry directory, not {path.parent.parent}")
    path.parent.mkdir(exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(json.dumps(json_safe(body), indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )


def _as_of(text: str) -> Any:
    value = date_option(text, "--as-of")
    assert value is not None
    return value


@app.command()
@_handle_errors
def batch(
    model: ModelOption,
    as_of: Annotated[str, typer.Option("--as-of", help="As-of business date, YYYY-MM-DD (events before it).")],
    out: Annotated[Path | None, typer.Option("--out", help="JSON Lines file (default: standard output).")] = None,
    source: Annotated[
        str, typer.Option(help="auto (the store when it can serve the date, else history), store or history.")
    ] = "auto",
    reasons: Annotated[bool, typer.Option(help="Include reason codes.")] = True,
    url: Url = "",
) -> None:
    """Score every customer of the feature store as of a business date, one JSON object per line."""
    if source not in ("auto", "store", "history"):
        raise typer.BadParameter("--source is auto, store or history")
    day = _as_of(as_of)
    with platform_for(url) as platform:
        service = platform.scoring
        scorer = service.load_model(model)
        started = time.perf_counter()
        with _spinner("bringing the feature store up to date"):
            chosen = service.population_source(day, source)  # type: ignore[arg-type]
            total, pages = service.population(day, chosen)
        stream = out.open("w", encoding="utf-8") if out is not None else sys.stdout
        scored = 0
        try:
            with _progress() as progress:
                task = progress.add_task(f"scoring ({chosen})", total=total)
                for page in service.score_pages(scorer, pages, chosen):
                    lines = []
                    for k, vector in enumerate(page.vectors):
                        result = page.scores.result(k).to_dict()
                        if not reasons:
                            result.pop("reasons")
                        row = {"row": scored + k + 1, "customer_id": vector.customer_id, "as_of": as_of}
                        lines.append(json.dumps(row | result, ensure_ascii=False))
                    stream.write("\n".join(lines) + "\n" if lines else "")
                    scored += len(page.vectors)
                    progress.advance(task, len(page.vectors))
        finally:
            if out is not None:
                stream.close()
        seconds = time.perf_counter() - started
    summary = {
        "model_id": scorer.model_id,
        "as_of": as_of,
        "source": chosen,
        "customers": scored,
        "seconds": round(seconds, 3),
        "out": str(out) if out is not None else None,
    }
    if out is not None:
        _emit(summary)
    else:
        sys.stderr.write(json.dumps(summary) + "\n")


features_app = typer.Typer(help="The feature store: update it from the outbox, show or export vectors.")
app.add_typer(features_app, name="features")


@features_app.command("update")
@_handle_errors
def features_update(url: Url = "") -> None:
    """Fold every outbox event the store's consumer has not reached yet."""
    with platform_for(url) as platform, _spinner("folding outbox events"):
        read = platform.scoring.process_all()
        position = platform.scoring.store.position()
    _emit({"events": read, "position": position})


@features_app.command("show")
@_handle_errors
def features_show(
    customer_id: Annotated[str, typer.Argument(help="The customer.")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="As-of date (default: the business date).")] = None,
    url: Url = "",
) -> None:
    """One customer's feature vector (from the store, up to the latest event)."""
    with platform_for(url) as platform:
        vector = platform.scoring.features(customer_id, date_option(as_of, "--as-of"))
    _emit(vector.to_json())


@features_app.command("export")
@_handle_errors
def features_export(
    as_of: Annotated[str, typer.Option("--as-of", help="As-of business date, YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
    source: Annotated[str, typer.Option(help="auto, store or history.")] = "auto",
    url: Url = "",
) -> None:
    """Every customer's vector as of a date, as CSV (customer_id, as_of, then the features; empty = missing)."""
    if source not in ("auto", "store", "history"):
        raise typer.BadParameter("--source is auto, store or history")
    day = _as_of(as_of)
    rows = 0
    with platform_for(url) as platform, out.open("w", newline="", encoding="utf-8") as stream:
        chosen = platform.scoring.population_source(day, source)  # type: ignore[arg-type]
        total, pages = platform.scoring.population(day, chosen)
        writer = csv.writer(stream)
        writer.writerow(["customer_id", "as_of", *FEATURE_NAMES])
        with _progress() as progress:
            task = progress.add_task(f"exporting ({chosen})", total=total)
            for vectors in pages:
                for vector in vectors:
                    values = json_values(vector.values)
                    cells = ("" if values[name] is None else values[name] for name in FEATURE_NAMES)
                    writer.writerow([vector.customer_id, as_of, *cells])
                rows += len(vectors)
                progress.advance(task, len(vectors))
    _emit({"out": str(out), "customers": rows, "as_of": as_of, "source": chosen})


def main() -> None:  # pragma: no cover - for `python -m creditstack.scoring.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
