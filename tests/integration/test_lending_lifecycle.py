"""The lending lifecycle through the service and end of day, on SQLite and PostgreSQL.

Instalment loans (`cash-cny`) paid on schedule, late, in part, early (keep term / keep instalment), with an
excess held as a credit, and charged off then recovered; credit lines (`line-cny`) in and out of their
interest-free period, with refunds and a statement converted into instalments; refusals that change
nothing; the month-end snapshot. After every scenario the subledger reconciles with the ledger to the unit
and the ledger audits clean.

Dates: the platform opens on Monday 2026-03-02; a loan disbursed then falls due on the 2nd of each month
(rolled to the next business day: 2026-05-02 is a Saturday, so 05-04). End of day for D closes D and rolls
the business date to D+1, so "after end of day 04-01" the business date is 04-02 and instalment 1 is billed.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from creditstack.app.platform import Platform
from creditstack.core import business_date
from creditstack.core.errors import CreditstackError
from creditstack.core.money import CNY, Money
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.service import SERVICE
from creditstack.lending import errors
from creditstack.lending import tables as t
from creditstack.lending.apr import compute_apr
from creditstack.lending.products import ExcessHandling, Product, accrue_day, rate_micro
from creditstack.lending.schedule import PrepaymentMode, Schedule, build_schedule, reschedule_after_prepayment
from creditstack.lending.service import LendingResult
from creditstack.payments.rail import SimulatedRail
from creditstack.payments.service import Income, PaymentResult

MONDAY = date(2026, 3, 2)
DAY = timedelta(days=1)
INCOME_MINOR = 20_000_000  # CNY 200,000 a year: the borrower caps (CNY 200,000) do not depend on it


class Borrower:
    """A consumer with a wallet topped up through the simulated rail, a merchant, and lending."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.lending = platform.lending
        self.pay = platform.payments
        assert isinstance(platform.rail, SimulatedRail)
        self.rail: SimulatedRail = platform.rail
        self.customer = self.pay.register_customer(
            kind="consumer",
            legal_name="Lin Wen",
            national_id="L20000001",
            date_of_birth=date(1990, 6, 1),
            kyc_tier=2,
            incomes=[Income(date(2025, 12, 31), Money(INCOME_MINOR, CNY))],
        )["id"]
        merchant = self.pay.register_customer(
            kind="merchant", legal_name="Tea House", merchant_category="5812", fee_bps=0, refund_fee_policy="none"
        )["id"]
        self.wallet = self.pay.open_wallet(self.customer)["id"]
        self.shop = self.pay.open_wallet(merchant)["id"]
        self.keys = 0

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def top_up(self, amount_minor: int) -> None:
        self.rail.behaviour = lambda _instruction: "settle"
        result = self.pay.top_up(
            member="app", key=self.key(), wallet_id=self.wallet, amount=Money(amount_minor, CNY), bank_account_token="t"
        )
        assert result.body["status"] == "completed", result.body

    def apply(self, product_code: str, amount_minor: int, term_months: int | None = None) -> LendingResult:
        return self.lending.apply(
            member="app",
            key=self.key(),
            customer_id=self.customer,
            wallet_id=self.wallet,
            product_code=product_code,
            amount_minor=amount_minor,
            term_months=term_months,
        )

    def open_loan(
        self, amount_minor: int, term_months: int, product_code: str = "cash-cny"
    ) -> tuple[dict[str, Any], str]:
        """(the offer, the loan's id): applied for, approved, accepted and disbursed into the wallet."""
        decided = self.apply(product_code, amount_minor, term_months)
        assert decided.status_code == 201, decided.body
        accepted = self.lending.accept(member="app", key=self.key(), application_id=decided.body["application_id"])
        assert accepted.status_code == 201, accepted.body
        return decided.body["offer"], accepted.body["account_id"]

    def open_line(self, limit_minor: int) -> str:
        decided = self.apply("line-cny", limit_minor)
        assert decided.status_code == 201, decided.body
        accepted = self.lending.accept(member="app", key=self.key(), application_id=decided.body["application_id"])
        assert accepted.status_code == 201, accepted.body
        return str(accepted.body["account_id"])

    def buy(self, amount_minor: int) -> str:
        """A merchant payment funded by the credit line; its payment id."""
        paid = self.pay.pay_merchant(
            member="app",
            key=self.key(),
            payer_wallet_id=self.wallet,
            merchant_wallet_id=self.shop,
            amount=Money(amount_minor, CNY),
            funding="credit_line",
        )
        assert paid.ok and paid.body["funding"] == "credit_line", paid.body
        return str(paid.payment_id)

    def refund(self, payment_id: str, amount_minor: int) -> PaymentResult:
        refunded = self.pay.refund(
            member="shop", key=self.key(), payment_id=payment_id, amount=Money(amount_minor, CNY)
        )
        assert refunded.ok, refunded.body
        return refunded

    def repay(self, ref: str, amount_minor: int) -> dict[str, int]:
        """Repay from the wallet; the allocation in minor units."""
        result = self.lending.repay(member="app", key=self.key(), account_id=ref, amount_minor=amount_minor)
        assert result.status_code == 201, result.body
        return {k: v["amount_minor"] for k, v in result.body["allocation"].items()}

    def account(self, ref: str) -> dict[str, Any]:
        return self.lending.get_account(ref)

    def balances(self, ref: str) -> dict[str, int]:
        return {k: v["amount_minor"] for k, v in self.account(ref)["balances"].items()}

    def eod_through(self, last: date) -> None:
        """Close every business date up to and including `last` (the business date is then `last` + 1)."""
        self.lending.eod.catch_up(last)
        assert self.today() == last + DAY

    def today(self) -> date:
        return self.platform.ledger.business_date()

    def gl(self, product_code: str, purpose: str) -> int:
        account_id = self.lending.gl_accounts(product_code)[purpose]
        return self.platform.ledger.get_account(account_id).balance_minor

    def outbox(self, topic: str) -> list[dict[str, Any]]:
        rows = self.platform.db.run(
            lambda conn: conn.execute(
                sa.text("SELECT payload FROM outbox WHERE topic = :topic ORDER BY position"), {"topic": topic}
            ).all(),
            readonly=True,
        )
        return [r.payload if isinstance(r.payload, dict) else json.loads(r.payload) for r in rows]


