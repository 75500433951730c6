"""Ledger write throughput: the service path against plain bulk writes of the same rows, and HTTP latency.

    .venv/bin/python benchmarks/ledger_throughput.py            # 200,000 transfers per mix and database
    .venv/bin/python benchmarks/ledger_throughput.py --quick    # a small run, under a minute
    .venv/bin/python benchmarks/ledger_throughput.py --databases sqlite --mixes uniform --no-http
    .venv/bin/python benchmarks/ledger_throughput.py --profile var/ledger.prof   # cProfile of the service path

For each database (SQLite file in WAL mode with synchronous=FULL; PostgreSQL at --pg-url) and each mix:

* service: `LedgerService.submit(batch)` with batches of --batch two-posting transfers, each batch one
  transaction (validation, idempotency lookup, account locks, evaluation, balance updates, journal
  numbers, entry/posting/key rows), on a freshly migrated database with 10,000 funded no-overdraft
  liability wallets and one settlement asset account;
* baseline: the SAME ledger_entries, ledger_postings and idempotency_keys rows (same request hashes, same
  JSON outcomes), generated in Python from the same commands, written into a second freshly migrated
  database (same indexes, constraints, triggers) by plain COPY (PostgreSQL) or executemany (SQLite), one
  transaction per batch of the same size (as many commits as the service);
* bare: the same rows into tables with the same columns and no indexes, constraints or triggers.

The three run interleaved batch by batch, so that noise on this shared machine hits them alike; the
ratio is service rate / baseline rate (target >= 0.5); the median of the per-batch ratios is shown too.

Mixes: `uniform` (wallet to wallet, both at random); `hot` (30 % of transfers credit — two thirds — or
debit — one third — one house account that takes balance deltas (`uses_deltas`, no overdraft check: a big
merchant's clearing account), the others as uniform); `hot-locked` (the same, but the hot account is an
ordinary no-overdraft liability account whose row is locked and updated by every batch).

HTTP: one uvicorn process (`creditstack.app.main:app_factory`, SQLite WAL + synchronous=FULL via
CREDITSTACK_DATABASE_URL), 16 closed-loop keep-alive clients (threads, one httpx.Client each) posting
single transfers to POST /v1/ledger/transfers for a fixed time; throughput, p50, p99 (target p99 <= 20 ms).

A table goes to stderr; the last line on stdout is one JSON object:
{"benchmark": "ledger_throughput", "figures": {...}, "targets": {NAME: {"value", "target", "op"}}}.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
CURRENCY = "CNY"
MEMBER = "bench"
WALLET_FUNDING_MINOR = 1_000_000_00
HOT_SHARE = 0.30
RATIO_TARGET = 0.5
HTTP_P99_TARGET_MS = 20.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- databases


class ScratchDatabases:
    """Fresh databases for one run: SQLite files in a temporary directory, PostgreSQL bench_ledger_* DBs."""

    def __init__(self, pg_url: str, workdir: Path) -> None:
        self.pg_url = pg_url
        self.workdir = workdir
        self.run_id = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.pg_names: list[str] = []

    def new(self, kind: str, name: str) -> str:
        if kind == "sqlite":
            path = self.workdir / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return f"sqlite:///{path}"
        import psycopg

        db_name = f"bench_ledger_{self.run_id}_{name}".replace("-", "_")
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}"')
            conn.execute(f'CREATE DATABASE "{db_name}"')
        self.pg_names.append(db_name)
        base, _, _ = self.pg_url.rpartition("/")
        return f"{base}/{db_name}"

    def drop_all(self) -> None:
        if not self.pg_names:
            return
        import psycopg

        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            for name in self.pg_names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.pg_names.clear()


@dataclass
class Ledger:
    """A migrated platform database with the benchmark's accounts."""

    url: str
    db: Any
    service: Any
    wallets: list[int]
    settlement: int
    hot: int | None
    business_date: date


