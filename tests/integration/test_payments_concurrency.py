"""Payments under concurrency on PostgreSQL (and SQLite for the limit race): exact outcomes.

Each worker thread has its own platform (engine, ledger, payments service) over the same database, as
separate server processes would. Every race must end exactly as the sequential rules say, with no
exception escaping a worker (deadlocks and serialisation failures must have been retried).
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.money import CNY, Money
from creditstack.core.security import PiiVault
from creditstack.core.settings import Settings
from creditstack.payments.domain import DEFAULT_TIERS
from creditstack.payments.service import PaymentResult

WORKERS = 10
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def _platforms(url: str, tmp_path: Path, count: int) -> list[Platform]:
    vault = PiiVault.generate()
    clock = FixedClock(START)
    return [
        open_platform(Settings(database_url=url, var_dir=tmp_path), clock, migrate_schema=False, vault=vault)
        for _ in range(count)
    ]


def _race(platforms: list[Platform], call: Any) -> list[PaymentResult]:
    barrier = threading.Barrier(len(platforms))
    results: list[Any] = [None] * len(platforms)
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = call(platforms[i], i)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(platforms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == [], failures
    return results


def _setup(platform: Platform, *, balance_minor: int, tier: int = 3) -> dict[str, str]:
    pay = platform.payments
    payer = pay.register_customer(
        kind="consumer", legal_name="Payer", national_id="RACE0001", date_of_birth=date(1990, 1, 1), kyc_tier=tier
    )["id"]
    payee = pay.register_customer(
        kind="consumer", legal_name="Payee", national_id="RACE0002", date_of_birth=date(1991, 1, 1), kyc_tier=tier
    )["id"]
    shop = pay.register_customer(kind="merchant", legal_name="Shop", merchant_category="5411", fee_bps=60)["id"]
    ids = {
        "payer": pay.open_wallet(payer)["id"],
        "payee": pay.open_wallet(payee)["id"],
        "shop": pay.open_wallet(shop)["id"],
    }
    top_up = pay.top_up(
        member="setup", key="fund", wallet_id=ids["payer"], amount=Money(balance_minor, CNY), bank_account_token="tok"
    )
    assert top_up.body["status"] == "completed"
    return ids


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["p2p", "merchant"])
def test_equal_payments_race_a_balance(pg_url: str, tmp_path: Path, kind: str) -> None:
    platforms = _platforms(pg_url, tmp_path, WORKERS)
    try:
        balance, amount = 10_000, 3_000  # exactly 3 of 10 fit
        ids = _setup(platforms[0], balance_minor=balance)

        def pay(platform: Platform, i: int) -> PaymentResult:
            if kind == "p2p":
                return platform.payments.transfer(
                    member="race",
                    key=f"p{i}",
                    payer_wallet_id=ids["payer"],
                    payee_wallet_id=ids["payee"],
                    amount=Money(amount, CNY),
                )
            return platform.payments.pay_merchant(
                member="race",
                key=f"m{i}",
                payer_wallet_id=ids["payer"],
                merchant_wallet_id=ids["shop"],
                amount=Money(amount, CNY),
            )

        results = _race(platforms, pay)
        outcome = Counter("ok" if r.ok else r.error_code for r in results)
        assert outcome == {"ok": balance // amount, "payments.insufficient_funds": WORKERS - balance // amount}
        wallet = platforms[0].payments.get_wallet(ids["payer"])
        assert wallet["balance"]["amount_minor"] == balance - (balance // amount) * amount
        assert platforms[0].ledger.audit().clean
    finally:
        for p in platforms:
            p.close()


@pytest.mark.postgres
def test_concurrent_partial_refunds_never_exceed_the_payment(pg_url: str, tmp_path: Path) -> None:
    platforms = _platforms(pg_url, tmp_path, WORKERS)
    try:
        ids = _setup(platforms[0], balance_minor=100_000)
        pay = platforms[0].payments
        payment = pay.pay_merchant(
            member="race",
            key="buy",
            payer_wallet_id=ids["payer"],
            merchant_wallet_id=ids["shop"],
            amount=Money(10_000, CNY),
        )
        assert payment.ok and payment.payment_id
        payment_id = payment.payment_id
        # The merchant has 10,000 - 60 fee; refunds of 2,500 each: 4 fit by amount.
        results = _race(
            platforms,
            lambda p, i: p.payments.refund(member="race", key=f"r{i}", payment_id=payment_id, amount=Money(2_500, CNY)),
        )
        outcome = Counter("ok" if r.ok else r.error_code for r in results)
        assert outcome == {"ok": 4, "payments.refund_exceeds_payment": WORKERS - 4}
        original = pay.get_payment(payment_id)
        assert original["refunded"]["amount_minor"] == 10_000
        assert pay.get_wallet(ids["payer"])["balance"]["amount_minor"] == 100_000  # whole payment back
        assert pay.get_wallet(ids["shop"])["balance"]["amount_minor"] == 0  # fee returned pro rata, in full
        assert platforms[0].ledger.audit().clean
    finally:
        for p in platforms:
            p.close()


def _daily_limit_race(url: str, tmp_path: Path) -> None:
    platforms = _platforms(url, tmp_path, WORKERS)
    try:
        tier = DEFAULT_TIERS[1]
        ids = _setup(platforms[0], balance_minor=tier.daily_minor * 2, tier=1)
        pay = platforms[0].payments
        # Use the day's allowance down to exactly three payments' worth.
        amount = tier.per_transaction_minor // 2
        spent = tier.daily_minor - 3 * amount
        while spent > 0:
            step = min(spent, tier.per_transaction_minor)
            result = pay.transfer(
                member="race",
                key=f"pre{spent}",
                payer_wallet_id=ids["payer"],
                payee_wallet_id=ids["payee"],
                amount=Money(step, CNY),
            )
            assert result.ok, result.body
            spent -= step
        results = _race(
            platforms,
            lambda p, i: p.payments.transfer(
                member="race",
                key=f"l{i}",
                payer_wallet_id=ids["payer"],
                payee_wallet_id=ids["payee"],
                amount=Money(amount, CNY),
            ),
        )
        outcome = Counter("ok" if r.ok else r.error_code for r in results)
        assert outcome == {"ok": 3, "payments.limit_exceeded": WORKERS - 3}
        limits = {r.body["error"]["details"]["limit"] for r in results if not r.ok}
        assert limits == {"daily"}
        assert platforms[0].ledger.audit().clean
    finally:
        for p in platforms:
            p.close()


@pytest.mark.postgres
def test_payments_race_one_daily_limit_on_postgres(pg_url: str, tmp_path: Path) -> None:
    _daily_limit_race(pg_url, tmp_path)


def test_payments_race_one_daily_limit_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    _daily_limit_race(sqlite_url, tmp_path)