@pytest.fixture
def borrower(platform: Platform) -> Borrower:
    return Borrower(platform)


def assert_books_clean(platform: Platform) -> None:
    report = platform.lending.reconcile()
    differences = [line for p in report["products"] for line in p["accounts"] if line["difference_minor"]]
    assert report["clean"], differences
    assert platform.ledger.audit().clean


def schedule_of(product: Product, offer: dict[str, Any], principal_minor: int, term_months: int) -> Schedule:
    """The schedule the mathematics gives for the same loan, built independently of the service."""
    return build_schedule(
        Money(principal_minor, CNY),
        Decimal(offer["annual_rate"]),
        term_months,
        MONDAY,
        method=product.amortisation,
        day_count=product.day_count,
        calendar=product.calendar,
        roll=product.roll,
    )


def unpaid(instalment: dict[str, Any]) -> int:
    due = instalment["principal"]["amount_minor"] + instalment["interest"]["amount_minor"]
    return int(due + instalment["fees"]["amount_minor"] - instalment["paid"]["amount_minor"])


def accrued(principal_minor: int, rate: int, days: int, carry: int = 0) -> tuple[int, int]:
    """Interest posted on a constant balance over `days` ACT/365F days by the daily rule, and the carry."""
    total = 0
    for _ in range(days):
        posted, carry = accrue_day(principal_minor, rate, 1, 365, carry)
        total += posted
    return total, carry


# ---------------------------------------------------------------- (1) on time, by the schedule


def test_a_loan_paid_on_schedule_bills_the_schedules_interest_and_closes_at_maturity(borrower: Borrower) -> None:
    product = borrower.lending.product("cash-cny")
    borrower.top_up(2_000_000)
    offer, ref = borrower.open_loan(1_000_000, 3)
    schedule = schedule_of(product, offer, 1_000_000, 3)
    assert [row.due_date for row in schedule.rows] == [date(2026, 4, 2), date(2026, 5, 4), date(2026, 6, 2)]
    assert offer["total_interest"]["amount_minor"] == schedule.total_interest.amount_minor
    planned = borrower.account(ref)["instalments"]
    assert [(i["due_date"], i["principal"]["amount_minor"]) for i in planned] == [
        (row.due_date.isoformat(), row.principal.amount_minor) for row in schedule.rows
    ]

    for row in schedule.rows:
        borrower.eod_through(row.due_date - DAY)  # end of day for the eve of the due date bills it
        instalment = borrower.account(ref)["instalments"][row.number - 1]
        assert instalment["billed"]
        # billed interest is the interest accrued since the last due date: on time, the schedule's, to the unit
        assert instalment["interest"]["amount_minor"] == row.interest.amount_minor
        assert instalment["principal"]["amount_minor"] == row.principal.amount_minor
        allocation = borrower.repay(ref, row.instalment.amount_minor)
        assert (allocation["interest"], allocation["principal"]) == (
            row.interest.amount_minor,
            row.principal.amount_minor,
        )
        assert allocation["fees"] == allocation["penalty"] == allocation["credit"] == 0
        assert borrower.account(ref)["days_past_due"] == 0

    borrower.lending.eod.run()
    account = borrower.account(ref)
    assert account["status"] == "closed" and account["closed_on"] == schedule.maturity_date.isoformat()
    assert all(value == 0 for value in borrower.balances(ref).values())
    assert all(i["settled_on"] == i["due_date"] for i in account["instalments"])
    assert borrower.gl("cash-cny", "interest_income") == schedule.total_interest.amount_minor
    assert borrower.gl("cash-cny", "loans_receivable") == 0
    assert borrower.gl("cash-cny", "penalty_income") == borrower.gl("cash-cny", "fee_income") == 0
    assert borrower.outbox("lending.days_past_due_changed") == []
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (2) late: ageing, late fee, penalty, cure


