"""Co-lending daily settlement over a large co-funded book: share a day's cash flows and settle every partner.

    .venv/bin/python benchmarks/colending_settlement.py            # 1,000,000 loans, 20 partners, PostgreSQL
    .venv/bin/python benchmarks/colending_settlement.py --quick    # 20,000 loans, under a minute

The book is loaded straight into the co-lending tables of a freshly migrated platform database: 1,000,000
loans (principal 5,000–200,000 CNY), each with the platform's share (⌈30 %⌉) and 1–3 of 20 partner banks
sharing the rest; funding already settled (an opening ledger entry gives each partner's `participations`
account its stake). The day: about 1/30 of the loans pay an instalment (principal, interest, fees and
penalty components), 0.1 % are charged off and 0.05 % bring a recovery — lending's own outbox events,
written as lending writes them. Timed: `process_all()` (every event's components shared among the loan's
participants by cumulative largest remainder, per-partner movements written) and `settle()` (per partner:
one netted ledger entry, one rail payment, its statement). Then `reconcile()` must be clean and each
statement's net must equal its ledger entry's cash leg.

Baseline, same run and database: the same movement rows written by one plain COPY (PostgreSQL) or
executemany (SQLite) into a scratch table of the same shape — the raw write rate the settlement is
compared with.

The last line on stdout is one JSON object: {"benchmark": "colending_settlement", "figures": {...},
"targets": {"postgresql_settlement_seconds_per_million": {"value", "target": 60, "op": "<="}}}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_SECONDS = 60.0
PARTNERS = 20
DAY = date(2026, 4, 27)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def new_database(kind: str, pg_url: str, workdir: Path, created: list[str]) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'colending.db'}"
    import psycopg

    name = f"bench_cl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    created.append(name)
    return f"{pg_url.rpartition('/')[0]}/{name}"


def book(loans: int, seed: int) -> tuple[list[tuple[Any, ...]], dict[str, int], list[tuple[str, str, dict[str, Any]]]]:
    """Participation rows, each partner's stake, and the day's events (topic, payload) per loan."""
    rng = random.Random(seed)
    partners = [f"bank{n:02d}" for n in range(PARTNERS)]
    rows: list[tuple[Any, ...]] = []
    stakes = dict.fromkeys(partners, 0)
    events: list[tuple[str, str, dict[str, Any]]] = []
    for i in range(loans):
        ref = f"loan_c{i:09d}"
        principal = rng.randrange(500_000, 20_000_000)
        rate = rng.randrange(72_000, 216_000)
        platform = -(-principal * 3 // 10)
        chosen = rng.sample(partners, rng.randint(1, 3))
        rest = principal - platform
        parts = [rest // len(chosen)] * len(chosen)
        parts[0] += rest - sum(parts)
        bank_rate = 60_000
        interest_platform = platform * rate + sum(p * (rate - min(rate, bank_rate)) for p in parts)
        rows.append((ref, "platform", "cash-cny", "CNY", "loan", platform, interest_platform, platform, DAY))
        for bank, part in zip(chosen, parts, strict=True):
            rows.append((ref, bank, "cash-cny", "CNY", "loan", part, part * min(rate, bank_rate), part, DAY))
            stakes[bank] += part
        roll = rng.random()
        if roll < 1 / 30:
            instalment = principal // 12
            events.append(
                (
                    "lending.repayment_received",
                    ref,
                    {
                        "amount_minor": instalment + principal * rate // 12_000_000,
                        "principal_minor": instalment,
                        "interest_minor": principal * rate // 12_000_000,
                        "fees_minor": 2_000 if rng.random() < 0.05 else 0,
                        "penalty_minor": rng.randrange(0, 500) if rng.random() < 0.05 else 0,
                        "currency": "CNY",
                    },
                )
            )
        elif roll < 1 / 30 + 0.001:
            events.append(("lending.charged_off", ref, {"principal_minor": principal, "currency": "CNY"}))
        elif roll < 1 / 30 + 0.0015:
            events.append(("lending.recovered", ref, {"amount_minor": principal // 10, "currency": "CNY"}))
    return rows, stakes, events


def load(platform: Any, rows: list[tuple[Any, ...]], stakes: dict[str, int], events: list[Any]) -> None:
    import sqlalchemy as sa

    from creditstack.colending.service import Agreement
    from creditstack.core import sequence
    from creditstack.core.db import driver_connection
    from creditstack.core.tables import PLATFORM_CORE
    from creditstack.ledger.domain import PostEntry, PostingSpec, Side

    for n in range(PARTNERS):
        pid = f"bank{n:02d}"
        platform.colending.register_partner(
            name=f"Partner bank {n}",
            member=f"partner-{n}",
            currency="CNY",
            net_tier1_capital_minor=10**15,
            total_loans_minor=10**16,
            agreement=Agreement(
                products=("cash-cny",),
                share_min_bps=500,
                share_max_bps=7_000,
                exposure_cap_minor=10**15,
                score_floor=0,
                term_months_max=24,
                bank_rate=Decimal("0.060000"),
            ),
            partner_id=pid,
        )
    columns = (
        "account_ref, participant, product_code, currency, kind, weight_minor, interest_weight, "
        "outstanding_minor, opened_on"
    )
    is_pg = platform.db.is_postgres

    def write(conn: Any) -> None:
        raw = driver_connection(conn)
        if is_pg:
            with raw.cursor() as cur, cur.copy(f"COPY colending_participations ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            raw.executemany(
                f"INSERT INTO colending_participations ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*r[:8], r[8].isoformat()) for r in rows],
            )
        for pid, stake in stakes.items():
            conn.execute(
                sa.text("UPDATE colending_partners SET outstanding_minor = :s WHERE id = :p"), {"s": stake, "p": pid}
            )
        first = sequence.take(conn, PLATFORM_CORE, "outbox", len(events))
        now = datetime.now(UTC)
        conn.execute(
            PLATFORM_CORE.outbox.insert(),
            [
                {
                    "position": first + k,
                    "topic": topic,
                    "aggregate_id": ref,
                    "business_date": DAY,
                    "created_at": now,
                    "payload": payload,
                }
                for k, (topic, ref, payload) in enumerate(events)
            ],
        )

    platform.db.run(write)
    opening = platform.ledger.open_account(member="bench", code="bench:opening", currency="CNY", type="equity")
    entries = []
    for pid, stake in stakes.items():
        if stake:
            account = platform.ledger.find_account(f"colending:{pid}:participations")
            entries.append(
                PostEntry(
                    "bench",
                    f"opening-{pid}",
                    (
                        PostingSpec(opening.id, Side.DEBIT, stake, "CNY"),
                        PostingSpec(account.id, Side.CREDIT, stake, "CNY"),
                    ),
                )
            )
    results = platform.ledger.submit(entries)
    assert all(r.ok for r in results), results
    if is_pg:
        with platform.db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM ANALYZE"))


def baseline_seconds(platform: Any) -> float:
    """COPY / executemany of the movement rows the run wrote, into a scratch table of the same shape."""
    import sqlalchemy as sa

    from creditstack.core.db import driver_connection

    rows = platform.db.run(
        lambda conn: conn.execute(
            sa.text(
                "SELECT partner_id, business_date, account_ref, component, amount_minor, event_position "
                "FROM colending_movements"
            )
        ).all(),
        readonly=True,
    )
    is_pg = platform.db.is_postgres
    platform.db.run(
        lambda conn: conn.execute(
            sa.text(
                "CREATE TABLE bench_movements (id INTEGER PRIMARY KEY, partner_id VARCHAR(32), business_date DATE, "
                "account_ref VARCHAR(32), component VARCHAR(16), amount_minor BIGINT, event_position BIGINT, "
                "settlement_id VARCHAR(32))"
                if not is_pg
                else "CREATE TABLE bench_movements (id BIGSERIAL PRIMARY KEY, partner_id VARCHAR(32), "
                "business_date DATE, account_ref VARCHAR(32), component VARCHAR(16), amount_minor BIGINT, "
                "event_position BIGINT, settlement_id VARCHAR(32))"
            )
        )
    )
    platform.db.run(
        lambda conn: [
            conn.execute(sa.text(ddl))
            for ddl in (
                "CREATE INDEX ix_bench_movements_partner_date ON bench_movements (partner_id, business_date)",
                "CREATE INDEX ix_bench_movements_account ON bench_movements (account_ref)",
            )
        ]
    )
    started = time.perf_counter()

    def write(conn: Any) -> None:
        raw = driver_connection(conn)
        cols = "partner_id, business_date, account_ref, component, amount_minor, event_position"
        if is_pg:
            with raw.cursor() as cur, cur.copy(f"COPY bench_movements ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(tuple(row))
        else:
            raw.executemany(f"INSERT INTO bench_movements ({cols}) VALUES (?, ?, ?, ?, ?, ?)", [tuple(r) for r in rows])

    platform.db.run(write)
    return time.perf_counter() - started


def run(kind: str, url: str, loans: int, seed: int) -> dict[str, Any]:
    from creditstack.app.platform import open_platform
    from creditstack.core.clock import FixedClock
    from creditstack.core.settings import Settings

    log(f"[{kind}] generating {loans:,} co-funded loans")
    rows, stakes, events = book(loans, seed)
    clock = FixedClock(datetime(2026, 4, 28, 4, 0, tzinfo=UTC))  # business date 28 April: settling the 27th
    with tempfile.TemporaryDirectory() as var:
        platform = open_platform(Settings(database_url=url, var_dir=Path(var)), clock)
        log(f"[{kind}] loading {len(rows):,} participations and {len(events):,} events")
        started = time.perf_counter()
        load(platform, rows, stakes, events)
        log(f"[{kind}] loaded in {time.perf_counter() - started:.1f} s; sharing and settling")
        started = time.perf_counter()
        processed = platform.colending.process_all()
        shared = time.perf_counter() - started
        started = time.perf_counter()
        statements = platform.colending.settle(DAY)
        settled = time.perf_counter() - started
        report = platform.colending.reconcile()
        movements = sum(len(s["accounts"]) for s in statements)
        settlement_account = platform.payments.house_account("settlement", "CNY")
        ledger_ok = True
        for statement in statements:
            postings = platform.ledger.get_entry(statement["ledger_entry_seq"])["postings"]
            cash = sum(
                p["amount"]["amount_minor"] * (1 if p["side"] == "credit" else -1)
                for p in postings
                if p["account_id"] == settlement_account
            )
            ledger_ok = ledger_ok and cash == statement["net"]["amount_minor"]
        base = baseline_seconds(platform)
        platform.close()
    total = shared + settled
    log(
        f"[{kind}] events {processed:,}: shared in {shared:.2f} s, settled {len(statements)} partners in "
        f"{settled:.2f} s; movements {movements:,}; baseline write {base:.2f} s; reconcile clean {report['clean']}"
    )
    return {
        "loans": loans,
        "participations": len(rows),
        "events": processed,
        "movements": movements,
        "partners_settled": len(statements),
        "share_seconds": round(shared, 3),
        "settle_seconds": round(settled, 3),
        "total_seconds": round(total, 3),
        "baseline_write_seconds": round(base, 3),
        "total_over_baseline": round(total / base, 2) if base else None,
        "reconcile_clean": report["clean"],
        "statements_equal_ledger_cash": ledger_ok,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 loans")
    parser.add_argument("--loans", type=int, default=None)
    parser.add_argument("--databases", default="postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--seed", type=int, default=20260427)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT / "src"))
    loans = args.loans or (20_000 if args.quick else 1_000_000)
    figures: dict[str, Any] = {}
    created: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for kind in [k.strip() for k in args.databases.split(",") if k.strip()]:
                url = new_database(kind, args.pg_url, Path(workdir), created)
                figures[kind] = run(kind, url, loans, args.seed)
        finally:
            if created:
                import psycopg

                with psycopg.connect(args.pg_url, autocommit=True) as conn:
                    for name in created:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    targets: dict[str, Any] = {}
    if "postgresql" in figures:
        pg = figures["postgresql"]
        targets["postgresql_settlement_seconds_per_million"] = {
            "value": round(pg["total_seconds"] * 1_000_000 / pg["loans"], 2),
            "target": TARGET_SECONDS,
            "op": "<=",
        }
    print(json.dumps({"benchmark": "colending_settlement", "figures": figures, "targets": targets}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
