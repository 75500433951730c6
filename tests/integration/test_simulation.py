"""The synthetic economy: the same seed gives the same economy; a run stopped anywhere (SIGKILL in the
middle of a day's batch or of end of day) and resumed equals an uninterrupted one; it runs on PostgreSQL;
month-end hooks are called; the books reconcile."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from creditstack.core.settings import Settings
from creditstack.simulation.engine import (
    Simulation,
    SimulationConfig,
    SimulationOutOfStep,
    open_simulation,
    summarise,
    training_set,
)

WORKER = Path(__file__).resolve().parent / "_simulation_worker.py"
SEED = 4242
CONSUMERS = 30
MONTHS = 3


def _digest(sim: Simulation) -> dict[str, Any]:
    """The platform's state as a user sees it, without generated ids: wallet balances by wallet (wallet and
    customer ids derive from idempotency keys), loans and lines by owner, outbox events by topic."""
    p = sim.platform
    with p.db.engine.connect() as conn:
        topics = Counter(r[0] for r in conn.execute(sa.text("SELECT topic FROM outbox")).all())
    wallets = {}
    for _, wallet in sorted(sim.consumers.values()):
        wallets[wallet] = p.payments.get_wallet(wallet)["balance"]
    accounts = []
    after = 0
    while True:
        page = p.lending.list_accounts(after=after, limit=500)
        for a in page:
            balances = {k: v["amount_minor"] for k, v in a["balances"].items()}
            accounts.append(
                (a["customer_id"], a["product_code"], a["status"], a["days_past_due"], sorted(balances.items()))
            )
        if len(page) < 500:
            break
        after = page[-1]["position"]
    return {
        "business_date": p.ledger.business_date(),
        "wallets": wallets,
        "accounts": sorted(accounts),
        "topics": dict(sorted(topics.items())),
        "journal_entries": p.ledger.journal_position(),
    }


def _run(var_dir: Path, months: int = MONTHS, seed: int = SEED) -> tuple[dict[str, Any], dict[str, Any]]:
    config = SimulationConfig(seed=seed, consumers=CONSUMERS, months=months)
    with open_simulation(Settings(var_dir=var_dir), config) as sim:
        sim.run()
        return summarise(sim), _digest(sim)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return _run(tmp_path_factory.mktemp("sim-a"))


def test_the_same_seed_gives_the_same_economy(
    uninterrupted: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    summary, digest = uninterrupted
    again_summary, again_digest = _run(tmp_path)
    assert again_summary == summary
    assert again_digest == digest
    # and it is an economy: people were paid, paid bills and shops, borrowed and repaid; the books agree
    ops = summary["operations"]
    for kind in ("opening_top_up", "income", "bill", "purchase"):
        assert ops[f"{kind}:completed"]["count"] > 0, kind
    assert summary["applications"]["total"] > 0
    assert summary["accounts"]["loans"] + summary["accounts"]["lines"] > 0
    assert sum(v["count"] for k, v in ops.items() if k.startswith("repay_") and k.endswith(":completed")) > 0
    assert summary["lending_reconcile_clean"] and summary["colending_reconcile_clean"]
    assert digest["business_date"] == date(2026, 4, 1)


def test_a_run_killed_anywhere_and_resumed_equals_an_uninterrupted_one(
    uninterrupted: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(tmp_path), str(SEED), str(CONSUMERS), str(MONTHS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        target, seen, finished = rng.randint(2, 12), 0, False
        for line in proc.stdout:
            finished = finished or line.startswith("done")
            seen += line.startswith("day")
            if seen >= target:
                time.sleep(rng.uniform(0.0, 0.15))  # into the next day's batch or end of day
                proc.kill()
                kills += 1
                break
        proc.stdout.close()
        proc.wait(timeout=300)
        if finished:
            break
    assert kills >= 2
    resumed = _run(tmp_path)
    assert resumed == uninterrupted


def test_a_longer_run_extends_a_shorter_one(
    uninterrupted: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path
) -> None:
    _run(tmp_path, months=1)
    assert _run(tmp_path, months=MONTHS) == uninterrupted


def test_month_end_hooks_run_once_per_month_end(tmp_path: Path) -> None:
    called: list[date] = []

    class Recorder:
        name = "recorder"

        def __call__(self, platform: Any, month_end: date) -> None:
            called.append(month_end)

    config = SimulationConfig(seed=SEED, consumers=5, months=2)
    with open_simulation(Settings(var_dir=tmp_path), config) as sim:
        sim.hooks = (Recorder(),)
        sim.run()
    assert called == [date(2026, 1, 31), date(2026, 2, 28)]


@pytest.mark.postgres
def test_the_simulation_gives_the_same_economy_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    config = SimulationConfig(seed=SEED, consumers=CONSUMERS, months=1)
    settings = Settings(var_dir=tmp_path, database_url=pg_url)
    with open_simulation(settings, config) as sim:
        sim.run()
        on_postgres = summarise(sim)
        assert sim.platform.ledger.audit().clean
    on_sqlite, _ = _run(tmp_path / "sqlite", months=1)
    assert on_postgres == on_sqlite
    assert on_postgres["lending_reconcile_clean"] and on_postgres["colending_reconcile_clean"]


def test_feature_store_and_history_agree_on_a_simulated_population(tmp_path: Path) -> None:
    """The scoring feature store, fed day by day from the outbox as the economy runs, equals the vectors
    recomputed from history at one as-of date (the month start the training snapshot was taken at)."""
    config = SimulationConfig(seed=SEED, consumers=CONSUMERS, months=2, training_snapshots=True)
    with open_simulation(Settings(var_dir=tmp_path), config) as sim:
        sim.run()
        as_of = date(2026, 2, 1)  # a month start inside the run: the store has moved on since
        snapshot = {row.customer_id: row.features for row in sim.store.feature_rows() if row.as_of == as_of}
        recomputed = sim.platform.scoring.store.recompute(as_of)
        rows = training_set(sim)
    assert len(snapshot) >= 20
    active = 0
    for customer, stored in snapshot.items():
        batch = recomputed[customer].values
        for name, value in batch.items():
            expected = None if math.isnan(value) else value
            assert stored[name] == expected, (customer, name)
        active += stored["spend_monthly_mean_minor_6m"] not in (None, 0)
    assert active >= 10  # real vectors, not empty ones
    assert {r["as_of"] for r in rows} == {"2026-02-01", "2026-03-01"}
    assert all(r["bad_12m"] in (0, 1) and "female" in r for r in rows)


def test_a_store_out_of_step_with_the_platform_is_refused_and_nothing_is_sent(tmp_path: Path) -> None:
    config = SimulationConfig(seed=SEED, consumers=5, months=1)
    settings = Settings(var_dir=tmp_path)
    with open_simulation(settings, config) as sim:
        sim.run()
        position = sim.platform.ledger.journal_position()
    (tmp_path / "simulation.db").unlink()  # a new store: it would start again on a platform already a month on
    with open_simulation(settings, config) as sim:
        with pytest.raises(SimulationOutOfStep) as refused:
            sim.run()
        assert refused.value.code == "simulation.out_of_step"
        assert sim.platform.ledger.journal_position() == position
        assert sim.platform.ledger.business_date() == date(2026, 2, 1)
