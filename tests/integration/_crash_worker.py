"""Worker processes for the ledger concurrency and crash tests (run as a script, never collected).

    python _crash_worker.py crash URL VAR_DIR TAG BANK WALLET_A WALLET_B FEES
        Loops forever posting linked batches of BATCH_SIZE entries (all or nothing) with keys
        "{TAG}-b{batch}-e{i}", printing "committed {batch} {first_seq} {last_seq}" after each commit.
        The test kills it with SIGKILL.

    python _crash_worker.py bank URL VAR_DIR NAME SEED OPS WALLETS(csv) FEES OUT_JSON
        Runs `bank_worker` (random transfers, small batches, shared-key retries) and writes its log.

The test modules load this file by path and use the same functions in threads.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from creditstack.app.platform import open_platform
from creditstack.core.clock import SystemClock
from creditstack.core.settings import Settings
from creditstack.ledger.domain import Command, PostEntry, PostingSpec, Side
from creditstack.ledger.service import CommandResult, LedgerService

MEMBER = "m"
BATCH_SIZE = 200
SHARED_KEYS = 24


# ---------------------------------------------------------------- crash: linked batches, killed mid-way


def crash_batch(tag: str, batch: int, bank: int, wallet_a: int, wallet_b: int, fees: int) -> list[Command]:
    """The linked batch number `batch` of a run: deterministic, so a resubmission is an exact replay."""
    commands: list[Command] = []
    for i in range(BATCH_SIZE):
        amount = 1 + (batch * BATCH_SIZE + i) % 97
        wallet = wallet_a if i % 2 else wallet_b
        commands.append(
            PostEntry(
                MEMBER,
                f"{tag}-b{batch}-e{i}",
                (
                    PostingSpec(bank, Side.DEBIT, amount + 1, "CNY"),
                    PostingSpec(wallet, Side.CREDIT, amount, "CNY"),
                    PostingSpec(fees, Side.CREDIT, 1, "CNY"),
                ),
                f"batch {batch}",
            )
        )
    return commands


def run_crash(url: str, var_dir: str, tag: str, bank: int, wallet_a: int, wallet_b: int, fees: int) -> None:
    platform = open_platform(Settings(database_url=url, var_dir=Path(var_dir)), SystemClock(), migrate_schema=False)
    print("ready", flush=True)
    batch = 0
    while True:
        results = platform.ledger.submit(crash_batch(tag, batch, bank, wallet_a, wallet_b, fees), linked=True)
        if not all(r.ok and not r.replayed for r in results):
            print(f"unexpected {batch} {results[0].body}", flush=True)
            sys.exit(3)
        print(f"committed {batch} {results[0].entry_seq} {results[-1].entry_seq}", flush=True)
        batch += 1


# ---------------------------------------------------------------- bank: concurrent random transfers


def shared_command(index: int, wallets: list[int]) -> Command:
    """The request behind shared key number `index`: the same payload whichever worker sends it."""
    payer = wallets[index % len(wallets)]
    payee = wallets[(index * 7 + 1) % len(wallets)]
    if payee == payer:
        payee = wallets[(wallets.index(payer) + 1) % len(wallets)]
    amount = 10 + index
    return PostEntry(
        MEMBER,
        f"shared-{index}",
        (PostingSpec(payer, Side.DEBIT, amount, "CNY"), PostingSpec(payee, Side.CREDIT, amount, "CNY")),
    )


def _transfer(rng: random.Random, key: str, wallets: list[int], fees: int) -> Command:
    hot = wallets[0]
    payer = hot if rng.random() < 0.5 else rng.choice(wallets)
    payee = rng.choice([w for w in wallets if w != payer])
    if rng.random() < 0.3 and payer != hot:
        payee = hot
    amount = rng.randint(1, 400)
    fee = rng.choice([0, 1, 2])
    postings = [PostingSpec(payer, Side.DEBIT, amount + fee, "CNY"), PostingSpec(payee, Side.CREDIT, amount, "CNY")]
    if fee:
        postings.append(PostingSpec(fees, Side.CREDIT, fee, "CNY"))
    return PostEntry(MEMBER, key, tuple(postings))


def _record(results: list[CommandResult]) -> list[dict[str, Any]]:
    return [
        {"key": r.key, "ok": r.ok, "seq": r.entry_seq, "replayed": r.replayed, "code": r.error_code, "body": r.body}
        for r in results
    ]


def bank_worker(
    ledger: LedgerService, name: str, seed: int, ops: int, wallets: list[int], fees: int, *, shared: bool = True
) -> dict[str, Any]:
    """Random transfers (execute and small submit batches, some linked) plus retries of shared keys.

    Returns {"ops": [{"kind", "t0", "t1", "results": [...]}, ...]} in the order the worker completed them.
    Any exception propagates (and fails the test)."""
    rng = random.Random(seed)
    log: list[dict[str, Any]] = []
    for i in range(ops):
        t0 = time.monotonic()
        roll = rng.random()
        if roll < 0.5:
            kind = "execute"
            results = [ledger.execute(_transfer(rng, f"{name}-{i}", wallets, fees))]
        elif roll < 0.75 or not shared:
            linked = rng.random() < 0.5
            kind = "linked" if linked else "batch"
            commands = [_transfer(rng, f"{name}-{i}-{j}", wallets, fees) for j in range(rng.randint(2, 4))]
            results = ledger.submit(commands, linked=linked)
        else:
            kind = "shared"
            command = shared_command(rng.randrange(SHARED_KEYS), wallets)
            results = [ledger.execute(command)] if rng.random() < 0.5 else ledger.submit([command])
        log.append({"kind": kind, "t0": t0, "t1": time.monotonic(), "results": _record(results)})
    return {"name": name, "ops": log}


def run_bank(url: str, var_dir: str, name: str, seed: int, ops: int, wallets: list[int], fees: int, out: str) -> None:
    platform = open_platform(Settings(database_url=url, var_dir=Path(var_dir)), SystemClock(), migrate_schema=False)
    try:
        log = bank_worker(platform.ledger, name, seed, ops, wallets, fees)
    finally:
        platform.close()
    Path(out).write_text(json.dumps(log))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "crash":
        url, var_dir, tag, *ids = args
        run_crash(url, var_dir, tag, *(int(i) for i in ids))
    elif mode == "bank":
        url, var_dir, name, seed, ops, wallets, fees, out = args
        run_bank(url, var_dir, name, int(seed), int(ops), [int(w) for w in wallets.split(",")], int(fees), out)
    else:
        raise SystemExit(f"unknown mode {mode}")
