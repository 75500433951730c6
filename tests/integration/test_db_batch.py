"""`Database.batch`: many service operations in one transaction, each in a savepoint of its own."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from creditstack.app.platform import Platform
from creditstack.core.errors import CreditstackError
from creditstack.core.money import CNY, Money


def _consumer(platform: Platform, n: int) -> str:
    customer = platform.payments.register_customer(
        kind="consumer",
        legal_name=f"Batch Consumer {n}",
        national_id=f"BATCH{n:06d}",
        date_of_birth=date(1990, 1, 1),
        member="t",
        key=f"c{n}",
    )["id"]
    return str(platform.payments.open_wallet(customer, "CNY", member="t", key=f"w{n}")["id"])


def _merchant(platform: Platform) -> str:
    customer = platform.payments.register_customer(
        kind="merchant", legal_name="Shop", merchant_category="5411", fee_bps=50, member="t", key="m"
    )["id"]
    return str(platform.payments.open_wallet(customer, "CNY", member="t", key="mw")["id"])


def test_a_batch_commits_its_operations_together_and_a_failing_one_alone_is_undone(platform: Platform) -> None:
    pay = platform.payments
    shop = _merchant(platform)
    wallets = [_consumer(platform, n) for n in range(3)]
    before = platform.ledger.journal_position()
    with platform.db.batch():
        for n, wallet in enumerate(wallets):
            pay.top_up(member="t", key=f"top{n}", wallet_id=wallet, amount=Money(10_000, CNY), bank_account_token="b")
        with pytest.raises(CreditstackError):  # an unknown wallet: this operation alone is rolled back
            pay.pay_merchant(
                member="t", key="bad", payer_wallet_id="wal_missing", merchant_wallet_id=shop, amount=Money(1, CNY)
            )
        short = pay.pay_merchant(
            member="t", key="short", payer_wallet_id=wallets[0], merchant_wallet_id=shop, amount=Money(20_000, CNY)
        )
        assert short.status_code == 409  # a business rejection is an outcome, stored like any other
        paid = pay.pay_merchant(
            member="t", key="paid", payer_wallet_id=wallets[1], merchant_wallet_id=shop, amount=Money(4_000, CNY)
        )
        assert paid.status_code == 201
    assert pay.get_wallet(wallets[1])["balance"]["amount_minor"] == 6_000
    assert pay.get_wallet(wallets[0])["balance"]["amount_minor"] == 10_000
    assert platform.ledger.journal_position() > before
    assert platform.ledger.audit().clean
    replay = pay.pay_merchant(
        member="t", key="paid", payer_wallet_id=wallets[1], merchant_wallet_id=shop, amount=Money(4_000, CNY)
    )
    assert replay.replayed and replay.body == paid.body


def test_a_batch_whose_block_raises_is_rolled_back_whole(platform: Platform) -> None:
    pay = platform.payments
    wallet = _consumer(platform, 9)
    position = platform.ledger.journal_position()
    with pytest.raises(RuntimeError, match="stop"), platform.db.batch():
        pay.top_up(member="t", key="gone", wallet_id=wallet, amount=Money(5_000, CNY), bank_account_token="b")
        raise RuntimeError("stop")
    assert pay.get_wallet(wallet)["balance"]["amount_minor"] == 0
    assert platform.ledger.journal_position() == position
    again = pay.top_up(member="t", key="gone", wallet_id=wallet, amount=Money(5_000, CNY), bank_account_token="b")
    assert not again.replayed  # nothing of the rolled-back batch was kept, not even its idempotency key
    assert pay.get_wallet(wallet)["balance"]["amount_minor"] == 5_000


def test_batches_do_not_nest(platform: Platform) -> None:
    with platform.db.batch(), pytest.raises(RuntimeError, match="already open"), platform.db.batch():
        pass


def test_a_read_that_fails_inside_a_batch_leaves_the_batch_usable(platform: Platform) -> None:
    """Reads inside a batch run without a savepoint on SQLite (nothing to roll back, and a failed statement
    leaves SQLite's transaction usable); on PostgreSQL an error aborts the whole transaction, so there a read
    keeps its savepoint. Either way the failing read's error reaches its caller and the batch goes on."""
    pay = platform.payments
    wallet = _consumer(platform, 7)
    with platform.db.batch():
        with pytest.raises(sa.exc.DBAPIError):
            platform.db.run(lambda conn: conn.execute(sa.text("SELECT no_such_column FROM outbox")), readonly=True)
        done = pay.top_up(
            member="t", key="after-read", wallet_id=wallet, amount=Money(500, CNY), bank_account_token="b"
        )
        assert done.ok
    assert pay.get_wallet(wallet)["balance"]["amount_minor"] == 500
