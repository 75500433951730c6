"""Payments racing each other: threads, each with its own platform (engine, ledger, payments service) over
one database, released together by a barrier — as separate server processes would be.

Every race must end exactly as the sequential rules say:
- N (12) equal payments of `a` from a wallet holding `b` (b not a multiple of a), P2P and merchant: exactly
  floor(b/a) succeed, the rest are `payments.insufficient_funds`; the payer ends at b − floor(b/a)·a and the
  payee (and fee income) received exactly the successful ones;
- two concurrent partial refunds that cannot both fit, and many (12) concurrent refunds of uneven amounts:
  refunds never exceed the payment, the refunded total is exactly the sum of the successful refunds, the
  fee returned is the pro-rata share of it, the rest are `payments.refund_exceeds_payment`, and what is
  left to refund is smaller than every rejected refund (each was rejected because it did not fit);
- payments racing one daily limit (PostgreSQL, and SQLite with threads): exactly as many pass as fit
  under the limit, the rest are `payments.limit_exceeded` naming the "daily" limit;
- no exception escapes any worker (deadlocks, serialisation failures, "database is locked" must have been
  retried inside the service), and `audit()` is clean afterwards.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from fractions import Fraction
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

WORKERS = 12
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
FEE_BPS = 60


def _platforms(url: str, tmp_path: Path, count: int) -> list[Platform]:
    vault = PiiVault.generate()
    clock = FixedClock(START)
    return [
        open_platform(Settings(database_url=url, var_dir=tmp_path), clock, migrate_schema=False, vault=vault)
        for _ in range(count)
    ]


def _close(platforms: list[Platform]) -> None:
    for platform in platforms:
        platform.close()


def _race(platforms: list[Platform], call: Callable[[Platform, int], PaymentResult]) -> list[PaymentResult]:
    """Run `call(platform_i, i)` in one thread per platform, all released at once; no exception may escape."""
    barrier = threading.Barrier(len(platforms))
    results: list[Any] = [None] * len(platforms)
    failures: list[tuple[int, BaseException]] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[i] = call(platforms[i], i)
        except BaseException as exc:  # every escape fails the test
            failures.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(platforms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    assert failures == [], f"workers raised: {failures!r}"
    assert all(isinstance(r, PaymentResult) for r in results)
    return results


def _outcomes(results: list[PaymentResult]) -> Counter[str]:
    return Counter("ok" if r.ok else str(r.error_code) for r in results)


def _setup(platform: Platform, *, balance_minor: int, tier: int = 3) -> dict[str, str]:
    pay = platform.payments
    ids = {}
    for i, name in enumerate(("payer", "payee")):
        customer = pay.register_customer(
            kind="consumer",
            legal_name=name.title(),
            national_id=f"R{i:08d}",
            date_of_birth=date(1990, 1, 1 + i),
            kyc_tier=tier,
        )["id"]
        ids[name] = pay.open_wallet(customer)["id"]
    shop = pay.register_customer(
        kind="merchant", legal_name="Shop", merchant_category="5814", fee_bps=FEE_BPS, refund_fee_policy="pro_rata"
    )["id"]
    ids["shop"] = pay.open_wallet(shop)["id"]
    funded = pay.top_up(
        member="setup", key="fund", wallet_id=ids["payer"], amount=Money(balance_minor, CNY), bank_account_token="tok"
    )
    assert funded.body["status"] == "completed", funded.body
    return ids


def _balance(platform: Platform, wallet_id: str) -> int:
    return int(platform.payments.get_wallet(wallet_id)["balance"]["amount_minor"])


def _fees(platform: Platform) -> int:
    return platform.ledger.get_account(platform.payments.house_account("fee_income", "CNY")).balance_minor


def _fee(amount_minor: int) -> int:
    return round(Fraction(amount_minor * FEE_BPS, 10_000))  # half-even


# ---------------------------------------------------------------- equal payments against one balance


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["p2p", "merchant"])
def test_equal_payments_race_one_balance_exactly(pg_url: str, tmp_path: Path, kind: str) -> None:
    platforms = _platforms(pg_url, tmp_path, WORKERS)
    try:
        balance, amount = 10_000, 1_300  # 7 fit, 900 stays
        fit = balance // amount
        ids = _setup(platforms[0], balance_minor=balance)
        payee = ids["payee"] if kind == "p2p" else ids["shop"]

        def pay(platform: Platform, i: int) -> PaymentResult:
            if kind == "p2p":
                return platform.payments.transfer(
                    member="race",
                    key=f"p{i}",
                    payer_wallet_id=ids["payer"],
                    payee_wallet_id=payee,
                    amount=Money(amount, CNY),
                )
            return platform.payments.pay_merchant(
                member="race",
                key=f"m{i}",
                payer_wallet_id=ids["payer"],
                merchant_wallet_id=payee,
                amount=Money(amount, CNY),
            )

        results = _race(platforms, pay)
        assert _outcomes(results) == {"ok": fit, "payments.insufficient_funds": WORKERS - fit}
        fee = _fee(amount) if kind == "merchant" else 0
        first = platforms[0]
        assert _balance(first, ids["payer"]) == balance - fit * amount
        assert first.payments.get_wallet(ids["payer"])["available"]["amount_minor"] == balance - fit * amount
        assert _balance(first, payee) == fit * (amount - fee)
        assert _fees(first) == fit * fee
        assert len({r.payment_id for r in results}) == WORKERS  # each rejection is its own stored payment
        assert first.ledger.audit().clean
    finally:
        _close(platforms)


# ---------------------------------------------------------------- refunds racing each other


def _merchant_payment(platform: Platform, ids: dict[str, str], amount: int, key: str) -> str:
    payment = platform.payments.pay_merchant(
        member="race", key=key, payer_wallet_id=ids["payer"], merchant_wallet_id=ids["shop"], amount=Money(amount, CNY)
    )
    assert payment.ok and payment.payment_id, payment.body
    return payment.payment_id


@pytest.mark.postgres
def test_two_concurrent_partial_refunds_that_cannot_both_fit(pg_url: str, tmp_path: Path) -> None:
    platforms = _platforms(pg_url, tmp_path, 2)
    try:
        ids = _setup(platforms[0], balance_minor=100_000)
        amounts = (6_000, 5_000)
        for round_ in range(5):  # a few rounds: the two refunds meet at different points
            payment_id = _merchant_payment(platforms[0], ids, 10_000, f"buy{round_}")
            results = _race(
                platforms,
                lambda p, i, pid=payment_id, r=round_: p.payments.refund(
                    member="race", key=f"r{r}-{i}", payment_id=pid, amount=Money(amounts[i], CNY)
                ),
            )
            assert _outcomes(results) == {"ok": 1, "payments.refund_exceeds_payment": 1}
            won = next(amounts[i] for i, r in enumerate(results) if r.ok)
            original = platforms[0].payments.get_payment(payment_id)
            assert original["refunded"]["amount_minor"] == won
        assert platforms[0].ledger.audit().clean
    finally:
        _close(platforms)


@pytest.mark.postgres
def test_many_concurrent_partial_refunds_are_exact(pg_url: str, tmp_path: Path) -> None:
    platforms = _platforms(pg_url, tmp_path, WORKERS)
    try:
        balance, paid = 100_000, 10_000
        ids = _setup(platforms[0], balance_minor=balance)
        payment_id = _merchant_payment(platforms[0], ids, paid, "buy")
        amounts = [700 + 211 * i for i in range(WORKERS)]  # 700 … 3,021: together far more than the payment
        results = _race(
            platforms,
            lambda p, i: p.payments.refund(
                member="race", key=f"r{i}", payment_id=payment_id, amount=Money(amounts[i], CNY)
            ),
        )
        outcome = _outcomes(results)
        assert set(outcome) == {"ok", "payments.refund_exceeds_payment"}, outcome
        refunded = sum(a for a, r in zip(amounts, results, strict=True) if r.ok)
        rejected = [a for a, r in zip(amounts, results, strict=True) if not r.ok]
        pay = platforms[0].payments
        original = pay.get_payment(payment_id)
        assert refunded <= paid
        assert original["refunded"]["amount_minor"] == refunded
        assert paid - refunded < min(rejected)  # each rejected refund really did not fit any more
        fee = _fee(paid)
        fee_back = sum(r.body["fee"]["amount_minor"] for r in results if r.ok)
        assert fee_back == round(Fraction(fee * refunded, paid))  # cumulative pro rata, whatever the order
        assert _balance(platforms[0], ids["payer"]) == balance - paid + refunded
        assert _balance(platforms[0], ids["shop"]) == paid - fee - (refunded - fee_back)
        assert _fees(platforms[0]) == fee - fee_back
        assert platforms[0].ledger.audit().clean
    finally:
        _close(platforms)


@pytest.mark.postgres
def test_concurrent_refunds_of_the_whole_payment_return_exactly_the_fee(pg_url: str, tmp_path: Path) -> None:
    platforms = _platforms(pg_url, tmp_path, WORKERS)
    try:
        ids = _setup(platforms[0], balance_minor=100_000)
        paid = 9_999
        payment_id = _merchant_payment(platforms[0], ids, paid, "buy")
        part = paid // 3  # 3,333: exactly three of them make the whole payment
        results = _race(
            platforms,
            lambda p, i: p.payments.refund(member="race", key=f"r{i}", payment_id=payment_id, amount=Money(part, CNY)),
        )
        assert _outcomes(results) == {"ok": 3, "payments.refund_exceeds_payment": WORKERS - 3}
        assert sum(r.body["fee"]["amount_minor"] for r in results if r.ok) == _fee(paid)
        assert platforms[0].payments.get_payment(payment_id)["refunded"]["amount_minor"] == paid
        assert _balance(platforms[0], ids["shop"]) == 0
        assert _fees(platforms[0]) == 0
        assert platforms[0].ledger.audit().clean
    finally:
        _close(platforms)


# ---------------------------------------------------------------- one daily limit


def _daily_limit_race(url: str, tmp_path: Path, workers: int) -> None:
    platforms = _platforms(url, tmp_path, workers)
    try:
        tier = DEFAULT_TIERS[3]
        amount = 1_500_000  # CNY 15,000
        fit = 3
        # Spend the day's allowance down to 3½ payments' worth: 3 fit, the 4th would pass the daily limit.
        spent_before = tier.daily_minor - fit * amount - amount // 2
        ids = _setup(platforms[0], balance_minor=tier.daily_minor + 10 * amount, tier=3)
        pay = platforms[0].payments
        left, n = spent_before, 0
        while left > 0:
            step = min(left, tier.per_transaction_minor)
            result = pay.transfer(
                member="race",
                key=f"pre{n}",
                payer_wallet_id=ids["payer"],
                payee_wallet_id=ids["payee"],
                amount=Money(step, CNY),
            )
            assert result.ok, result.body
            left, n = left - step, n + 1
        results = _race(
            platforms,
            lambda p, i: p.payments.pay_merchant(
                member="race",
                key=f"l{i}",
                payer_wallet_id=ids["payer"],
                merchant_wallet_id=ids["shop"],
                amount=Money(amount, CNY),
            ),
        )
        assert _outcomes(results) == {"ok": fit, "payments.limit_exceeded": workers - fit}
        assert {r.body["error"]["details"]["limit"] for r in results if not r.ok} == {"daily"}
        assert _balance(platforms[0], ids["payer"]) == tier.daily_minor + 10 * amount - spent_before - fit * amount
        assert _balance(platforms[0], ids["shop"]) == fit * (amount - _fee(amount))
        assert platforms[0].ledger.audit().clean
    finally:
        _close(platforms)


@pytest.mark.postgres
def test_payments_race_one_daily_limit_on_postgres(pg_url: str, tmp_path: Path) -> None:
    _daily_limit_race(pg_url, tmp_path, WORKERS)


def test_payments_race_one_daily_limit_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    _daily_limit_race(sqlite_url, tmp_path, 8)
