"""Property tests of payments against a pure Python model, on SQLite (and a smaller run on PostgreSQL).

Hypothesis draws random programs of operations and runs each against a fresh database and against
`Model`, a small model of wallets, holds, limit usage, fees and refunds written here:

- top-ups and withdrawals with a drawn rail behaviour per instruction (settle, reject, time out then settle
  or reject, settle late), rail retries, operator releases of unknown withdrawals, and the bank finishing
  what it held back (`platform.rail.finish_pending()` applied with `apply_rail_outcome`);
- peer transfers (also to oneself: refused), merchant payments (two merchants, one refunding the fee pro
  rata and one not, with a drawn fee in basis points, 0 and 10,000 included), bill payments with valid and
  invalid biller references;
- partial, full and excessive refunds, and refunds of payments that cannot be refunded;
- replays of earlier keys with the same request and with another request (`idempotency.key_reused`);
- the business day moving on (daily limits start again; a withdrawal rejected later returns its usage
  to its own day). Consumers have KYC tiers 1, 2 and 3, so limits are hit too.

After every step:
- each call's outcome (completed / pending / unknown / rejected with its code, or the error raised) is
  the model's; a replay is flagged replayed, changes no balance and answers the first body;
- every wallet's balance and available equal the model's and are never below zero;
- money is conserved: `audit()` is clean; the settlement account's balance is the net inflow the bank
  actually booked (its own book), and all wallet balances + fee income == settlement + suspense (suspense
  holds withdrawals the bank paid after an operator released them);
- every merchant payment: the refunds booked against it sum to its `refunded` (≤ its amount), the fee
  they returned sums to its `refunded_fee` (≤ its fee), and a fully refunded pro-rata payment returned
  exactly its fee (a no-fee-refund one none of it); every payment's status is the model's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from creditstack.app.platform import Platform, open_platform
from creditstack.core import business_date
from creditstack.core.clock import FixedClock
from creditstack.core.errors import CreditstackError
from creditstack.core.money import CNY, Money
from creditstack.core.security import PiiVault
from creditstack.core.settings import Settings
from creditstack.core.tables import PLATFORM_CORE
from creditstack.payments import tables as pt
from creditstack.payments.domain import DEFAULT_TIERS, TierLimits
from creditstack.payments.rail import SimulatedRail
from creditstack.payments.service import PaymentResult

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
VAULT = PiiVault.generate()
MEMBER = "prop"
TOKEN = "tok-bank-0001"
CONSUMER_TIERS = (1, 2, 3)
CONSUMERS = [f"c{i}" for i in range(len(CONSUMER_TIERS))]
MERCHANTS = ["m_pro_rata", "m_none"]
BILLER = "biller"
BILLER_PATTERN = r"\d{10}"
INITIAL_FUNDING = 150_000
#: Small tiers so that every limit is reached by short programs (the service takes its tiers as a
#: parameter); tier 3 is the default one.
TIERS = {
    1: TierLimits(1, 60_000, 100_000, 250_000, 4),
    2: TierLimits(2, 150_000, 200_000, 600_000, 8),
    3: DEFAULT_TIERS[3],
}
BEHAVIOURS = ("settle", "reject", "timeout_settle", "timeout_reject", "late")


def _half_even(value: Fraction) -> int:
    return round(value)  # Fraction.__round__ rounds half to even, exactly


# ================================================================ the model


class Refused(Exception):
    """The model expects the service to raise (nothing stored) with this code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class MWallet:
    kind: str
    tier: int
    balance: int = 0
    held: int = 0

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass
class MPayment:
    kind: str
    status: str
    amount: int
    day: date
    payer: str | None = None
    payee: str | None = None
    fee: int = 0
    policy: str | None = None
    behaviour: str | None = None  # rail payments: what the bank does
    error_code: str | None = None
    refunded: int = 0
    refunded_fee: int = 0
    original: str | None = None  # refunds: the payment refunded (model id)


