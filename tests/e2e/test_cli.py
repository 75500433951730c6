"""The command line as a user runs it: demo, keys, ledger commands and audit, on a fresh SQLite directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_demo_builds_a_book_that_audits_clean_and_is_idempotent(tmp_path: Path) -> None:
    first = json.loads(run(["tour", "--no-serve"], tmp_path).stdout)
    assert first["audit_clean"] is True
    assert first["peer_transfers_committed"] + first["peer_transfers_rejected"] == 2000
    assert first["fee_income"] == {"amount_minor": 168, "currency": "CNY"}
    lending = first["lending"]  # loans and lines co-funded by three banks, forty days of servicing
    assert lending["loans_and_lines"] > 0 and len(lending["partners"]) == 3
    assert lending["lending_reconcile_clean"] is True and lending["colending_reconcile_clean"] is True
    assert sum(lending["accounts_by_dpd_bucket"].values()) == lending["loans_and_lines"]
    assert any(bucket != "0" for bucket in lending["accounts_by_dpd_bucket"])  # some never pay: they are late
    again = json.loads(run(["tour", "--no-serve"], tmp_path).stdout)
    assert again["journal_entries"] == first["journal_entries"]  # replays changed nothing
    assert (tmp_path / "var" / "platform.db").exists()


def test_demo_simulates_a_population_reconciles_and_hands_out_logins(tmp_path: Path) -> None:
    first = json.loads(run(["demo", "--no-serve", "--consumers", "12", "--months", "1"], tmp_path).stdout)
    assert first["consumers"] == 12 and first["months"] == 1
    assert first["operations"]["purchase:completed"]["count"] > 0
    assert first["lending_reconcile_clean"] and first["colending_reconcile_clean"] and first["ledger_audit_clean"]
    assert first["demo_logins"] == ["partner_bank", "platform_operator"] or "consumer" in first["demo_logins"]
    again = json.loads(run(["demo", "--no-serve", "--consumers", "12", "--months", "1"], tmp_path).stdout)
    assert again["operations"] == first["operations"]  # finished days are not simulated twice
    other = run(["demo", "--no-serve", "--consumers", "13", "--months", "1"], tmp_path, check=False)
    assert other.returncode == 2 and "simulation.run_mismatch" in other.stderr


def test_keys_and_ledger_commands(tmp_path: Path) -> None:
    key = json.loads(run(["keys", "create", "--role", "partner_bank", "--member", "bank-a"], tmp_path).stdout)
    assert key["api_key"].startswith("cs_") and key["role"] == "partner_bank"
    bad = run(["keys", "create", "--role", "wizard"], tmp_path, check=False)
    assert bad.returncode == 2 and "auth.unknown_role" in bad.stderr
    bank = json.loads(run(["ledger", "open-account", "bank", "CNY", "--type", "asset"], tmp_path).stdout)
    wallet = json.loads(
        run(["ledger", "open-account", "w1", "CNY", "--type", "liability", "--no-overdraft"], tmp_path).stdout
    )
    moved = json.loads(
        run(["ledger", "transfer", str(bank["id"]), str(wallet["id"]), "1500", "CNY", "--key", "t1"], tmp_path).stdout
    )
    assert moved["status"] == "committed"
    refused = run(
        ["ledger", "transfer", str(wallet["id"]), str(bank["id"]), "2000", "CNY", "--key", "t2"], tmp_path, check=False
    )
    assert refused.returncode == 1 and "ledger.insufficient_funds" in refused.stdout
    balance = json.loads(run(["ledger", "balance", str(wallet["id"])], tmp_path).stdout)
    assert balance["available"] == {"amount_minor": 1500, "currency": "CNY"}
    entries = [
        {
            "idempotency_key": f"f{i}",
            "postings": [
                {"account_id": bank["id"], "side": "debit", "amount": {"amount_minor": 10, "currency": "CNY"}},
                {"account_id": wallet["id"], "side": "credit", "amount": {"amount_minor": 10, "currency": "CNY"}},
            ],
        }
        for i in range(50)
    ]
    path = tmp_path / "entries.json"
    path.write_text(json.dumps(entries))
    posted = json.loads(run(["ledger", "post-file", str(path), "--batch-size", "20"], tmp_path).stdout)
    assert posted == {"committed": 50, "rejected": 0}
    audit = json.loads(run(["ledger", "audit"], tmp_path).stdout)
    assert audit["clean"] is True and audit["entries"] == 51


def test_serve_answers_health_and_openapi(tmp_path: Path) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run(["init"], tmp_path)
    env = {**os.environ, "CREDITSTACK_VAR_DIR": str(tmp_path / "var")}
    env.pop("CREDITSTACK_DATABASE_URL", None)
    server = subprocess.Popen(
        [str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        spec = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
        assert "/v1/ledger/transfers" in spec["paths"]
        refused = httpx.get(f"http://127.0.0.1:{port}/v1/ledger/accounts", timeout=5)
        assert refused.status_code == 401 and refused.headers["content-type"].startswith("application/problem+json")
    finally:
        server.terminate()
        server.wait(timeout=15)