def open_ledger(url: str, wallets: int, hot: str | None, *, fund: Callable[[Any, list[Any]], None] | None) -> Ledger:
    """Migrate a fresh database, open the accounts (bulk insert: setup, not measured) and fund the wallets.

    `fund(ledger, commands)` writes the funding transfers; the default is the service itself."""
    from creditstack.core import business_date, migrate
    from creditstack.core.clock import SystemClock
    from creditstack.core.db import Database
    from creditstack.core.tables import PLATFORM_CORE
    from creditstack.ledger import tables as t
    from creditstack.ledger.service import SERVICE, LedgerService

    migrate.upgrade(url, "platform")
    clock = SystemClock()
    db = Database(url, pool_size=4)
    bd = db.run(lambda conn: business_date.initialise(conn, PLATFORM_CORE, SERVICE, "Asia/Shanghai", clock))
    now = clock.now()

    def account(code: str, type_: str, *, no_overdraft: bool, uses_deltas: bool = False) -> dict[str, Any]:
        return {
            "code": code,
            "member": MEMBER,
            "currency": CURRENCY,
            "type": type_,
            "no_overdraft": no_overdraft,
            "credit_limit_minor": 0,
            "uses_deltas": uses_deltas,
            "metadata": {},
            "created_at": now,
        }

    rows = [account("settlement", "asset", no_overdraft=False)]
    if hot == "deltas":
        rows.append(account("hot-merchant", "liability", no_overdraft=False, uses_deltas=True))
    elif hot == "locked":
        rows.append(account("hot-merchant", "liability", no_overdraft=True))
    rows += [account(f"wallet-{i:06d}", "liability", no_overdraft=True) for i in range(wallets)]

    def insert(conn: Any) -> dict[str, int]:
        conn.execute(t.accounts.insert(), rows)
        return {
            r.code: int(r.id)
            for r in conn.execute(t.accounts.select().with_only_columns(t.accounts.c.id, t.accounts.c.code))
        }

    ids = db.run(insert)
    ledger = Ledger(
        url=url,
        db=db,
        service=LedgerService(db, clock, batch_entries_max=10_000),
        wallets=[ids[f"wallet-{i:06d}"] for i in range(wallets)],
        settlement=ids["settlement"],
        hot=ids.get("hot-merchant"),
        business_date=bd,
    )
    from creditstack.ledger.domain import transfer

    funding = [
        transfer(MEMBER, f"fund-{w}", ledger.settlement, w, WALLET_FUNDING_MINOR, CURRENCY) for w in ledger.wallets
    ]
    if ledger.hot is not None and hot == "locked":
        funding.append(
            transfer(MEMBER, "fund-hot", ledger.settlement, ledger.hot, WALLET_FUNDING_MINOR * 1000, CURRENCY)
        )
    for i in range(0, len(funding), 10_000):
        chunk = funding[i : i + 10_000]
        if fund is None:
            results = ledger.service.submit(chunk)
            bad = [r for r in results if not r.ok]
            if bad:
                raise RuntimeError(f"funding failed: {bad[0].body}")
        else:
            fund(ledger, chunk)
    return ledger


# ---------------------------------------------------------------- the workload


def make_commands(ledger: Ledger, mix: str, count: int, seed: int, prefix: str) -> list[Any]:
    """Two-posting transfers; the same seed gives the same accounts and amounts on every database."""
    from creditstack.ledger.domain import transfer

    rng = random.Random(seed)
    wallets = ledger.wallets
    n = len(wallets)
    commands = []
    for i in range(count):
        amount = rng.randint(1, 1_000)
        a = rng.randrange(n)
        b = rng.randrange(n - 1)
        if b >= a:
            b += 1
        debit, credit = wallets[a], wallets[b]
        if mix != "uniform" and rng.random() < HOT_SHARE:
            assert ledger.hot is not None
            if rng.random() < 2 / 3:
                credit = ledger.hot  # a purchase at the big merchant
            else:
                debit = ledger.hot  # a refund / payout from it
        commands.append(transfer(MEMBER, f"{prefix}-{i:08d}", debit, credit, amount, CURRENCY))
    return commands


# ---------------------------------------------------------------- baseline: the same rows, written plainly


ENTRY_COLUMNS = (
    "seq, member, idempotency_key, kind, business_date, committed_at, description, metadata, reverses_seq, hold_id"
)
POSTING_COLUMNS = "entry_seq, leg, account_id, side, amount_minor, currency"
KEY_COLUMNS = "member, key, request_hash, operation, status_code, outcome, created_at"


