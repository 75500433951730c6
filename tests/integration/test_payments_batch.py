"""`PaymentsService.submit_batch` on a real database (SQLite and PostgreSQL):

- a batch of 2,000 merchant payments is one transaction: one commit, 2,000 completed payments, the money
  where it should be (payers, merchants, fee income), 2,000 events, a clean audit; sent again, every one
  is a replay and nothing moves; inside the caller's `Database.batch()` two batches still commit once;
- in request order, within a batch: a payment the ledger refuses (insufficient funds) does not count
  towards a later payment's limits, a top-up that settles funds the payments after it (not before it), and
  a bad request gets its error without stopping the others;
- racing batches (two threads, each with its own platform, as two processes would be) that debit the same
  wallets and share half their keys: no wallet is overdrawn, every key is applied exactly once (one fresh
  answer and one replay, with the same payment), the limit counters count exactly the completed payments,
  and the audit is clean. (The property test in tests/property/test_payments_batch.py proves the outcomes
  equal the single path's; this file proves the transaction and concurrency behaviour.)
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.money import CNY, Money
from creditstack.core.security import PiiVault
from creditstack.core.settings import Settings
from creditstack.core.tables import PLATFORM_CORE
from creditstack.payments import tables as pt
from creditstack.payments.domain import DEFAULT_TIERS, MerchantPayment, TierLimits, TopUp, Transfer
from creditstack.payments.service import Income, PaymentResult

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
FEE_BPS = 60


def _platform(url: str, tmp_path: Path, vault: PiiVault) -> Platform:
    return open_platform(
        Settings(database_url=url, var_dir=tmp_path), FixedClock(START), migrate_schema=False, vault=vault
    )


def _economy(platform: Platform, consumers: int, merchants: int, funding_minor: int) -> tuple[list[str], list[str]]:
    """Tier-3 consumers funded through a batch of top-ups, and merchants at FEE_BPS."""
    pay = platform.payments
    wallets = []
    for i in range(consumers):
        customer = pay.register_customer(
            kind="consumer", legal_name=f"C{i}", national_id=f"BAT{i:07d}", date_of_birth=date(1990, 1, 1), kyc_tier=3
        )["id"]
        wallets.append(pay.open_wallet(customer)["id"])
    funded = pay.submit_batch(
        [TopUp(f"fund-{i}", w, Money(funding_minor, CNY), "tok") for i, w in enumerate(wallets)], member="setup"
    )
    assert all(r.status_code == 202 and r.body["status"] == "completed" for r in funded), funded
    shops = []
    for i in range(merchants):
        customer = pay.register_customer(
            kind="merchant", legal_name=f"M{i}", merchant_category="5411", fee_bps=FEE_BPS
        )["id"]
        shops.append(pay.open_wallet(customer)["id"])
    return wallets, shops


def _balance(platform: Platform, wallet_id: str) -> int:
    return int(platform.payments.get_wallet(wallet_id)["balance"]["amount_minor"])


def _fee(amount_minor: int) -> int:
    return round(Fraction(amount_minor * FEE_BPS, 10_000))  # half-even


def _count_commits(platform: Platform) -> list[int]:
    commits = [0]

    def count(_conn: Any) -> None:
        commits[0] += 1

    sa.event.listen(platform.db.engine, "commit", count)
    return commits


# ---------------------------------------------------------------- one transaction


def test_a_batch_of_2000_payments_is_one_commit(db_url: str, tmp_path: Path) -> None:
    platform = _platform(db_url, tmp_path, PiiVault.generate())
    try:
        pay = platform.payments
        wallets, shops = _economy(platform, 20, 4, 2_000_000)
        requests = [
            MerchantPayment(f"buy-{i}", wallets[i % 20], shops[i % 4], Money(500 + i % 700, CNY)) for i in range(2_000)
        ]
        commits = _count_commits(platform)
        results = pay.submit_batch(requests, member="shop")
        assert commits[0] == 1
        assert [r.status_code for r in results] == [201] * 2_000
        assert all(r.body["status"] == "completed" and not r.replayed for r in results)
        seqs = [r.body["entry_seq"] for r in results]
        assert seqs == list(range(seqs[0], seqs[0] + 2_000))  # journal order is request order
        spent = Counter[str]()
        earned = Counter[str]()
        for r in requests:
            spent[r.payer_wallet_id] += r.amount.amount_minor
            earned[r.merchant_wallet_id] += r.amount.amount_minor - _fee(r.amount.amount_minor)
        assert all(_balance(platform, w) == 2_000_000 - spent[w] for w in wallets)
        assert all(_balance(platform, s) == earned[s] for s in shops)
        fees = platform.ledger.get_account(pay.house_account("fee_income", "CNY")).balance_minor
        assert fees == sum(_fee(r.amount.amount_minor) for r in requests)
        outbox = platform.db.run(
            lambda conn: conn.execute(
                sa.select(sa.func.count()).where(PLATFORM_CORE.outbox.c.topic == "payments.payment_completed")
            ).scalar_one()
        )
        assert outbox == 20 + 2_000  # the funding top-ups and the payments
        assert platform.ledger.audit().clean

        position = platform.ledger.journal_position()
        again = pay.submit_batch(requests, member="shop")
        assert all(r.replayed and r.status_code == 201 for r in again)
        assert [r.payment_id for r in again] == [r.payment_id for r in results]
        assert platform.ledger.journal_position() == position

        commits[0] = 0
        with platform.db.batch():  # the caller's group commit: both batches join it, top-ups and all
            first = pay.submit_batch([Transfer("t-1", wallets[0], wallets[1], Money(100, CNY))], member="p2p")
            second = pay.submit_batch(
                [
                    TopUp("t-2", wallets[2], Money(5_000_000, CNY), "tok"),
                    Transfer("t-3", wallets[2], wallets[0], Money(3_000_000, CNY)),  # only with the top-up
                ],
                member="p2p",
            )
        assert commits[0] == 1
        assert [r.body["status"] for r in (*first, *second)] == ["completed"] * 3
        assert _balance(platform, wallets[2]) == 2_000_000 - spent[wallets[2]] + 5_000_000 - 3_000_000
    finally:
        platform.close()


# ---------------------------------------------------------------- request order


def test_within_a_batch_outcomes_follow_request_order(db_url: str, tmp_path: Path) -> None:
    platform = _platform(db_url, tmp_path, PiiVault.generate())
    try:
        pay = platform.payments
        pay.tiers = {**DEFAULT_TIERS, 3: TierLimits(3, 100_000, 100_000, 1_000_000, 3)}  # three payments a day
        wallets, shops = _economy(platform, 2, 1, 10_000)
        payer, other, shop = wallets[0], wallets[1], shops[0]

        def buy(key: str, amount: int, wallet: str = payer) -> MerchantPayment:
            return MerchantPayment(key, wallet, shop, Money(amount, CNY))

        results = pay.submit_batch(
            [
                buy("a", 50_000),  # insufficient funds: must not count towards the day's three
                buy("b", 1_000),
                buy("c", 1_000),
                buy("bad key", 1_000),  # an error as a value; nothing stored
                buy("d", 1_000),  # the third counted payment: passes
                buy("e", 1_000),  # the fourth: over the daily count
                buy("f", 20_000, other),  # other holds 10,000: refused ...
                TopUp("g", other, Money(15_000, CNY), "tok"),  # ... this settles ...
                buy("h", 20_000, other),  # ... and now it fits
                buy("b", 1_000),  # a replay of b
                buy("c", 2_000),  # c again with another amount
            ],
            member="order",
        )
        codes = [r.error_code if r.error_code else r.body["status"] for r in results]
        assert codes == [
            "payments.insufficient_funds",
            "completed",
            "completed",
            "idempotency.invalid_key",
            "completed",
            "payments.limit_exceeded",
            "payments.insufficient_funds",
            "completed",
            "completed",
            "completed",
            "idempotency.key_reused",
        ]
        assert results[5].body["error"]["details"]["limit"] == "daily_count"
        assert results[9].replayed and results[9].payment_id == results[1].payment_id
        assert [r.status_code for r in results] == [409, 201, 201, 422, 201, 409, 409, 202, 201, 201, 422]
        assert _balance(platform, payer) == 10_000 - 3_000
        assert _balance(platform, other) == 10_000 + 15_000 - 20_000

        def usage(conn: sa.Connection) -> dict[tuple[str, str], tuple[int, int]]:
            return {
                (r.wallet_id, r.period): (r.outgoing_minor, r.count) for r in conn.execute(sa.select(pt.limit_usage))
            }

        counted = platform.db.run(usage, readonly=True)
        assert counted[(payer, "D2026-03-02")] == (3_000, 3)
        assert counted[(other, "D2026-03-02")] == (20_000, 1)
        assert platform.ledger.audit().clean
    finally:
        platform.close()


def test_credit_line_payments_run_at_their_place_with_the_real_line(db_url: str, tmp_path: Path) -> None:
    """Lending's credit line (the `FundingSource` port) inside a batch: drawn at its place, refused alone."""
    platform = _platform(db_url, tmp_path, PiiVault.generate())
    try:
        pay, lending = platform.payments, platform.lending
        customer = pay.register_customer(
            kind="consumer", legal_name="Lin", national_id="L30000001", date_of_birth=date(1990, 6, 1), kyc_tier=2,
            incomes=[Income(date(2025, 12, 31), Money(20_000_000, CNY))],
        )["id"]  # fmt: skip
        wallet = pay.open_wallet(customer)["id"]
        shop = pay.open_wallet(
            pay.register_customer(kind="merchant", legal_name="Tea", merchant_category="5812", fee_bps=FEE_BPS)["id"]
        )["id"]
        decided = lending.apply(
            member="app", key="apply", customer_id=customer, wallet_id=wallet, product_code="line-cny",
            amount_minor=1_000_000,
        )  # fmt: skip
        assert decided.status_code == 201, decided.body
        accepted = lending.accept(member="app", key="accept", application_id=decided.body["application_id"])
        line = lending.get_account(accepted.body["account_id"])
        limit = line["limit"]["amount_minor"]

        def buy(key: str, amount: int, funding: str = "wallet") -> MerchantPayment:
            return MerchantPayment(key, wallet, shop, Money(amount, CNY), funding)

        results = pay.submit_batch(
            [
                TopUp("fund", wallet, Money(10_000, CNY), "tok"),
                buy("w1", 4_000),
                buy("l1", 50_000, "credit_line"),
                buy("w2", 4_000),
                buy("l2", limit, "credit_line"),  # over what is left on the line: refused, nothing stored
                buy("l1", 50_000, "credit_line"),  # a replay of l1
                buy("w3", 4_000),  # insufficient: 2,000 left in the wallet
            ],
            member="shop",
        )
        codes = [r.error_code or r.body["status"] for r in results]
        assert codes == [
            "completed",
            "completed",
            "completed",
            "completed",
            "lending.line_limit_exceeded",
            "completed",
            "payments.insufficient_funds",
        ], [r.body for r in results]
        assert results[2].body["funding"] == "credit_line" and results[5].replayed
        assert results[5].payment_id == results[2].payment_id
        seqs = [r.body.get("entry_seq") for r in results[:4]]
        assert seqs == sorted(seqs)  # journal order is request order, across the single-path request
        owed = lending.get_account(line["account_id"])["balances"]["principal"]["amount_minor"]
        assert owed == 50_000
        assert _balance(platform, wallet) == 10_000 - 8_000
        assert _balance(platform, shop) == sum(a - _fee(a) for a in (4_000, 50_000, 4_000))
        assert lending.reconcile()["clean"]
        assert platform.ledger.audit().clean
    finally:
        platform.close()