def test_a_late_loan_ages_through_the_buckets_takes_one_late_fee_accrues_penalty_and_cures(
    borrower: Borrower,
) -> None:
    product = borrower.lending.product("cash-cny")
    borrower.top_up(1_000_000)
    offer, ref = borrower.open_loan(1_000_000, 3)
    first = schedule_of(product, offer, 1_000_000, 3).rows[0]
    penalty_rate = rate_micro(product.penalty_rate)

    borrower.eod_through(date(2026, 4, 1))  # instalment 1 billed, due today (04-02)
    assert (borrower.account(ref)["days_past_due"], borrower.account(ref)["bucket"]) == (0, 0)
    borrower.eod_through(date(2026, 4, 2))  # the due date closes unpaid
    account = borrower.account(ref)
    assert (account["days_past_due"], account["bucket"], account["past_due_since"]) == (1, 1, "2026-04-02")
    assert borrower.balances(ref)["penalty_interest"] == 0  # penalty runs from the day after the due date

    borrower.eod_through(date(2026, 4, 4))
    assert borrower.account(ref)["days_past_due"] == 3
    assert borrower.balances(ref)["fees"] == 0  # within the 3 grace days
    overdue = first.principal.amount_minor
    assert borrower.balances(ref)["penalty_interest"] == accrued(overdue, penalty_rate, 2)[0]  # 04-03, 04-04

    borrower.eod_through(date(2026, 4, 5))  # 3 days after the due date and still unpaid: the late fee
    assert borrower.balances(ref)["fees"] == product.late_fee_minor == 2_000
    assert borrower.account(ref)["instalments"][0]["fees"]["amount_minor"] == 2_000

    borrower.eod_through(date(2026, 4, 30))
    account = borrower.account(ref)
    assert (account["days_past_due"], account["bucket"]) == (29, 1)
    assert borrower.balances(ref)["fees"] == 2_000  # once per instalment, not once per day
    borrower.eod_through(date(2026, 5, 1))
    account = borrower.account(ref)
    assert (account["days_past_due"], account["bucket"]) == (30, 2)
    penalty = borrower.balances(ref)["penalty_interest"]
    assert penalty == accrued(overdue, penalty_rate, 29)[0]  # 04-03 … 05-01 on the overdue principal

    instalment = account["instalments"][0]
    assert instalment["interest"]["amount_minor"] == first.interest.amount_minor
    allocation = borrower.repay(ref, unpaid(instalment) + penalty)
    assert allocation == {
        "fees": 2_000,
        "penalty": penalty,
        "interest": first.interest.amount_minor,
        "principal": first.principal.amount_minor,
        "credit": 0,
        "credit_applied": 0,
    }
    borrower.eod_through(date(2026, 5, 2))
    account = borrower.account(ref)
    assert (account["days_past_due"], account["bucket"], account["past_due_since"]) == (0, 0, None)
    assert borrower.balances(ref)["penalty_interest"] == 0 and borrower.balances(ref)["fees"] == 0
    moves = [(e["bucket"], e["previous_bucket"], e["dpd"]) for e in borrower.outbox("lending.days_past_due_changed")]
    assert moves == [(1, 0, 1), (2, 1, 30), (0, 2, 0)]
    assert borrower.gl("cash-cny", "penalty_income") == penalty
    assert borrower.gl("cash-cny", "fee_income") == 2_000
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (3) a part payment's allocation


def test_a_part_payment_pays_fees_then_penalty_then_interest_then_principal(borrower: Borrower) -> None:
    product = borrower.lending.product("cash-cny")
    borrower.top_up(1_000_000)
    offer, ref = borrower.open_loan(1_000_000, 3)
    first = schedule_of(product, offer, 1_000_000, 3).rows[0]
    borrower.eod_through(date(2026, 4, 5))  # instalment 1 past due: late fee charged, penalty for 04-03 … 04-05
    before = borrower.balances(ref)
    penalty = before["penalty_interest"]
    assert before["fees"] == 2_000 and penalty > 0 and before["interest_billed"] == first.interest.amount_minor
    interest, principal = first.interest.amount_minor, first.principal.amount_minor

    nothing = {"fees": 0, "penalty": 0, "interest": 0, "principal": 0, "credit": 0, "credit_applied": 0}
    assert borrower.repay(ref, 1_500) == {**nothing, "fees": 1_500}
    assert borrower.repay(ref, 500 + penalty + 4_000) == {**nothing, "fees": 500, "penalty": penalty, "interest": 4_000}
    assert borrower.repay(ref, interest - 4_000 + 1_000) == {
        **nothing,
        "interest": interest - 4_000,
        "principal": 1_000,
    }
    after = borrower.balances(ref)
    assert (after["fees"], after["penalty_interest"], after["interest_billed"]) == (0, 0, 0)
    assert after["principal_billed"] == principal - 1_000
    assert after["principal"] == 1_000_000 - 1_000
    instalment = borrower.account(ref)["instalments"][0]
    assert instalment["paid"]["amount_minor"] == 2_000 + interest + 1_000 and instalment["settled_on"] is None

    borrower.eod_through(date(2026, 4, 6))  # what is left is past due: still delinquent, penalty on the rest
    assert borrower.account(ref)["days_past_due"] == 5
    penalty_rate = rate_micro(product.penalty_rate)
    _, carry = accrued(principal, penalty_rate, 3)  # 04-03 … 04-05, paid; then 04-06 on the principal left
    assert borrower.balances(ref)["penalty_interest"] == accrued(principal - 1_000, penalty_rate, 1, carry)[0]
    assert borrower.balances(ref)["fees"] == 0  # the late fee is not charged again
    rest = borrower.balances(ref)["penalty_interest"] + principal - 1_000
    assert borrower.repay(ref, rest) == {**nothing, "penalty": rest - principal + 1_000, "principal": principal - 1_000}
    assert borrower.account(ref)["instalments"][0]["settled_on"] == "2026-04-07"
    borrower.eod_through(date(2026, 4, 7))
    assert borrower.account(ref)["days_past_due"] == 0
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (4) prepayment: keep term, keep instalment


