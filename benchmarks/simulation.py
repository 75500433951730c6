"""The synthetic economy at scale: consumers × months on SQLite through the platform's services.

    .venv/bin/python benchmarks/simulation.py                          # 100,000 consumers × 12 months (target ≤ 10 min)
    .venv/bin/python benchmarks/simulation.py --quick                  # 1,000 consumers × 1 month, under a minute
    .venv/bin/python benchmarks/simulation.py --consumers 20000 --months 3

A fresh SQLite platform (WAL, synchronous=FULL) in a temporary directory; the simulation runs with the
default seed. Reported: wall time, phases (seconds and operations per second: registrations, incomes,
bills, purchases, applications, repayments, planning reads, end of day, settlement), and the mix —
operations (service calls) and outbox events per consumer-month. Baseline, measured in the same run on a
fresh database of its own: the ledger's batched posting rate (`LedgerService.submit`, two-posting
transfers in batches of 10,000) — the floor under every payment, since each is one journal entry.

A second baseline, after the run: the raw write floor — every row the run left in the platform database,
written by plain `executemany` into a freshly migrated database (same indexes, constraints, triggers and
pragmas), parents first, 10,000 rows a transaction, timed without the reading. No code that leaves those
rows behind can be faster; `run_over_floor` says how far above it the platform runs, and
`raw_write_floor.minutes_per_100k_x_12` what the floor alone costs at the target's size.

The target is on 100,000 consumers × 12 months (1.2 million consumer-months) in ≤ 10 minutes. A smaller run
reports `minutes_per_100k_x_12` extrapolated linearly in consumer-months (marked `"extrapolated": true`),
which is optimistic: end of day grows with the book.

A table goes to stderr; the last line on stdout is one JSON object:
{"benchmark": "simulation", "figures": {...}, "targets": {"minutes_per_100k_x_12": {...}}}
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from creditstack.app.platform import open_platform
from creditstack.core import migrate
from creditstack.core.clock import FixedClock
from creditstack.core.settings import Settings
from creditstack.ledger.domain import transfer
from creditstack.simulation.engine import SimulationConfig, open_simulation, summarise

TARGET_MINUTES = 10.0
FULL = (100_000, 12)
QUICK = (1_000, 1)
PHASE_KINDS = {
    "register": ("register", "opening_top_up"),
    "incomes": ("income",),
    "bills": ("bill",),
    "purchases": ("purchase", "purchase_line"),
    "applications": ("apply", "accept", "open"),
    "repayments": ("repay_wallet", "repay_external", "recovery", "repay"),
}


def ledger_baseline(directory: Path, entries: int = 50_000) -> float:
    """Two-posting transfers per second through the ledger's batched path, fresh SQLite database."""
    clock = FixedClock(datetime(2026, 1, 1, 1, tzinfo=UTC))
    platform = open_platform(Settings(var_dir=directory), clock)
    try:
        ledger = platform.ledger
        bank = ledger.open_account(member="b", code="bench:bank", currency="CNY", type="asset")
        wallets = [
            ledger.open_account(member="b", code=f"bench:w{i}", currency="CNY", type="liability", no_overdraft=True)
            for i in range(1_000)
        ]
        commands = [
            transfer("b", f"bench:{i}", bank.id, wallets[i % len(wallets)].id, 100 + i % 900, "CNY")
            for i in range(entries)
        ]
        started = time.perf_counter()
        for start in range(0, entries, 10_000):
            ledger.submit(commands[start : start + 10_000])
        return entries / (time.perf_counter() - started)
    finally:
        platform.close()


FLOOR_CHUNK_ROWS = 10_000


