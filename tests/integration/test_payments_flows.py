"""Payments flows through the service on SQLite and PostgreSQL: the rail's failure modes, reconciliation of the
simulated bank's statements (clean, then with each kind of break), outbox events, fees and refunds, and the CLI.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from creditstack.app.platform import Platform
from creditstack.core import business_date
from creditstack.core.money import Money
from creditstack.core.settings import get_settings
from creditstack.core.tables import PLATFORM_CORE
from creditstack.payments.rail import SimulatedRail
from creditstack.payments.service import Income, PaymentResult

MONDAY = date(2026, 3, 2)
NATIONAL_ID = "P20000001"
LEGAL_NAME = "Grace Hopper-Zhou"


def cny(amount: int) -> Money:
    return Money.of(amount, "CNY")


class Book:
    """A consumer with a funded wallet, a merchant and the simulated rail."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.pay = platform.payments
        assert isinstance(platform.rail, SimulatedRail)
        self.rail: SimulatedRail = platform.rail
        self.consumer = self.pay.register_customer(
            kind="consumer",
            legal_name=LEGAL_NAME,
            national_id=NATIONAL_ID,
            date_of_birth=date(1988, 12, 9),
            address="7 Harbour Road",
            phone="+86-755-5555-0199",
            kyc_tier=2,
            incomes=[Income(date(2025, 12, 31), cny(20_000_000))],
        )["id"]
        self.merchant = self.pay.register_customer(
            kind="merchant", legal_name="Book Shop", merchant_category="5942", fee_bps=125, refund_fee_policy="none"
        )["id"]
        self.wallet = self.pay.open_wallet(self.consumer)["id"]
        self.shop = self.pay.open_wallet(self.merchant)["id"]
        self.keys = 0

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def top_up(self, amount: int, behaviour: str = "settle") -> PaymentResult:
        self.rail.behaviour = lambda _i: behaviour
        return self.pay.top_up(
            member="app", key=self.key(), wallet_id=self.wallet, amount=cny(amount), bank_account_token="tok"
        )

    def withdraw(self, amount: int, behaviour: str = "settle") -> PaymentResult:
        self.rail.behaviour = lambda _i: behaviour
        return self.pay.withdraw(
            member="app", key=self.key(), wallet_id=self.wallet, amount=cny(amount), bank_account_token="tok"
        )

    def balances(self, wallet: str | None = None) -> tuple[int, int, int]:
        view = self.pay.get_wallet(wallet or self.wallet)
        return view["balance"]["amount_minor"], view["available"]["amount_minor"], view["held"]["amount_minor"]

    def house(self, purpose: str) -> int:
        account = self.platform.ledger.get_account(self.pay.house_account(purpose, "CNY"))
        return int(account.to_json()["balance"]["amount_minor"])

    def advance(self, to: date) -> None:
        self.platform.db.run(
            lambda conn: business_date.advance(conn, PLATFORM_CORE, "platform", to, self.platform.clock.now())
        )

    def outbox(self) -> list[tuple[str, dict[str, Any]]]:
        with self.platform.db.transaction(readonly=True) as conn:
            rows = conn.execute(sa.text("SELECT topic, payload FROM outbox ORDER BY position")).all()
        return [(r.topic, r.payload if isinstance(r.payload, dict) else json.loads(r.payload)) for r in rows]

    def reconcile(self, data: bytes, fmt: str) -> dict[str, Any]:
        answer = self.pay.reconcile_statement(data, fmt)
        assert answer["statements"] == 1
        return dict(answer["reports"][0])


@pytest.fixture
def book(platform: Platform) -> Book:
    return Book(platform)


# ---------------------------------------------------------------- the rail's failure modes