def test_a_prepayment_lowers_the_instalments_or_shortens_the_term_per_the_product(borrower: Borrower) -> None:
    keep_term = borrower.lending.product("cash-cny")
    assert keep_term.prepayment_mode is PrepaymentMode.KEEP_TERM and keep_term.excess is ExcessHandling.PREPAY
    keep_instalment = borrower.lending.register_product(
        dataclasses.replace(keep_term, code="cash-cny-keep-instalment", prepayment_mode=PrepaymentMode.KEEP_INSTALMENT)
    )
    borrower.top_up(1_000_000)
    loans = {}
    for product in (keep_term, keep_instalment):
        offer, ref = borrower.open_loan(1_000_000, 6, product.code)
        loans[product.code] = (product, ref, schedule_of(product, offer, 1_000_000, 6))
    borrower.eod_through(date(2026, 3, 11))
    on = borrower.today()

    expected = {}
    for code, (product, ref, schedule) in loans.items():
        result = reschedule_after_prepayment(schedule, Money(400_000, CNY), on, product.prepayment_mode)
        expected[code] = result.schedule
        allocation = borrower.repay(ref, 400_000)  # nothing billed yet: all of it is an excess, which prepays
        assert (allocation["interest"], allocation["principal"]) == (
            result.interest_paid.amount_minor,
            result.principal_paid.amount_minor,
        )
        account = borrower.account(ref)
        assert [
            (i["number"], i["due_date"], i["principal"]["amount_minor"], i["interest"]["amount_minor"])
            for i in account["instalments"]
        ] == [
            (r.number, r.due_date.isoformat(), r.principal.amount_minor, r.interest.amount_minor)
            for r in result.schedule.rows
        ]
        assert account["maturity_date"] == result.schedule.maturity_date.isoformat()
        assert account["instalment"]["amount_minor"] == result.schedule.level_minor

    _, term_ref, original = loans[keep_term.code]
    kept_term = expected[keep_term.code]
    assert kept_term.maturity_date == original.maturity_date and len(kept_term.rows) == 6
    assert kept_term.level_minor < original.level_minor  # lower instalments, same dates
    _, instalment_ref, _ = loans[keep_instalment.code]
    kept_instalment = expected[keep_instalment.code]
    assert kept_instalment.level_minor == original.level_minor  # the same instalment, fewer of them
    assert kept_instalment.maturity_date < original.maturity_date and len(kept_instalment.rows) < 6

    borrower.eod_through(date(2026, 4, 1))  # the first instalment of each new schedule is billed as planned
    for ref, new in ((term_ref, kept_term), (instalment_ref, kept_instalment)):
        billed = borrower.account(ref)["instalments"][0]
        assert billed["billed"]
        assert billed["interest"]["amount_minor"] == new.rows[0].interest.amount_minor
        assert billed["principal"]["amount_minor"] == new.rows[0].principal.amount_minor
        borrower.repay(ref, new.rows[0].instalment.amount_minor)
        assert borrower.account(ref)["instalments"][0]["settled_on"] == "2026-04-02"
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (5) an excess held as a credit


def test_an_excess_held_as_a_credit_pays_the_next_instalment_when_billed(borrower: Borrower) -> None:
    base = borrower.lending.product("cash-cny")
    product = borrower.lending.register_product(
        dataclasses.replace(base, code="cash-cny-credit", excess=ExcessHandling.CREDIT)
    )
    borrower.top_up(2_000_000)
    offer, ref = borrower.open_loan(1_000_000, 3, product.code)
    schedule = schedule_of(product, offer, 1_000_000, 3)
    first = schedule.rows[0]
    borrower.eod_through(date(2026, 3, 11))

    allocation = borrower.repay(ref, 100_000)  # nothing billed: held, not prepaid
    assert allocation["credit"] == 100_000 and allocation["principal"] == allocation["interest"] == 0
    balances = borrower.balances(ref)
    assert balances["credit"] == 100_000 and balances["principal"] == 1_000_000
    assert borrower.gl(product.code, "customer_credits") == 100_000
    assert [i["principal"]["amount_minor"] for i in borrower.account(ref)["instalments"]] == [
        r.principal.amount_minor for r in schedule.rows
    ]  # no reschedule
    assert_books_clean(borrower.platform)

    borrower.eod_through(date(2026, 4, 1))  # billing applies the credit: interest first, then principal
    instalment = borrower.account(ref)["instalments"][0]
    assert instalment["interest"]["amount_minor"] == first.interest.amount_minor  # principal was untouched
    assert instalment["paid"]["amount_minor"] == 100_000 and instalment["settled_on"] is None
    balances = borrower.balances(ref)
    to_principal = 100_000 - first.interest.amount_minor
    assert balances["credit"] == 0 and balances["interest_billed"] == 0
    assert balances["principal"] == 1_000_000 - to_principal
    assert balances["principal_billed"] == first.principal.amount_minor - to_principal
    assert borrower.gl(product.code, "customer_credits") == 0
    assert_books_clean(borrower.platform)

    allocation = borrower.repay(ref, first.instalment.amount_minor - 100_000)
    assert allocation["principal"] == first.principal.amount_minor - to_principal and allocation["credit"] == 0
    assert borrower.account(ref)["instalments"][0]["settled_on"] == "2026-04-02"

    # a credit held when the borrower pays off: the payoff quote deducts it, so paying the quote settles the loan
    assert borrower.repay(ref, 50_000)["credit"] == 50_000
    quote = borrower.lending.payoff_quote(ref)
    assert quote["credit"]["amount_minor"] == 50_000
    allocation = borrower.repay(ref, quote["total"]["amount_minor"])
    assert allocation["credit_applied"] == 50_000 and allocation["credit"] == 0
    account = borrower.account(ref)
    assert account["status"] == "closed" and all(value == 0 for value in borrower.balances(ref).values())
    assert borrower.gl(product.code, "customer_credits") == 0 and borrower.gl(product.code, "loans_receivable") == 0
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (6) charge-off and recovery