class RowWriter:
    """Generates the entry, posting and key rows of transfers as the service stores them, and writes them
    with plain COPY (PostgreSQL) or executemany (SQLite) in one transaction per call."""

    def __init__(self, db: Any, business_date: date, *, table_prefix: str = "") -> None:
        self.db = db
        self.business_date = business_date
        self.prefix = table_prefix
        self.next_seq = 1

    def rows(self, commands: Sequence[Any], now: datetime, *, as_text: bool) -> tuple[list[Any], list[Any], list[Any]]:
        bd_text = self.business_date.isoformat()
        bd: Any = bd_text if as_text else self.business_date
        at: Any = now.isoformat(sep=" ") if as_text else now
        entries, postings, keys = [], [], []
        for c in commands:
            seq = self.next_seq
            self.next_seq += 1
            entries.append((seq, c.member, c.key, "entry", bd, at, c.description, json.dumps(c.metadata), None, None))
            for leg, p in enumerate(c.postings):
                postings.append((seq, leg, p.account_id, p.side.code, p.amount_minor, p.currency))
            outcome = {
                "status": "committed",
                "operation": c.operation,
                "entry": {
                    "seq": seq,
                    "kind": "entry",
                    "business_date": bd_text,
                    "postings": [p.to_json() for p in c.postings],
                },
            }
            keys.append(
                (c.member, c.key, c.request_hash(), c.operation, 201, json.dumps(outcome, separators=(",", ":")), at)
            )
        return entries, postings, keys

    def write(self, commands: Sequence[Any]) -> tuple[float, float]:
        """Generate and write the rows in one transaction; returns (generation s, write-and-commit s)."""
        from creditstack.core.db import driver_connection

        start = time.perf_counter()
        now = datetime.now(UTC)
        pre = self.prefix
        entries, postings, keys = self.rows(commands, now, as_text=not self.db.is_postgres)
        generated = time.perf_counter()
        if self.db.is_postgres:
            with self.db.transaction() as conn, driver_connection(conn).cursor() as cur:
                with cur.copy(f"COPY {pre}ledger_entries ({ENTRY_COLUMNS}) FROM STDIN") as copy:
                    for row in entries:
                        copy.write_row(row)
                with cur.copy(f"COPY {pre}ledger_postings ({POSTING_COLUMNS}) FROM STDIN") as copy:
                    for row in postings:
                        copy.write_row(row)
                with cur.copy(f"COPY {pre}idempotency_keys ({KEY_COLUMNS}) FROM STDIN") as copy:
                    for row in keys:
                        copy.write_row(row)
        else:
            with self.db.transaction() as conn:
                cur = driver_connection(conn).cursor()
                cur.executemany(
                    f"INSERT INTO {pre}ledger_entries ({ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)", entries
                )
                cur.executemany(f"INSERT INTO {pre}ledger_postings ({POSTING_COLUMNS}) VALUES (?,?,?,?,?,?)", postings)
                cur.executemany(f"INSERT INTO {pre}idempotency_keys ({KEY_COLUMNS}) VALUES (?,?,?,?,?,?,?)", keys)
                cur.close()
        return generated - start, time.perf_counter() - generated


def create_bare_tables(db: Any) -> None:
    """bare_ledger_entries, bare_ledger_postings, bare_idempotency_keys: same columns, no index,
    constraint (beyond NOT NULL on PostgreSQL) or trigger."""
    import sqlalchemy as sa

    with db.transaction() as conn:
        for table in ("ledger_entries", "ledger_postings", "idempotency_keys"):
            if db.is_postgres:
                conn.execute(sa.text(f"CREATE TABLE bare_{table} (LIKE {table})"))
            else:
                conn.execute(sa.text(f"CREATE TABLE bare_{table} AS SELECT * FROM {table} WHERE 0"))


# ---------------------------------------------------------------- batch runs


@dataclass
class MixResult:
    database: str
    mix: str
    transfers: int
    service_s: float = 0.0
    baseline_s: float = 0.0  # row generation + write + commit
    baseline_write_s: float = 0.0  # write + commit only
    generate_s: float = 0.0  # generating the baseline's rows in Python
    bare_s: float = 0.0
    bare_write_s: float = 0.0
    batch_ratios: list[float] = field(default_factory=list)
    rejected: int = 0

    def rate(self, seconds: float) -> float:
        return self.transfers / seconds

    @property
    def ratio(self) -> float:
        return self.baseline_s / self.service_s