def test_a_top_up_is_credited_only_when_the_rail_settles(book: Book) -> None:
    late = book.top_up(50_000, "late")
    assert late.body["status"] == "pending" and book.balances() == (0, 0, 0)
    rejected = book.top_up(20_000, "reject")
    assert rejected.body["status"] == "rejected" and rejected.body["error_code"] == "payments.rail_rejected"
    position = book.platform.ledger.journal_position()
    assert book.rail.finish_pending() == {late.body["end_to_end_id"]: "settled"}
    settled = book.pay.apply_rail_outcome(late.body["end_to_end_id"], "settled")
    assert settled.body["status"] == "completed" and book.balances() == (50_000, 50_000, 0)
    assert book.platform.ledger.journal_position() == position + 1
    again = book.pay.apply_rail_outcome(late.body["end_to_end_id"], "settled")
    assert again.replayed and book.balances() == (50_000, 50_000, 0)
    assert book.house("settlement") == 50_000


def test_a_rejected_withdrawal_releases_its_hold_and_its_limit_usage(book: Book) -> None:
    book.top_up(100_000)
    rejected = book.withdraw(100_000, "reject")
    assert rejected.body["status"] == "rejected" and book.balances() == (100_000, 100_000, 0)
    assert book.withdraw(100_000).body["status"] == "completed"
    assert book.balances() == (0, 0, 0) and book.house("settlement") == 0


def test_a_timeout_is_unknown_the_hold_stays_and_a_retry_never_pays_twice(book: Book, clock: Any) -> None:
    book.top_up(100_000)
    unknown = book.withdraw(60_000, "timeout_settle")
    payment_id, e2e = unknown.body["payment_id"], unknown.body["end_to_end_id"]
    assert unknown.body["status"] == "unknown"
    assert book.balances() == (100_000, 40_000, 60_000)  # funds unavailable while the outcome is unknown
    spend = book.pay.transfer(
        member="app",
        key="spend",
        payer_wallet_id=book.wallet,
        payee_wallet_id=book.shop,
        amount=cny(40_001),
    )
    assert spend.error_code == "payments.insufficient_funds"
    # Rail holds never expire on their own: days later the funds are still held.
    clock.advance(timedelta(days=10))
    book.advance(MONDAY + timedelta(days=10))
    hold = book.platform.ledger.get_hold(book.platform.db.run(_hold_of(payment_id), readonly=True))
    assert hold["expires_at"] is None and hold["status"] == "pending"
    submissions = book.rail.submissions
    retried = book.pay.retry_withdrawal(payment_id, "tok")
    assert retried.body["status"] == "unknown" and retried.body["end_to_end_id"] == e2e
    assert book.rail.submissions == submissions + 1
    book.rail.finish_pending()
    paid = book.pay.retry_withdrawal(payment_id, "tok")  # the bank now answers: settled
    assert paid.body["status"] == "completed"
    assert book.balances() == (40_000, 40_000, 0)
    again = book.pay.apply_rail_outcome(e2e, "settled")
    assert again.replayed and book.balances() == (40_000, 40_000, 0)
    assert [e.end_to_end_id for e in book.rail.bank_entries("CNY")].count(e2e) == 1
    with pytest.raises(Exception, match="completed") as info:
        book.pay.retry_withdrawal(payment_id, "tok")
    assert getattr(info.value, "code", None) == "payments.withdrawal_not_unknown"


def _hold_of(payment_id: str) -> Any:
    return lambda conn: conn.execute(sa.text("SELECT hold_id FROM payments WHERE id = :i"), {"i": payment_id}).scalar()


def test_a_timeout_that_the_bank_rejects_returns_the_funds(book: Book) -> None:
    book.top_up(100_000)
    unknown = book.withdraw(30_000, "timeout_reject")
    assert unknown.body["status"] == "unknown"
    outcomes = book.rail.finish_pending()
    rejected = book.pay.apply_rail_outcome(unknown.body["end_to_end_id"], outcomes[unknown.body["end_to_end_id"]])
    assert rejected.body["status"] == "rejected" and book.balances() == (100_000, 100_000, 0)