def test_a_loan_charged_off_at_180_days_past_due_then_recovered(borrower: Borrower) -> None:
    borrower.top_up(100_000)
    _, ref = borrower.open_loan(1_000_000, 3)  # first due 04-02, never paid

    borrower.eod_through(date(2026, 6, 29))
    account = borrower.account(ref)
    assert (account["days_past_due"], account["bucket"], account["accruing"]) == (89, 3, True)
    borrower.eod_through(date(2026, 6, 30))  # 90 days past due: non-accrual
    account = borrower.account(ref)
    assert (account["days_past_due"], account["bucket"], account["accruing"]) == (90, 4, False)
    frozen = borrower.balances(ref)
    borrower.eod_through(date(2026, 7, 1))
    assert borrower.balances(ref) == frozen  # neither interest nor penalty accrues any more

    borrower.eod_through(date(2026, 9, 27))
    account = borrower.account(ref)
    assert (account["status"], account["days_past_due"]) == ("active", 179)
    owed = borrower.balances(ref)
    assert owed["fees"] == 3 * 2_000  # one late fee per instalment
    borrower.eod_through(date(2026, 9, 28))  # 180 days past due: charged off
    account = borrower.account(ref)
    assert (account["status"], account["charged_off_on"], account["days_past_due"], account["bucket"]) == (
        "charged_off",
        "2026-09-28",
        180,
        5,
    )
    assert all(value == 0 for value in borrower.balances(ref).values())
    written_off = owed["total_owed"]
    assert account["charged_off"]["amount_minor"] == written_off
    [event] = borrower.outbox("lending.charged_off")
    assert event["account_id"] == ref and event["customer_id"] == borrower.customer
    assert event["principal_minor"] == owed["principal"] == 1_000_000
    assert event["interest_minor"] == owed["interest_billed"] + owed["interest_accrued_unbilled"]
    assert event["fees_minor"] == owed["fees"] + owed["penalty_interest"]
    assert borrower.gl("cash-cny", "credit_losses") == written_off
    for purpose in ("loans_receivable", "interest_receivable", "fees_receivable", "allowance"):
        assert borrower.gl("cash-cny", purpose) == 0, purpose
    assert_books_clean(borrower.platform)

    with pytest.raises(errors.AccountNotActive):
        borrower.repay(ref, 10_000)
    recovered = borrower.lending.recover(member="ops", key=borrower.key(), account_id=ref, amount_minor=40_000)
    assert recovered.status_code == 201 and recovered.body["recovered"]["amount_minor"] == 40_000
    with pytest.raises(errors.RecoveryNotAllowed):
        borrower.lending.recover(member="ops", key=borrower.key(), account_id=ref, amount_minor=written_off)
    assert borrower.gl("cash-cny", "recoveries") == 40_000
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (7) a line's interest-free period


def test_a_line_is_interest_free_while_statements_are_paid_in_full(borrower: Borrower) -> None:
    borrower.top_up(1_000_000)
    ref = borrower.open_line(1_000_000)
    rate = rate_micro(Decimal(borrower.account(ref)["annual_rate"]))
    borrower.buy(200_000)
    borrower.eod_through(date(2026, 3, 5))  # statement day
    [statement] = borrower.lending.statements(ref)
    assert (statement["statement_date"], statement["due_date"], statement["interest_free"]) == (
        "2026-03-05",
        "2026-03-25",
        True,
    )
    assert statement["balance"]["amount_minor"] == 200_000 and statement["interest"]["amount_minor"] == 0
    assert statement["minimum_payment"]["amount_minor"] == 20_000  # max(10,000, 10 % of 200,000)

    borrower.eod_through(date(2026, 3, 24))
    borrower.repay(ref, 200_000)  # in full, on the due date
    borrower.buy(300_000)
    borrower.eod_through(date(2026, 4, 5))
    account = borrower.account(ref)
    assert account["interest_free"] and borrower.balances(ref)["interest_accrued_unbilled"] == 0
    statement = borrower.lending.statements(ref)[0]
    assert (statement["due_date"], statement["interest"]["amount_minor"]) == ("2026-04-27", 0)  # 04-25 is a Saturday
    assert statement["balance"]["amount_minor"] == 300_000

    borrower.repay(ref, statement["minimum_payment"]["amount_minor"])  # 30,000: not in full
    borrower.eod_through(date(2026, 4, 27))  # the due date passes: the interest-free period is lost
    assert not borrower.account(ref)["interest_free"]
    assert borrower.balances(ref)["interest_accrued_unbilled"] == 0
    borrower.eod_through(date(2026, 5, 5))  # interest accrues daily from 04-28; the statement of 05-05 shows it
    interest = accrued(270_000, rate, 8)[0]
    statement = borrower.lending.statements(ref)[0]
    assert statement["statement_date"] == "2026-05-05" and not statement["interest_free"]
    assert statement["interest"]["amount_minor"] == interest > 0
    assert statement["minimum_payment"]["amount_minor"] == 27_000 + interest
    assert statement["balance"]["amount_minor"] == 270_000 + interest

    borrower.repay(ref, 270_000 + interest)  # paid in full by its due date: interest-free again after it
    borrower.eod_through(date(2026, 5, 25))
    assert borrower.account(ref)["interest_free"]
    borrower.buy(100_000)
    borrower.eod_through(date(2026, 5, 27))
    assert borrower.balances(ref)["interest_accrued_unbilled"] == 0
    assert borrower.gl("line-cny", "interest_income") == interest
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (8) refunds onto the line