@dataclass
class Model:
    wallets: dict[str, MWallet]
    fee_bps: dict[str, int]
    day: date
    fees: int = 0
    settlement: int = 0
    suspense: int = 0
    usage: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # (wallet, period) -> (minor, n)
    payments: list[MPayment] = field(default_factory=list)

    @staticmethod
    def periods(day: date) -> tuple[str, str]:
        return f"D{day.isoformat()}", f"M{day.year:04d}-{day.month:02d}"

    def _use(self, wallet: str, day: date, amount: int, count: int) -> None:
        for period in self.periods(day):
            minor, n = self.usage.get((wallet, period), (0, 0))
            self.usage[(wallet, period)] = (minor + amount, n + count)

    def _limit_error(self, wallet: str, amount: int) -> str | None:
        limits = TIERS[self.wallets[wallet].tier]
        day_key, month_key = self.periods(self.day)
        daily, count = self.usage.get((wallet, day_key), (0, 0))
        monthly, _ = self.usage.get((wallet, month_key), (0, 0))
        if amount > limits.per_transaction_minor:
            return "per_transaction"
        if daily + amount > limits.daily_minor:
            return "daily"
        if monthly + amount > limits.monthly_minor:
            return "monthly"
        if count + 1 > limits.daily_count_max:
            return "daily_count"
        return None

    def _rejected(self, payment: MPayment, code: str) -> MPayment:
        payment.status, payment.error_code = "rejected", code
        self.payments.append(payment)
        return payment

    # -------------------------------------------------------- outgoing wallet payments

    def outgoing(self, kind: str, payer: str, payee: str, amount: int) -> MPayment:
        if payer == payee:
            raise Refused("payments.self_transfer")
        fee = _half_even(Fraction(amount * self.fee_bps[payee], 10_000)) if kind == "merchant" else 0
        policy = ("pro_rata" if payee == "m_pro_rata" else "none") if kind == "merchant" else None
        payment = MPayment(kind, "completed", amount, self.day, payer, payee, fee=fee, policy=policy)
        limit = self._limit_error(payer, amount)
        if limit is not None:
            payment.fee = fee
            return self._rejected(payment, f"payments.limit_exceeded:{limit}")
        if self.wallets[payer].available < amount:
            return self._rejected(payment, "payments.insufficient_funds")
        self.wallets[payer].balance -= amount
        self.wallets[payee].balance += amount - fee
        self.fees += fee
        self._use(payer, self.day, amount, 1)
        self.payments.append(payment)
        return payment

    def refund(self, original: MPayment, amount: int) -> MPayment:
        if original.kind != "merchant" or original.status != "completed":
            raise Refused("payments.not_refundable")
        refund = MPayment("refund", "completed", amount, self.day, original.payee, original.payer)
        refund.original = str(self.payments.index(original))
        remaining = original.amount - original.refunded
        if amount > remaining:
            return self._rejected(refund, "payments.refund_exceeds_payment")
        fee_back = 0
        if original.policy == "pro_rata":
            before = _half_even(Fraction(original.fee * original.refunded, original.amount))
            after = _half_even(Fraction(original.fee * (original.refunded + amount), original.amount))
            fee_back = after - before
        assert original.payee is not None and original.payer is not None
        merchant = self.wallets[original.payee]
        if merchant.available < amount - fee_back:
            return self._rejected(refund, "payments.merchant_insufficient_funds")
        merchant.balance -= amount - fee_back
        self.fees -= fee_back
        self.wallets[original.payer].balance += amount
        original.refunded += amount
        original.refunded_fee += fee_back
        refund.fee = fee_back
        self.payments.append(refund)
        return refund

    # -------------------------------------------------------- the rail

    def top_up(self, wallet: str, amount: int, behaviour: str) -> MPayment:
        payment = MPayment("top_up", "pending", amount, self.day, payee=wallet, behaviour=behaviour)
        self.payments.append(payment)
        self._first_answer(payment)
        return payment

    def withdraw(self, wallet: str, amount: int, behaviour: str) -> MPayment:
        payment = MPayment("withdrawal", "pending", amount, self.day, payer=wallet, behaviour=behaviour)
        limit = self._limit_error(wallet, amount)
        if limit is not None:
            return self._rejected(payment, f"payments.limit_exceeded:{limit}")
        if self.wallets[wallet].available < amount:
            return self._rejected(payment, "payments.insufficient_funds")
        self.wallets[wallet].held += amount
        self._use(wallet, self.day, amount, 1)
        self.payments.append(payment)
        self._first_answer(payment)
        return payment

    def _first_answer(self, payment: MPayment) -> None:
        if payment.behaviour == "settle":
            self._settle(payment)
        elif payment.behaviour == "reject":
            self._bank_rejects(payment)
        elif payment.behaviour == "late":
            payment.status = "pending"
        else:
            payment.status = "unknown"

    def _settle(self, payment: MPayment) -> None:
        if payment.kind == "top_up":
            assert payment.payee is not None
            self.wallets[payment.payee].balance += payment.amount
            self.settlement += payment.amount
        else:
            assert payment.payer is not None
            wallet = self.wallets[payment.payer]
            wallet.balance -= payment.amount
            wallet.held -= payment.amount
            self.settlement -= payment.amount
        payment.status = "completed"

    def _bank_rejects(self, payment: MPayment) -> None:
        if payment.kind == "withdrawal":
            assert payment.payer is not None
            self.wallets[payment.payer].held -= payment.amount
            self._use(payment.payer, payment.day, -payment.amount, -1)
        payment.status, payment.error_code = "rejected", "payments.rail_rejected"

    def retry(self, payment: MPayment) -> None:
        if payment.kind not in ("top_up", "withdrawal"):
            raise Refused("payments.payment_not_found")
        if payment.status not in ("unknown", "pending"):
            raise Refused("payments.withdrawal_not_unknown")
        payment.status = "pending" if payment.behaviour == "late" else "unknown"

    def release(self, payment: MPayment) -> None:
        if payment.kind != "withdrawal":
            raise Refused("payments.payment_not_found")
        if payment.status == "released":
            return
        if payment.status != "unknown":
            raise Refused("payments.withdrawal_not_unknown")
        assert payment.payer is not None
        self.wallets[payment.payer].held -= payment.amount
        self._use(payment.payer, payment.day, -payment.amount, -1)
        payment.status = "released"

    def finish_rail(self) -> None:
        for payment in self.payments:
            if payment.kind not in ("top_up", "withdrawal") or payment.behaviour in ("settle", "reject"):
                continue
            if payment.error_code in ("payments.insufficient_funds",) or (payment.error_code or "").startswith(
                "payments.limit_exceeded"
            ):
                continue  # never sent to the bank
            if payment.status == "released" and not payment.error_code:
                if payment.behaviour in ("late", "timeout_settle"):  # the bank paid it all the same
                    self.settlement -= payment.amount
                    self.suspense += payment.amount
                    payment.error_code = "payments.settled_after_release"
                else:
                    payment.error_code = "bank_rejected_after_release"  # model only: the bank is done with it
            elif payment.status in ("pending", "unknown"):
                if payment.behaviour in ("late", "timeout_settle"):
                    self._settle(payment)
                else:
                    self._bank_rejects(payment)


