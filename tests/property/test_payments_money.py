"""Property: any sequence of payments, refunds and rail outcomes conserves money, never pushes a wallet
below zero, never refunds more than a payment (or more fee than it charged), and replays change nothing.

Each example gets a fresh SQLite database copied from the migrated template. The rail's behaviour per
instruction is drawn too (settle, reject, time out then settle or reject, settle late), and the bank later
finishes what it held back.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditstack.app.platform import open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.money import CNY, Money
from creditstack.core.security import PiiVault
from creditstack.core.settings import Settings
from creditstack.payments.rail import SimulatedRail

VAULT = PiiVault.generate()
CONSUMERS = 3

amounts = st.integers(min_value=1, max_value=60_000)
operation = st.one_of(
    st.tuples(
        st.just("top_up"),
        st.integers(0, CONSUMERS - 1),
        amounts,
        st.sampled_from(["settle", "reject", "timeout_settle", "timeout_reject", "late"]),
    ),
    st.tuples(
        st.just("withdraw"),
        st.integers(0, CONSUMERS - 1),
        amounts,
        st.sampled_from(["settle", "reject", "timeout_settle", "late"]),
    ),
    st.tuples(st.just("p2p"), st.integers(0, CONSUMERS - 1), st.integers(0, CONSUMERS - 1), amounts),
    st.tuples(st.just("merchant"), st.integers(0, CONSUMERS - 1), st.integers(0, 1), amounts),
    st.tuples(st.just("refund"), st.integers(0, 50), st.integers(1, 100)),  # payment index, percent of what is left
    st.tuples(st.just("bill"), st.integers(0, CONSUMERS - 1), amounts),
    st.tuples(st.just("replay"), st.integers(0, 50)),
    st.tuples(
        st.just("finish_rail"),
    ),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_payments_conserve_money_and_respect_refund_bounds(sqlite_template: Path, ops: list[tuple[Any, ...]]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="cs-payprop-"))
    try:
        shutil.copy(sqlite_template, workdir / "platform.db")
        behaviours: dict[str, str] = {}
        rail = SimulatedRail(behaviour=lambda _instruction: behaviours.pop("next", "settle"))
        clock = FixedClock(datetime(2026, 3, 2, 1, tzinfo=UTC))
        platform = open_platform(
            Settings(database_url=f"sqlite:///{workdir / 'platform.db'}", var_dir=workdir),
            clock,
            migrate_schema=False,
            rail=rail,
            vault=VAULT,
        )
        rail.business_date = platform.ledger.business_date
        try:
            _run(platform, behaviours, ops)
        finally:
            platform.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(platform: Any, behaviours: dict[str, str], ops: list[tuple[Any, ...]]) -> None:
    pay = platform.payments
    wallets = []
    for i in range(CONSUMERS):
        customer = pay.register_customer(
            kind="consumer",
            legal_name=f"C{i}",
            national_id=f"PROP{i:04d}",
            date_of_birth=date(1990, 1, 1 + i),
            kyc_tier=3,
        )["id"]
        wallets.append(pay.open_wallet(customer)["id"])
    merchants = []
    for i, policy in enumerate(["pro_rata", "none"]):
        customer = pay.register_customer(
            kind="merchant", legal_name=f"M{i}", merchant_category="5411", fee_bps=75, refund_fee_policy=policy
        )["id"]
        merchants.append(pay.open_wallet(customer)["id"])
    biller = pay.open_wallet(pay.register_customer(kind="biller", legal_name="Grid")["id"])["id"]
    paid: list[str] = []
    calls: list[tuple[Any, dict[str, Any], Any]] = []  # (method, kwargs, first body)
    for n, op in enumerate(ops):
        kind = op[0]
        if kind in ("top_up", "withdraw"):
            behaviours["next"] = op[3]
            method = pay.top_up if kind == "top_up" else pay.withdraw
            kwargs = {
                "member": "prop",
                "key": f"k{n}",
                "wallet_id": wallets[op[1]],
                "amount": Money(op[2], CNY),
                "bank_account_token": "tok",
            }
        elif kind == "p2p":
            if op[1] == op[2]:
                continue
            method, kwargs = (
                pay.transfer,
                {
                    "member": "prop",
                    "key": f"k{n}",
                    "payer_wallet_id": wallets[op[1]],
                    "payee_wallet_id": wallets[op[2]],
                    "amount": Money(op[3], CNY),
                },
            )
        elif kind == "merchant":
            method, kwargs = (
                pay.pay_merchant,
                {
                    "member": "prop",
                    "key": f"k{n}",
                    "payer_wallet_id": wallets[op[1]],
                    "merchant_wallet_id": merchants[op[2]],
                    "amount": Money(op[3], CNY),
                },
            )
        elif kind == "bill":
            method, kwargs = (
                pay.pay_bill,
                {
                    "member": "prop",
                    "key": f"k{n}",
                    "payer_wallet_id": wallets[op[1]],
                    "biller_wallet_id": biller,
                    "reference": f"B{n}",
                    "amount": Money(op[2], CNY),
                },
            )
        elif kind == "refund":
            if not paid:
                continue
            payment = pay.get_payment(paid[op[1] % len(paid)])
            left = payment["amount"]["amount_minor"] - payment["refunded"]["amount_minor"]
            amount = max(1, left * op[2] // 100) if left else 1
            method, kwargs = (
                pay.refund,
                {"member": "prop", "key": f"k{n}", "payment_id": payment["payment_id"], "amount": Money(amount, CNY)},
            )
        elif kind == "replay":
            if not calls:
                continue
            method, kwargs, first = calls[op[1] % len(calls)]
            before = _balances(pay, wallets + merchants + [biller])
            again = method(**kwargs)
            assert again.replayed
            assert _balances(pay, wallets + merchants + [biller]) == before
            if "payment_id" in first and "error" not in first:
                assert again.body["payment_id"] == first["payment_id"]
            else:
                assert again.body == first
            continue
        else:  # the bank finishes what it held back
            for end_to_end_id, outcome in platform.rail.finish_pending().items():
                pay.apply_rail_outcome(end_to_end_id, outcome)
            continue
        result = method(**kwargs)
        calls.append((method, kwargs, result.body))
        if kind == "merchant" and result.ok and result.payment_id:
            paid.append(result.payment_id)
        _check(platform, wallets, merchants, biller, paid)


def _balances(pay: Any, wallet_ids: list[str]) -> list[tuple[int, int]]:
    return [(w["balance"]["amount_minor"], w["available"]["amount_minor"]) for w in map(pay.get_wallet, wallet_ids)]


def _check(platform: Any, wallets: list[str], merchants: list[str], biller: str, paid: list[str]) -> None:
    pay = platform.payments
    assert platform.ledger.audit().clean
    total = 0
    for wallet_id in wallets + merchants + [biller]:
        wallet = pay.get_wallet(wallet_id)
        assert wallet["available"]["amount_minor"] >= 0
        assert wallet["balance"]["amount_minor"] >= 0
        total += wallet["balance"]["amount_minor"]
    ledger = platform.ledger
    settlement = ledger.get_account(pay.house_account("settlement", "CNY")).balance_minor
    suspense = ledger.get_account(pay.house_account("suspense", "CNY")).balance_minor
    fees = ledger.get_account(pay.house_account("fee_income", "CNY")).balance_minor
    # What came in through the bank (net) is exactly what the wallets hold plus the fees earned.
    assert settlement + suspense == total + fees
    for payment_id in paid:
        payment = pay.get_payment(payment_id)
        assert 0 <= payment["refunded"]["amount_minor"] <= payment["amount"]["amount_minor"]


@pytest.mark.parametrize("policy_fee", [(10_000, 75)])
def test_full_refund_in_parts_returns_exactly_the_fee(policy_fee: tuple[int, int]) -> None:
    from creditstack.payments.domain import merchant_fee, refund_fee_share

    amount, bps = policy_fee
    fee = merchant_fee(amount, bps)
    parts = [3_333, 3_333, 3_334]
    returned, refunded = 0, 0
    for part in parts:
        returned += refund_fee_share(fee, amount, refunded, part, "pro_rata")
        refunded += part
    assert refunded == amount and returned == fee == 75
    assert refund_fee_share(fee, amount, 0, amount, "none") == 0