def test_a_refund_onto_the_line_reduces_what_is_owed(borrower: Borrower) -> None:
    borrower.top_up(1_000_000)
    ref = borrower.open_line(1_000_000)
    books = borrower.buy(200_000)
    tea = borrower.buy(50_000)
    borrower.refund(tea, 30_000)
    balances = borrower.balances(ref)
    assert (balances["principal"], balances["credit"]) == (220_000, 0)
    assert borrower.account(ref)["available"]["amount_minor"] == 780_000
    assert_books_clean(borrower.platform)

    borrower.eod_through(date(2026, 3, 5))  # statement: 220,000, minimum 22,000 billed
    assert borrower.balances(ref)["principal_billed"] == 22_000
    borrower.refund(books, 200_000)  # more than the principal not yet billed (198,000): it pays the minimum too
    balances = borrower.balances(ref)
    assert (balances["principal"], balances["principal_billed"], balances["credit"]) == (20_000, 20_000, 0)
    assert borrower.account(ref)["statement"]["paid"]["amount_minor"] == 200_000
    borrower.repay(ref, 20_000)  # the rest of the statement
    assert borrower.balances(ref)["principal"] == 0
    assert borrower.account(ref)["instalments"][0]["settled_on"] == "2026-03-06"

    borrower.buy(10_000)
    borrower.refund(tea, 20_000)  # beyond the principal owed: the rest is held as a credit
    balances = borrower.balances(ref)
    assert (balances["principal"], balances["credit"], balances["total_owed"]) == (0, 10_000, -10_000)
    assert borrower.gl("line-cny", "loans_receivable") == 0
    assert borrower.gl("line-cny", "customer_credits") == 10_000
    assert_books_clean(borrower.platform)

    borrower.buy(50_000)  # the credit pays for the next purchase first, the line the rest
    balances = borrower.balances(ref)
    assert (balances["principal"], balances["credit"], balances["total_owed"]) == (40_000, 0, 40_000)
    assert borrower.account(ref)["available"]["amount_minor"] == 960_000
    assert borrower.gl("line-cny", "loans_receivable") == 40_000
    assert borrower.gl("line-cny", "customer_credits") == 0
    assert_books_clean(borrower.platform)

    borrower.eod_through(date(2026, 3, 25))  # the statement was settled by refund and payment by its due date
    account = borrower.account(ref)
    assert account["interest_free"] and account["days_past_due"] == 0
    balances = borrower.balances(ref)
    assert balances["fees"] == balances["interest_accrued_unbilled"] == balances["penalty_interest"] == 0
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (9) statement conversion


def test_a_statement_converted_into_three_instalments(borrower: Borrower) -> None:
    borrower.top_up(1_000_000)
    ref = borrower.open_line(1_000_000)
    borrower.buy(450_000)
    borrower.eod_through(date(2026, 3, 5))
    assert borrower.account(ref)["available"]["amount_minor"] == 550_000

    converted = borrower.lending.convert_statement(member="app", key=borrower.key(), account_id=ref, term_months=3)
    assert converted.status_code == 201, converted.body
    body = converted.body
    fee = 450_000 * 60 // 10_000  # 0.60 % of the converted principal a month
    assert body["converted"]["amount_minor"] == 450_000 and body["fee_per_instalment"]["amount_minor"] == fee == 2_700
    # due on the next three statements' due dates: 04-05 + 20 = 04-25 (a Saturday: 04-27), 05-25, 06-25
    due_dates = [date(2026, 4, 27), date(2026, 5, 25), date(2026, 6, 25)]
    assert body["due_dates"] == [d.isoformat() for d in due_dates]
    apr = compute_apr([(borrower.today(), 450_000)], [(d, 150_000 + fee) for d in due_dates]).apr
    assert body["apr"] == f"{apr:.2f}" and Decimal(7) < apr < Decimal(9)  # the fee shown as a rate
    account = borrower.account(ref)
    assert account["available"]["amount_minor"] == 550_000  # limit usage unchanged
    assert account["statement"]["converted"] and account["statement"]["balance"]["amount_minor"] == 0
    rows = [i for i in account["instalments"] if i["kind"] == "conversion"]
    assert [(i["due_date"], i["principal"]["amount_minor"], i["fees"]["amount_minor"], i["billed"]) for i in rows] == [
        (d.isoformat(), 150_000, fee, False) for d in due_dates
    ]
    assert borrower.balances(ref)["principal_billed"] == 0  # the statement's minimum went with the conversion
    assert_books_clean(borrower.platform)

    borrower.eod_through(date(2026, 3, 25))  # the converted statement owes nothing: interest-free, not late
    account = borrower.account(ref)
    assert account["interest_free"] and account["days_past_due"] == 0 and borrower.balances(ref)["fees"] == 0

    borrower.eod_through(date(2026, 4, 26))  # the first instalment is billed for its due date, with its fee
    rows = [i for i in borrower.account(ref)["instalments"] if i["kind"] == "conversion"]
    assert [i["billed"] for i in rows] == [True, False, False]
    balances = borrower.balances(ref)
    assert (balances["principal_billed"], balances["fees"], balances["interest_accrued_unbilled"]) == (150_000, fee, 0)
    assert borrower.account(ref)["available"]["amount_minor"] == 550_000 - fee
    assert borrower.gl("line-cny", "fee_income") == fee
    borrower.repay(ref, 150_000 + fee)
    assert [i["settled_on"] for i in borrower.account(ref)["instalments"] if i["kind"] == "conversion"] == [
        "2026-04-27",
        None,
        None,
    ]
    assert borrower.balances(ref)["principal"] == 300_000
    assert_books_clean(borrower.platform)