def run_mix(
    scratch: ScratchDatabases,
    kind: str,
    mix: str,
    *,
    transfers: int,
    batch: int,
    wallets: int,
    seed: int,
    profiler: cProfile.Profile | None,
) -> MixResult:
    hot = {"uniform": None, "hot": "deltas", "hot-locked": "locked"}[mix]
    t0 = time.perf_counter()
    service_ledger = open_ledger(scratch.new(kind, f"{kind}_{mix}_service"), wallets, hot, fund=None)
    writer_holder: dict[str, RowWriter] = {}

    def fund_plain(ledger: Ledger, commands: list[Any]) -> None:
        writer = writer_holder.setdefault("w", RowWriter(ledger.db, ledger.business_date))
        writer.write(commands)

    baseline_ledger = open_ledger(scratch.new(kind, f"{kind}_{mix}_baseline"), wallets, hot, fund=fund_plain)
    baseline = writer_holder["w"]
    create_bare_tables(baseline_ledger.db)
    bare = RowWriter(baseline_ledger.db, baseline_ledger.business_date, table_prefix="bare_")
    commands = make_commands(service_ledger, mix, transfers, seed, f"t-{mix}")
    log(f"  {kind}/{mix}: setup {time.perf_counter() - t0:.1f} s (2 databases migrated, {wallets:,} wallets funded)")

    result = MixResult(kind, mix, transfers)
    batches = [commands[i : i + batch] for i in range(0, len(commands), batch)]
    for number, chunk in enumerate(batches):
        # Rotate which of the three goes first, so that none always follows the others' checkpoints.
        order = ["service", "baseline", "bare"]
        order = order[number % 3 :] + order[: number % 3]
        for name in order:
            if name == "service":
                start = time.perf_counter()
                if profiler is not None:
                    profiler.enable()
                results = service_ledger.service.submit(chunk)
                if profiler is not None:
                    profiler.disable()
                service_s = time.perf_counter() - start
                result.rejected += sum(1 for r in results if not r.ok)
            elif name == "baseline":
                generate_s, write_s = baseline.write(chunk)
            else:
                bare_generate_s, bare_write_s = bare.write(chunk)
        result.service_s += service_s
        result.baseline_s += generate_s + write_s
        result.baseline_write_s += write_s
        result.generate_s += generate_s
        result.bare_s += bare_generate_s + bare_write_s
        result.bare_write_s += bare_write_s
        result.batch_ratios.append((generate_s + write_s) / service_s)
    journal = service_ledger.service.journal_position()
    expected = transfers + len(service_ledger.wallets) + (1 if hot == "locked" else 0)
    if journal != expected or result.rejected:
        raise RuntimeError(f"{kind}/{mix}: journal at {journal}, expected {expected}; {result.rejected} rejected")
    log(
        f"  {kind}/{mix}: service {result.rate(result.service_s):,.0f}/s  "
        f"baseline {result.rate(result.baseline_s):,.0f}/s (write only {result.rate(result.baseline_write_s):,.0f}/s)  "
        f"bare {result.rate(result.bare_s):,.0f}/s (write only {result.rate(result.bare_write_s):,.0f}/s)  "
        f"ratio {result.ratio:.2f} (median per batch {statistics.median(result.batch_ratios):.2f})"
    )
    for ledger in (service_ledger, baseline_ledger):
        ledger.service.close()
        ledger.db.dispose()
    return result