def test_a_limit_refusal_states_the_counts_without_payments_the_ledger_refused(db_url: str, tmp_path: Path) -> None:
    """The same payments reach the ledger whether or not a refused one is counted, but the refusal's
    details (what the day would come to, what remains) must not count it."""
    platform = _platform(db_url, tmp_path, PiiVault.generate())
    try:
        pay = platform.payments
        pay.tiers = {**DEFAULT_TIERS, 3: TierLimits(3, 100_000, 100_000, 1_000_000, 10)}
        (payer,), (shop,) = _economy(platform, 1, 1, 70_000)
        results = pay.submit_batch(
            [
                MerchantPayment("x", payer, shop, Money(60_000, CNY)),  # 10,000 left, 40,000 of the day
                MerchantPayment("a", payer, shop, Money(30_000, CNY)),  # within the day, beyond the wallet
                MerchantPayment("g", payer, shop, Money(50_000, CNY)),  # over the day either way
            ],
            member="counts",
        )
        assert [r.error_code for r in results] == [None, "payments.insufficient_funds", "payments.limit_exceeded"]
        details = results[2].body["error"]["details"]
        assert (details["limit"], details["would_be"], details["remaining"]) == ("daily", 110_000, 40_000)
    finally:
        platform.close()


# ---------------------------------------------------------------- racing batches


