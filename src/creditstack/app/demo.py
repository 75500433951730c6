"""The demo: a small economy on the embedded default.

Ledger: a few accounts, top-ups, purchases through holds, fees, a reversal and a batch of peer transfers.
Payments: consumers (personal data sealed), merchants and a biller with wallets; top-ups over the
simulated bank rail (some settle late, some time out and are retried), merchant payments with fees,
refunds, bill payments, peer transfers and withdrawals. Lending and co-lending: three partner banks, cash
loans and credit lines decided by the rules in force and co-funded, purchases on the lines, forty days of
end of day with repayments (some late, some never), daily settlement with the banks; then lending's and
co-lending's reconciles and the ledger audit prove every unit is accounted for. Idempotent: a second run
replays its keys; the forty days of end of day run only the first time."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.progress import Progress

from creditstack.app.platform import Platform
from creditstack.colending.service import Agreement
from creditstack.core.money import CNY, Money
from creditstack.core.security import Role
from creditstack.ledger.domain import (
    PostEntry,
    PostHold,
    PostingSpec,
    ReserveHold,
    ReverseEntry,
    Side,
    transfer,
)
from creditstack.ledger.service import AccountView
from creditstack.payments.domain import RailInstruction
from creditstack.payments.service import Income

MEMBER = "demo"
WALLETS = 20
TRANSFERS = 2_000


def _account(platform: Platform, code: str, **kwargs: Any) -> AccountView:
    found = platform.ledger.find_account(code)
    return found or platform.ledger.open_account(member=MEMBER, code=code, currency="CNY", **kwargs)


def run_demo(platform: Platform, console: Console) -> dict[str, Any]:
    ledger = platform.ledger
    settlement = _account(platform, "demo:settlement", type="asset")
    fees = _account(platform, "demo:fee-income", type="income", uses_deltas=True)
    merchant = _account(platform, "demo:merchant:tea-house", type="liability", no_overdraft=True)
    wallets = [_account(platform, f"demo:wallet:{i:03d}", type="liability", no_overdraft=True) for i in range(WALLETS)]
    rng = random.Random(7)
    for i, wallet in enumerate(wallets):
        ledger.execute(
            transfer(
                MEMBER,
                f"demo:topup:{i}",
                settlement.id,
                wallet.id,
                50_000 + 1_000 * i,
                "CNY",
                "top-up from bank card",
            )
        )
    purchases = 0
    for i, wallet in enumerate(wallets[:10]):
        hold = ledger.execute(
            ReserveHold(
                MEMBER,
                f"demo:hold:{i}",
                wallet.id,
                merchant.id,
                3_000,
                "CNY",
                platform.clock.now() + timedelta(days=7),
                "card-present purchase",
            )
        )
        if hold.ok and hold.hold_id:
            ledger.execute(PostHold(MEMBER, f"demo:capture:{i}", hold.hold_id, 2_800, "captured, tip excluded"))
            purchases += 1
    fee = ledger.execute(
        PostEntry(
            MEMBER,
            "demo:merchant-fee",
            (PostingSpec(merchant.id, Side.DEBIT, 168, "CNY"), PostingSpec(fees.id, Side.CREDIT, 168, "CNY")),
            "merchant fee 0.6 %",
        )
    )
    mistaken = ledger.execute(transfer(MEMBER, "demo:mistake", wallets[0].id, wallets[1].id, 1_000, "CNY"))
    if mistaken.entry_seq is not None:
        ledger.execute(ReverseEntry(MEMBER, "demo:mistake:reversal", mistaken.entry_seq, "sent in error"))
    commands = []
    for i in range(TRANSFERS):
        a, b = rng.sample(range(WALLETS), 2)
        commands.append(transfer(MEMBER, f"demo:p2p:{i}", wallets[a].id, wallets[b].id, rng.randint(1, 2_000), "CNY"))
    committed = rejected = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("peer transfers", total=len(commands))
        for start in range(0, len(commands), 500):
            results = ledger.submit(commands[start : start + 500])
            committed += sum(1 for r in results if r.ok)
            rejected += sum(1 for r in results if not r.ok)
            progress.advance(task, len(results))
    payments = _payments_demo(platform, console)
    lending = _lending_demo(platform, console)
    ledger.compact()
    report = ledger.audit()
    _, token = platform.keys.create(Role.PLATFORM_OPERATOR, MEMBER, "demo operator")
    return {
        "accounts": report.accounts_checked,
        "journal_entries": report.entries,
        "purchases_captured": purchases,
        "merchant_fee_committed": fee.ok,
        "peer_transfers_committed": committed,
        "peer_transfers_rejected": rejected,
        "audit_clean": report.clean,
        "fee_income": ledger.get_account(fees.id).to_json()["balance"],
        "payments": payments,
        "lending": lending,
        "operator_api_key": token,
    }


CONSUMERS = 100
MERCHANT_PAYMENTS = 600


def _customer(platform: Platform, national_id: str, **kwargs: Any) -> str:
    found = platform.payments.find_customer_by_national_id(national_id, kwargs.get("kind", "consumer"))
    if found is not None:
        return found
    return str(platform.payments.register_customer(national_id=national_id, **kwargs)["id"])


def _wallet(platform: Platform, customer_id: str) -> str:
    wallets = platform.payments.get_customer(customer_id)["wallets"]
    return str(wallets[0]) if wallets else str(platform.payments.open_wallet(customer_id)["id"])


def _payments_demo(platform: Platform, console: Console) -> dict[str, Any]:
    pay = platform.payments
    rng = random.Random(11)
    money = Money
    merchants = [
        _wallet(
            platform,
            _customer(
                platform,
                f"DEMOM{i:04d}",
                kind="merchant",
                legal_name=f"Demo Merchant {i}",
                merchant_category=mcc,
                fee_bps=bps,
            ),
        )
        for i, (mcc, bps) in enumerate([("5411", 60), ("5812", 38), ("5999", 100), ("4121", 55)])
    ]
    biller = _wallet(
        platform,
        _customer(platform, "DEMOB0001", kind="biller", legal_name="Demo Power Grid", reference_pattern=r"\d{10}"),
    )
    consumers = []
    for i in range(CONSUMERS):
        customer_id = _customer(
            platform,
            f"DEMOC{i:06d}",
            kind="consumer",
            legal_name=f"Demo Consumer {i}",
            date_of_birth=date(1970 + i % 30, 1 + i % 12, 1 + i % 28),
            kyc_tier=1 + i % 3,
            address=f"{i} Demo Road",
            phone=f"+86-10-5555-{i:04d}",
            incomes=[Income(date(2025, 12, 31), money(rng.randint(3_000_000, 30_000_000), CNY))],
        )
        consumers.append(_wallet(platform, customer_id))
    # Some top-ups settle late and some time out first; the demo's bank gets round to them all.
    platform_rail = platform.rail
    behaviour = getattr(platform_rail, "behaviour", None)
    if behaviour is not None:
        platform_rail.behaviour = _demo_rail  # type: ignore[attr-defined]
    outcomes: Counter[str] = Counter()
    top_ups: list[str] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("payments", total=CONSUMERS + MERCHANT_PAYMENTS + 2 * CONSUMERS)
        for i, wallet in enumerate(consumers):
            result = pay.top_up(
                member="demo-app",
                key=f"demo:topup:{i}",
                wallet_id=wallet,
                amount=money(50_000 + 1_000 * (i % 50), CNY),
                bank_account_token=f"tok{i}",
            )
            if result.payment_id:
                top_ups.append(result.payment_id)
            progress.advance(task)
        finish = getattr(platform_rail, "finish_pending", None)
        if finish is not None:
            for end_to_end_id, outcome in finish().items():
                pay.apply_rail_outcome(end_to_end_id, outcome)
        for payment_id in top_ups:
            outcomes[f"top_up:{pay.get_payment(payment_id)['status']}"] += 1
        paid = []
        for i in range(MERCHANT_PAYMENTS):
            result = pay.pay_merchant(
                member="demo-app",
                key=f"demo:purchase:{i}",
                payer_wallet_id=rng.choice(consumers),
                merchant_wallet_id=rng.choice(merchants),
                amount=money(rng.randint(500, 20_000), CNY),
            )
            outcomes[f"merchant:{result.body.get('status')}"] += 1
            if result.ok and result.payment_id:
                paid.append((result.payment_id, result.body["amount"]["amount_minor"]))
            progress.advance(task)
        for i, (payment_id, amount) in enumerate(paid[:40]):
            result = pay.refund(
                member="demo-app",
                key=f"demo:refund:{i}",
                payment_id=payment_id,
                amount=money(amount if i % 2 else amount // 3, CNY),
            )
            outcomes[f"refund:{result.body.get('status')}"] += 1
        for i, wallet in enumerate(consumers):
            result = pay.pay_bill(
                member="demo-app",
                key=f"demo:bill:{i}",
                payer_wallet_id=wallet,
                biller_wallet_id=biller,
                reference=f"{1000000000 + i}",
                amount=money(rng.randint(3_000, 15_000), CNY),
                due_date=date(2026, 3, 15),
            )
            outcomes[f"bill:{result.body.get('status')}"] += 1
            other = consumers[(i + 1) % len(consumers)]
            result = pay.transfer(
                member="demo-app",
                key=f"demo:p2p:{i}",
                payer_wallet_id=wallet,
                payee_wallet_id=other,
                amount=money(rng.randint(100, 5_000), CNY),
            )
            outcomes[f"p2p:{result.body.get('status')}"] += 1
            progress.advance(task, 2)
        for i, wallet in enumerate(consumers[:10]):
            result = pay.withdraw(
                member="demo-app",
                key=f"demo:withdraw:{i}",
                wallet_id=wallet,
                amount=money(5_000, CNY),
                bank_account_token=f"tok{i}",
            )
            outcomes[f"withdrawal:{result.body.get('status')}"] += 1
    if behaviour is not None:
        platform_rail.behaviour = behaviour  # type: ignore[attr-defined]
    fee_income = platform.ledger.get_account(pay.house_account("fee_income", "CNY")).to_json()["balance"]
    return {
        "consumers": CONSUMERS,
        "merchants": len(merchants),
        "outcomes": dict(sorted(outcomes.items())),
        "fee_income": fee_income,
    }


def _demo_rail(instruction: RailInstruction) -> str:
    """The demo bank: most instructions settle at once; every 7th settles late, every 11th times out."""
    number = int.from_bytes(instruction.end_to_end_id.encode()[-4:], "big")
    if number % 11 == 0:
        return "timeout_settle"
    if number % 7 == 0:
        return "late"
    return "settle"


LOAN_CONSUMERS = 40
DEMO_BANK_ACCOUNT = "demo-bank-account"
LENDING_DAYS = 40


def _lending_demo(platform: Platform, console: Console) -> dict[str, Any]:
    """Partner banks, loans and lines, forty business days of servicing, settlement, reconcile."""
    lending, pay, colending = platform.lending, platform.payments, platform.colending
    first_run = not lending.list_accounts(limit=1)
    known = {p["partner_id"] for p in colending.list_partners()}
    for n, (name, rate) in enumerate(
        [("Demo Rural Bank", "0.055"), ("Demo City Bank", "0.060"), ("Demo Trust Bank", "0.070")]
    ):
        if f"demobank{n}" not in known:
            colending.register_partner(
                name=name,
                member=f"demo-bank-{n}",
                currency="CNY",
                net_tier1_capital_minor=5_000_000_000_00,
                total_loans_minor=80_000_000_000_00,
                agreement=Agreement(
                    products=("cash-cny", "line-cny"),
                    share_min_bps=1_000,
                    share_max_bps=7_000,
                    exposure_cap_minor=50_000_000_00,
                    score_floor=560,
                    term_months_max=24,
                    bank_rate=Decimal(rate),
                ),
                partner_id=f"demobank{n}",
            )
    shop = _wallet(platform, _customer(platform, "DEMOM0000", kind="merchant", legal_name="Demo Merchant 0"))
    rng = random.Random(23)
    accounts: list[tuple[str, str, str]] = []  # (account, wallet, kind)
    declined = 0
    for i in range(LOAN_CONSUMERS):
        customer = _customer(
            platform,
            f"DEMOL{i:06d}",
            kind="consumer",
            legal_name=f"Demo Borrower {i}",
            date_of_birth=date(1975 + i % 25, 1 + i % 12, 1 + i % 28),
            incomes=[Income(date(2025, 12, 31), Money(rng.randint(4_000_000, 40_000_000), CNY))],
        )
        wallet = _wallet(platform, customer)
        pay.top_up(
            member=MEMBER,
            key=f"demo:lend:topup:{i}",
            wallet_id=wallet,
            amount=Money(300_000, CNY),
            bank_account_token=DEMO_BANK_ACCOUNT,
        )
        line = i % 3 == 0
        applied = lending.apply(
            member=MEMBER,
            key=f"demo:lend:apply:{i}",
            customer_id=customer,
            wallet_id=wallet,
            product_code="line-cny" if line else "cash-cny",
            amount_minor=rng.randrange(200_000, 3_000_000, 100),
            term_months=None if line else rng.choice([3, 6, 12]),
        )
        if applied.status_code != 201:
            declined += 1
            continue
        accepted = lending.accept(
            member=MEMBER, key=f"demo:lend:accept:{i}", application_id=applied.body["application_id"]
        )
        if accepted.status_code == 201:
            accounts.append((accepted.body["account_id"], wallet, "line" if line else "loan"))
    if first_run:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("end of day", total=LENDING_DAYS)
            for day in range(LENDING_DAYS):
                for n, (ref, wallet, kind) in enumerate(accounts):
                    if kind == "line" and rng.random() < 0.15:
                        pay.pay_merchant(
                            member=MEMBER,
                            key=f"demo:lend:buy:{day}:{n}",
                            payer_wallet_id=wallet,
                            merchant_wallet_id=shop,
                            amount=Money(rng.randrange(1_000, 60_000), CNY),
                            funding="credit_line",
                        )
                    if n % 7 == 6:
                        continue  # these never pay: they age through the buckets
                    account = lending.get_account(ref)
                    due = sum(
                        r["principal"]["amount_minor"]
                        + r["interest"]["amount_minor"]
                        + r["fees"]["amount_minor"]
                        - r["paid"]["amount_minor"]
                        for r in account["instalments"]
                        if r["billed"] and r["settled_on"] is None
                    )
                    if due and (n % 5 != 4 or day % 10 == 9):  # most pay when due, some only every ten days
                        lending.repay(
                            member=MEMBER,
                            key=f"demo:lend:repay:{day}:{n}",
                            account_id=ref,
                            amount_minor=due + account["balances"]["penalty_interest"]["amount_minor"],
                        )
                lending.eod.run()
                colending.settle()
                progress.advance(task)
    buckets = Counter(lending.get_account(ref)["bucket"] for ref, _, _ in accounts)
    return {
        "loans_and_lines": len(accounts),
        "declined": declined,
        "business_date": platform.ledger.business_date().isoformat(),
        "accounts_by_dpd_bucket": {str(k): v for k, v in sorted(buckets.items())},
        "partners": [p["partner_id"] for p in colending.list_partners()],
        "lending_reconcile_clean": lending.reconcile()["clean"],
        "colending_reconcile_clean": colending.reconcile()["clean"],
    }
