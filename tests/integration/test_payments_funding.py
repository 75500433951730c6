"""The FundingSource port: a merchant payment funded by something other than the wallet (the lending
context will plug its credit line in here; payments never imports lending). This test plugs in a minimal
line of its own — a ledger asset account per customer with a limit it checks itself."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from creditstack.app.platform import Platform
from creditstack.core.errors import BusinessRuleViolated
from creditstack.core.money import CNY, Money
from creditstack.payments.domain import FundingLeg


class LineOverLimit(BusinessRuleViolated):
    """The test line's limit is exceeded."""

    code = "test.line_over_limit"


class FakeCreditLine:
    """A credit line as a funding source: draws debit a receivable account, refunds credit it back."""

    name = "test-line"

    def __init__(self, platform: Platform, limit_minor: int) -> None:
        self.account_id = platform.ledger.open_account(
            member="test", code="test:line-receivable", currency="CNY", type="asset"
        ).id
        self.limit_minor = limit_minor
        self.drawn_minor = 0
        self.reserved: list[str] = []

    def reserve(
        self, transaction: Any, *, customer_id: str, amount_minor: int, currency: str, payment_id: str
    ) -> FundingLeg:
        assert transaction is not None  # called inside the payment's own transaction
        if self.drawn_minor + amount_minor > self.limit_minor:
            raise LineOverLimit(f"line limit {self.limit_minor} exceeded")
        self.drawn_minor += amount_minor
        self.reserved.append(payment_id)
        return FundingLeg(self.account_id, f"line-of-{customer_id}")

    def refunded(self, transaction: Any, *, payment_id: str, amount_minor: int, currency: str) -> FundingLeg:
        assert payment_id in self.reserved
        self.drawn_minor -= amount_minor
        return FundingLeg(self.account_id, payment_id)


def test_a_merchant_payment_funded_by_a_credit_line(platform: Platform) -> None:
    pay = platform.payments
    line = FakeCreditLine(platform, limit_minor=50_000)
    pay.register_funding_source(line)
    consumer = pay.register_customer(
        kind="consumer", legal_name="Li Na", national_id="LINE0001", date_of_birth=date(1988, 8, 8)
    )["id"]
    shop = pay.register_customer(kind="merchant", legal_name="Books", merchant_category="5942", fee_bps=100)["id"]
    wallet, shop_wallet = pay.open_wallet(consumer)["id"], pay.open_wallet(shop)["id"]
    paid = pay.pay_merchant(
        member="t",
        key="line-1",
        payer_wallet_id=wallet,
        merchant_wallet_id=shop_wallet,
        amount=Money(20_000, CNY),
        funding="test-line",
    )
    assert paid.ok and paid.body["funding"] == "test-line"
    assert pay.get_wallet(wallet)["balance"]["amount_minor"] == 0  # the wallet paid nothing
    assert pay.get_wallet(shop_wallet)["balance"]["amount_minor"] == 19_800  # 1 % fee
    assert platform.ledger.get_account(line.account_id).balance_minor == 20_000  # the line was drawn
    with pytest.raises(LineOverLimit):  # the source refuses inside the payment's transaction: nothing is written
        pay.pay_merchant(
            member="t",
            key="line-2",
            payer_wallet_id=wallet,
            merchant_wallet_id=shop_wallet,
            amount=Money(30_001, CNY),
            funding="test-line",
        )
    assert platform.ledger.get_account(line.account_id).balance_minor == 20_000  # nothing moved
    refund = pay.refund(member="t", key="line-r", payment_id=str(paid.payment_id), amount=Money(5_000, CNY))
    assert refund.ok
    assert platform.ledger.get_account(line.account_id).balance_minor == 15_000  # the refund credited the line
    assert pay.get_wallet(wallet)["balance"]["amount_minor"] == 0
    assert line.drawn_minor == 15_000
    assert platform.ledger.audit().clean