# ================================================================ programs

amounts = st.one_of(st.integers(1, 3_000), st.integers(1, 80_000), st.sampled_from([50_000, 120_000, 200_000]))
consumer = st.sampled_from([0, 0, 1, 2])  # c0 (tier 1) most: its limits are reached
merchant = st.integers(0, len(MERCHANTS) - 1)
ref = st.integers(0, 60)
operation = st.one_of(
    st.tuples(st.just("top_up"), consumer, amounts, st.sampled_from(BEHAVIOURS)),
    st.tuples(st.just("top_up"), consumer, st.integers(50_000, 300_000), st.just("settle")),
    st.tuples(
        st.just("withdraw"), st.integers(0, len(CONSUMERS) + len(MERCHANTS) - 1), amounts, st.sampled_from(BEHAVIOURS)
    ),
    st.tuples(st.just("p2p"), consumer, consumer, amounts),
    st.tuples(st.just("merchant"), consumer, merchant, amounts),
    st.tuples(st.just("merchant"), consumer, merchant, st.integers(1, 20_000)),
    st.tuples(st.just("bill"), consumer, amounts, st.booleans()),
    st.tuples(st.just("burst"), consumer, merchant, st.integers(20_000, 60_000), st.integers(2, 6)),
    st.tuples(st.just("refund"), ref, st.sampled_from(["part", "full", "over", "any"]), st.integers(1, 99)),
    st.tuples(st.just("refund"), ref, st.just("part"), st.integers(1, 99)),
    st.tuples(st.just("refund"), ref, st.just("part"), st.integers(1, 99)),
    st.tuples(st.just("replay"), ref, st.booleans()),
    st.tuples(st.just("replay"), ref, st.just(True)),
    st.tuples(st.just("finish_rail")),
    st.tuples(st.just("retry"), ref, st.booleans()),
    st.tuples(st.just("release"), ref, st.booleans()),
    st.tuples(st.just("next_day")),
    st.tuples(st.just("withdraw_release"), consumer, st.integers(1, 30_000), st.sampled_from(BEHAVIOURS[2:4])),
)
programs = st.tuples(
    st.fixed_dictionaries(
        {"m_pro_rata": st.sampled_from([0, 1, 60, 255, 10_000]), "m_none": st.sampled_from([0, 60, 10_000])}
    ),
    st.lists(operation, min_size=15, max_size=40),
)


