"""`creditstack scoring` end to end on small subsets of the public data sets (skipped if they are absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from creditstack.scoring.cli import app

runner = CliRunner()


def require(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"public data set not found at {path} (see ../shared/data/credit/README.md)")
    return path


def _subset(source: Path, target: Path, rows: int) -> Path:
    lines = source.read_text().splitlines()
    target.write_text("\n".join(lines[: rows + 1]) + "\n")
    return target


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_german_scorecard_train_evaluate_score_report_monitor_fairness(data_dir: Path, tmp_path: Path) -> None:
    data = _subset(require(data_dir / "german_credit.csv"), tmp_path / "german.csv", 600)
    out = tmp_path / "model"
    trained = json.loads(
        _run(
            "train", "--data", str(data), "--target", "creditability", "--bad-value", "bad", "--model", "scorecard",
            "--out", str(out), "--exclude", "age_in_years,personal_status_and_sex",
            "--register", str(tmp_path / "registry"),
        )
    )  # fmt: skip
    assert trained["kind"] == "scorecard" and "age_in_years" not in trained["inputs"]
    assert trained["registry"]["champion"] == trained["model_id"]

    evaluated = json.loads(_run("evaluate", "--model", str(out), "--data", str(data)))
    assert {"auc", "gini", "ks", "brier", "calibration_by_decile", "score_bands"} <= set(evaluated)
    assert evaluated["auc"] > 0.7 and len(evaluated["calibration_by_decile"]) == 10

    lines = _run("score", "--model", str(tmp_path / "registry"), "--data", str(data)).splitlines()
    assert len(lines) == 600
    first = json.loads(lines[0])
    assert 300 <= first["score"] <= 900 and 0 < first["pd"] < 1 and len(first["reasons"]) <= 4

    report = tmp_path / "report.html"
    _run("report", "--model", str(out), "--data", str(data), "--out", str(report))
    html = report.read_text()
    assert (
        html.count("<svg") == 4
        and "Bin tables" in html
        and "<script" not in html
        and "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )

    monitored = json.loads(_run("monitor", "--model", str(out), "--data", str(data)))
    assert monitored["score_status"] in {"stable", "watch", "act"} and monitored["features"]

    fair = json.loads(
        _run("fairness", "--model", str(out), "--data", str(data), "--protected", "age_in_years", "--edges", "25,35,50")
    )
    assert len(fair["groups"]) == 4 and "equal_opportunity_difference" in fair and "four_fifths_pass" in fair


def test_taiwan_gbm_train_evaluate_score(data_dir: Path, tmp_path: Path) -> None:
    data = _subset(require(data_dir / "taiwan_credit_card_default.csv"), tmp_path / "taiwan.csv", 1500)
    out = tmp_path / "gbm"
    trained = json.loads(
        _run(
            "train", "--data", str(data), "--target", "default.payment.next.month", "--model", "gbm",
            "--out", str(out), "--exclude", "SEX,AGE,MARRIAGE",
        )
    )  # fmt: skip
    assert trained["dropped"]["ID"] == "identifier"
    assert (out / "model.txt").is_file() and not list(out.glob("*.pkl"))
    evaluated = json.loads(_run("evaluate", "--model", str(out), "--data", str(data)))
    assert evaluated["auc"] > 0.7
    first = json.loads(_run("score", "--model", str(out), "--data", str(data), "--id-column", "ID").splitlines()[0])
    assert first["id"] == "1" and first["reasons"] and first["reasons"][0]["code"]


def test_errors_are_json_with_a_stable_code(data_dir: Path, tmp_path: Path) -> None:
    data = require(data_dir / "german_credit.csv")
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "nothing"), "--data", str(data)])
    assert result.exit_code == 2
    assert json.loads(result.stderr)["error"]["code"] == "scoring.model_not_found"
    result = runner.invoke(
        app, ["train", "--data", str(data), "--target", "nope", "--out", str(tmp_path / "m"), "--model", "scorecard"]
    )
    assert result.exit_code == 2 and "scoring.target_column_missing" in result.stderr
