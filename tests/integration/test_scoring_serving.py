"""Scoring served on SQLite and PostgreSQL: lending decides with the champion model on the applicant's
store features and keeps them in the decision; `POST /v1/scoring/score` for a customer or a feature dict,
with problem+json errors; `creditstack scoring batch` over the population.

The champion is a scorecard fitted on a synthetic table of feature-store columns (a plumbing model: what
it predicts is not the point here), registered under the platform's `var/models` before the platform
opens — so `open_platform` picks the model provider over the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from creditstack.app.main import create_app
from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.money import CNY, Money
from creditstack.core.security import Role
from creditstack.core.settings import Settings, get_settings
from creditstack.payments.service import Income
from creditstack.scoring.cli import app as scoring_cli
from creditstack.scoring.evaluation import fit_model
from creditstack.scoring.features import (
    FEATURE_NAMES,
    GROUP_STATEMENTS,
    feature_groups,
    feature_reason_texts,
    json_values,
)
from creditstack.scoring.provider import ModelScoreProvider
from creditstack.scoring.registry import ModelRegistry, save_model
from creditstack.scoring.serving import Scorer

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
MEMBER = "scoring-http"
DAY = timedelta(days=1)


def feature_table(rows: int = 2_000, seed: int = 4) -> dict[str, np.ndarray]:
    """Feature-store columns of a synthetic population; `bad` rises with late bills, DPD and utilisation."""
    rng = np.random.default_rng(seed)
    columns = {name: np.full(rows, np.nan) for name in FEATURE_NAMES}
    late = rng.beta(2, 6, rows)
    dpd = np.where(rng.uniform(size=rows) < 0.7, rng.choice([0, 0, 0, 1, 30, 60], rows), np.nan)
    use = np.where(rng.uniform(size=rows) < 0.5, rng.uniform(0, 1.1, rows), np.nan)
    tenure = rng.integers(15, 1_500, rows).astype(float)
    logit = -1.5 + 3 * late + 0.03 * np.nan_to_num(dpd) + 1.5 * np.nan_to_num(use, nan=0.3) - 0.001 * tenure
    columns |= {
        "bad": (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(float),
        "tenure_days": tenure,
        "bill_on_time_share_12m": 1 - late,
        "dpd_worst_days_12m": dpd,
        "line_utilisation_ratio": use,
        "applications_count_3m": rng.poisson(0.4, rows).astype(float),
        "inflow_monthly_mean_minor_6m": rng.lognormal(13, 0.6, rows),
    }
    return columns


@pytest.fixture(scope="module")
def champion_artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("champion") / "scorecard"
    result = fit_model(
        "scorecard", feature_table(), "bad", groups=feature_groups(), reason_texts=feature_reason_texts()
    )  # fmt: skip
    save_model(result.model, out, training_data={"rows": 2_000, "synthetic": True}, metrics=result.validation)
    return out


@dataclass
class World:
    platform: Platform
    clock: FixedClock
    customers: list[str]
    wallets: dict[str, str]


@pytest.fixture
def scored(db_url: str, tmp_path: Path, champion_artefact: Path) -> Iterator[World]:
    """A platform whose var/models holds a champion, and three consumers with a little history."""
    ModelRegistry(tmp_path / "models").register(champion_artefact)
    clock = FixedClock(START)
    platform = open_platform(Settings(database_url=db_url, var_dir=tmp_path), clock, migrate_schema=False)
    pay = platform.payments
    biller = pay.open_wallet(pay.register_customer(kind="biller", legal_name="Water Co")["id"])["id"]
    customers, wallets = [], {}
    for n in range(3):
        customer = pay.register_customer(
            kind="consumer",
            legal_name=f"Applicant {n}",
            national_id=f"APPL{n:06d}",
            date_of_birth=date(1980 + n, 2, 2),
            incomes=[Income(date(2025, 12, 31), Money(30_000_000, CNY))],
        )["id"]
        wallet = pay.open_wallet(customer)["id"]
        pay.top_up(member=MEMBER, key=f"t{n}", wallet_id=wallet, amount=Money(500_000, CNY), bank_account_token="t")
        pay.pay_bill(
            member=MEMBER, key=f"b{n}", payer_wallet_id=wallet, biller_wallet_id=biller, reference=f"W-{n}",
            amount=Money(5_000, CNY), due_date=START.date() - DAY * n,
        )  # fmt: skip
        customers.append(customer)
        wallets[customer] = wallet
    platform.lending.eod.run()
    clock.advance(DAY)
    yield World(platform, clock, customers, wallets)
    platform.close()


def test_lending_decides_with_the_champion_and_keeps_the_vector_in_the_decision(
    scored: World, champion_artefact: Path
) -> None:
    platform, clock, customers = scored.platform, scored.clock, scored.customers
    assert isinstance(platform.lending.score_provider, ModelScoreProvider)
    champion = Scorer.load(champion_artefact)
    customer = customers[0]
    applied = platform.lending.apply(
        member=MEMBER, key="a1", customer_id=customer, wallet_id=scored.wallets[customer],
        product_code="cash-cny", amount_minor=200_000, term_months=6,
    )  # fmt: skip
    decision = platform.lending.get_application(applied.body["application_id"])["decision"]
    score = decision["score"]
    assert score["model"] == champion.model_id
    stored = score["features"]
    assert stored["as_of"] == date(2026, 3, 3).isoformat() and set(stored["values"]) == set(FEATURE_NAMES)
    assert stored["values"]["tenure_days"] == 1 and stored["values"]["applications_count_3m"] == 0
    assert stored["values"]["bill_on_time_share_12m"] == 1.0  # paid on its due date
    # the stored score is the champion's on the stored vector, and its reasons are the adverse-action texts
    again = champion.score(stored["values"])
    assert score["score"] == again.score and 300 <= score["score"] <= 900
    assert score["reasons"] == [{"code": r.code, "text": r.text} for r in again.reasons]
    assert all(r["text"].startswith(GROUP_STATEMENTS[r["code"]]) for r in score["reasons"])
    assert score["approve"] == (score["score"] >= 560) and 0 <= float(score["grade"]) <= 1
    assert (applied.status_code == 201) == score["approve"]

    # the next day, that application is history: it counts in the next vector (without running the consumer)
    platform.lending.eod.run()
    clock.advance(DAY)
    second = platform.lending.apply(
        member=MEMBER, key="a2", customer_id=customer, wallet_id=scored.wallets[customer],
        product_code="cash-cny", amount_minor=100_000, term_months=3,
    )  # fmt: skip
    values = platform.lending.get_application(second.body["application_id"])["decision"]["score"]["features"]["values"]
    assert values["applications_count_3m"] == 1 and values["tenure_days"] == 2


def test_a_model_decline_names_the_score_reasons(scored: World) -> None:
    platform, customers = scored.platform, scored.customers
    platform.lending.score_provider = ModelScoreProvider(platform.scoring, cutoff=900)
    customer = customers[1]
    declined = platform.lending.apply(
        member=MEMBER, key="d1", customer_id=customer, wallet_id=scored.wallets[customer],
        product_code="cash-cny", amount_minor=100_000, term_months=3,
    )  # fmt: skip
    assert declined.status_code == 409
    reasons = [r for r in declined.body["error"]["details"]["reasons"] if r["source"] == "score"]
    assert 1 <= len(reasons) <= 4 and len({r["code"] for r in reasons}) == len(reasons)
    assert all(r["reason"].startswith(GROUP_STATEMENTS[r["code"]]) for r in reasons)


def _client(platform: Platform, role: Role) -> TestClient:
    client = TestClient(create_app(platform))
    _, token = platform.keys.create(role, f"{role.value}-member")
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_score_over_http_for_a_customer_or_a_feature_dict(scored: World, champion_artefact: Path) -> None:
    platform, customers = scored.platform, scored.customers
    api = _client(platform, Role.SERVICE)
    champion = Scorer.load(champion_artefact)
    by_customer = api.post("/v1/scoring/score", json={"customer_id": customers[2]})
    assert by_customer.status_code == 200, by_customer.text
    body = by_customer.json()
    assert body["model_id"] == champion.model_id and body["as_of"] == "2026-03-03"
    assert body["customer_id"] == customers[2] and set(body["features"]) == set(FEATURE_NAMES)
    assert body["features"]["bill_days_late_mean_12m"] == 2  # paid two days after its due date
    assert body["score"] == champion.score(body["features"]).score

    features: dict[str, Any] = dict.fromkeys(champion.input_names)
    features |= {"tenure_days": 400, "bill_on_time_share_12m": 0.5}
    by_features = _client(platform, Role.PLATFORM_OPERATOR).post("/v1/scoring/score", json={"features": features})
    assert by_features.status_code == 200, by_features.text
    assert by_features.json() == champion.score(features).to_dict()


BAD_REQUESTS: list[tuple[dict[str, Any], int, str, str]] = [
    ({}, 422, "scoring.score_request_invalid", "customer_id"),
    ({"customer_id": "cus_x", "features": {}}, 422, "scoring.score_request_invalid", "customer_id"),
    ({"features": {"tenure_days": 3}, "as_of": "2026-03-01"}, 422, "scoring.score_request_invalid", "as_of"),
    ({"features": {"tenure_days": 3}}, 422, "scoring.features_missing", "features"),
    ({"customer_id": "cus_nobody"}, 404, "scoring.customer_unknown", "customer_id"),
    ({"customer_id": "x" * 33}, 422, "request.invalid", "customer_id"),
    ({"features": [1, 2]}, 422, "request.invalid", "features"),
]


def test_bad_requests_are_problem_json_with_a_stable_code(scored: World) -> None:
    api = _client(scored.platform, Role.SERVICE)
    for body, status, code, field in BAD_REQUESTS:
        response = api.post("/v1/scoring/score", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert (response.json()["code"], response.json().get("field")) == (code, field), body


def test_wrong_types_roles_and_a_tampered_champion(scored: World) -> None:
    platform, customers = scored.platform, scored.customers
    api = _client(platform, Role.SERVICE)
    champion = platform.scoring.champion()
    name = champion.input_names[0]
    features = dict.fromkeys(champion.input_names) | {name: "high"}
    wrong = api.post("/v1/scoring/score", json={"features": features})
    assert (wrong.status_code, wrong.json()["code"], wrong.json()["field"]) == (
        422,
        "scoring.feature_type_invalid",
        name,
    )
    consumer = _client(platform, Role.CONSUMER).post("/v1/scoring/score", json={"customer_id": customers[0]})
    assert (consumer.status_code, consumer.json()["code"]) == (403, "auth.forbidden")
    anonymous = TestClient(create_app(platform)).post("/v1/scoring/score", json={"customer_id": customers[0]})
    assert anonymous.status_code == 401

    model_json = champion.directory / "model.json"
    document = json.loads(model_json.read_text())
    document["base_points"] = 40.0
    model_json.write_text(json.dumps(document))
    tampered = api.post("/v1/scoring/score", json={"customer_id": customers[0]})
    assert (tampered.status_code, tampered.json()["code"]) == (503, "scoring.model_integrity_failed")


def test_batch_scores_the_population_from_the_store_and_from_history(
    scored: World, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform, customers = scored.platform, scored.customers
    champion = platform.scoring.champion()
    monkeypatch.setenv("CREDITSTACK_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        outputs = {}
        for as_of, source in (("2026-03-03", "store"), ("2026-03-02", "history"), ("2026-03-03", "history")):
            out = tmp_path / f"{as_of}-{source}.jsonl"
            done = runner.invoke(
                scoring_cli,
                ["batch", "--model", str(champion.directory), "--as-of", as_of, "--out", str(out), "--url", db_url,
                 "--source", "auto" if source == "store" else source],
            )  # fmt: skip
            assert done.exit_code == 0, done.output
            summary = json.loads(done.stdout.strip().splitlines()[-1])
            assert summary["source"] == source and summary["model_id"] == champion.model_id
            outputs[(as_of, source)] = [json.loads(line) for line in out.read_text().splitlines()]
    finally:
        get_settings.cache_clear()
    store = outputs[("2026-03-03", "store")]
    assert sorted(line["customer_id"] for line in store) == sorted(customers)
    assert [line["row"] for line in store] == [1, 2, 3]
    assert all(300 <= line["score"] <= 900 and len(line["reasons"]) <= 4 for line in store)
    # the store and the recomputation from history agree to the unit
    assert store == outputs[("2026-03-03", "history")]
    assert outputs[("2026-03-02", "history")] == []  # nothing happened before the platform's first day
    for line in store:
        vector = platform.scoring.features(line["customer_id"], date(2026, 3, 3))
        assert champion.score(vector.values).to_dict()["score"] == line["score"]

    exported = tmp_path / "features.csv"
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        update = runner.invoke(scoring_cli, ["features", "update", "--url", db_url])
        show = runner.invoke(scoring_cli, ["features", "show", customers[0], "--url", db_url])
        export = runner.invoke(scoring_cli, ["features", "export", "--as-of", "2026-03-03", "--out", str(exported),
                                             "--url", db_url])  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert update.exit_code == show.exit_code == export.exit_code == 0, (update.output, show.output, export.output)
    assert json.loads(update.stdout)["events"] == 0  # the batch brought the store up to date already
    assert json.loads(show.stdout)["values"] == json_values(platform.scoring.features(customers[0]).values)
    header, *lines = exported.read_text().splitlines()
    assert header.split(",") == ["customer_id", "as_of", *FEATURE_NAMES] and len(lines) == 3

    refused = CliRunner().invoke(scoring_cli, ["batch", "--model", str(tmp_path / "none"), "--as-of", "2026-03-03",
                                               "--url", db_url])  # fmt: skip
    assert refused.exit_code == 2 and json.loads(refused.stderr)["error"]["code"] == "scoring.model_not_found"
