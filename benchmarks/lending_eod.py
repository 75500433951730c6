"""Lending end of day over a large book: every step timed, the median of three ordinary days, and a month end.

    .venv/bin/python benchmarks/lending_eod.py                 # 1,000,000 accounts on PostgreSQL, 100,000 on SQLite
    .venv/bin/python benchmarks/lending_eod.py --quick         # 20,000 on each, under a minute
    .venv/bin/python benchmarks/lending_eod.py --databases postgresql --accounts 200000

The book (loaded by COPY on PostgreSQL, executemany on SQLite, straight into the lending tables of a freshly
migrated platform database — its ledger entries are not part of the book, so reconcile is not asked here):

* half instalment loans (terms 3, 6 or 12 months, equal instalment; rows already due are settled), half
  revolving credit lines (one statement row each; 70 % inside the interest-free period);
* due days spread over 1–30, so that about 1/30 of the loans have an instalment due on each run's D+1, and
  statement days over 1–28 (1/28 of the lines close a statement each day);
* 5 % delinquent, days past due spread over 1–179, with an unpaid billed row and overdue principal;
* 0.1 % of the book reaches the charge-off threshold (180 days) on each of the first three runs.

End of day runs four times: 27, 28 and 29 April 2026 (ordinary days: the median of these is the figure)
and 30 April (a month end: also writes one account-month snapshot row per account). Each run's steps are
timed by the end-of-day runner itself. Baseline, measured in the same run on the same database: one plain
`UPDATE lending_accounts SET version = version + 1` over every row — the least any set-based pass over
the book must pay; the ratio end-of-day / baseline says how many such passes a day costs.

A table goes to stderr; the last line on stdout is one JSON object:
{"benchmark": "lending_eod", "figures": {...}, "targets": {"postgresql_eod_seconds": {...}}} (target ≤ 60 s
for 1,000,000 accounts on PostgreSQL; the SQLite figure is recorded without a target).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
EOD_TARGET_SECONDS = 60.0
FIRST_RUN = date(2026, 4, 27)
RUNS = 4  # 27, 28, 29 April (ordinary) and 30 April (month end)
DELINQUENT_SHARE = 0.05
CHARGE_OFF_SHARE = 0.001

ACCOUNT_COLUMNS = (
    "id",
    "ref",
    "customer_id",
    "wallet_id",
    "product_code",
    "kind",
    "currency",
    "status",
    "accruing",
    "opened_on",
    "rate_micro",
    "penalty_rate_micro",
    "days_per_year",
    "day_count",
    "limit_minor",
    "original_principal_minor",
    "principal_minor",
    "principal_billed_minor",
    "overdue_principal_minor",
    "interest_billed_minor",
    "accrued_through",
    "dpd",
    "bucket",
    "past_due_since",
    "first_delinquent_on",
    "statement_day",
    "grace",
    "stmt_date",
    "stmt_due_date",
    "stmt_balance_minor",
    "stmt_principal_minor",
    "funding",
    "version",
)
INSTALMENT_COLUMNS = (
    "account_id",
    "number",
    "kind",
    "due_date",
    "billed_on",
    "principal_due",
    "interest_due",
    "principal_paid",
    "interest_paid",
    "settled_on",
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_months(day: date, months: int, anchor: int) -> date:
    from creditstack.lending.calendar import add_months as add

    return add(day, months, anchor)


def bucket_of(dpd: int) -> int:
    return sum(1 for bound in (1, 30, 60, 90, 180) if dpd >= bound)


def generate(accounts: int, seed: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The book as rows: accounts and instalment rows (see module docstring)."""
    rng = random.Random(seed)
    d0 = FIRST_RUN
    first_due_after = d0 + timedelta(days=1)
    account_rows: list[tuple[Any, ...]] = []
    instalment_rows: list[tuple[Any, ...]] = []
    funding = json.dumps({"shares": [{"funder": "platform", "principal_minor": 0}]})
    charge_groups = max(1, round(accounts * CHARGE_OFF_SHARE))
    for i in range(1, accounts + 1):
        is_loan = i % 2 == 1
        delinquent = rng.random() < DELINQUENT_SHARE
        dpd = 0
        if i % max(1, accounts // charge_groups) == 0:
            delinquent = True
            dpd = 179 - (i // max(1, accounts // charge_groups)) % 3  # reaches 180 on run 1, 2 or 3
        elif delinquent:
            dpd = rng.randint(1, 175)
        past_due_since = d0 + timedelta(days=1) - timedelta(days=dpd) if delinquent else None
        if past_due_since is not None:
            past_due_since -= timedelta(days=1)  # the figure is as of D0's close: dpd = D0 + 1 - since
            dpd += 1
        if is_loan:
            term = rng.choice((3, 6, 12))
            principal = rng.randrange(50_000, 2_000_000)
            rate = rng.randrange(72_000, 216_001)
            due_day = 1 + (i // 2) % 30
            age = rng.randrange(0, term)  # instalments already due
            anchor = date(2026, 4, due_day)
            per = principal // term
            outstanding = principal
            billed = overdue = interest_billed = 0
            opened = add_months(anchor, -age - 1, due_day)
            for k in range(term):
                due = add_months(anchor, k - age, due_day)
                part = per if k < term - 1 else principal - per * (term - 1)
                interest = part * rate // 12_000_000
                if due < first_due_after and not (delinquent and k == age - 1):
                    instalment_rows.append(
                        (i, k + 1, "scheduled", due, due - timedelta(days=1), part, interest, part, interest, due)
                    )
                    outstanding -= part
                elif due < first_due_after:  # the delinquent row: billed, unpaid, due at past_due_since
                    assert past_due_since is not None
                    instalment_rows.append(
                        (i, k + 1, "scheduled", past_due_since, past_due_since, part, interest, 0, 0, None)
                    )
                    billed, overdue, interest_billed = part, part, interest
                else:
                    instalment_rows.append((i, k + 1, "scheduled", due, None, part, interest, 0, 0, None))
            if delinquent and not billed:  # a new loan cannot be late yet: make its first row the late one
                delinquent, dpd, past_due_since = False, 0, None
            account_rows.append(
                (
                    i,
                    f"loan_b{i:09d}",
                    f"cus_b{i:09d}",
                    f"wal_b{i:09d}",
                    "cash-cny",
                    "loan",
                    "CNY",
                    "active",
                    0 if dpd >= 90 else 1,
                    opened,
                    rate,
                    120_000,
                    365,
                    "ACT/365F",
                    principal,
                    principal,
                    outstanding,
                    billed,
                    overdue,
                    interest_billed,
                    d0 - timedelta(days=1),
                    dpd,
                    bucket_of(dpd),
                    past_due_since,
                    past_due_since,
                    None,
                    1,
                    None,
                    None,
                    0,
                    0,
                    funding,
                    0,
                )
            )
        else:
            limit = rng.randrange(1_000_000, 5_000_000)
            principal = rng.randrange(0, limit // 2)
            statement_day = 1 + (i // 2) % 28
            statement = date(2026, 4, statement_day) if statement_day < d0.day else date(2026, 3, statement_day)
            stmt_due = statement + timedelta(days=20)
            minimum = min(principal, max(10_000, principal // 10))
            grace = 0 if delinquent else (1 if rng.random() < 0.7 else 0)
            if delinquent:
                assert past_due_since is not None
                instalment_rows.append((i, 1, "statement", past_due_since, past_due_since, minimum, 0, 0, 0, None))
                billed = overdue = minimum
            else:
                settled = stmt_due <= d0
                instalment_rows.append(
                    (
                        i,
                        1,
                        "statement",
                        stmt_due,
                        statement,
                        minimum,
                        0,
                        minimum if settled else 0,
                        0,
                        stmt_due if settled else None,
                    )
                )
                billed = 0 if settled else minimum
                overdue = 0
            account_rows.append(
                (
                    i,
                    f"line_b{i:09d}",
                    f"cus_b{i:09d}",
                    f"wal_b{i:09d}",
                    "line-cny",
                    "line",
                    "CNY",
                    "active",
                    0 if dpd >= 90 else 1,
                    date(2025, 6, 1),
                    rng.randrange(73_000, 182_501),
                    120_000,
                    365,
                    "ACT/365F",
                    limit,
                    0,
                    principal,
                    billed,
                    overdue,
                    0,
                    d0 - timedelta(days=1),
                    dpd,
                    bucket_of(dpd),
                    past_due_since,
                    past_due_since,
                    statement_day,
                    grace,
                    statement,
                    stmt_due,
                    principal,
                    principal,
                    funding,
                    0,
                )
            )
    return account_rows, instalment_rows


def load(url: str, accounts: list[tuple[Any, ...]], instalments: list[tuple[Any, ...]]) -> None:
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn, conn.cursor() as cur:
            for table, columns, rows in (
                ("lending_accounts", ACCOUNT_COLUMNS, accounts),
                ("lending_instalments", INSTALMENT_COLUMNS, instalments),
            ):
                with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            cur.execute("SELECT setval(pg_get_serial_sequence('lending_accounts', 'id'), %s)", (len(accounts),))
            conn.commit()
            conn.autocommit = True
            cur.execute("VACUUM ANALYZE lending_accounts")
            cur.execute("VACUUM ANALYZE lending_instalments")
        return
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    with conn:
        for table, columns, rows in (
            ("lending_accounts", ACCOUNT_COLUMNS, accounts),
            ("lending_instalments", INSTALMENT_COLUMNS, instalments),
        ):
            marks = ", ".join("?" for _ in columns)
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                [tuple(v.isoformat() if isinstance(v, date) else v for v in row) for row in rows],
            )
    conn.execute("ANALYZE")
    conn.close()


def new_database(kind: str, pg_url: str, workdir: Path, created: list[str]) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'lending_eod.db'}"
    import psycopg

    name = f"bench_eod_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    created.append(name)
    return f"{pg_url.rpartition('/')[0]}/{name}"


def drop_databases(pg_url: str, names: list[str]) -> None:
    if not names:
        return
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def baseline_seconds(url: str) -> float:
    import sqlalchemy as sa

    from creditstack.core.db import Database

    db = Database(url)
    started = time.perf_counter()
    db.run(lambda conn: conn.execute(sa.text("UPDATE lending_accounts SET version = version + 1")))
    seconds = time.perf_counter() - started
    db.dispose()
    return seconds


def run_database(kind: str, url: str, accounts: int, seed: int, chunk_size: int) -> dict[str, Any]:
    from creditstack.app.platform import open_platform
    from creditstack.core.clock import FixedClock
    from creditstack.core.settings import Settings

    log(f"[{kind}] generating {accounts:,} accounts")
    started = time.perf_counter()
    account_rows, instalment_rows = generate(accounts, seed)
    clock = FixedClock(datetime(2026, 4, 27, 4, 0, tzinfo=UTC))  # business date 27 April in Asia/Shanghai
    with tempfile.TemporaryDirectory() as var:
        settings = Settings(database_url=url, var_dir=Path(var))
        platform = open_platform(settings, clock, eod_chunk_size=chunk_size)
        log(f"[{kind}] loading {len(account_rows):,} accounts and {len(instalment_rows):,} instalment rows")
        load(platform.settings.platform_database_url(), account_rows, instalment_rows)
        setup = time.perf_counter() - started
        log(f"[{kind}] set up in {setup:.1f} s; baseline pass")
        base = baseline_seconds(platform.settings.platform_database_url())
        runs = []
        for _ in range(RUNS):
            report = platform.lending.eod.run()[-1]
            runs.append(report.to_json())
            steps = ", ".join(f"{s['step']} {s['seconds']:.2f}" for s in runs[-1]["steps"])
            log(f"[{kind}] EOD {report.business_date}: {report.seconds:.2f} s ({steps})")
        platform.close()
    ordinary = [r["seconds"] for r in runs[:3]]
    median = statistics.median(ordinary)
    per_step: dict[str, float] = {}
    for step in runs[0]["steps"]:
        name = step["step"]
        per_step[name] = round(
            statistics.median(r_step["seconds"] for r in runs[:3] for r_step in r["steps"] if r_step["step"] == name), 3
        )
    return {
        "accounts": accounts,
        "instalment_rows": len(instalment_rows),
        "setup_seconds": round(setup, 1),
        "baseline_update_all_seconds": round(base, 3),
        "eod_seconds_runs": [r["seconds"] for r in runs],
        "eod_seconds_median": round(median, 3),
        "eod_over_baseline": round(median / base, 2) if base else None,
        "month_end_seconds": runs[-1]["seconds"],
        "median_step_seconds": per_step,
        "charged_off_rows": [next(s["rows"] for s in r["steps"] if s["step"] == "charge_off") for r in runs],
        "snapshot_rows": next(s["rows"] for s in runs[-1]["steps"] if s["step"] == "snapshot"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 accounts on each database")
    parser.add_argument("--accounts", type=int, default=None, help="PostgreSQL book size (1,000,000)")
    parser.add_argument("--sqlite-accounts", type=int, default=None, help="SQLite book size (100,000)")
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--seed", type=int, default=20260427)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT / "src"))
    sizes = {
        "postgresql": args.accounts or (20_000 if args.quick else 1_000_000),
        "sqlite": args.sqlite_accounts or (20_000 if args.quick else 100_000),
    }
    figures: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    created: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
                url = new_database(kind, args.pg_url, Path(workdir), created)
                figures[kind] = run_database(kind, url, sizes[kind], args.seed, args.chunk_size)
        finally:
            drop_databases(args.pg_url, created)
    log("")
    log(f"{'database':<12}{'accounts':>11}{'median EOD s':>14}{'month end s':>13}{'baseline s':>12}{'ratio':>8}")
    for kind, f in figures.items():
        log(
            f"{kind:<12}{f['accounts']:>11,}{f['eod_seconds_median']:>14.2f}{f['month_end_seconds']:>13.2f}"
            f"{f['baseline_update_all_seconds']:>12.2f}{f['eod_over_baseline']:>8}"
        )
    if "postgresql" in figures:
        pg = figures["postgresql"]
        scaled = pg["eod_seconds_median"] * 1_000_000 / pg["accounts"]
        targets["postgresql_eod_seconds_per_million"] = {
            "value": round(scaled, 2),
            "target": EOD_TARGET_SECONDS,
            "op": "<=",
        }
    print(json.dumps({"benchmark": "lending_eod", "figures": figures, "targets": targets}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
