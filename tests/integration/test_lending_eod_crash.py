"""End of day killed with SIGKILL at random points, then rerun, ends identical to an uninterrupted run.

A book of loans and lines (some paid, some late) is built through the services; its database is copied.
On the copy A, end of day runs uninterrupted through a date. On the copy B, a worker process runs the same
end of day with small chunks and is killed with SIGKILL at random moments, several times, and started
again until it completes. Then A and B must hold the same loan states (every subledger column, by account
ref), the same instalment rows, the same ledger entries compared by idempotency key (postings by account
code, side and amount — not by ids or sequence numbers), the same ledger balances and the same outbox
events; both reconcile to the unit.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.settings import Settings
from creditstack.lending import tables as lt

HERE = Path(__file__).resolve().parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"creditstack_test_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


book_module = _load("_lending_book")
WORKER = HERE / "_eod_crash_worker.py"
KILLS = 4
DAYS = 40
CHUNK = 4


def _open(url: str, var_dir: Path, clock: FixedClock) -> Platform:
    return open_platform(Settings(database_url=url, var_dir=var_dir), clock, migrate_schema=False, eod_chunk_size=CHUNK)


def _copy(url: str, tmp_path: Path, name: str) -> str:
    if url.startswith("sqlite:///"):
        source = Path(url.removeprefix("sqlite:///"))
        target = tmp_path / f"{name}.db"
        for suffix in ("", "-wal"):
            if Path(f"{source}{suffix}").exists():
                shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
        return f"sqlite:///{target}"
    import psycopg

    base, _, source_name = url.rpartition("/")
    target_name = f"cs_crash_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres".replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{target_name}" TEMPLATE "{source_name}"')
    return f"{base}/{target_name}"


def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        import psycopg

        base, _, name = url.rpartition("/")
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _state(platform: Platform) -> dict[str, Any]:
    skip_account = {"id", "version"}

    def work(conn: sa.Connection) -> dict[str, Any]:
        accounts = {
            row.ref: {k: v for k, v in row._mapping.items() if k not in skip_account}
            for row in conn.execute(sa.select(lt.accounts))
        }
        refs = {row.id: row.ref for row in conn.execute(sa.select(lt.accounts.c.id, lt.accounts.c.ref))}
        instalments = sorted(
            (refs[row.account_id], *[v for k, v in row._mapping.items() if k != "account_id"])
            for row in conn.execute(sa.select(lt.instalments))
        )
        statements = sorted(
            (refs[row.account_id], *[v for k, v in row._mapping.items() if k != "account_id"])
            for row in conn.execute(sa.select(lt.statements))
        )
        codes = dict(conn.execute(sa.text("SELECT id, code FROM ledger_accounts")).all())
        postings: dict[str, list[tuple[Any, ...]]] = {}
        for key, account_id, side, amount in conn.execute(
            sa.text(
                "SELECT e.idempotency_key, p.account_id, p.side, p.amount_minor FROM ledger_entries e "
                "JOIN ledger_postings p ON p.entry_seq = e.seq"
            )
        ):
            postings.setdefault(key, []).append((codes[account_id], side, int(amount)))
        entries = {key: sorted(legs) for key, legs in postings.items()}
        events = Counter(
            (
                row.topic,
                row.aggregate_id,
                str(sorted(row.payload.items())) if isinstance(row.payload, dict) else row.payload,
            )
            for row in conn.execute(sa.text("SELECT topic, aggregate_id, payload FROM outbox"))
        )
        snapshots = sorted(
            tuple(v for k, v in row._mapping.items() if k != "account_id")
            for row in conn.execute(sa.select(lt.snapshots))
        )
        return {
            "accounts": accounts,
            "instalments": instalments,
            "statements": statements,
            "entries": entries,
            "events": events,
            "snapshots": snapshots,
        }

    state = platform.db.run(work, readonly=True)
    state["balances"] = {a.code: a.balance_minor for a in _all_accounts(platform)}
    state["business_date"] = platform.ledger.business_date()
    return state


def _all_accounts(platform: Platform) -> list[Any]:
    out, after = [], 0
    while True:
        page = platform.ledger.list_accounts(after_id=after, limit=500)
        if not page:
            return out
        out.extend(page)
        after = page[-1].id


def _postings_table_has_entry_seq(platform: Platform) -> None:
    columns = {c["name"] for c in sa.inspect(platform.db.engine).get_columns("ledger_postings")}
    assert {"entry_seq", "account_id", "side", "amount_minor"} <= columns


@pytest.mark.slow
def test_end_of_day_killed_and_rerun_ends_identical_to_an_uninterrupted_run(
    db_url: str, clock: FixedClock, tmp_path: Path
) -> None:
    rng = random.Random(20261123)
    platform = _open(db_url, tmp_path, clock)
    _postings_table_has_entry_seq(platform)
    book = book_module.build(platform, loans=14, lines=8, tag="c")
    for day in range(6):  # a little history: some repayments, more purchases
        if day == 2:
            for ref in book.loans[::3]:
                quote = platform.lending.payoff_quote(ref)
                platform.lending.repay(
                    member="book", key=f"pre-{ref}", account_id=ref, amount_minor=quote["total"]["amount_minor"] // 3
                )
        if day == 4:
            for n, line in enumerate(book.lines[::2]):
                book_module.draw(platform, book, line, 15_000 + n, f"late-{n}")
        platform.lending.eod.run()
    start = platform.ledger.business_date()
    through = start + timedelta(days=DAYS)
    platform.close()
    url_a, url_b = _copy(db_url, tmp_path, "a"), _copy(db_url, tmp_path, "b")
    try:
        a = _open(url_a, tmp_path, clock)
        a.lending.eod.catch_up(through)
        expected = _state(a)
        assert a.lending.reconcile()["clean"]
        a.close()

        # Each killed run is killed at a random point of its own progress: after a random number of committed
        # chunks and a random few milliseconds more, so the kill lands inside end-of-day work (never during
        # interpreter start-up) however fast or slow the machine is. A run that reaches "done" first counts
        # as the uninterrupted run.
        kills = 0
        completed = False
        for _attempt in range(KILLS + 1):
            with (tmp_path / "worker.err").open("w+") as err:
                proc = subprocess.Popen(
                    [sys.executable, str(WORKER), url_b, str(tmp_path), through.isoformat(), str(CHUNK)],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
                assert proc.stdout is not None
                target = rng.randint(1, 12) if kills < KILLS else None
                seen = 0
                lines = []
                for line in proc.stdout:
                    lines.append(line)
                    if line.startswith("chunk"):
                        seen += 1
                    if target is not None and seen >= target:
                        time.sleep(rng.uniform(0.0, 0.05))
                        proc.kill()
                        kills += 1
                        break
                proc.stdout.close()
                proc.wait(timeout=600)
                if "done\n" in lines:
                    assert proc.returncode == 0, err.seek(0) or err.read()[-2000:]
                    completed = True
                    break
                if target is None or seen < target:
                    err.seek(0)
                    pytest.fail(f"the worker ended without finishing (rc {proc.returncode}): {err.read()[-2000:]}")
        assert completed, "the worker never completed"
        assert kills >= 1, "no kill landed inside end of day"

        b = _open(url_b, tmp_path, clock)
        got = _state(b)
        assert b.lending.reconcile()["clean"]
        assert b.ledger.audit().clean
        b.close()
        assert got["business_date"] == expected["business_date"] == through + timedelta(days=1)
        for name in ("accounts", "instalments", "statements", "entries", "events", "snapshots", "balances"):
            assert got[name] == expected[name], name
    finally:
        _drop(url_a)
        _drop(url_b)