# ---------------------------------------------------------------- HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_WRK_SCRIPT = """
local wallets = {%(wallets)s}
local token = "%(token)s"
local prefix = "%(prefix)s"
local counter = 0
math.randomseed(%(seed)d)
request = function()
  counter = counter + 1
  local a = wallets[math.random(#wallets)]
  local b = a
  while b == a do b = wallets[math.random(#wallets)] end
  local body = '{"debit_account_id": ' .. a .. ', "credit_account_id": ' .. b ..
    ', "amount": {"amount_minor": ' .. math.random(1, 1000) .. ', "currency": "CNY"}}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer " .. token
  headers["Idempotency-Key"] = prefix .. "-" .. tostring(math.random(1, 1000000000)) .. "-" .. counter
  return wrk.format("POST", "/v1/ledger/transfers", headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "non_2xx": %%d, "socket_errors": %%d, "duration_us": %%d, ' ..
    '"p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def _wrk_load(
    base: str,
    token: str,
    wallets: list[int],
    *,
    clients: int,
    seconds: float,
    warmup: float,
    seed: int,
    workdir: Path,
) -> dict[str, Any]:
    """Closed-loop load from wrk (C, two threads): the load generator takes little of the 2 cores the
    server needs, unlike Python client threads. Latency is measured by wrk per request."""
    figures: dict[str, Any] = {}
    for phase, duration in (("warmup", warmup), ("measured", seconds)):
        script = workdir / f"wrk-{phase}.lua"
        script.write_text(
            _WRK_SCRIPT
            % {"wallets": ", ".join(map(str, wallets)), "token": token, "prefix": f"{phase}{seed}", "seed": seed}
        )
        result = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{clients}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        line = next(x for x in result.stdout.splitlines() if x.startswith("WRKJSON "))
        figures = json.loads(line.removeprefix("WRKJSON "))
    measured_s = figures["duration_us"] / 1e6
    out = {
        "client": "wrk",
        "clients": clients,
        "seconds": round(measured_s, 2),
        "requests": figures["requests"],
        "failed": figures["non_2xx"] + figures["socket_errors"],
        "requests_per_s": figures["requests"] / measured_s,
        "p50_ms": figures["p50_us"] / 1000,
        "p90_ms": figures["p90_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "max_ms": figures["max_us"] / 1000,
    }
    log(
        f"  http (wrk): {out['requests_per_s']:,.0f} req/s  p50 {out['p50_ms']:.1f} ms  "
        f"p99 {out['p99_ms']:.1f} ms  ({out['failed']} failed)"
    )
    return out


def run_http(
    workdir: Path,
    *,
    app: str,
    wallets: int,
    clients: int,
    seconds: float,
    warmup: float,
    seed: int,
    client_tool: str = "python",
) -> dict[str, Any]:
    import httpx

    from creditstack.app.platform import open_platform
    from creditstack.core.security import Role
    from creditstack.core.settings import Settings

    db_path = workdir / "http.db"
    url = f"sqlite:///{db_path}"
    t0 = time.perf_counter()
    ledger = open_ledger(url, wallets, None, fund=None)
    ledger.db.dispose()
    platform = open_platform(Settings(database_url=url, var_dir=workdir))
    _, token = platform.keys.create(Role.PLATFORM_OPERATOR, MEMBER, "bench")
    platform.close()
    port = _free_port()
    env = {**os.environ, "CREDITSTACK_DATABASE_URL": url, "CREDITSTACK_VAR_DIR": str(workdir)}
    server = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--factory", app,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
        ],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.1)
        log(
            f"  http: setup {time.perf_counter() - t0:.1f} s; "
            f"{clients} clients, {warmup:.0f} s warm-up + {seconds:.0f} s measured"
        )
        if client_tool == "wrk":
            return _wrk_load(
                base, token, ledger.wallets, clients=clients, seconds=seconds, warmup=warmup, seed=seed, workdir=workdir
            )
        latencies: list[list[float]] = [[] for _ in range(clients)]
        failures = [0] * clients
        start_at = time.monotonic() + 0.2
        measure_from = start_at + warmup
        stop_at = measure_from + seconds
        headers = {"Authorization": f"Bearer {token}"}

        def client(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            mine = latencies[n]
            with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
                while time.monotonic() < start_at:
                    time.sleep(0.001)
                i = 0
                while True:
                    begin = time.monotonic()
                    if begin >= stop_at:
                        return
                    a, b = rng.sample(ledger.wallets, 2)
                    body = {
                        "debit_account_id": a,
                        "credit_account_id": b,
                        "amount": {"amount_minor": rng.randint(1, 1_000), "currency": CURRENCY},
                    }
                    response = http.post("/v1/ledger/transfers", json=body, headers={"Idempotency-Key": f"h{n}-{i}"})
                    end = time.monotonic()
                    i += 1
                    if begin >= measure_from and end <= stop_at:
                        mine.append(end - begin)
                        if response.status_code != 201:
                            failures[n] += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    done = sorted(x for per in latencies for x in per)
    if not done:
        raise RuntimeError("no HTTP request completed in the measured window")

    def pct(q: float) -> float:
        return done[min(len(done) - 1, int(q * len(done)))] * 1000

    figures = {
        "clients": clients,
        "seconds": seconds,
        "requests": len(done),
        "failed": sum(failures),
        "requests_per_s": len(done) / seconds,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": done[-1] * 1000,
    }
    log(
        f"  http: {figures['requests_per_s']:,.0f} req/s  p50 {figures['p50_ms']:.1f} ms  "
        f"p99 {figures['p99_ms']:.1f} ms  ({figures['failed']} failed)"
    )
    return figures


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 transfers per mix, 2,000 wallets, 5 s of HTTP")
    parser.add_argument("--transfers", type=int, default=None, help="transfers per mix and database (200,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="transfers per submit() / per baseline transaction")
    parser.add_argument("--wallets", type=int, default=None, help="funded wallets (10,000)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--mixes", default="uniform,hot", help="uniform, hot, hot-locked")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--http-clients", type=int, default=16)
    parser.add_argument("--http-seconds", type=float, default=None, help="measured seconds (20; quick 5)")
    parser.add_argument("--http-app", default="creditstack.app.main:app_factory", help="uvicorn --factory target")
    parser.add_argument(
        "--http-client", choices=("auto", "wrk", "python"), default="auto",
        help="load generator: wrk (C; Debian package 'wrk') when installed, else Python threads with httpx",
    )  # fmt: skip
    parser.add_argument("--profile", metavar="FILE", help="cProfile the service path (all mixes) into FILE")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases and files")
    args = parser.parse_args(argv)

    transfers = args.transfers or (20_000 if args.quick else 200_000)
    wallets = args.wallets or (2_000 if args.quick else 10_000)
    batch = min(args.batch, transfers)
    http_seconds = args.http_seconds or (5.0 if args.quick else 20.0)
    http_warmup = 1.0 if args.quick else 3.0
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="bench_ledger_", dir=os.environ.get("BENCH_TMPDIR")))
    scratch = ScratchDatabases(args.pg_url, workdir)
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    results: list[MixResult] = []
    http: dict[str, Any] | None = None
    log(f"ledger_throughput: {transfers:,} transfers per mix, batches of {batch:,}, {wallets:,} wallets")
    try:
        for kind in kinds:
            for mix in mixes:
                results.append(
                    run_mix(
                        scratch, kind, mix, transfers=transfers, batch=batch, wallets=wallets, seed=args.seed,
                        profiler=profiler,
                    )
                )  # fmt: skip
        client_tool = args.http_client
        if client_tool == "auto":
            client_tool = "wrk" if shutil.which("wrk") else "python"
        if not args.no_http:
            http = run_http(
                workdir,
                app=args.http_app, wallets=min(wallets, 10_000), clients=args.http_clients, seconds=http_seconds,
                warmup=http_warmup, seed=args.seed, client_tool=client_tool,
            )  # fmt: skip
    finally:
        if not args.keep:
            scratch.drop_all()
            shutil.rmtree(workdir, ignore_errors=True)
    if profiler is not None:
        profiler.dump_stats(args.profile)
        log(f"  profile of the service path written to {args.profile}")

    log("")
    log(
        f"{'database':<11}{'mix':<12}{'service/s':>11}{'baseline/s':>12}{'ratio':>7}{'(median)':>10}"
        f"{'base write/s':>14}{'bare/s':>10}{'bare write/s':>14}"
    )
    for r in results:
        log(
            f"{r.database:<11}{r.mix:<12}{r.rate(r.service_s):>11,.0f}{r.rate(r.baseline_s):>12,.0f}{r.ratio:>7.2f}"
            f"{statistics.median(r.batch_ratios):>10.2f}{r.rate(r.baseline_write_s):>14,.0f}"
            f"{r.rate(r.bare_s):>10,.0f}{r.rate(r.bare_write_s):>14,.0f}"
        )
    if http is not None:
        log(
            f"http (sqlite, {http['clients']} clients): {http['requests_per_s']:,.0f} req/s, "
            f"p50 {http['p50_ms']:.1f} ms, p99 {http['p99_ms']:.1f} ms"
        )
    total = time.perf_counter() - started
    log(f"total {total:.0f} s")

    figures: dict[str, Any] = {
        "transfers_per_mix": transfers,
        "batch": batch,
        "wallets": wallets,
        "seconds": round(total, 1),
    }
    targets: dict[str, Any] = {}
    for r in results:
        name = f"{r.database}_{r.mix.replace('-', '_')}"
        figures[name] = {
            "service_transfers_per_s": round(r.rate(r.service_s)),
            "baseline_transfers_per_s": round(r.rate(r.baseline_s)),
            "baseline_write_only_transfers_per_s": round(r.rate(r.baseline_write_s)),
            "bare_transfers_per_s": round(r.rate(r.bare_s)),
            "bare_write_only_transfers_per_s": round(r.rate(r.bare_write_s)),
            "ratio": round(r.ratio, 3),
            "median_batch_ratio": round(statistics.median(r.batch_ratios), 3),
            "ratio_to_write_only": round(r.baseline_write_s / r.service_s, 3),
        }
        if r.mix in ("uniform", "hot"):
            targets[f"{name}_ratio"] = {"value": round(r.ratio, 3), "target": RATIO_TARGET, "op": ">="}
    if http is not None:
        figures["http"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in http.items()}
        targets["http_p99_ms"] = {"value": round(http["p99_ms"], 2), "target": HTTP_P99_TARGET_MS, "op": "<="}
    print(json.dumps({"benchmark": "ledger_throughput", "figures": figures, "targets": targets}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