def test_racing_batches_never_overdraw_and_apply_each_key_once(db_url: str, tmp_path: Path) -> None:
    vault = PiiVault.generate()
    platforms = [_platform(db_url, tmp_path, vault) for _ in range(2)]
    try:
        balance = 30_000
        wallets, shops = _economy(platforms[0], 6, 2, balance)
        rounds, size = 3, 120

        def batch(worker: int, n: int) -> list[MerchantPayment]:
            requests = []
            for i in range(size):
                shared = i % 2 == 0  # both workers send these, identically
                key = f"s-{n}-{i}" if shared else f"w{worker}-{n}-{i}"
                amount = 300 + (i * 37) % 400
                requests.append(MerchantPayment(key, wallets[(i + n) % 6], shops[i % 2], Money(amount, CNY)))
            return requests

        answers: dict[int, list[PaymentResult]] = {0: [], 1: []}
        failures: list[BaseException] = []
        barrier = threading.Barrier(2)

        def worker(w: int) -> None:
            try:
                barrier.wait(timeout=60)
                for n in range(rounds):
                    answers[w] += platforms[w].payments.submit_batch(batch(w, n), member="race")
            except BaseException as exc:  # every escape fails the test
                failures.append(exc)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a worker hung"
        assert failures == []

        first = platforms[0]
        by_key: dict[str, list[PaymentResult]] = {}
        for w in range(2):
            requests = [r for n in range(rounds) for r in batch(w, n)]
            for request, result in zip(requests, answers[w], strict=True):
                by_key.setdefault(request.key, []).append(result)
        for key, results in by_key.items():
            if key.startswith("s-"):  # applied once: one fresh answer, one replay of the same payment
                assert sorted(r.replayed for r in results) == [False, True], key
                assert results[0].payment_id == results[1].payment_id
                assert results[0].body["status"] == results[1].body["status"]
        rows = first.db.run(
            lambda conn: list(conn.execute(sa.select(pt.payments).where(pt.payments.c.member == "race")))
        )
        assert len(rows) == len(by_key) == len({r.idempotency_key for r in rows})
        completed = [r for r in rows if r.status == "completed"]
        outcomes = Counter(r.error_code or r.status for r in rows)
        assert outcomes["payments.insufficient_funds"] > 0 and outcomes["completed"] > 0  # the race was real
        for wallet in wallets:
            spent = sum(int(r.amount_minor) for r in completed if r.payer_wallet_id == wallet)
            assert _balance(first, wallet) == balance - spent >= 0
            usage = first.db.run(
                lambda conn, w=wallet: conn.execute(
                    sa.select(pt.limit_usage.c.outgoing_minor, pt.limit_usage.c.count).where(
                        pt.limit_usage.c.wallet_id == w, pt.limit_usage.c.period == "D2026-03-02"
                    )
                ).one()
            )
            assert tuple(usage) == (spent, sum(1 for r in completed if r.payer_wallet_id == wallet))
        assert first.ledger.audit().clean
    finally:
        for p in platforms:
            p.close()


