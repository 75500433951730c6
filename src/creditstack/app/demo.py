"""The demo book: a few wallets and merchants, top-ups, purchases through holds, fees, a reversal and a
batch of peer transfers — then the audit that proves every unit is accounted for. Idempotent: a second
run replays its keys and changes nothing."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import Progress

from creditstack.app.platform import Platform
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
        "operator_api_key": token,
    }