def test_a_credit_held_on_a_line_pays_its_converted_instalment_when_billed(borrower: Borrower) -> None:
    borrower.top_up(1_000_000)
    ref = borrower.open_line(1_000_000)
    borrower.buy(300_000)
    borrower.eod_through(date(2026, 3, 5))
    converted = borrower.lending.convert_statement(member="app", key=borrower.key(), account_id=ref, term_months=3)
    assert converted.status_code == 201, converted.body
    instalment = 100_000 + converted.body["fee_per_instalment"]["amount_minor"]  # 101,800, due 04-27
    # paying ahead: the converted principal is repaid with its instalments, so the payment is held as a credit
    assert borrower.repay(ref, 200_000)["credit"] == 200_000

    borrower.eod_through(date(2026, 4, 27))  # the first instalment is billed (04-26) and falls due (04-27)
    account = borrower.account(ref)
    first = next(i for i in account["instalments"] if i["kind"] == "conversion")
    assert (account["days_past_due"], borrower.balances(ref)["fees"]) == (0, 0)  # not late, no late fee
    assert first["settled_on"] == "2026-04-27" and borrower.balances(ref)["credit"] == 200_000 - instalment
    assert_books_clean(borrower.platform)


def test_converting_a_statement_leaves_a_past_due_minimum_to_be_paid_and_stops_interest_on_the_rest(
    borrower: Borrower,
) -> None:
    borrower.top_up(1_000_000)
    ref = borrower.open_line(1_000_000)
    rate = rate_micro(Decimal(borrower.account(ref)["annual_rate"]))
    borrower.buy(200_000)
    borrower.eod_through(date(2026, 4, 5))  # statement 1's minimum (20,000) unpaid: grace lost; statement 2
    assert not borrower.account(ref)["interest_free"] and borrower.account(ref)["days_past_due"] > 0
    assert borrower.balances(ref)["principal_billed"] == 40_000  # statement 1's minimum and statement 2's

    converted = borrower.lending.convert_statement(member="app", key=borrower.key(), account_id=ref, term_months=3)
    assert converted.status_code == 201, converted.body
    assert converted.body["converted"]["amount_minor"] == 180_000  # not the 20,000 already billed and past due
    balances = borrower.balances(ref)
    assert (balances["principal"], balances["principal_billed"]) == (200_000, 20_000)
    conversion = [i for i in borrower.account(ref)["instalments"] if i["kind"] == "conversion"]
    assert sum(i["principal"]["amount_minor"] for i in conversion) == 180_000

    # interest now runs on the 20,000 not converted only; the payoff quote for a later date agrees with it
    carry = borrower.platform.db.run(
        lambda conn: conn.execute(sa.select(t.accounts.c.carry).where(t.accounts.c.ref == ref)).scalar_one(),
        readonly=True,
    )
    quote = borrower.lending.payoff_quote(ref, borrower.today() + 3 * DAY)
    interest_before = balances["interest_billed"] + balances["interest_accrued_unbilled"]
    assert quote["interest"]["amount_minor"] == interest_before + accrued(20_000, rate, 3, carry)[0]
    borrower.eod_through(date(2026, 4, 8))
    assert borrower.lending.payoff_quote(ref)["total"] == quote["total"]
    assert borrower.balances(ref)["total_owed"] == quote["total"]["amount_minor"]
    assert_books_clean(borrower.platform)

    borrower.repay(ref, borrower.lending.payoff_quote(ref)["total"]["amount_minor"] - 180_000)
    balances = borrower.balances(ref)
    assert (balances["principal"], balances["principal_billed"], balances["fees"]) == (180_000, 0, 0)
    borrower.eod_through(date(2026, 4, 9))
    assert borrower.balances(ref)["interest_accrued_unbilled"] == 0  # all that is left is converted
    assert borrower.account(ref)["days_past_due"] == 0
    assert_books_clean(borrower.platform)


# ---------------------------------------------------------------- (10) refusals change nothing


def test_bad_requests_are_refused_and_change_nothing(borrower: Borrower) -> None:
    platform = borrower.platform
    borrower.top_up(2_000_000)
    _, closed = borrower.open_loan(1_000_000, 3)
    assert borrower.repay(closed, borrower.lending.payoff_quote(closed)["total"]["amount_minor"])["principal"] == (
        1_000_000
    )
    assert borrower.account(closed)["status"] == "closed"
    _, active = borrower.open_loan(500_000, 3)
    line = borrower.open_line(100_000)

    def snapshot() -> tuple[Any, ...]:
        return (
            platform.ledger.journal_position(),
            [(a["account_id"], a["status"], a["balances"]) for a in borrower.lending.list_accounts()],
            borrower.pay.get_wallet(borrower.wallet)["balance"],
        )

    before = snapshot()
    with pytest.raises(errors.AccountNotActive) as not_active:
        borrower.repay(closed, 10_000)
    assert not_active.value.code == "lending.account_not_active"
    amounts: tuple[Any, ...] = (0, -5_000, 1_000.0, 10.5, True, "1000")
    for amount in amounts:
        with pytest.raises(errors.InvalidRepayment) as invalid:
            borrower.lending.repay(member="app", key=borrower.key(), account_id=active, amount_minor=amount)
        assert invalid.value.code == "lending.invalid_repayment"
    with pytest.raises(errors.LineLimitExceeded) as over_limit:
        borrower.buy(100_001)
    assert over_limit.value.code == "lending.line_limit_exceeded"
    with pytest.raises(errors.DateBeforeDisbursement) as too_early:
        borrower.lending.payoff_quote(active, MONDAY - DAY)
    assert too_early.value.code == "lending.date_before_disbursement"
    assert snapshot() == before

    # the borrower caps in force by default (cn-2021 and cn-2025: CNY 200,000 for a consumer) count the loan
    # outstanding, the line's full limit and the new principal: 500,000 + 100,000 + 19,500,000 > 20,000,000
    declined = borrower.apply("cash-cny", 19_500_000, 12)
    assert declined.status_code == 409
    assert declined.body["error"]["code"] == "lending.application_declined"
    failing = {r["rule_id"] for r in declined.body["decision"]["reasons"] if r["source"] == "policy"}
    assert failing == {"cn2021.household_consumer_cap", "cn2025.consumer_cap"}
    assert declined.body["status"] == "declined" and declined.body["offer"] is None
    assert snapshot() == before  # no account, no money: the decline is only recorded
    assert borrower.lending.get_application(declined.body["application_id"])["status"] == "declined"
    assert borrower.account(line)["available"]["amount_minor"] == 100_000
    assert_books_clean(platform)


