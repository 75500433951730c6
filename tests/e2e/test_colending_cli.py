"""`creditstack colending …` as a user runs it, on a fresh SQLite directory: two partner banks and a co-funded
loan (made through the services on the CLI's database), the partners table, the daily settlement (then
again: `colending.settlement_exists`, exit 2), a statement as a table, JSON and CSV, and reconcile — clean,
then broken by a stray ledger entry on a partner's participations account (exit 1)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from creditstack.app.platform import open_platform
from creditstack.colending.service import Agreement
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


def co_funded_loan(workdir: Path) -> dict[str, object]:
    """Banks A and B, and a CNY 20,000 loan they co-fund with the platform; returns the ids."""
    platform = open_platform(Settings(var_dir=workdir / "var"))
    try:
        agreement = Agreement(
            products=("cash-cny",),
            share_min_bps=1_000,
            share_max_bps=5_000,
            exposure_cap_minor=50_000_000,
            score_floor=0,
            term_months_max=24,
            bank_rate=Decimal("0.045"),
        )
        partners = [
            platform.colending.register_partner(
                name=name,
                member=member,
                currency="CNY",
                net_tier1_capital_minor=100_000_000,
                total_loans_minor=400_000_000,
                agreement=agreement,
            )["partner_id"]
            for name, member in (("Bank A", "bank-a"), ("Bank B", "bank-b"))
        ]
        pay = platform.payments
        business_date = platform.ledger.business_date()
        customer = pay.register_customer(
            kind="consumer",
            legal_name="Mei Lin",
            national_id="E2ECL0001",
            date_of_birth=business_date.replace(year=1990),
            kyc_tier=2,
            incomes=[Income(business_date - timedelta(days=30), Money.of(60_000_000, "CNY"))],
        )["id"]
        wallet = pay.open_wallet(customer)["id"]
        applied = platform.lending.apply(
            member="e2e",
            key="apply",
            customer_id=customer,
            wallet_id=wallet,
            product_code="cash-cny",
            amount_minor=2_000_000,
            term_months=6,
        )
        assert applied.status_code == 201, applied.body
        accepted = platform.lending.accept(member="e2e", key="accept", application_id=applied.body["application_id"])
        assert accepted.status_code == 201, accepted.body
        shares = {s["funder"]: s["principal_minor"] for s in accepted.body["funding"]["shares"]}
        assert set(shares) == {"platform", *partners}
        participations = platform.ledger.find_account(f"colending:{partners[0]}:participations")
        assert participations is not None
        return {
            "partners": partners,
            "shares": shares,
            "opened_on": business_date.isoformat(),
            "participations_account": participations.id,
        }
    finally:
        platform.close()


def test_partners_settle_statement_and_reconcile(tmp_path: Path) -> None:
    book = co_funded_loan(tmp_path)
    a, b = book["partners"]  # type: ignore[misc]
    shares: dict[str, int] = book["shares"]  # type: ignore[assignment]
    opened_on = str(book["opened_on"])

    table = run(["colending", "partners"], tmp_path).stdout
    assert "Bank A" in table and "Bank B" in table and "cash-cny" in table and "1000–5000" in table
    listed = json.loads(run(["colending", "partners", "--json"], tmp_path).stdout)["items"]
    assert {p["partner_id"]: p["outstanding"]["amount_minor"] for p in listed} == {a: shares[a], b: shares[b]}

    run(["lending", "eod"], tmp_path)  # closes the date the loan was opened on
    settled = json.loads(run(["colending", "settle", "--json"], tmp_path).stdout)["items"]
    assert {s["partner_id"] for s in settled} == {a, b}
    for statement in settled:
        assert statement["business_date"] == opened_on and statement["direction"] == "bank_pays_platform"
        assert statement["net"]["amount_minor"] == -shares[statement["partner_id"]]
    again = run(["colending", "settle"], tmp_path, check=False)
    assert again.returncode == 2 and "colending.settlement_exists" in again.stderr
    nothing = run(["colending", "settle", "--date", "2000-01-03"], tmp_path).stdout
    assert "nothing to settle" in nothing

    shown = run(["colending", "statement", a, opened_on], tmp_path).stdout
    assert "funding" in shown and "net" in shown and "bank_pays_platform" in shown
    as_json = json.loads(run(["colending", "statement", a, opened_on, "--json"], tmp_path).stdout)
    assert as_json == next(s for s in settled if s["partner_id"] == a)
    rows = list(csv.DictReader(io.StringIO(run(["colending", "statement", a, opened_on, "--csv"], tmp_path).stdout)))
    net = next(int(r["amount_minor"]) for r in rows if r["account_id"] == "NET")
    lines = sum(int(r["amount_minor"]) for r in rows if r["account_id"] not in ("TOTAL", "NET"))
    assert lines == net == -shares[a]

    clean = run(["colending", "reconcile"], tmp_path).stdout
    assert a in clean and "clean" in clean and "NOT CLEAN" not in clean
    assert json.loads(run(["colending", "reconcile", "--json"], tmp_path).stdout)["clean"] is True

    # a stray entry on bank A's participations account: the ledger no longer matches the subledger
    stray = json.loads(run(["ledger", "open-account", "stray", "CNY", "--type", "liability"], tmp_path).stdout)
    account = str(book["participations_account"])
    run(["ledger", "transfer", account, str(stray["id"]), "123", "CNY", "--key", "stray"], tmp_path)
    broken = run(["colending", "reconcile"], tmp_path, check=False)
    assert broken.returncode == 1 and "NOT CLEAN" in broken.stdout
    report = json.loads(run(["colending", "reconcile", "--json"], tmp_path, check=False).stdout)
    assert {p["partner_id"] for p in report["partners"] if p["difference_minor"]} == {a}


def test_errors_print_their_code_and_exit_2(tmp_path: Path) -> None:
    missing = run(["colending", "statement", "bank_nope", "2026-03-02"], tmp_path, check=False)
    assert missing.returncode == 2 and "colending.partner_not_found" in missing.stderr
    malformed = run(["colending", "settle", "--date", "tomorrow"], tmp_path, check=False)
    assert malformed.returncode == 2 and "YYYY-MM-DD" in malformed.stderr
    both = run(["colending", "statement", "bank_nope", "2026-03-02", "--csv", "--json"], tmp_path, check=False)
    assert both.returncode == 2 and "not both" in both.stderr
