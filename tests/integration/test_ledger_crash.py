"""A writer process killed with SIGKILL in the middle of linked batches, on SQLite and PostgreSQL.

`_crash_worker.py crash` loops submitting linked batches of 200 three-posting entries (bank -> wallet, plus
a 1-unit fee to a `uses_deltas` house account) with keys "{run}-b{batch}-e{i}" and prints a line after each
commit. We let it commit a few batches, kill it with SIGKILL at a random moment, and then, on a fresh
connection, verify:
- every linked batch is in the journal entirely (200 entries) or not at all, and every batch the worker
  reported committed is there, with the seqs it was told;
- `audit()` is clean (balances, deltas, holds vs postings; per-currency zero sum; gapless journal);
- resubmitting every batch the worker may have started (the same keys and payloads) completes the run:
  committed batches come back as replays with identical seqs, the missing ones commit, and no key has
  more than one entry; the audit is still clean.
Several kill points per database, each a new run on the same database.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import SystemClock
from creditstack.core.settings import Settings

HERE = Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "_crash_worker.py"
KILL_POINTS = 3


def _load_worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("creditstack_test_crash_worker", WORKER_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


def _open(url: str, var_dir: Path) -> Platform:
    return open_platform(Settings(database_url=url, var_dir=var_dir), SystemClock(), migrate_schema=False)


def _run_and_kill(url: str, var_dir: Path, tag: str, ids: list[int], rng: random.Random) -> dict[int, tuple[int, int]]:
    """Start the worker, wait for 2..5 committed batches, SIGKILL it at a random moment after that."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), "crash", url, str(var_dir), tag, *map(str, ids)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed: dict[int, tuple[int, int]] = {}
    target = rng.randint(2, 5)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 60
        while len(committed) < target:
            line = proc.stdout.readline()
            assert line, f"worker ended early: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "worker too slow"
            if line.startswith("committed"):
                _, batch, first, last = line.split()
                committed[int(batch)] = (int(first), int(last))
            else:
                assert line.strip() == "ready", line
        time.sleep(rng.uniform(0, 0.25))  # somewhere inside the next batch (or between two)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        # lines written before the kill may still be in the pipe
        for line in proc.stdout.read().splitlines():
            if line.startswith("committed"):
                _, batch, first, last = line.split()
                committed[int(batch)] = (int(first), int(last))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    return committed


def _batches_in_journal(platform: Platform, tag: str) -> dict[int, list[tuple[int, int]]]:
    """batch -> sorted [(entry index, seq)] of the run `tag`."""
    found: dict[int, list[tuple[int, int]]] = {}
    with platform.db.transaction(readonly=True) as conn:
        rows = conn.execute(
            sa.text("SELECT idempotency_key, seq FROM ledger_entries WHERE idempotency_key LIKE :p"),
            {"p": f"{tag}-b%"},
        )
        for key, seq in rows:
            _, batch, entry = key.rsplit("-", 2)
            found.setdefault(int(batch[1:]), []).append((int(entry[1:]), int(seq)))
    return {b: sorted(v) for b, v in found.items()}


def _crash_cycles(url: str, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    platform = _open(url, tmp_path)
    try:
        ledger = platform.ledger
        bank = ledger.open_account(member="m", code="bank", currency="CNY", type="asset").id
        wallet_a = ledger.open_account(member="m", code="wa", currency="CNY", type="liability", no_overdraft=True).id
        wallet_b = ledger.open_account(member="m", code="wb", currency="CNY", type="liability", no_overdraft=True).id
        fees = ledger.open_account(member="m", code="fees", currency="CNY", type="income", uses_deltas=True).id
        ids = [bank, wallet_a, wallet_b, fees]
    finally:
        platform.close()

    for cycle in range(KILL_POINTS):
        tag = f"run{cycle}"
        reported = _run_and_kill(url, tmp_path, tag, ids, rng)
        platform = _open(url, tmp_path)
        try:
            ledger = platform.ledger
            journal = _batches_in_journal(platform, tag)
            size = worker.BATCH_SIZE
            for batch, entries in journal.items():
                assert len(entries) == size, f"{tag}: linked batch {batch} is partial: {len(entries)}/{size}"
                seqs = [s for _, s in entries]
                assert seqs == list(range(seqs[0], seqs[0] + size)), f"batch {batch} seqs not consecutive"
            for batch, (first, last) in reported.items():
                assert batch in journal, f"{tag}: batch {batch} reported committed but missing"
                assert (journal[batch][0][1], journal[batch][-1][1]) == (first, last)
            assert set(journal) <= set(range(max(reported) + 2)), f"{tag}: unexpected batches {sorted(journal)}"
            report = ledger.audit()
            assert report.clean, report.to_json()

            # resubmit everything the worker may have started: replays for the committed, commits for the rest
            for batch in range(max(reported) + 2):
                commands = worker.crash_batch(tag, batch, *ids)
                results = ledger.submit(commands, linked=True)
                assert all(r.ok for r in results), results[0].body
                if batch in journal:
                    assert all(r.replayed for r in results)
                    assert [r.entry_seq for r in results] == [s for _, s in journal[batch]]
                else:
                    assert not any(r.replayed for r in results)
            after = _batches_in_journal(platform, tag)
            assert set(after) == set(range(max(reported) + 2))
            assert all(len(v) == worker.BATCH_SIZE for v in after.values())
            with platform.db.transaction(readonly=True) as conn:
                keys = Counter(k for (k,) in conn.execute(sa.text("SELECT idempotency_key FROM ledger_entries")).all())
            assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1][:5]
            report = ledger.audit()
            assert report.clean, report.to_json()
            # money: the wallets and the fee account hold exactly what the bank paid out
            bank_view, *rest = (ledger.get_account(i) for i in ids)
            assert bank_view.balance_minor == sum(v.balance_minor for v in rest)
        finally:
            platform.close()


def test_sigkill_mid_linked_batch_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    _crash_cycles(sqlite_url, tmp_path, seed=11)


@pytest.mark.postgres
def test_sigkill_mid_linked_batch_postgres(pg_url: str, tmp_path: Path) -> None:
    _crash_cycles(pg_url, tmp_path, seed=12)