def test_a_settlement_after_a_manual_release_is_a_suspense_break(book: Book) -> None:
    book.top_up(100_000)
    unknown = book.withdraw(25_000, "timeout_settle")
    payment_id, e2e = unknown.body["payment_id"], unknown.body["end_to_end_id"]
    released = book.pay.release_withdrawal(payment_id)
    assert released.body["status"] == "released" and book.balances() == (100_000, 100_000, 0)
    book.rail.finish_pending()
    late = book.pay.apply_rail_outcome(e2e, "settled")
    assert late.body["status"] == "released" and late.body["error_code"] == "payments.settled_after_release"
    assert book.balances() == (100_000, 100_000, 0)  # the wallet is not debited behind the customer's back
    assert book.house("suspense") == 25_000 and book.house("settlement") == 75_000
    book.pay.apply_rail_outcome(e2e, "settled")  # repeating changes nothing
    assert book.house("suspense") == 25_000
    breaks = [p for topic, p in book.outbox() if topic == "payments.rail_break"]
    assert breaks == [
        {
            "payment_id": payment_id,
            "end_to_end_id": e2e,
            "amount_minor": 25_000,
            "currency": "CNY",
            "reason": "settled_after_release",
        }
    ]
    # The bank's statement and the ledger agree on what moved: the break is in suspense, not in reconciliation.
    report = book.reconcile(book.rail.statement_csv(MONDAY, MONDAY).encode(), "csv")
    assert report["reconciled"] is True and report["totals"]["entries_matched"] == 2


# ---------------------------------------------------------------- reconciliation against the simulated bank


@pytest.mark.parametrize("fmt", ["csv", "camt053"])
def test_clean_day_reconciles_then_each_perturbation_gives_exactly_its_break(book: Book, fmt: str) -> None:
    def statement(start: date, end: date) -> bytes:
        if fmt == "csv":
            return book.rail.statement_csv(start, end).encode()
        return book.rail.statement_camt053(start, end)

    book.rail.opening_balance_minor = 5_000_000
    book.top_up(100_000)
    book.withdraw(10_000)
    clean = book.reconcile(statement(MONDAY, MONDAY), fmt)
    assert clean["reconciled"] is True and clean["breaks"] == [] and clean["timing_differences"] == []
    assert clean["balance_check"]["opening"]["amount_minor"] == 5_000_000

    mismatch = book.top_up(50_000)  # the bank books 49,000 for it
    book.rail.book_different_amount(mismatch.body["end_to_end_id"], 49_000)
    in_transit = book.top_up(30_000, "late")  # still pending: a timing difference, not a break
    book.rail.book_bank_entry(MONDAY, 150, "CNY", "DBIT", reference="FEE-0302", description="account fee")
    report = book.reconcile(statement(MONDAY, MONDAY), fmt)
    assert Counter(b["kind"] for b in report["breaks"]) == {"amount_mismatch": 1, "extra_in_bank": 1}
    (amount,) = [b for b in report["breaks"] if b["kind"] == "amount_mismatch"]
    assert (
        amount["ledger_item_ids"] == [mismatch.payment_id] and amount["details"]["difference"]["amount_minor"] == -1_000
    )
    assert [t["ledger_item_ids"] for t in report["timing_differences"]] == [[in_transit.payment_id]]
    assert report["balance_check"]["status"] == "ok"  # the bank's own arithmetic holds


def test_missing_settlement_and_date_mismatch_appear_once_the_tolerance_has_passed(book: Book) -> None:
    # An operator wrongly marks two instructions settled on Monday: the bank settles one on Thursday and
    # rejects the other.
    settles_late = book.top_up(40_000, "late")
    never = book.top_up(20_000, "timeout_reject")
    for result in (settles_late, never):
        book.pay.apply_rail_outcome(result.body["end_to_end_id"], "settled")
    monday = book.reconcile(book.rail.statement_camt053(MONDAY, MONDAY), "camt053")
    assert monday["breaks"] == [] and len(monday["timing_differences"]) == 2  # in transit, within 2 days
    thursday = MONDAY + timedelta(days=3)
    book.advance(thursday)
    book.rail.finish_pending()
    report = book.reconcile(book.rail.statement_camt053(MONDAY, thursday), "camt053")
    kinds = {b["kind"]: b["ledger_item_ids"] for b in report["breaks"]}
    assert kinds == {"date_mismatch": [settles_late.payment_id], "missing_in_bank": [never.payment_id]}
    assert report["timing_differences"] == []


# ---------------------------------------------------------------- fees, refunds and events


