"""The console's scoring page over HTTP (TestClient), on a book whose decisions the champion model scored.

The book: a scorecard champion and a scorecard challenger, fitted on a synthetic table of feature-store
columns (plumbing models, as in tests/integration/test_scoring_serving.py), registered under the platform's
`var/models` before the platform opens — so lending decides with the champion and stores its score,
reasons and feature vector — and two fairness reports saved there by `creditstack scoring fairness --save`.
Then thirty consumers join, two a day from 14 February 2026 (a top-up, bills paid on time or late), and apply for
a cash loan on 2 March, 1 April and 1 May (end of day runs between), none accepting: three application months
of stored decisions whose scores spread and drift.

Checked here: the page renders for the operator with a model and without one (saying how to train one);
consumers and partner banks get the 403 page, no session the login page; each chart's JSON has data; the
counts are the stored decisions' (by month and outcome); the PSI per month and the latest month's CSI equal
`scoring.metrics`' own functions on the same stored scores and vectors; the saved fairness reports are
charted; and — on SQLite and PostgreSQL — lending's `decision_scores` and `decision_features` agree with a
plain aggregation of the stored decisions.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import inspect
import json
import random
import re
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from creditstack.app.console.pages import scoring as scoring_page
from creditstack.app.main import create_app
from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.db import Database
from creditstack.core.money import CNY, Money
from creditstack.core.security import Role
from creditstack.core.settings import Settings
from creditstack.lending import tables as lending_tables
from creditstack.payments.service import Income
from creditstack.scoring import metrics
from creditstack.scoring.cli import app as scoring_cli
from creditstack.scoring.evaluation import fit_model
from creditstack.scoring.features import FEATURE_NAMES, feature_groups, feature_reason_texts
from creditstack.scoring.provider import ModelScoreProvider
from creditstack.scoring.registry import ModelRegistry, save_model
from creditstack.scoring.serving import Scorer

START = datetime(2026, 2, 14, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai: the first consumers join
APPLICATION_DAYS = (date(2026, 3, 2), date(2026, 4, 1), date(2026, 5, 1))
CONSUMERS = 30
MEMBER = "console-scoring"
FAIRNESS_DATES = ("2026-03-31", "2026-04-30")

Response = Any  # starlette's TestClient answers with its own httpx build's responses


def feature_table(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Feature-store columns of a synthetic population; `bad` rises with late bills, DPD and utilisation, and
    a protected attribute (`female`) for the fairness report — never a model input."""
    rng = np.random.default_rng(seed)
    columns = {name: np.full(rows, np.nan) for name in FEATURE_NAMES}
    late = rng.beta(2, 6, rows)
    dpd = np.where(rng.uniform(size=rows) < 0.7, rng.choice([0, 0, 0, 1, 30, 60], rows), np.nan)
    use = np.where(rng.uniform(size=rows) < 0.5, rng.uniform(0, 1.1, rows), np.nan)
    tenure = rng.integers(1, 400, rows).astype(float)
    logit = -3.2 + 3 * late + 0.03 * np.nan_to_num(dpd) + 1.5 * np.nan_to_num(use, nan=0.3) - 0.004 * tenure
    columns |= {
        "bad": (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(float),
        "tenure_days": tenure,
        "bill_on_time_share_12m": 1 - late,
        "dpd_worst_days_12m": dpd,
        "line_utilisation_ratio": use,
        "applications_count_3m": rng.poisson(0.6, rows).astype(float),
        "inflow_monthly_mean_minor_6m": rng.lognormal(13, 0.6, rows),
        "female": (rng.uniform(size=rows) < 0.5).astype(float),
    }
    return columns


def build_book(var_dir: Path) -> None:
    """Champion and challenger in `var_dir/models`, two fairness reports saved by the CLI, then the book:
    `CONSUMERS` consumers joining two a day from `START` (a top-up, two bills paid on time or late), each
    applying on every one of `APPLICATION_DAYS` and paying another bill, with end of day run between."""
    models = var_dir / "models"
    for role, rows, seed in (("champion", 1_500, 4), ("challenger", 800, 9)):
        table = feature_table(rows, seed)
        fitted = fit_model(
            "scorecard", table, "bad", exclude=["female"], groups=feature_groups(), reason_texts=feature_reason_texts()
        )  # fmt: skip
        artefact = var_dir / "models-in" / role
        save_model(fitted.model, artefact, training_data={"rows": rows, "synthetic": True}, metrics=fitted.validation)
        ModelRegistry(models).register(artefact, role=role)
        if role == "champion":
            data = var_dir / "fairness.csv"
            with data.open("w", newline="") as stream:
                writer = csv.writer(stream)
                writer.writerow(list(table))
                cells = (["" if np.isnan(v) else v for v in column] for column in table.values())
                writer.writerows(zip(*cells, strict=True))
            for n, day in enumerate(FAIRNESS_DATES):
                saved = CliRunner().invoke(
                    scoring_cli,
                    ["fairness", "--model", str(models), "--data", str(data), "--protected", "female",
                     "--cutoff", str(540 + 20 * n), "--save", str(models), "--report-date", day],
                )  # fmt: skip
                assert saved.exit_code == 0, saved.output

    platform = open_platform(Settings(var_dir=var_dir), FixedClock(START))
    try:
        assert isinstance(platform.lending.score_provider, ModelScoreProvider)
        pay, lending = platform.payments, platform.lending
        biller = pay.open_wallet(pay.register_customer(kind="biller", legal_name="Water Co")["id"])["id"]
        rng = random.Random(7)

        def on(day: date) -> None:  # end of day up to `day`
            if platform.ledger.business_date() < day:
                lending.eod.catch_up(day - timedelta(days=1))
            assert platform.ledger.business_date() == day

        def pay_bill(n: int, wallet: str, key: str, late: bool) -> None:
            today = platform.ledger.business_date()
            pay.pay_bill(
                member=MEMBER, key=key, payer_wallet_id=wallet, biller_wallet_id=biller, reference=key,
                amount=Money(rng.randrange(3_000, 30_000), CNY),
                due_date=today - timedelta(days=1 + n % 9) if late else today + timedelta(days=3),
            )  # fmt: skip

        wallets = []
        for n in range(CONSUMERS):  # two join each day: tenures differ
            on(START.date() + timedelta(days=n // 2))
            customer = pay.register_customer(
                kind="consumer",
                legal_name=f"Scoring Applicant {n}",
                national_id=f"SCOR{n:06d}",
                date_of_birth=date(1970 + n % 30, 1 + n % 12, 1 + n % 28),
                incomes=[Income(date(2025, 12, 31), Money(rng.randrange(5_000_000, 40_000_000), CNY))],
            )["id"]
            wallet = pay.open_wallet(customer)["id"]
            wallets.append((customer, wallet))
            pay.top_up(
                member=MEMBER, key=f"top-{n}", wallet_id=wallet,
                amount=Money(rng.randrange(200_000, 2_000_000, 100), CNY), bank_account_token="t",
            )  # fmt: skip
            for k in range(2):
                pay_bill(n, wallet, f"bill-{n}-{k}", late=(n + k) % 3 == 0)
        for month, day in enumerate(APPLICATION_DAYS):
            on(day)
            for n, (customer, wallet) in enumerate(wallets):
                lending.apply(
                    member=MEMBER, key=f"apply-{month}-{n}", customer_id=customer, wallet_id=wallet,
                    product_code="cash-cny", amount_minor=rng.randrange(200_000, 2_000_000, 100),
                    term_months=rng.choice([3, 6, 12]),
                )  # fmt: skip
                pay_bill(n, wallet, f"bill-{n}-m{month}", late=(n + month) % 4 == 0)  # counts from the next day
    finally:
        platform.close()


def book_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the book's var directory. The book is built once per test session by whichever of the
    scoring page's test modules comes first (both build it alike: the template is named after the builder's
    source), and copied for each."""
    source = inspect.getsource(feature_table) + inspect.getsource(build_book)
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    template = tmp_path_factory.getbasetemp() / f"console-scoring-book-{digest}"
    if not (template / "built").exists():
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir()
        build_book(template)
        (template / "built").touch()
    copy = tmp_path_factory.mktemp("console-scoring")
    shutil.copytree(template, copy, dirs_exist_ok=True)
    return copy


@dataclass
class Book:
    platform: Platform
    app: FastAPI
    var_dir: Path
    champion: Scorer
    consumer: str


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Book]:
    var_dir = book_directory(tmp_path_factory)
    platform = open_platform(Settings(var_dir=var_dir), FixedClock(START), migrate_schema=False)
    consumer = platform.payments.list_customers("consumer", limit=1)["items"][0]["id"]
    yield Book(platform, create_app(platform), var_dir, Scorer.load(var_dir / "models"), consumer)
    platform.close()


def login(app: FastAPI, platform: Platform, role: Role, member: str) -> TestClient:
    client = TestClient(app, follow_redirects=False)
    form = client.get("/console/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    _, token = platform.keys.create(role, member, "console scoring test")
    answer = client.post("/console/login", data={"api_key": token, "csrf_token": csrf.group(1)})
    assert answer.status_code == 303, answer.text
    return client


def assert_page(response: Response, status: int, *texts: str) -> str:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    for text in texts:
        assert text in response.text, text
    return str(response.text)


def chart_specs(html: str) -> dict[str, dict[str, Any]]:
    blocks = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html, flags=re.S)
    return {name: json.loads(body) for name, body in blocks}


def table_rows(html: str, table_id: str) -> list[list[str]]:
    found = re.search(rf'<table class="data" id="{table_id}">.*?<tbody>(.*?)</tbody>', html, flags=re.S)
    assert found is not None, table_id
    rows = re.findall(r"<tr>(.*?)</tr>", found.group(1), flags=re.S)
    cells = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S) for row in rows]
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in row] for row in cells]


def rule_datums(spec: dict[str, Any], axis: str) -> list[float]:
    """The values of a layered chart's threshold rules."""
    marks = [(layer["mark"], layer["encoding"]) for layer in spec["layer"] if isinstance(layer["mark"], dict)]
    return [encoding[axis]["datum"] for mark, encoding in marks if mark["type"] == "rule"]


def stored_decisions(platform: Platform) -> list[dict[str, Any]]:
    a = lending_tables.applications.c
    rows = platform.db.run(
        lambda conn: conn.execute(sa.select(a.business_date, a.status, a.decision)).all(), readonly=True
    )
    return [
        {
            "month": r.business_date.isoformat()[:7],
            "outcome": "declined" if r.status == "declined" else "approved",
            "score": r.decision["score"]["score"],
            "model": r.decision["score"]["model"],
            "values": r.decision["score"].get("features", {}).get("values"),
        }
        for r in rows
    ]


# ------------------------------------------------------------------------------------------------ access


def test_only_the_operator_opens_the_scoring_page(book: Book) -> None:
    anonymous = TestClient(book.app, follow_redirects=False)
    assert anonymous.get("/console/scoring").headers["location"] == "/console/login"
    consumer = login(book.app, book.platform, Role.CONSUMER, book.consumer)
    assert_page(consumer.get("/console/scoring"), 403, "Your role may not open this page")
    assert "/console/scoring" not in consumer.get(f"/console/consumers/{book.consumer}").text  # not in its nav
    partner = login(book.app, book.platform, Role.PARTNER_BANK, "demo-bank-0")
    assert_page(partner.get("/console/scoring"), 403, "Your role may not open this page")
    operator = login(book.app, book.platform, Role.PLATFORM_OPERATOR, "ops")
    html = assert_page(operator.get("/console/portfolio"), 200)
    assert "<h2>Scoring</h2>" in html and 'href="/console/scoring"' in html
    assert_page(operator.get("/console/scoring?model=" + "x" * 81), 400)
    assert_page(operator.get("/console/scoring?model=no-such-model"), 200, book.champion.model_id)


# ------------------------------------------------------------------------------------------------ with a model


def test_the_page_shows_the_models_and_every_chart_has_data(book: Book) -> None:
    operator = login(book.app, book.platform, Role.PLATFORM_OPERATOR, "ops")
    html = assert_page(operator.get("/console/scoring"), 200, "Scoring: models and monitoring")
    registry = ModelRegistry(book.var_dir / "models")
    champion_id, challenger_id = registry.roles()["champion"], registry.roles()["challenger"]
    assert champion_id == book.champion.model_id and challenger_id
    manifest = book.champion.manifest
    assert book.champion.content_sha256 in html
    models = table_rows(html, "models")
    assert [(row[0], row[1]) for row in models] == [("champion", champion_id), ("challenger", challenger_id)]
    assert models[0][5:9] == [str(manifest["metrics"][k]) for k in ("auc", "gini", "ks", "brier")]
    assert "No model is installed" not in html and "champion-unused" not in html

    specs = chart_specs(html)
    assert set(specs) == {"calibration-chart", "distribution-chart", "psi-chart", "csi-chart", "fairness-chart"}
    for name, spec in specs.items():
        assert spec["data"]["values"], name
        assert "unsafe" not in json.dumps(spec) and "<" not in json.dumps(spec), name
    deciles = manifest["metrics"]["calibration_by_decile"]
    assert len(specs["calibration-chart"]["data"]["values"]) == 2 * len(deciles)
    assert len(table_rows(html, "calibration")) == len(deciles)

    # the counts are the stored decisions', exactly
    decisions = stored_decisions(book.platform)
    assert {d["model"] for d in decisions} == {champion_id} and len(decisions) == CONSUMERS * len(APPLICATION_DAYS)
    per_month: dict[str, Counter[str]] = defaultdict(Counter)
    per_band: Counter[tuple[str, int]] = Counter()
    for d in decisions:
        per_month[d["month"]][d["outcome"]] += 1
        per_band[(d["month"], d["score"] // 20 * 20)] += 1
    months = table_rows(html, "score-months")
    assert [row[0] for row in months] == sorted(per_month) == ["2026-03", "2026-04", "2026-05"]
    for row in months:
        counts = per_month[row[0]]
        assert row[1:4] == [str(counts.total()), str(counts["approved"]), str(counts["declined"])]
    bands = {(v["month"], v["band"]): v["decisions"] for v in specs["distribution-chart"]["data"]["values"]}
    assert bands == dict(per_band)
    assert {v["band_end"] - v["band"] for v in specs["distribution-chart"]["data"]["values"]} == {20}

    # no personal data: no customer id, name or national id
    customer_ids = [c["id"] for c in book.platform.payments.list_customers("consumer", limit=100)["items"]]
    assert customer_ids and not any(c in html for c in customer_ids)
    assert "Scoring Applicant" not in html and "SCOR0" not in html


def test_psi_and_csi_are_scoring_metrics_on_the_stored_scores_and_vectors(book: Book) -> None:
    operator = login(book.app, book.platform, Role.PLATFORM_OPERATOR, "ops")
    html = assert_page(operator.get("/console/scoring"), 200)
    specs = chart_specs(html)
    baseline = book.champion.model.baseline
    by_month: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in stored_decisions(book.platform):
        by_month[d["month"]].append(d)

    page_psi = {v["month"]: v["psi"] for v in specs["psi-chart"]["data"]["values"]}
    table = {row[0]: row for row in table_rows(html, "psi")}
    assert sorted(page_psi) == sorted(by_month)
    for month, rows in by_month.items():
        scores = np.array([d["score"] for d in rows], dtype=np.float64)
        direct = metrics.psi(baseline["score"]["proportions"], metrics.distribution(baseline["score"], scores))
        assert page_psi[month] == f"{round(direct, 6):.6f}", month
        assert table[month][1:] == [str(len(rows)), f"{round(direct, 6):.4f}", metrics.stability_status(direct)]
    assert len({round(float(v), 6) for v in page_psi.values()}) > 1  # the applicants changed between months

    # the latest month's CSI is stability_report's on the same vectors (and its score PSI the page's too)
    latest = max(by_month)
    rows = by_month[latest]
    vectors = [d["values"] for d in rows]
    cleaned = book.champion.model.preprocess.clean({n: [v.get(n) for v in vectors] for n in book.champion.input_names})
    report = metrics.stability_report(
        baseline["score"], baseline["features"], np.array([d["score"] for d in rows]), cleaned
    )
    assert f"{report['score_psi']:.6f}" == page_psi[latest]
    page_csi = {v["feature"]: v for v in specs["csi-chart"]["data"]["values"]}
    assert set(page_csi) == set(report["features"]) == set(book.champion.input_names)
    for name, body in report["features"].items():
        assert page_csi[name]["csi"] == f"{body['csi']:.6f}" and page_csi[name]["status"] == body["status"], name
    assert [row[0] for row in table_rows(html, "csi")] == list(report["features"])  # worst first
    assert rule_datums(specs["psi-chart"], "y") == [metrics.PSI_WATCH, metrics.PSI_ACT]
    assert rule_datums(specs["csi-chart"], "x") == [metrics.PSI_WATCH, metrics.PSI_ACT]


def test_saved_fairness_reports_are_charted_by_date(book: Book) -> None:
    reports_dir = book.var_dir / "models" / "reports"
    saved = sorted(p.name for p in reports_dir.iterdir())
    assert saved == [f"fairness-{day}.json" for day in FAIRNESS_DATES]
    first = json.loads((reports_dir / saved[0]).read_text())
    assert first["report_date"] == FAIRNESS_DATES[0] and first["protected"] == "female"
    assert first["model_id"] == book.champion.model_id and first["cutoff"] == 540.0
    assert {"approval_rate_ratio_min", "equal_opportunity_difference", "groups", "data_sha256"} <= set(first)

    operator = login(book.app, book.platform, Role.PLATFORM_OPERATOR, "ops")
    html = assert_page(operator.get("/console/scoring"), 200)
    spec = chart_specs(html)["fairness-chart"]
    values = spec["data"]["values"]
    assert sorted({v["report_date"] for v in values}) == list(FAIRNESS_DATES) and len(values) == 4
    for day in FAIRNESS_DATES:
        body = json.loads((reports_dir / f"fairness-{day}.json").read_text())
        mine = {v["series"]: v["value"] for v in values if v["report_date"] == day}
        assert mine == {
            "lowest approval-rate ratio (female)": f"{body['approval_rate_ratio_min']:.6f}",
            "equal-opportunity difference (female)": f"{body['equal_opportunity_difference']:.6f}",
        }
    assert rule_datums(spec, "y") == [metrics.FOUR_FIFTHS]
    assert [row[0] for row in table_rows(html, "fairness-reports")] == list(FAIRNESS_DATES)


# ------------------------------------------------------------------------------------------------ without a model


def test_without_a_model_the_page_says_how_to_train_one(tmp_path: Path) -> None:
    platform = open_platform(Settings(var_dir=tmp_path), FixedClock(START))
    try:
        app = create_app(platform)
        operator = login(app, platform, Role.PLATFORM_OPERATOR, "ops")
        html = assert_page(
            operator.get("/console/scoring"),
            200,
            "No model is installed",
            "creditstack simulate",
            "--training-set var/train.csv",
            "creditstack scoring train --data var/train.csv --target bad_12m --bad-value 1",
            "--register var/models",
            "No application has been decided since",
            "No fairness report has been saved",
            "--save var/models",
        )
        assert chart_specs(html) == {}

        # a rules decision: its scores are shown, still no model and no monitoring
        pay = platform.payments
        customer = pay.register_customer(
            kind="consumer", legal_name="Rules Applicant", national_id="RULE000001", date_of_birth=date(1990, 1, 1),
            incomes=[Income(date(2025, 12, 31), Money(30_000_000, CNY))],
        )["id"]  # fmt: skip
        wallet = pay.open_wallet(customer)["id"]
        platform.lending.apply(
            member=MEMBER, key="rules-1", customer_id=customer, wallet_id=wallet, product_code="cash-cny",
            amount_minor=300_000, term_months=6,
        )  # fmt: skip
        (tmp_path / "models" / "reports").mkdir(parents=True)
        (tmp_path / "models" / "reports" / "fairness-2026-03-01.json").write_text("[not an object")
        html = assert_page(
            operator.get("/console/scoring"), 200, "No model is installed", "rules-v1", "Unreadable report files"
        )
        assert set(chart_specs(html)) == {"distribution-chart"}
        assert table_rows(html, "score-months")[0][:2] == [START.date().isoformat()[:7], "1"]
    finally:
        platform.close()


# ------------------------------------------------------------------------------------------------ lending's reads


def _synthetic_applications(model_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    rng = random.Random(11)
    rows = []
    now = START
    for n in range(400):
        day = date(2025, 10, 1) + timedelta(days=rng.randrange(0, 200))
        model = rng.choice(model_ids)
        score = rng.randrange(300, 901)
        values = {name: (None if rng.random() < 0.3 else rng.randrange(0, 500) / 7) for name in FEATURE_NAMES[:6]}
        score_json: dict[str, Any] = {"score": score, "grade": "0.5", "approve": True, "reasons": [], "model": model}
        if model != "rules-v1":
            score_json["features"] = {"as_of": day.isoformat(), "outbox_position": n, "values": values}
        status = rng.choice(["approved", "declined", "accepted"])
        rows.append(
            {
                "id": f"app_synthetic_{n:05d}",
                "member": MEMBER,
                "customer_id": f"cus_{n:05d}",
                "wallet_id": f"wal_{n:05d}",
                "product_code": "cash-cny",
                "currency": "CNY",
                "amount_minor": 100_000,
                "term_months": 6,
                "status": status,
                "business_date": day,
                "inputs": {},
                "decision": {"outcome": "declined" if status == "declined" else "approved", "score": score_json},
                "offer": None,
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def test_decision_scores_and_features_agree_with_the_stored_decisions(db_url: str, tmp_path: Path) -> None:
    platform = open_platform(Settings(database_url=db_url, var_dir=tmp_path), FixedClock(START), migrate_schema=False)
    try:
        rows = _synthetic_applications(("rules-v1", "scorecard-aaaa", "gbm-bbbb"))
        database = Database(db_url)
        database.run(lambda conn: conn.execute(lending_tables.applications.insert(), rows))
        database.dispose()
        lending = platform.lending

        def expected(width: int, since: date | None = None, before: date | None = None) -> list[dict[str, Any]]:
            counts: Counter[tuple[str, str, int, str]] = Counter()
            for r in rows:
                day = r["business_date"]
                if (since and day < since) or (before and day >= before):
                    continue
                score = r["decision"]["score"]
                outcome = "declined" if r["status"] == "declined" else "approved"
                counts[(day.isoformat()[:7], score["model"], score["score"] // width * width, outcome)] += 1
            return [
                {"month": m, "model": model, "band": band, "outcome": o, "decisions": n}
                for (m, model, band, o), n in sorted(counts.items())
            ]

        assert lending.decision_scores() == expected(20)
        assert lending.decision_scores(band_width=1) == expected(1)
        assert lending.decision_scores(date(2026, 1, 1), band_width=7) == expected(7, date(2026, 1, 1))
        split = date(2026, 2, 1)
        before = lending.decision_scores(before=split, band_width=1)
        after = lending.decision_scores(split, band_width=1)
        assert before + after == expected(1) and before and after
        with pytest.raises(ValueError, match="band_width"):
            lending.decision_scores(band_width=0)

        month = "2026-01"
        stored = [
            r["decision"]["score"]["features"]["values"]
            for r in rows
            if r["business_date"].isoformat()[:7] == month and r["decision"]["score"]["model"] == "scorecard-aaaa"
        ]
        found = lending.decision_features(month, "scorecard-aaaa")
        dumps = functools.partial(json.dumps, sort_keys=True)
        assert sorted(map(dumps, found)) == sorted(map(dumps, stored)) and len(found) > 5
        assert len(lending.decision_features(month, "scorecard-aaaa", limit=3)) == 3
        assert lending.decision_features(month, "rules-v1") == []  # the rules store no vector
        with pytest.raises(ValueError, match="limit"):
            lending.decision_features(month, "scorecard-aaaa", limit=0)
    finally:
        platform.close()


def test_months_and_the_model_choice() -> None:
    assert scoring_page.months_before(date(2026, 3, 1), 23) == date(2024, 4, 1)
    assert scoring_page.months_before(date(2026, 1, 1), 1) == date(2025, 12, 1)
    busiest = [("rules-v1", 10), ("scorecard-a", 4)]
    assert scoring_page.pick_model(busiest, None, None) == "rules-v1"
    assert scoring_page.pick_model(busiest, None, "scorecard-a") == "scorecard-a"
    assert scoring_page.pick_model(busiest, "rules-v1", "scorecard-a") == "rules-v1"
    assert scoring_page.pick_model(busiest, "other", "missing") == "rules-v1"
    assert scoring_page.pick_model([], None, None) is None
    summary = scoring_page.summarise(
        [
            {"month": "2026-01", "model": "m", "band": 561, "outcome": "approved", "decisions": 2},
            {"month": "2026-01", "model": "m", "band": 579, "outcome": "declined", "decisions": 1},
            {"month": "2026-01", "model": "m", "band": 580, "outcome": "approved", "decisions": 1},
        ]
    )
    counts = summary.months[("2026-01", "m")]
    assert (counts.decisions, counts.approved, counts.declined) == (4, 3, 1)
    assert str(counts.mean_score) == "570.2"  # 2281 / 4 = 570.25, half to even
    assert counts.approval_rate == Decimal("0.75")
    assert summary.bands == {("m", "2026-01", 560): [2, 1], ("m", "2026-01", 580): [1, 0]}


def test_closed_months_are_read_once_each() -> None:
    reads: list[tuple[date, date | None]] = []

    class Lending:
        def decision_scores(
            self, since: date, *, before: date | None = None, band_width: int = 20
        ) -> list[dict[str, Any]]:
            reads.append((since, before))
            assert before is not None and band_width == 1
            out, month = [], since
            while month < before:
                out.append(
                    {"month": month.isoformat()[:7], "model": "m", "band": 600, "outcome": "approved", "decisions": 1}
                )
                month = scoring_page.month_after(month)
            return out

    closed = scoring_page.ClosedMonths()
    first = closed.rows(Lending(), date(2026, 1, 1), date(2026, 4, 1))
    assert [r["month"] for r in first] == ["2026-01", "2026-02", "2026-03"]
    assert closed.rows(Lending(), date(2026, 1, 1), date(2026, 4, 1)) == first
    assert reads == [(date(2026, 1, 1), date(2026, 4, 1))]  # the second view read nothing
    moved = closed.rows(Lending(), date(2026, 2, 1), date(2026, 5, 1))  # a month later: only April is read
    assert [r["month"] for r in moved] == ["2026-02", "2026-03", "2026-04"]
    assert reads[1:] == [(date(2026, 4, 1), date(2026, 5, 1))]
