"""Property tests of lending: random programs of draws, refunds, repayments, conversions and end-of-day runs.

Each program runs on a fresh database holding two instalment loans and two credit lines (built through the
services). After every operation the subledger equals the general ledger to the unit (`reconcile()` is
clean, and the ledger's own audit is clean). Before every end of day the test records, per account, the
balance the day accrues on (a loan's principal; a line's principal outside its interest-free period, less
principal converted into instalments) and the overdue principal, and adds the day's exact interest and
penalty — principal × rate × the day's year fraction, in `Fraction`s, computed here and not by lending. At the
end, for every account, interest posted plus the carried remainder equals that exact total, and the same
for penalty interest: nothing accrued is lost or doubled, whatever happened in between.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.errors import CreditstackError
from creditstack.core.money import CNY, Money
from creditstack.core.settings import Settings
from creditstack.lending import tables as lt
from creditstack.lending.daycount import DayCount
from creditstack.lending.products import RATE_SCALE, day_units
from creditstack.payments.service import Income

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
MEMBER = "prop"

operations = st.one_of(
    st.tuples(st.just("eod"), st.integers(1, 6)),
    st.tuples(st.just("draw"), st.integers(0, 1), st.integers(1_000, 400_000)),
    st.tuples(st.just("repay"), st.integers(0, 3), st.integers(1, 100)),  # percent of the payoff
    st.tuples(st.just("repay_minor"), st.integers(0, 3), st.integers(1, 50_000)),
    st.tuples(st.just("refund"), st.integers(0, 30), st.integers(1, 100)),
    st.tuples(st.just("convert"), st.integers(0, 1), st.sampled_from([3, 6, 12])),
)
programs = st.lists(operations, min_size=3, max_size=18)


class Harness:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.exact_interest: dict[str, Fraction] = {}
        self.exact_penalty: dict[str, Fraction] = {}
        self.draws: list[tuple[str, int]] = []  # (payment id, amount)
        self.keys = 0
        pay, lending = platform.payments, platform.lending
        shop = pay.register_customer(kind="merchant", legal_name="Shop", merchant_category="5411", fee_bps=50)["id"]
        self.shop_wallet = pay.open_wallet(shop)["id"]
        self.accounts: list[str] = []
        self.wallets: dict[str, str] = {}
        for n, (product, amount, term) in enumerate(
            [
                ("cash-cny", 600_000, 6),
                ("cash-cny", 250_000, 3),
                ("line-cny", 1_000_000, None),
                ("line-cny", 500_000, None),
            ]
        ):
            customer = pay.register_customer(
                kind="consumer",
                legal_name=f"P{n}",
                national_id=f"PROP{n:04d}",
                date_of_birth=date(1991, 5, 5),
                incomes=[Income(START.date(), Money(90_000_000, CNY))],
            )["id"]
            wallet = pay.open_wallet(customer, key=f"w{n}", member=MEMBER)["id"]
            pay.top_up(
                member=MEMBER, key=f"t{n}", wallet_id=wallet, amount=Money(2_000_000, CNY), bank_account_token=f"b{n}"
            )
            applied = lending.apply(
                member=MEMBER,
                key=f"a{n}",
                customer_id=customer,
                wallet_id=wallet,
                product_code=product,
                amount_minor=amount,
                term_months=term,
            )
            assert applied.status_code == 201, applied.body
            ref = lending.accept(member=MEMBER, key=f"c{n}", application_id=applied.body["application_id"]).body[
                "account_id"
            ]
            self.accounts.append(ref)
            self.wallets[ref] = wallet
            self.exact_interest[ref] = Fraction(0)
            self.exact_penalty[ref] = Fraction(0)

    @property
    def lines(self) -> list[str]:
        return self.accounts[2:]

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def rows(self) -> dict[str, Any]:
        return {
            row.ref: row
            for row in self.platform.db.run(lambda conn: conn.execute(sa.select(lt.accounts)).all(), readonly=True)
        }

    def step(self, op: tuple[Any, ...]) -> None:
        lending, pay = self.platform.lending, self.platform.payments
        kind = op[0]
        try:
            if kind == "eod":
                for _ in range(op[1]):
                    self.accrue_expected()
                    lending.eod.run()
            elif kind == "draw":
                line = self.lines[op[1]]
                paid = pay.pay_merchant(
                    member=MEMBER,
                    key=self.key(),
                    payer_wallet_id=self.wallets[line],
                    merchant_wallet_id=self.shop_wallet,
                    amount=Money(op[2], CNY),
                    funding="credit_line",
                )
                if paid.status_code == 201:
                    self.draws.append((paid.body["payment_id"], op[2]))
            elif kind in ("repay", "repay_minor"):
                ref = self.accounts[op[1]]
                if kind == "repay":
                    total = lending.payoff_quote(ref)["total"]["amount_minor"]
                    amount = max(1, total * op[2] // 100)
                else:
                    amount = op[2]
                lending.repay(member=MEMBER, key=self.key(), account_id=ref, amount_minor=amount)
            elif kind == "refund" and self.draws:
                payment_id, amount = self.draws[op[1] % len(self.draws)]
                pay.refund(
                    member=MEMBER,
                    key=self.key(),
                    payment_id=payment_id,
                    amount=Money(max(1, amount * op[2] // 100), CNY),
                )
            elif kind == "convert":
                lending.convert_statement(
                    member=MEMBER, key=self.key(), account_id=self.lines[op[1]], term_months=op[2]
                )
        except CreditstackError:
            pass  # refused operations (closed loan, nothing to convert, over the limit, ...) change nothing

    def accrue_expected(self) -> None:
        """Add the exact interest and penalty of the day end of day is about to close, per account."""
        day = self.platform.ledger.business_date()
        for ref, row in self.rows().items():
            if row.status != "active":
                continue
            n = day_units(DayCount.parse(row.day_count), day)
            if row.kind == "line":
                base = 0 if row.grace == 1 else row.principal_minor - row.converted_unbilled_minor
            else:
                base = row.principal_minor
            per_day = Fraction(n, row.days_per_year * RATE_SCALE)
            self.exact_interest[ref] += base * row.accruing * row.rate_micro * per_day
            self.exact_penalty[ref] += row.overdue_principal_minor * row.accruing * row.penalty_rate_micro * per_day

    def check(self) -> None:
        report = self.platform.lending.reconcile()
        assert report["clean"], [line for p in report["products"] for line in p["accounts"] if line["difference_minor"]]
        assert self.platform.ledger.audit().clean

    def check_accrual(self) -> None:
        for ref, row in self.rows().items():
            scale = RATE_SCALE * row.days_per_year
            assert row.interest_accrued_minor + Fraction(row.carry, scale) == self.exact_interest[ref], ref
            assert row.penalty_accrued_minor + Fraction(row.penalty_carry, scale) == self.exact_penalty[ref], ref
            assert -scale // 2 <= row.carry < scale // 2  # the remainder carried is below half a unit


def run(url: str, directory: Path, program: list[tuple[Any, ...]]) -> None:
    platform = open_platform(Settings(database_url=url, var_dir=directory), FixedClock(START), migrate_schema=False)
    try:
        harness = Harness(platform)
        harness.check()
        for op in program:
            harness.step(op)
            harness.check()
        harness.step(("eod", 3))
        harness.check()
        harness.check_accrual()
    finally:
        platform.close()


COMMON = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=15, **COMMON)
@given(program=programs)
def test_subledger_equals_ledger_and_accrual_is_exact_on_sqlite(fresh_sqlite: Any, program: Any) -> None:
    with fresh_sqlite() as (url, directory):
        run(url, directory, program)


@pytest.mark.postgres
@settings(max_examples=4, **COMMON)
@given(program=programs)
def test_subledger_equals_ledger_and_accrual_is_exact_on_postgres(fresh_pg: Any, program: Any) -> None:
    with fresh_pg() as (url, directory):
        run(url, directory, program)