# ================================================================ the harness


@dataclass
class Call:
    method: Callable[..., PaymentResult]
    kwargs: dict[str, Any]
    first: PaymentResult


class Harness:
    def __init__(self, platform: Platform, rail: SimulatedRail, behaviour: list[str], fee_bps: dict[str, int]) -> None:
        self.platform = platform
        self.pay = platform.payments
        self.rail = rail
        self.behaviour = behaviour
        self.ids: dict[str, str] = {}
        wallets: dict[str, MWallet] = {}
        for i, (name, tier) in enumerate(zip(CONSUMERS, CONSUMER_TIERS, strict=True)):
            customer = self.pay.register_customer(
                kind="consumer",
                legal_name=f"Consumer {i}",
                national_id=f"P{i:08d}",
                date_of_birth=date(1985, 1, 1 + i),
                kyc_tier=tier,
            )["id"]
            self.ids[name] = self.pay.open_wallet(customer)["id"]
            wallets[name] = MWallet("consumer", tier)
        for name in MERCHANTS:
            customer = self.pay.register_customer(
                kind="merchant",
                legal_name=name,
                merchant_category="5814",
                fee_bps=fee_bps[name],
                refund_fee_policy="pro_rata" if name == "m_pro_rata" else "none",
            )["id"]
            self.ids[name] = self.pay.open_wallet(customer)["id"]
            wallets[name] = MWallet("merchant", 1)
        biller = self.pay.register_customer(kind="biller", legal_name="Grid", reference_pattern=BILLER_PATTERN)["id"]
        self.ids[BILLER] = self.pay.open_wallet(biller)["id"]
        wallets[BILLER] = MWallet("biller", 1)
        self.pay.ensure_house_accounts("CNY")
        self.model = Model(wallets, dict(fee_bps), platform.ledger.business_date())
        self.payment_ids: list[str] = []  # service ids, index-aligned with model.payments
        self.calls: list[Call] = []
        self.counter = 0
        for i in range(len(CONSUMERS)):  # something to spend from the start
            self.step(("top_up", i, INITIAL_FUNDING, "settle"))

    # -------------------------------------------------------- running one call

    def key(self) -> str:
        self.counter += 1
        return f"k{self.counter}"

    def run(self, method: Callable[..., PaymentResult], kwargs: dict[str, Any], expect: Callable[[], MPayment]) -> None:
        """Call the service and the model; compare outcomes; remember the call for replays."""
        try:
            predicted: MPayment | None = expect()
            refused = None
        except Refused as exc:
            predicted, refused = None, exc.code
        outcome = refused or (f"{predicted.status} {predicted.error_code or ''}" if predicted else "")
        event(f"{method.__name__}: {outcome}")
        if refused is not None:
            before = self.snapshot()
            with pytest.raises(CreditstackError) as caught:
                method(**kwargs)
            assert caught.value.code == refused, (caught.value.code, refused)
            assert self.snapshot() == before
            return
        assert predicted is not None
        result = method(**kwargs)
        assert not result.replayed
        self.expect_outcome(result, predicted)
        assert result.payment_id is not None
        self.payment_ids.append(result.payment_id)
        self.calls.append(Call(method, kwargs, result))

    def expect_outcome(self, result: PaymentResult, predicted: MPayment) -> None:
        body = result.body
        assert body["status"] == predicted.status, (body, predicted)
        assert body["amount"]["amount_minor"] == predicted.amount
        if predicted.status == "rejected":
            assert not result.ok
            code, _, limit = (predicted.error_code or "").partition(":")
            if code == "payments.rail_rejected":
                assert body["error_code"] == code
            else:
                assert result.error_code == code, body
                assert result.status_code == 409
            if limit:
                assert body["error"]["details"]["limit"] == limit, body
        else:
            assert result.ok, body
            assert body["fee"]["amount_minor"] == predicted.fee

    # -------------------------------------------------------- steps

    def step(self, op: tuple[Any, ...]) -> None:
        kind, m, pay = op[0], self.model, self.pay
        if kind == "top_up":
            wallet, amount, behaviour = CONSUMERS[op[1]], op[2], op[3]
            self.behaviour[0] = behaviour
            kwargs = {
                "member": MEMBER,
                "key": self.key(),
                "wallet_id": self.ids[wallet],
                "amount": Money(amount, CNY),
                "bank_account_token": TOKEN,
            }
            self.run(pay.top_up, kwargs, lambda: m.top_up(wallet, amount, behaviour))
        elif kind == "withdraw":
            wallet, amount, behaviour = [*CONSUMERS, *MERCHANTS][op[1]], op[2], op[3]
            self.behaviour[0] = behaviour
            kwargs = {
                "member": MEMBER,
                "key": self.key(),
                "wallet_id": self.ids[wallet],
                "amount": Money(amount, CNY),
                "bank_account_token": TOKEN,
            }
            self.run(pay.withdraw, kwargs, lambda: m.withdraw(wallet, amount, behaviour))
        elif kind == "p2p":
            payer, payee, amount = CONSUMERS[op[1]], CONSUMERS[op[2]], op[3]
            kwargs = {
                "member": MEMBER,
                "key": self.key(),
                "payer_wallet_id": self.ids[payer],
                "payee_wallet_id": self.ids[payee],
                "amount": Money(amount, CNY),
            }
            self.run(pay.transfer, kwargs, lambda: m.outgoing("p2p", payer, payee, amount))
        elif kind == "merchant":
            payer, merchant, amount = CONSUMERS[op[1]], MERCHANTS[op[2]], op[3]
            kwargs = {
                "member": MEMBER,
                "key": self.key(),
                "payer_wallet_id": self.ids[payer],
                "merchant_wallet_id": self.ids[merchant],
                "amount": Money(amount, CNY),
            }
            self.run(pay.pay_merchant, kwargs, lambda: m.outgoing("merchant", payer, merchant, amount))
        elif kind == "burst":  # equal payments in a row: the day's amount and count limits are reached
            for _ in range(op[4]):
                self.step(("merchant", op[1], op[2], op[3]))
        elif kind == "withdraw_release":  # a timed-out withdrawal an operator gives up on; the bank decides later
            self.step(("withdraw", op[1], op[2], op[3]))
            self.step(("release", -1, False))  # the last rail payment: this withdrawal
        elif kind == "bill":
            payer, amount, valid = CONSUMERS[op[1]], op[2], op[3]
            kwargs = {
                "member": MEMBER,
                "key": self.key(),
                "payer_wallet_id": self.ids[payer],
                "biller_wallet_id": self.ids[BILLER],
                "reference": f"{self.counter:010d}" if valid else f"REF-{self.counter}",
                "amount": Money(amount, CNY),
            }

            def expect_bill() -> MPayment:
                if not valid:
                    raise Refused("payments.biller_reference_invalid")
                return m.outgoing("bill", payer, BILLER, amount)

            self.run(pay.pay_bill, kwargs, expect_bill)
        elif kind == "refund":
            self.refund(op[1], op[2], op[3])
        elif kind == "replay":
            self.replay(op[1], op[2])
        elif kind == "finish_rail":
            finished = self.rail.finish_pending()
            m.finish_rail()
            for end_to_end_id, outcome in finished.items():
                event(f"finish_rail: {outcome}")
                self.pay.apply_rail_outcome(end_to_end_id, outcome)
            for end_to_end_id, outcome in finished.items():  # applying an outcome again changes nothing
                before = self.snapshot()
                again = self.pay.apply_rail_outcome(end_to_end_id, outcome)
                assert self.snapshot() == before
                assert again.body["status"] in ("completed", "rejected", "released")
        elif kind in ("retry", "release"):
            rail_payments = [i for i, p in enumerate(m.payments) if p.kind in ("top_up", "withdrawal")]
            undecided = [
                i
                for i in rail_payments
                if m.payments[i].status in ("pending", "unknown")
                and (kind == "retry" or m.payments[i].kind == "withdrawal")
            ]
            if op[2] and undecided:  # mostly the ones where retrying or releasing does something
                rail_payments = undecided
            if not rail_payments:
                return
            index = rail_payments[op[1] % len(rail_payments)]
            payment, payment_id = m.payments[index], self.payment_ids[index]
            if kind == "retry":
                self.expect_raise_or(
                    lambda: self.pay.retry_withdrawal(payment_id, TOKEN), lambda: m.retry(payment), payment
                )
            else:
                self.expect_raise_or(
                    lambda: self.pay.release_withdrawal(payment_id), lambda: m.release(payment), payment
                )
        elif kind == "next_day":
            today = m.day
            self.platform.db.run(
                lambda conn: business_date.advance(
                    conn, PLATFORM_CORE, "platform", today + timedelta(days=1), self.platform.clock.now()
                )
            )
            m.day = today + timedelta(days=1)
        else:  # pragma: no cover
            raise AssertionError(kind)

    def expect_raise_or(self, call: Callable[[], PaymentResult], expect: Callable[[], None], payment: MPayment) -> None:
        try:
            expect()
        except Refused as exc:
            event(f"retry/release: {exc.code}")
            before = self.snapshot()
            with pytest.raises(CreditstackError) as caught:
                call()
            assert caught.value.code == exc.code
            assert self.snapshot() == before
            return
        result = call()
        event(f"retry/release: {payment.kind} {payment.status}")
        assert result.body["status"] == payment.status, (result.body, payment)

    def refund(self, ref: int, mode: str, percent: int) -> None:
        m = self.model
        if not m.payments:
            return
        merchant_payments = [i for i, p in enumerate(m.payments) if p.kind == "merchant" and p.status == "completed"]
        if mode == "any" or not merchant_payments:
            index = ref % len(m.payments)
        else:
            index = merchant_payments[ref % len(merchant_payments)]
        original = m.payments[index]
        left = original.amount - original.refunded
        amount = {
            "part": max(1, left * percent // 100),
            "full": max(1, left),
            "over": left + 1 + percent,
            "any": max(1, original.amount * percent // 100),
        }[mode]
        kwargs = {
            "member": MEMBER,
            "key": self.key(),
            "payment_id": self.payment_ids[index],
            "amount": Money(amount, CNY),
        }
        self.run(self.pay.refund, kwargs, lambda: m.refund(original, amount))

    def replay(self, ref: int, same: bool) -> None:
        if not self.calls:
            return
        call = self.calls[ref % len(self.calls)]
        event(f"replay: {'same' if same else 'altered'} {call.first.body['status']}")
        before = self.snapshot()
        if not same:
            altered = {**call.kwargs, "amount": Money(call.kwargs["amount"].amount_minor + 1, CNY)}
            with pytest.raises(CreditstackError) as caught:
                call.method(**altered)
            assert caught.value.code == "idempotency.key_reused"
            assert self.snapshot() == before
            return
        again = call.method(**call.kwargs)
        assert again.replayed
        assert self.snapshot() == before
        assert again.status_code == call.first.status_code
        assert again.payment_id == call.first.payment_id
        if "error" in call.first.body:
            assert again.body == call.first.body  # a stored rejection is answered as it was
        else:
            index = self.payment_ids.index(str(call.first.payment_id))
            assert again.body["status"] == self.model.payments[index].status  # where it is now

    # -------------------------------------------------------- checks

    def snapshot(self) -> tuple[Any, ...]:
        ledger = self.platform.ledger
        views = tuple(ledger.get_account(a.id).to_json() for a in ledger.list_accounts(limit=100))
        return views, ledger.journal_position()

    def check(self) -> None:
        m, pay, ledger = self.model, self.pay, self.platform.ledger
        report = ledger.audit()
        assert report.clean, report.to_json()
        total = 0
        for name, expected in m.wallets.items():
            wallet = pay.get_wallet(self.ids[name])
            balance, available = wallet["balance"]["amount_minor"], wallet["available"]["amount_minor"]
            assert (balance, available) == (expected.balance, expected.available), (name, wallet, expected)
            assert balance >= 0 and available >= 0
            total += balance
        settlement = ledger.get_account(pay.house_account("settlement", "CNY")).balance_minor
        suspense = ledger.get_account(pay.house_account("suspense", "CNY")).balance_minor
        fees = ledger.get_account(pay.house_account("fee_income", "CNY")).balance_minor
        bank_net = sum(e.signed_minor for e in self.rail.bank_entries("CNY"))
        assert (settlement, suspense, fees) == (m.settlement, m.suspense, m.fees)
        assert settlement == bank_net  # the ledger's settlement account is what the bank really booked
        assert total + fees == settlement + suspense  # every yuan in a wallet or earned came through the bank
        self.check_payments()

    def check_payments(self) -> None:
        rows = {r.id: r for r in self.platform.db.run(lambda conn: list(conn.execute(sa.select(pt.payments))))}
        assert len(rows) == len(self.payment_ids)
        refunds: dict[str, tuple[int, int]] = {}
        for r in rows.values():
            if r.kind == "refund" and r.status == "completed":
                amount, fee = refunds.get(r.original_payment_id, (0, 0))
                refunds[r.original_payment_id] = (amount + int(r.amount_minor), fee + int(r.fee_minor))
        for payment_id, expected in zip(self.payment_ids, self.model.payments, strict=True):
            row = rows[payment_id]
            assert (row.kind, row.status) == (expected.kind, expected.status), (row, expected)
            if row.kind != "merchant":
                continue
            refunded, fee_back = int(row.refunded_minor), int(row.refunded_fee_minor)
            assert refunds.get(payment_id, (0, 0)) == (refunded, fee_back)
            assert (refunded, fee_back) == (expected.refunded, expected.refunded_fee)
            assert 0 <= refunded <= int(row.amount_minor)
            assert 0 <= fee_back <= int(row.fee_minor)
            if refunded == int(row.amount_minor):
                assert fee_back == (int(row.fee_minor) if expected.policy == "pro_rata" else 0)


# ================================================================ databases per example


def _open(url: str, directory: Path) -> tuple[Platform, SimulatedRail, list[str]]:
    behaviour = ["settle"]
    rail = SimulatedRail(behaviour=lambda _instruction: behaviour[0])
    clock = FixedClock(START)
    platform = open_platform(
        Settings(database_url=url, var_dir=directory), clock, migrate_schema=False, rail=rail, vault=VAULT
    )
    rail.business_date = platform.ledger.business_date
    platform.payments.tiers = dict(TIERS)
    return platform, rail, behaviour


def run_program(database: Any, program: tuple[dict[str, int], list[tuple[Any, ...]]]) -> None:
    fee_bps, ops = program
    with database as (url, directory):
        platform, rail, behaviour = _open(url, directory)
        try:
            h = Harness(platform, rail, behaviour, fee_bps)
            for op in ops:
                h.step(op)
                h.check()
            # The bank finishes everything; then nothing is held and every rail payment is decided.
            h.step(("finish_rail",))
            h.check()
            assert all(p.status in ("completed", "rejected", "released") for p in h.model.payments)
            assert all(w.held == 0 for w in h.model.wallets.values())
        finally:
            platform.close()


COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=60, **COMMON)
@given(program=programs)
def test_payments_match_the_model_on_sqlite(fresh_sqlite: Any, program: Any) -> None:
    run_program(fresh_sqlite(), program)


@pytest.mark.postgres
@settings(max_examples=8, **COMMON)
@given(program=programs)
def test_payments_match_the_model_on_postgres(fresh_pg: Any, program: Any) -> None:
    run_program(fresh_pg(), program)
