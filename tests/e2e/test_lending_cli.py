"""`creditstack lending …` as a user runs it, on a fresh SQLite directory: products, end of day (one date, then
through a later date), an account as JSON, and reconcile — clean, then broken by a stray ledger entry
(exit 1). Errors print their stable code and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from creditstack.app.platform import open_platform
from creditstack.core.money import Money
from creditstack.core.settings import Settings
from creditstack.payments.service import Income

BIN = Path(sys.executable).parent / "creditstack"


def run(args: list[str], workdir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDITSTACK_VAR_DIR": str(workdir / "var"), "COLUMNS": "200"}
    env.pop("CREDITSTACK_DATABASE_URL", None)
    result = subprocess.run(
        [str(BIN), *args], check=False, cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


def open_a_loan(workdir: Path) -> tuple[str, int]:
    """A consumer with a CNY 10,000 loan, made through the service on the CLI's database; returns the loan's
    id and the ledger id of the product's loans-receivable account."""
    platform = open_platform(Settings(var_dir=workdir / "var"))
    try:
        pay = platform.payments
        business_date = platform.ledger.business_date()
        customer = pay.register_customer(
            kind="consumer",
            legal_name="Mei Lin",
            national_id="E2E00001",
            date_of_birth=business_date.replace(year=1990),
            kyc_tier=2,
            incomes=[Income(business_date - timedelta(days=30), Money.of(12_000_000, "CNY"))],
        )["id"]
        wallet = pay.open_wallet(customer)["id"]
        lending = platform.lending
        applied = lending.apply(
            member="e2e",
            key="apply",
            customer_id=customer,
            wallet_id=wallet,
            product_code="cash-cny",
            amount_minor=1_000_000,
            term_months=6,
        )
        assert applied.status_code == 201, applied.body
        accepted = lending.accept(member="e2e", key="accept", application_id=applied.body["application_id"])
        assert accepted.status_code == 201, accepted.body
        receivable = platform.ledger.find_account("lending:cash-cny:loans_receivable")
        assert receivable is not None
        return str(accepted.body["account_id"]), receivable.id
    finally:
        platform.close()


def test_products_eod_account_and_reconcile(tmp_path: Path) -> None:
    table = run(["lending", "products"], tmp_path).stdout
    assert "cash-cny" in table and "line-cny" in table and "3–24 months" in table
    products = json.loads(run(["lending", "products", "--json"], tmp_path).stdout)
    assert {p["code"] for p in products["items"]} == {"cash-cny", "line-cny"}

    ref, receivable = open_a_loan(tmp_path)
    loan = json.loads(run(["lending", "account", ref], tmp_path).stdout)
    assert loan["account_id"] == ref and loan["balances"]["principal"] == {"amount_minor": 1_000_000, "currency": "CNY"}
    opened_on = loan["opened_on"]

    closed = run(["lending", "eod"], tmp_path).stdout  # the table of per-step timings
    for step in ("accrue", "bill", "statements", "age", "charge_off", "post_gl", "total"):
        assert step in closed
    assert opened_on in closed and "business date now" in closed
    again = json.loads(run(["lending", "eod", "--date", opened_on, "--json"], tmp_path).stdout)
    assert again["reports"][0]["already_complete"] is True
    today = date.fromisoformat(again["business_date"])
    assert today == date.fromisoformat(opened_on) + timedelta(days=1)
    through = today + timedelta(days=2)
    caught_up = json.loads(run(["lending", "eod", "--through", through.isoformat(), "--json"], tmp_path).stdout)
    assert [r["business_date"] for r in caught_up["reports"]] == [
        (today + timedelta(days=n)).isoformat() for n in range(3)
    ]
    assert caught_up["business_date"] == (through + timedelta(days=1)).isoformat()
    accrued = json.loads(run(["lending", "account", ref], tmp_path).stdout)
    assert accrued["accrued_through"] == through.isoformat()
    assert accrued["balances"]["interest_accrued_unbilled"]["amount_minor"] > 0

    clean = run(["lending", "reconcile"], tmp_path).stdout
    assert "lending:cash-cny:loans_receivable" in clean and "clean" in clean and "NOT CLEAN" not in clean
    report = json.loads(run(["lending", "reconcile", "--json"], tmp_path).stdout)
    assert report["clean"] is True

    # a stray entry on the loans-receivable account: the ledger no longer matches the subledger
    bank = json.loads(run(["ledger", "open-account", "stray-bank", "CNY", "--type", "asset"], tmp_path).stdout)
    run(["ledger", "transfer", str(receivable), str(bank["id"]), "123", "CNY", "--key", "stray"], tmp_path)
    broken = run(["lending", "reconcile"], tmp_path, check=False)
    assert broken.returncode == 1 and "NOT CLEAN" in broken.stdout
    broken_json = run(["lending", "reconcile", "--json"], tmp_path, check=False)
    assert broken_json.returncode == 1
    lines = [line for p in json.loads(broken_json.stdout)["products"] for line in p["accounts"]]
    assert [(line["gl_account"], line["difference_minor"]) for line in lines if line["difference_minor"]] == [
        ("lending:cash-cny:loans_receivable", 123)
    ]


def test_errors_print_their_code_and_exit_2(tmp_path: Path) -> None:
    missing = run(["lending", "account", "loan_nope"], tmp_path, check=False)
    assert missing.returncode == 2 and "lending.account_not_found" in missing.stderr
    future = run(["lending", "eod", "--date", "2999-01-01"], tmp_path, check=False)
    assert future.returncode == 2 and "lending.eod_date_invalid" in future.stderr
    both = run(["lending", "eod", "--date", "2026-01-01", "--through", "2026-01-02"], tmp_path, check=False)
    assert both.returncode == 2 and "not both" in both.stderr
    malformed = run(["lending", "eod", "--through", "soon"], tmp_path, check=False)
    assert malformed.returncode == 2 and "YYYY-MM-DD" in malformed.stderr


def test_an_explicit_database_url(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "platform.db"
    listed = json.loads(run(["lending", "products", "--json", "--url", f"sqlite:///{other}"], tmp_path).stdout)
    assert len(listed["items"]) == 2
    assert other.exists() and not (tmp_path / "var" / "platform.db").exists()
