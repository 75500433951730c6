"""Merchant payments per second through the payments service, beside the ledger's batched rate.

For SQLite and PostgreSQL, on a freshly migrated database with funded consumers (tier 3) and merchants:
- service, one caller: `PaymentsService.pay_merchant` in a loop (each payment its own transaction: limits,
  one three-posting ledger entry, the payment row, the idempotency record and the outbox event);
- service, several callers: the same from N threads, each with its own platform (as N server processes);
- baseline in the same run: the ledger's batched path (`LedgerService.submit`, batches of 5,000) posting the
  same three-posting entries (payer → merchant, fee income) — what the money movement alone costs when
  batched, without the per-payment transaction;
- the batch path: `PaymentsService.submit_batch` with merchant payments in batches of 5,000 (each with the
  limits, the three-posting entry, the payment row, the stored outcome and the event, one transaction a
  batch), interleaved batch by batch with the ledger's batched entries again (the same-run baseline it is
  judged against: the shared machine's load moves both alike). Target: ≥ 8,000 payments/s on SQLite;
- HTTP: POST /v1/payments/merchant-payments against one uvicorn process on SQLite (WAL, synchronous=FULL),
  16 closed-loop connections from wrk when installed (else Python threads), p50/p99 and throughput.

Only the batch path has a target (`sqlite_batch_payments_per_s` ≥ 8,000); the rest is reported. `--quick` runs
in well under a minute (batches of 1,200). `--profile FILE` writes a cProfile of one SQLite batch.
Ends with one JSON line: {"benchmark": "payments_throughput", "figures": {...}, "targets": {...}}.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg

from creditstack.app.platform import Platform, open_platform
from creditstack.core import migrate
from creditstack.core.clock import FixedClock
from creditstack.core.money import CNY, Money
from creditstack.core.security import PiiVault, Role
from creditstack.core.settings import Settings
from creditstack.ledger.domain import PostEntry, PostingSpec, Side
from creditstack.payments.domain import MerchantPayment

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: Merchant payments per `submit_batch` call (and ledger entries per `submit` call beside it).
BATCH_SIZE = 5_000
#: The batch path's target on SQLite, payments per second.
BATCH_TARGET_PER_S = 8_000
VAULT = PiiVault.generate()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _database(kind: str, workdir: Path, pg_url: str, created: list[str]) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / f'pay-{uuid.uuid4().hex[:8]}.db'}"
    else:
        name = f"bench_pay_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = pg_url.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    return url


def _open(url: str, workdir: Path) -> Platform:
    return open_platform(
        Settings(database_url=url, var_dir=workdir), FixedClock(datetime(2026, 3, 2, 1, tzinfo=UTC)),
        migrate_schema=False, vault=VAULT,
    )  # fmt: skip


def _economy(platform: Platform, consumers: int, merchants: int) -> tuple[list[str], list[str]]:
    pay = platform.payments
    wallets = []
    for i in range(consumers):
        customer = pay.register_customer(
            kind="consumer", legal_name=f"C{i}", national_id=f"BENCH{i:07d}", date_of_birth=date(1990, 1, 1), kyc_tier=3
        )["id"]
        wallet = pay.open_wallet(customer)["id"]
        funded = pay.top_up(
            member="bench", key=f"fund{i}", wallet_id=wallet, amount=Money(15_000_000, CNY), bank_account_token="tok"
        )
        assert funded.body["status"] == "completed"
        wallets.append(wallet)
    shops = []
    for i in range(merchants):
        customer = pay.register_customer(kind="merchant", legal_name=f"M{i}", merchant_category="5411", fee_bps=60)[
            "id"
        ]
        shops.append(pay.open_wallet(customer)["id"])
    return wallets, shops


def _service_rate(platforms: list[Platform], wallets: list[str], shops: list[str], per_caller: int, tag: str) -> float:
    barrier = threading.Barrier(len(platforms))
    failures: list[BaseException] = []

    def caller(n: int) -> None:
        pay = platforms[n].payments
        try:
            barrier.wait()
            for i in range(per_caller):
                result = pay.pay_merchant(
                    member="bench",
                    key=f"{tag}-{n}-{i}",
                    payer_wallet_id=wallets[(n * 7919 + i) % len(wallets)],
                    merchant_wallet_id=shops[i % len(shops)],
                    amount=Money(1_000 + i % 500, CNY),
                )
                assert result.ok, result.body
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(len(platforms))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise failures[0]
    return len(platforms) * per_caller / elapsed


def _ledger_rate(platform: Platform, wallets: list[str], shops: list[str], count: int, batch: int) -> float:
    pay = platform.payments
    payer_accounts = [_account_of(platform, w) for w in wallets]
    shop_accounts = [_account_of(platform, w) for w in shops]
    fees = pay.house_account("fee_income", "CNY")
    commands = []
    for i in range(count):
        amount = 1_000 + i % 500
        fee = amount * 60 // 10_000
        commands.append(PostEntry("bench-ledger", f"l{i}", (
            PostingSpec(payer_accounts[i % len(payer_accounts)], Side.DEBIT, amount, "CNY"),
            PostingSpec(shop_accounts[i % len(shop_accounts)], Side.CREDIT, amount - fee, "CNY"),
            PostingSpec(fees, Side.CREDIT, fee, "CNY"),
        )))  # fmt: skip
    start = time.perf_counter()
    for i in range(0, count, batch):
        results = platform.ledger.submit(commands[i : i + batch])
        assert all(r.ok for r in results)
    return count / (time.perf_counter() - start)


def _batch_vs_ledger(
    platform: Platform, wallets: list[str], shops: list[str], count: int, batch: int, profile: Path | None
) -> dict[str, float]:
    """`submit_batch` of merchant payments against the ledger's batched entries, interleaved batch by batch."""
    pay = platform.payments
    payer_accounts = [_account_of(platform, w) for w in wallets]
    shop_accounts = [_account_of(platform, w) for w in shops]
    fees = pay.house_account("fee_income", "CNY")
    batch_s = ledger_s = 0.0
    ratios = []
    for start in range(0, count, batch):
        size = min(batch, count - start)
        requests, commands = [], []
        for i in range(start, start + size):
            amount = 1_000 + i % 500
            fee = amount * 60 // 10_000
            payer, shop = (i * 7919) % len(wallets), i % len(shops)
            requests.append(MerchantPayment(f"batch-{i}", wallets[payer], shops[shop], Money(amount, CNY)))
            commands.append(PostEntry("bench-interleaved", f"i{i}", (
                PostingSpec(payer_accounts[payer], Side.DEBIT, amount, "CNY"),
                PostingSpec(shop_accounts[shop], Side.CREDIT, amount - fee, "CNY"),
                PostingSpec(fees, Side.CREDIT, fee, "CNY"),
            )))  # fmt: skip
        t0 = time.perf_counter()
        assert all(r.ok for r in platform.ledger.submit(commands))
        t1 = time.perf_counter()
        profiler = cProfile.Profile() if profile is not None and start == 0 else None
        if profiler is not None:
            profiler.enable()
        results = pay.submit_batch(requests, member="bench")
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        t2 = time.perf_counter()
        assert all(r.status_code == 201 and r.body["status"] == "completed" for r in results), results[0]
        batch_s += t2 - t1
        ledger_s += t1 - t0
        ratios.append((t1 - t0) / (t2 - t1))
    return {
        "batch_payments_per_s": count / batch_s,
        "ledger_entries_per_s": count / ledger_s,
        "batch_to_ledger": ledger_s / batch_s,
        "median_batch_ratio": statistics.median(ratios),
    }