# ---------------------------------------------------------------- (11) the month-end snapshot


def test_month_end_writes_one_account_month_row_per_account(borrower: Borrower) -> None:
    platform = borrower.platform
    # start two days before the month's end: no end of day has run yet, so the business date may simply move
    platform.db.run(
        lambda conn: business_date.advance(conn, PLATFORM_CORE, SERVICE, date(2026, 3, 30), platform.clock.now())
    )
    borrower.top_up(2_000_000)
    _, loan = borrower.open_loan(1_000_000, 3)
    _, repaid = borrower.open_loan(500_000, 3)
    borrower.repay(repaid, 500_000)  # closed within the month: still reported for it
    line = borrower.open_line(1_000_000)
    borrower.buy(120_000)

    def months() -> list[Any]:
        return platform.db.run(
            lambda conn: conn.execute(sa.select(t.snapshots).order_by(t.snapshots.c.account_id)).all(), readonly=True
        )

    borrower.eod_through(date(2026, 3, 30))
    assert months() == []
    borrower.eod_through(date(2026, 3, 31))
    rows = months()
    assert [(r.ref, r.month_end, r.status) for r in rows] == [
        (loan, date(2026, 3, 31), "active"),
        (repaid, date(2026, 3, 31), "closed"),
        (line, date(2026, 3, 31), "active"),
    ]
    by_ref = {r.ref: r for r in rows}
    interest = borrower.balances(loan)["interest_accrued_unbilled"]
    assert (by_ref[loan].principal_minor, by_ref[loan].balance_minor) == (1_000_000, 1_000_000 + interest)
    assert by_ref[repaid].balance_minor == 0
    assert (by_ref[line].limit_minor, by_ref[line].principal_minor) == (1_000_000, 120_000)
    assert all(r.dpd == 0 and r.bucket == 0 and r.past_due_minor == 0 for r in rows)
    borrower.eod_through(date(2026, 4, 1))
    assert len(months()) == 3  # nothing on other days
    assert_books_clean(platform)


def test_two_acceptances_at_once_cannot_break_the_borrower_cap_together(borrower: Borrower) -> None:
    """Each of two 15,000,000 loans is within the 20,000,000 consumer cap alone, not together: accepted at the
    same moment from two threads (PostgreSQL, READ COMMITTED), exactly one is funded."""
    first = borrower.apply("cash-cny", 15_000_000, 12)
    second = borrower.apply("cash-cny", 15_000_000, 12)
    assert first.status_code == second.status_code == 201, (first.body, second.body)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def accept(application_id: str, key: str) -> None:
        barrier.wait()
        try:
            result = borrower.lending.accept(member="app", key=key, application_id=application_id)
            outcomes.append(str(result.status_code))
        except CreditstackError as exc:
            outcomes.append(exc.code)

    threads = [
        threading.Thread(target=accept, args=(first.body["application_id"], "race-1")),
        threading.Thread(target=accept, args=(second.body["application_id"], "race-2")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["201", "policy.rule_failed"]
    assert_books_clean(borrower.platform)


def test_an_application_replays_its_outcome_after_the_wallet_changed(borrower: Borrower) -> None:
    request = {
        "member": "app",
        "key": "apply-once",
        "customer_id": borrower.customer,
        "wallet_id": borrower.wallet,
        "product_code": "cash-cny",
        "amount_minor": 300_000,
        "term_months": 6,
    }
    first = borrower.lending.apply(**request)
    assert first.status_code == 201
    borrower.pay.set_wallet_frozen(borrower.wallet, True)
    again = borrower.lending.apply(**request)
    assert again.replayed and again.body == first.body
    with pytest.raises(CreditstackError) as refused:  # a new application with the frozen wallet is refused
        borrower.lending.apply(**{**request, "key": "apply-new"})
    assert refused.value.code == "lending.invalid_application"


def test_accounts_are_listed_page_by_page(borrower: Borrower) -> None:
    refs = [borrower.open_loan(100_000 + n, 3)[1] for n in range(3)]
    seen: list[str] = []
    after = 0
    while True:
        page = borrower.lending.list_accounts(customer_id=borrower.customer, after=after, limit=2)
        if not page:
            break
        seen += [item["account_id"] for item in page]
        after = page[-1]["position"]
    assert seen == refs