def raw_write_floor(source: Path, directory: Path) -> tuple[float, int]:
    """Seconds to write every row the run left in the platform database with plain `executemany` into a
    freshly migrated database (same indexes, constraints and triggers, same pragmas), and the row count.

    A lower bound on any code that must leave those rows behind: each table's rows go in at once, parents
    before children, one transaction per 10,000 rows — no reads, no decisions, no updates (balances,
    loans, positions are written once, as they ended), no JSON built, far fewer commits than the run's."""
    url = f"sqlite:///{directory / 'floor.db'}"
    directory.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(url, "platform")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(directory / "floor.db", isolation_level=None)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        "cache_size=-262144",
        "temp_store=MEMORY",
    ):
        dst.execute(f"PRAGMA {pragma}")
    tables = [
        name
        for (name,) in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        if not name.startswith("sqlite_") and name != "alembic_version"
    ]
    parents = {t: {row[2] for row in src.execute(f"PRAGMA foreign_key_list({t})")} - {t} for t in tables}
    ordered: list[str] = []
    while len(ordered) < len(tables):
        ready = [t for t in tables if t not in ordered and parents[t] <= set(ordered)]
        if not ready:
            raise RuntimeError("foreign keys form a cycle")
        ordered += ready
    for table in ordered:  # rows a migration seeds (sequences, the business date) come from the run instead
        dst.execute(f"DELETE FROM {table}")
    rows_total = 0
    seconds = 0.0
    for table in ordered:
        columns = [row[1] for row in src.execute(f"PRAGMA table_info({table})")]
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        cursor = src.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid")
        while chunk := cursor.fetchmany(FLOOR_CHUNK_ROWS):
            started = time.perf_counter()
            dst.execute("BEGIN IMMEDIATE")
            dst.executemany(insert, chunk)
            dst.execute("COMMIT")
            seconds += time.perf_counter() - started
            rows_total += len(chunk)
    src.close()
    dst.close()
    return seconds, rows_total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 consumers × 1 month")
    parser.add_argument("--consumers", type=int)
    parser.add_argument("--months", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip the raw write floor after the run")
    args = parser.parse_args()
    consumers, months = QUICK if args.quick else FULL
    consumers = args.consumers or consumers
    months = args.months or months
    config = SimulationConfig(consumers=consumers, months=months, **({"seed": args.seed} if args.seed else {}))
    with tempfile.TemporaryDirectory(prefix="cs_sim_bench_") as tmp:
        directory = Path(tmp)
        baseline = ledger_baseline(directory / "baseline")
        settings = Settings(var_dir=directory / "sim")
        started = time.perf_counter()
        with open_simulation(settings, config) as sim:

            def on_day(day: Any) -> None:
                if day.day == 1:
                    print(f"{day}  {time.perf_counter() - started:8.1f} s", file=sys.stderr, flush=True)

            sim.run(on_day)
            wall = time.perf_counter() - started
            summary = summarise(sim)
            with sim.platform.db.engine.connect() as conn:
                events = conn.execute(sa.text("SELECT count(*) FROM outbox")).scalar_one()
            phases = dict(sim.phase_seconds)
            database = Path(str(sim.platform.db.engine.url.database))
        figures = run_figures(consumers, months, wall, summary, int(events), phases, baseline)
        if args.floor:  # the run's figures are on stderr already, should the floor be cut short
            floor_seconds, floor_rows = raw_write_floor(database, directory / "floor")
            consumer_months = consumers * months
            scale = (FULL[0] * FULL[1]) / consumer_months
            figures["raw_write_floor"] = {
                "rows": floor_rows,
                "rows_per_consumer_month": round(floor_rows / consumer_months, 1),
                "seconds": round(floor_seconds, 1),
                "rows_per_second": round(floor_rows / floor_seconds),
                "minutes_per_100k_x_12": round(floor_seconds / 60 * scale, 2),
                "run_over_floor": round(wall / floor_seconds, 2),
            }
            print(
                f"  raw write floor: {floor_rows:,} rows in {floor_seconds:.1f} s"
                f" ({floor_rows / floor_seconds:,.0f} rows/s), {floor_seconds / 60 * scale:.1f} minutes per"
                f" 100,000 × 12; the run is {wall / floor_seconds:.1f}× it",
                file=sys.stderr,
            )
    minutes_full = wall / 60 * (FULL[0] * FULL[1]) / (consumers * months)
    targets = {
        "minutes_per_100k_x_12": {"value": round(minutes_full, 2), "target": TARGET_MINUTES, "op": "<="},
    }
    print(json.dumps({"benchmark": "simulation", "figures": figures, "targets": targets}))


def run_figures(
    consumers: int,
    months: int,
    wall: float,
    summary: dict[str, Any],
    events: int,
    phases: dict[str, float],
    baseline: float,
) -> dict[str, Any]:
    """The run's figures (printed as a table to stderr as well)."""
    consumer_months = consumers * months
    ops = summary["operations"]
    calls = {
        phase: sum(v["count"] for k, v in ops.items() if k.split(":")[0] in kinds and not k.startswith("open:"))
        for phase, kinds in PHASE_KINDS.items()
    }
    total_calls = sum(calls.values())
    figures: dict[str, Any] = {
        "consumers": consumers,
        "months": months,
        "wall_seconds": round(wall, 1),
        "operations": total_calls,
        "operations_per_consumer_month": round(total_calls / consumer_months, 2),
        "events": events,
        "events_per_consumer_month": round(events / consumer_months, 2),
        "operations_per_second": round(total_calls / wall, 1),
        "phases": {
            name: {
                "seconds": round(seconds, 1),
                "operations": calls.get(name, 0),
                "per_second": round(calls[name] / seconds, 1) if calls.get(name) and seconds else None,
                "ms_per_consumer_month": round(seconds * 1000 / consumer_months, 3),
            }
            for name, seconds in sorted(phases.items(), key=lambda kv: -kv[1])
        },
        "baseline_ledger_batched_entries_per_second": round(baseline, 1),
        "operations_per_second_vs_ledger_batched": round(total_calls / wall / baseline, 3),
        "borrowers": summary["borrowers"],
        "calibration": summary["calibration"],
        "extrapolated": (consumers, months) != FULL,
    }
    print(f"{consumers} consumers × {months} months: {wall:.1f} s wall, {total_calls} operations", file=sys.stderr)
    for name, cell in figures["phases"].items():
        print(
            f"  {name:<22} {cell['seconds']:8.1f} s  {cell['operations']:>9} ops  {cell['per_second']}/s"
            f"  {cell['ms_per_consumer_month']} ms per consumer-month",
            file=sys.stderr,
        )
    print(f"  ledger batched baseline {baseline:,.0f} entries/s", file=sys.stderr, flush=True)
    return figures


if __name__ == "__main__":
    main()