def _account_of(platform: Platform, wallet_id: str) -> int:
    """A wallet's ledger account, found through the ledger's public service by its account code."""
    account = platform.ledger.find_account(f"payments:wallet:{wallet_id}")
    assert account is not None
    return account.id


_WRK_SCRIPT = """
local payers = {%(payers)s}
local shops = {%(shops)s}
local counter = 0
math.randomseed(%(seed)d)
request = function()
  counter = counter + 1
  local body = '{"payer_wallet_id": "' .. payers[math.random(#payers)] .. '", "merchant_wallet_id": "' ..
    shops[math.random(#shops)] .. '", "amount": {"amount_minor": ' .. math.random(100, 5000) .. ', "currency": "CNY"}}'
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer %(token)s"
  headers["Idempotency-Key"] = "%(prefix)s-" .. tostring(math.random(1, 1000000000)) .. "-" .. counter
  return wrk.format("POST", "/v1/payments/merchant-payments", headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests": %%d, "non_2xx": %%d, "duration_us": %%d, "p50_us": %%d, ' ..
    '"p99_us": %%d}\\n', summary.requests, summary.errors.status, summary.duration, latency:percentile(50),
    latency:percentile(99)))
end
"""


def _http(workdir: Path, wallets: int, merchants: int, seconds: float) -> dict[str, Any]:
    url = _database("sqlite", workdir, "", [])
    platform = _open(url, workdir)
    payers, shops = _economy(platform, wallets, merchants)
    _, token = platform.keys.create(Role.PLATFORM_OPERATOR, "bench", "bench")
    platform.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CREDITSTACK_DATABASE_URL": url, "CREDITSTACK_VAR_DIR": str(workdir)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "creditstack.app.main:app_factory", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        env=env, cwd=workdir, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        if shutil.which("wrk") is None:
            return {"skipped": "wrk not installed (apt-get install wrk)"}
        figures: dict[str, Any] = {}
        for phase, duration in (("warm", 2.0), ("measured", seconds)):
            script = workdir / f"pay-{phase}.lua"
            script.write_text(_WRK_SCRIPT % {
                "payers": ", ".join(f'"{w}"' for w in payers), "shops": ", ".join(f'"{s}"' for s in shops),
                "token": token, "prefix": phase, "seed": 7,
            })  # fmt: skip
            out = subprocess.run(
                ["wrk", "-t2", "-c16", f"-d{max(1, round(duration))}s", "--timeout", "30s", "-s", str(script),
                 f"http://127.0.0.1:{port}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            figures = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")).split(" ", 1)[1])
        measured = figures["duration_us"] / 1e6
        return {
            "client": "wrk", "connections": 16, "seconds": round(measured, 1), "requests": figures["requests"],
            "non_2xx": figures["non_2xx"], "requests_per_s": round(figures["requests"] / measured, 1),
            "p50_ms": figures["p50_us"] / 1000, "p99_ms": figures["p99_us"] / 1000,
        }  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--batches", type=int, default=None, help="submit_batch calls per database (default 8)")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile one SQLite batch into this file")
    args = parser.parse_args()
    payments = 600 if args.quick else 5_000
    batch_size = 1_200 if args.quick else BATCH_SIZE
    batched = batch_size * (args.batches or (2 if args.quick else 8))
    consumers, merchants = (50, 5) if args.quick else (500, 20)
    workdir = Path(tempfile.mkdtemp(prefix="cs-paybench-"))
    created: list[str] = []
    figures: dict[str, Any] = {
        "payments_per_run": payments,
        "consumers": consumers,
        "merchants": merchants,
        "batch_size": batch_size,
        "batched_payments": batched,
    }
    targets: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        for kind in args.databases.split(","):
            url = _database(kind, workdir, args.pg_url, created)
            main_platform = _open(url, workdir)
            wallets, shops = _economy(main_platform, consumers, merchants)
            one = _service_rate([main_platform], wallets, shops, payments, "one")
            extra = [_open(url, workdir) for _ in range(args.threads - 1)]
            many = _service_rate([main_platform, *extra], wallets, shops, payments // args.threads, "many")
            ledger = _ledger_rate(main_platform, wallets, shops, payments * 4, 5_000)
            bulk = _batch_vs_ledger(
                main_platform, wallets, shops, batched, batch_size, args.profile if kind == "sqlite" else None
            )
            assert main_platform.ledger.audit().clean
            for p in extra:
                p.close()
            main_platform.close()
            figures[kind] = {
                "service_one_caller_per_s": round(one, 1),
                f"service_{args.threads}_callers_per_s": round(many, 1),
                "ledger_batched_entries_per_s": round(ledger, 1),
                "service_to_ledger_batched": round(one / ledger, 4),
                "batch_payments_per_s": round(bulk["batch_payments_per_s"], 1),
                "interleaved_ledger_entries_per_s": round(bulk["ledger_entries_per_s"], 1),
                "batch_to_ledger_batched": round(bulk["batch_to_ledger"], 3),
                "median_batch_ratio": round(bulk["median_batch_ratio"], 3),
            }
            log(
                f"  {kind}: service {one:,.0f}/s (1 caller), {many:,.0f}/s ({args.threads} callers); "
                f"ledger batched {ledger:,.0f} entries/s; submit_batch {bulk['batch_payments_per_s']:,.0f} "
                f"payments/s beside ledger batched {bulk['ledger_entries_per_s']:,.0f} entries/s "
                f"(ratio {bulk['batch_to_ledger']:.2f})"
            )
            if kind == "sqlite":
                targets["sqlite_batch_payments_per_s"] = {
                    "value": round(bulk["batch_payments_per_s"], 1),
                    "target": BATCH_TARGET_PER_S,
                    "op": ">=",
                }
        if not args.no_http:
            figures["http"] = _http(workdir, 200 if not args.quick else 50, 10, 5.0 if args.quick else 20.0)
            log(f"  http: {figures['http']}")
    finally:
        if created:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                for name in created:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"benchmark": "payments_throughput", "figures": figures, "targets": targets}))


if __name__ == "__main__":
    main()