def test_a_rail_whose_batch_call_raises_leaves_the_top_ups_pending_and_decides_the_rest(
    db_url: str, tmp_path: Path
) -> None:
    """The batch path sends its top-ups with the rail's `submit_many` when it has one: if that call raises as
    a whole, every top-up stays pending (as after a lost answer, to be retried or settled by a statement) and
    the batch's other payments are still decided and answered."""
    platform = _platform(db_url, tmp_path, PiiVault.generate())
    try:
        (payer, other), (shop,) = _economy(platform, 2, 1, 50_000)

        def rail_down(_instructions: Any) -> Any:
            raise ConnectionError("rail down")

        platform.payments.rail.submit_many = rail_down  # type: ignore[attr-defined]
        answers = platform.payments.submit_batch(
            [
                TopUp("late-top-up", other, Money(7_000, CNY), "tok"),
                MerchantPayment("buy", payer, shop, Money(1_000, CNY)),
            ],
            member="m",
        )
        assert answers[0].status_code == 202 and answers[0].body["status"] == "pending", answers[0].body
        assert answers[1].status_code == 201, answers[1].body
        assert _balance(platform, other) == 50_000  # not credited until the bank answers
        assert _balance(platform, payer) == 49_000
        assert platform.ledger.audit().clean
    finally:
        platform.close()
