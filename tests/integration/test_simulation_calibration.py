"""Calibration: the default economy's figures fall in the ranges documented in simulation/README.md.

One run of the default seed (1,000 consumers × 12 months on SQLite) — the figures are deterministic for the
seed, so this checks that the model as written produces the documented economy: delinquency among
borrowers, its relation to the latent risk and to what the platform can observe, line utilisation, the
payment mix, approvals and refusals for want of money.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from creditstack.core.settings import Settings
from creditstack.simulation.engine import SimulationConfig, open_simulation, summarise

CONSUMERS = 1_000
MONTHS = 12
pytestmark = pytest.mark.timeout(1200)  # one simulated year of 1,000 consumers: minutes, not seconds


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    var_dir = tmp_path_factory.mktemp("calibration")
    config = SimulationConfig(consumers=CONSUMERS, months=MONTHS)
    with open_simulation(Settings(var_dir=var_dir), config) as sim:
        sim.run()
        summary = summarise(sim)
        accounts = sim.store.accounts()
        truth = {row.consumer: row for row in sim.store.truth()}
        population = sim.population
    bad = {a.consumer for a in accounts if a.reached_90_on is not None}
    borrowers = {a.consumer for a in accounts}
    return {
        "summary": summary,
        "bad": bad,
        "borrowers": borrowers,
        "truth": truth,
        "population": population,
    }


def _rate(summary: dict[str, Any], name: str) -> Decimal:
    return Decimal(summary["calibration"][name])


@pytest.mark.slow
def test_borrowers_go_90_days_past_due_at_3_to_6_percent(economy: dict[str, Any]) -> None:
    summary = economy["summary"]
    assert len(economy["borrowers"]) >= 200
    assert Decimal("0.03") <= _rate(summary, "borrowers_90dpd_rate") <= Decimal("0.06")


@pytest.mark.slow
def test_delinquency_follows_the_latent_risk(economy: dict[str, Any]) -> None:
    quintiles = economy["summary"]["bad_by_risk_quintile"]
    low = sum(quintiles.get(q, {"bad": 0})["bad"] for q in ("1", "2"))
    low_n = sum(quintiles.get(q, {"borrowers": 0})["borrowers"] for q in ("1", "2"))
    high = quintiles["5"]["bad"]
    high_n = quintiles["5"]["borrowers"]
    assert high / high_n >= 2 * (low / max(low_n, 1))
    # nearly every borrower who went 90+ had a latent default episode (the ground truth explains them)
    truth = economy["truth"]
    explained = sum(1 for n in economy["bad"] if truth[n].default_month is not None)
    assert explained >= 0.8 * len(economy["bad"])


@pytest.mark.slow
def test_what_the_platform_can_observe_separates_the_bad(economy: dict[str, Any]) -> None:
    """Shocks — which the platform sees as income falling away — are more common among the bad."""
    p = economy["population"]
    borrowers = sorted(economy["borrowers"])
    shocked = np.array([bool(p.shock[n].any()) for n in borrowers])
    bad = np.array([n in economy["bad"] for n in borrowers])
    assert shocked[bad].mean() > shocked[~bad].mean()


@pytest.mark.slow
def test_utilisation_payment_mix_and_approvals_in_range(economy: dict[str, Any]) -> None:
    summary = economy["summary"]
    assert Decimal("0.10") <= _rate(summary, "line_utilisation") <= Decimal("0.50")
    mix = {k: Decimal(v) for k, v in summary["calibration"]["payment_mix"].items()}
    assert Decimal("0.45") <= mix["purchase"] + mix["purchase_line"] <= Decimal("0.70")
    assert Decimal("0.15") <= mix["bill"] <= Decimal("0.35")
    assert Decimal("0.10") <= mix["income"] <= Decimal("0.30")
    assert Decimal("0.40") <= _rate(summary, "approval_rate") <= Decimal("1.00")
    ops = summary["operations"]
    refused = ops.get("purchase:rejected", {"count": 0})["count"]
    assert refused <= Decimal("0.08") * (ops["purchase:completed"]["count"] + refused)
    assert summary["lending_reconcile_clean"] and summary["colending_reconcile_clean"]
