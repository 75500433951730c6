"""A small lending book built through the services, shared by the end-of-day crash and property tests
(a helper module, never collected): consumers with funded wallets, instalment loans, credit lines with
purchases at a merchant."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from creditstack.app.platform import Platform
from creditstack.core.money import CNY, Money
from creditstack.payments.service import Income

MEMBER = "book"


@dataclass
class Book:
    loans: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    wallets: dict[str, str] = field(default_factory=dict)  # account ref -> wallet id
    merchant_wallet: str = ""


def consumer(platform: Platform, n: int, tag: str, funds_minor: int) -> tuple[str, str]:
    pay = platform.payments
    customer = pay.register_customer(
        kind="consumer",
        legal_name=f"Consumer {tag}{n}",
        national_id=f"BOOK{tag}{n:06d}",
        date_of_birth=date(1990, 1, 1),
        incomes=[Income(date(2025, 12, 31), Money(60_000_000, CNY))],
    )["id"]
    wallet = pay.open_wallet(customer)["id"]
    if funds_minor:
        topped = pay.top_up(
            member=MEMBER,
            key=f"fund-{tag}-{n}",
            wallet_id=wallet,
            amount=Money(funds_minor, CNY),
            bank_account_token=f"tok-{tag}-{n}",
        )
        assert topped.status_code in (201, 202), topped.body
    return customer, wallet


def build(platform: Platform, *, loans: int, lines: int, tag: str = "b", funds_minor: int = 1_000_000) -> Book:
    book = Book()
    lending = platform.lending
    merchant = platform.payments.register_customer(
        kind="merchant", legal_name=f"Shop {tag}", merchant_category="5411", fee_bps=60
    )["id"]
    book.merchant_wallet = platform.payments.open_wallet(merchant)["id"]
    for n in range(loans + lines):
        customer, wallet = consumer(platform, n, tag, funds_minor)
        is_loan = n < loans
        applied = lending.apply(
            member=MEMBER,
            key=f"app-{tag}-{n}",
            customer_id=customer,
            wallet_id=wallet,
            product_code="cash-cny" if is_loan else "line-cny",
            amount_minor=100_000 + 37_000 * n,
            term_months=(3, 6, 12)[n % 3] if is_loan else None,
        )
        assert applied.status_code == 201, applied.body
        accepted = lending.accept(member=MEMBER, key=f"acc-{tag}-{n}", application_id=applied.body["application_id"])
        assert accepted.status_code == 201, accepted.body
        ref = accepted.body["account_id"]
        book.wallets[ref] = wallet
        if is_loan:
            book.loans.append(ref)
        else:
            book.lines.append(ref)
            draw(platform, book, ref, 20_000 + 1_300 * n, f"{tag}-{n}-0")
    return book


def draw(platform: Platform, book: Book, line: str, amount_minor: int, key: str) -> bool:
    paid = platform.payments.pay_merchant(
        member=MEMBER,
        key=f"draw-{key}",
        payer_wallet_id=book.wallets[line],
        merchant_wallet_id=book.merchant_wallet,
        amount=Money(amount_minor, CNY),
        funding="credit_line",
    )
    return paid.status_code == 201