def test_fee_without_refund_of_fee_and_one_event_per_completed_payment(book: Book) -> None:
    book.top_up(1_000_000)
    events_before = len(book.outbox())
    paid = book.pay.pay_merchant(
        member="app", key="buy", payer_wallet_id=book.wallet, merchant_wallet_id=book.shop, amount=cny(10_050)
    )
    # 10,050 × 125 / 10,000 = 125.625 → 126 (half-even rounds only exact halves)
    assert paid.body["fee"]["amount_minor"] == 126 and book.house("fee_income") == 126
    assert book.balances(book.shop)[0] == 9_924
    refund = book.pay.refund(member="shop", key="r", payment_id=paid.payment_id or "", amount=cny(5_000))
    # This merchant's agreement returns no fee: the merchant gives back the whole 5,000, fee income stays.
    assert refund.body["fee"]["amount_minor"] == 0
    assert book.balances(book.shop)[0] == 4_924 and book.house("fee_income") == 126
    rest = book.pay.refund(member="shop", key="r2", payment_id=paid.payment_id or "", amount=cny(5_050))
    assert rest.error_code == "payments.merchant_insufficient_funds"  # 4,924 cannot cover 5,050
    events = book.outbox()[events_before:]
    completed = [p for topic, p in events if topic == "payments.payment_completed"]
    assert [p["payment_id"] for p in completed] == [paid.payment_id, refund.payment_id]
    event = completed[0]
    assert event["kind"] == "merchant" and event["amount_minor"] == 10_050 and event["currency"] == "CNY"
    assert event["merchant_category"] == "5942" and event["counterparty_wallet_id"] == book.shop
    assert event["business_date"] == MONDAY.isoformat() and event["payer_customer_id"] == book.consumer
    every_payload = json.dumps([p for _, p in book.outbox()])
    for secret in (NATIONAL_ID, LEGAL_NAME, "Harbour", "1988-12-09", "5555-0199"):
        assert secret not in every_payload


def test_a_rejected_payment_writes_no_completed_event(book: Book) -> None:
    before = len(book.outbox())
    refused = book.pay.transfer(
        member="app", key="nothing", payer_wallet_id=book.wallet, payee_wallet_id=book.shop, amount=cny(1)
    )
    assert refused.error_code == "payments.insufficient_funds"
    assert book.outbox()[before:] == []


# ---------------------------------------------------------------- the CLI


def test_the_cli_runs_a_payment_flow_and_reconciles(
    book: Book, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    from creditstack.app.cli import app

    settings = book.platform.settings
    monkeypatch.setenv("CREDITSTACK_DATABASE_URL", settings.database_url or "")
    monkeypatch.setenv("CREDITSTACK_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(app, ["payments", *args])
        return result.exit_code, (json.loads(result.stdout) if result.stdout.strip() else None)

    code, customer = run(
        "register-customer", "--kind", "consumer", "--legal-name", "Ivy Chen", "--national-id", "P30000003",
        "--date-of-birth", "1991-01-02", "--income", "2025-12-31:9000000:CNY",
    )  # fmt: skip
    assert code == 0 and "Ivy" not in json.dumps(customer)
    code, wallet = run("open-wallet", customer["id"])
    assert code == 0
    code, topped = run("top-up", wallet["id"], "5000", "CNY", "--key", "cli-1", "--bank-account", "tok-cli")
    assert code == 0 and topped["status"] == "completed"
    code, sent = run("transfer", wallet["id"], book.wallet, "6000", "CNY", "--key", "cli-2")
    assert code == 1 and sent["error"]["code"] == "payments.insufficient_funds"
    code, view = run("wallet", wallet["id"])
    assert code == 0 and view["balance"]["amount_minor"] == 5_000
    code, history = run("history", wallet["id"], "--kind", "top_up")
    assert code == 0 and len(history["items"]) == 1
    statement = tmp_path / "statement.csv"
    statement.write_text(book.rail.statement_csv(MONDAY, MONDAY))
    code, answer = run("reconcile", "--file", str(statement), "--format", "csv")
    assert answer is not None and answer["format"] == "csv"
