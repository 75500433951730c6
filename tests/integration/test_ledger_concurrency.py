"""A Jepsen-style bank test of the ledger under concurrent writers (PostgreSQL threads and processes; SQLite processes).

Six accounts: five no-overdraft wallets (wallet 0 is hot: half of all transfers pay from it) and a house fee
account that takes balance deltas (`uses_deltas`, credited a fee on most transfers). Workers, each with its
own `LedgerService` (own engine and pool), make random transfers through `ledger.execute` (group-commit
writer) and small `ledger.submit` batches (linked and unlinked), and retry a common pool of shared
idempotency keys (same payload from every worker) concurrently.

Afterwards we verify:
- conservation: wallets + house account sum to the funded total; no wallet balance or available < 0;
- `audit()` clean (balances re-derived from postings/holds/deltas, per-currency zero sum, gapless journal);
- the journal: count(entries) == max(seq) == the journal counter, min(seq) == 1, and the sequence numbers the
  workers were told are exactly the entries' seqs (no seq is reported twice, every committed result exists
  with its key);
- commit order (I7): for each worker, the fresh (non-replayed) entries of operations it completed one after
  another carry strictly increasing seqs (an op completed before the next was invoked has a smaller seq);
  and `committed_at` is non-decreasing in seq within a tolerance of 2 s (it is stamped at the start of the
  transaction, before the journal numbers are taken, so small inversions are expected);
- idempotency: every key has at most one entry; every worker that sent a shared key got the same body;
  at most one worker got it non-replayed; linked batches are all-or-nothing;
- no request raised (deadlock, serialisation failure, "database is locked" … — any exception fails the test)
  and, on PostgreSQL, the server's `pg_stat_database.deadlocks` for the test database did not move (so no
  deadlock was hidden by the retry loop either).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import SystemClock
from creditstack.core.settings import Settings
from creditstack.ledger.domain import transfer

HERE = Path(__file__).resolve().parent
WORKER_SCRIPT = HERE / "_crash_worker.py"
FUNDING = 10_000
WALLETS = 5


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


def _setup(platform: Platform) -> tuple[list[int], int, int]:
    ledger = platform.ledger
    bank = ledger.open_account(member="m", code="bank", currency="CNY", type="asset").id
    wallets = [
        ledger.open_account(member="m", code=f"wallet{i}", currency="CNY", type="liability", no_overdraft=True).id
        for i in range(WALLETS)
    ]
    fees = ledger.open_account(member="m", code="house:fees", currency="CNY", type="income", uses_deltas=True).id
    for w in wallets:
        assert ledger.execute(transfer("m", f"fund-{w}", bank, w, FUNDING, "CNY")).ok
    return wallets, fees, bank


def _run_threads(
    url: str, tmp_path: Path, n: int, ops: int, wallets: list[int], fees: int, *, shared: bool = True
) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        platform = _open(url, tmp_path)
        try:
            barrier.wait()
            logs.append(worker.bank_worker(platform.ledger, f"t{i}", 1000 + i, ops, wallets, fees, shared=shared))
        except BaseException as exc:
            failures.append(exc)
        finally:
            platform.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not failures, f"worker raised: {failures[0]!r}"
    assert len(logs) == n
    return logs


def _start_processes(url: str, tmp_path: Path, n: int, ops: int, wallets: list[int], fees: int) -> list[Any]:
    procs = []
    for i in range(n):
        out = tmp_path / f"p{i}.json"
        args = [str(x) for x in (url, tmp_path, f"p{i}", 2000 + i, ops, ",".join(map(str, wallets)), fees, out)]
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, str(WORKER_SCRIPT), "bank", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
                ),
                out,
            )
        )
    return procs


def _collect_processes(procs: list[Any]) -> list[dict[str, Any]]:
    logs = []
    for proc, out in procs:
        _, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"worker process failed:\n{stderr.decode()[-3000:]}"
        assert b"database is locked" not in stderr
        logs.append(json.loads(Path(out).read_text()))
    return logs


def _check(platform: Platform, logs: list[dict[str, Any]], wallets: list[int], fees: int) -> dict[str, int]:
    ledger = platform.ledger
    report = ledger.audit()
    assert report.clean, report.to_json()
    # conservation and non-negativity
    views = [ledger.get_account(w) for w in wallets]
    house = ledger.get_account(fees)
    assert sum(v.balance_minor for v in views) + house.balance_minor == FUNDING * len(wallets)
    for v in views:
        assert v.balance_minor >= 0 and v.available_minor >= 0, v

    with platform.db.transaction(readonly=True) as conn:
        count, low, high = conn.execute(sa.text("SELECT count(*), min(seq), max(seq) FROM ledger_entries")).one()
        entries = {
            int(r.seq): (r.member, r.idempotency_key, r.committed_at)
            for r in conn.execute(sa.text("SELECT seq, member, idempotency_key, committed_at FROM ledger_entries"))
        }
        dup_keys = conn.execute(
            sa.text(
                "SELECT member, idempotency_key, count(*) FROM ledger_entries "
                "GROUP BY member, idempotency_key HAVING count(*) > 1"
            )
        ).all()
    assert count == high == ledger.journal_position() and low == 1, (count, low, high)
    assert dup_keys == [], f"keys with more than one entry: {dup_keys}"

    # committed_at follows seq (it is the transaction's start time: allow 2 s of inversion)
    previous: datetime | None = None
    for seq in sorted(entries):
        at = entries[seq][2]
        at = datetime.fromisoformat(at) if isinstance(at, str) else at
        if previous is not None:
            assert (at - previous).total_seconds() > -2, f"committed_at goes back at seq {seq}"
        previous = at if previous is None or at > previous else previous

    reported: dict[int, str] = {}
    bodies: dict[str, list[tuple[bool, dict[str, Any]]]] = defaultdict(list)
    stats = {"ops": 0, "committed": 0, "rejected": 0, "replayed": 0}
    for log in logs:
        last_seq = 0
        for op in log["ops"]:
            stats["ops"] += 1
            results = op["results"]
            if op["kind"] == "linked":
                assert len({r["ok"] for r in results}) == 1, f"linked batch partly committed: {results}"
            fresh = [r["seq"] for r in results if r["ok"] and not r["replayed"]]
            for seq in fresh:
                assert seq > last_seq, f"{log['name']}: seq {seq} after {last_seq} (real-time order broken)"
                last_seq = seq
            for r in results:
                stats["replayed" if r["replayed"] else "committed" if r["ok"] else "rejected"] += 1
                if r["ok"]:
                    seq = r["seq"]
                    assert entries[seq][1] == r["key"], f"seq {seq} is {entries[seq][1]}, told {r['key']}"
                    assert reported.setdefault(seq, r["key"]) == r["key"]
                if r["key"].startswith("shared-"):
                    bodies[r["key"]].append((r["replayed"], r["body"]))
                else:
                    assert not r["replayed"], r
    for key, seen in bodies.items():
        assert all(body == seen[0][1] for _, body in seen), f"{key}: workers got different outcomes"
        assert sum(1 for replayed, _ in seen if not replayed) <= 1, f"{key} committed fresh more than once"
    committed_keys = {k for _, k, _ in entries.values()}
    for key, seen in bodies.items():
        assert (key in committed_keys) == (seen[0][1]["status"] == "committed")
    assert stats["committed"] > 100, stats
    return stats


def _pg_deadlocks(platform: Platform) -> int:
    with platform.db.transaction(readonly=True) as conn:
        return int(
            conn.execute(
                sa.text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            ).scalar_one()
        )


@pytest.mark.postgres
def test_bank_on_postgres_threads_and_processes(pg_url: str, tmp_path: Path) -> None:
    platform = _open(pg_url, tmp_path)
    try:
        wallets, fees, _ = _setup(platform)
        deadlocks = _pg_deadlocks(platform)
        procs = _start_processes(pg_url, tmp_path, 2, 60, wallets, fees)
        logs = _run_threads(pg_url, tmp_path, 8, 60, wallets, fees)
        logs += _collect_processes(procs)
        stats = _check(platform, logs, wallets, fees)
        assert stats["ops"] == 10 * 60
        assert _pg_deadlocks(platform) == deadlocks, "PostgreSQL detected deadlocks (retried silently)"
    finally:
        platform.close()


def test_bank_on_sqlite_two_processes(sqlite_url: str, tmp_path: Path) -> None:
    """SQLite serialises writers (BEGIN IMMEDIATE + busy timeout): two processes and two threads contend;
    no 'database is locked' may escape."""
    platform = _open(sqlite_url, tmp_path)
    try:
        wallets, fees, _ = _setup(platform)
        procs = _start_processes(sqlite_url, tmp_path, 2, 80, wallets, fees)
        logs = _run_threads(sqlite_url, tmp_path, 2, 40, wallets, fees)
        logs += _collect_processes(procs)
        _check(platform, logs, wallets, fees)
    finally:
        platform.close()


@pytest.mark.postgres
def test_compaction_concurrent_with_writers_loses_no_delta(pg_url: str, tmp_path: Path) -> None:
    """Hot-account compaction (`ledger.compact`) running while writers insert balance deltas."""
    platform = _open(pg_url, tmp_path)
    try:
        wallets, fees, _ = _setup(platform)
        stop = threading.Event()
        folded: list[int] = []
        errors: list[BaseException] = []

        def compactor() -> None:
            other = _open(pg_url, tmp_path)
            try:
                while not stop.is_set():
                    folded.append(other.ledger.compact())
            except BaseException as exc:
                errors.append(exc)
            finally:
                other.close()

        thread = threading.Thread(target=compactor)
        thread.start()
        try:
            logs = _run_threads(pg_url, tmp_path, 6, 50, wallets, fees, shared=False)
        finally:
            stop.set()
            thread.join(timeout=60)
        assert not errors, errors
        assert sum(folded) > 0
        _check(platform, logs, wallets, fees)
        platform.ledger.compact()
        assert platform.ledger.audit().clean
    finally:
        platform.close()


@pytest.mark.postgres
def test_same_key_from_many_workers_at_once_is_one_effect_and_replays(pg_url: str, tmp_path: Path) -> None:
    """BUG (ledger/service.py `_commit_groups`, with repository.py `_insert_keys`): on PostgreSQL the
    idempotency rows are written with COPY on the raw psycopg connection, so a concurrent duplicate key
    surfaces as `psycopg.errors.UniqueViolation`, not `sqlalchemy.exc.IntegrityError`; `_commit_groups`
    only catches the latter, so instead of deciding again (and replaying the first outcome) the request
    fails with UniqueViolation. (The same holds for a deadlock raised inside COPY: `Database.run` only
    retries `sa.exc.DBAPIError`.) Eight workers send the same request under the same key at once."""
    platform = _open(pg_url, tmp_path)
    try:
        wallets, _, _ = _setup(platform)
        n = 8
        services = [_open(pg_url, tmp_path) for _ in range(n)]
        try:
            for round_ in range(6):
                command = worker.shared_command(round_, wallets)
                barrier = threading.Barrier(n)
                results: list[Any] = []
                failures: list[BaseException] = []

                def send(
                    i: int,
                    command: Any = command,
                    barrier: threading.Barrier = barrier,
                    results: list[Any] = results,
                    failures: list[BaseException] = failures,
                ) -> None:
                    barrier.wait()
                    try:
                        results.append(services[i].ledger.submit([command])[0])
                    except BaseException as exc:
                        failures.append(exc)

                threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=60)
                assert not failures, f"round {round_}: {failures[0]!r}"
                assert len({json.dumps(r.body, sort_keys=True) for r in results}) == 1
                assert sum(1 for r in results if not r.replayed) == 1
        finally:
            for s in services:
                s.close()
        assert platform.ledger.audit().clean
    finally:
        platform.close()


@pytest.mark.postgres
def test_compaction_does_not_delete_a_delta_it_did_not_fold(pg_url: str, tmp_path: Path) -> None:
    """BUG (ledger/repository.py `fold_deltas`): under READ COMMITTED the fold reads max(id), sums the rows
    with id <= max, updates the accounts, then `DELETE … WHERE id <= max` — a *new* snapshot. A writer that
    inserted a delta with a smaller id before a later writer committed, and commits between the SUM and
    the DELETE, has its delta deleted without ever being folded: the hot account loses money and the
    audit reports a difference. Forced deterministically here with statement hooks: writer 1 pauses
    just before taking journal numbers (its delta row is written), writer 2 commits, the compactor sums,
    and writer 1 commits just before the compactor's DELETE."""
    platform = _open(pg_url, tmp_path)
    w1, w2, compactor = (_open(pg_url, tmp_path) for _ in range(3))
    try:
        wallets, fees, _ = _setup(platform)
        go_w1, w1_done = threading.Event(), threading.Event()

        @sa.event.listens_for(w1.db.engine, "before_cursor_execute")
        def pause_w1(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("UPDATE COMMIT_COUNTERS"):
                assert go_w1.wait(20)

        @sa.event.listens_for(compactor.db.engine, "before_cursor_execute")
        def let_w1_commit(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.lstrip().upper().startswith("DELETE FROM LEDGER_BALANCE_DELTAS"):
                go_w1.set()
                assert w1_done.wait(20)

        outcome: list[Any] = []

        def writer1() -> None:
            try:
                outcome.append(w1.ledger.submit([transfer("m", "fee-1", wallets[0], fees, 7, "CNY")])[0])
            finally:
                w1_done.set()

        thread = threading.Thread(target=writer1)
        thread.start()
        time.sleep(0.5)  # writer 1 has written its delta row and waits before the journal counter
        assert w2.ledger.submit([transfer("m", "fee-2", wallets[1], fees, 5, "CNY")])[0].ok
        compactor.ledger.compact()
        go_w1.set()
        thread.join(timeout=30)
        assert outcome and outcome[0].ok
        assert platform.ledger.get_account(fees).balance_minor == 12
        report = platform.ledger.audit()
        assert report.clean, report.to_json()
    finally:
        for p in (w1, w2, compactor, platform):
            p.close()
