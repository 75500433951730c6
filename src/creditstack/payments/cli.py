"""`creditstack payments …`: customers, wallets, rail top-ups and withdrawals, payments, history, reconciliation.

Every command prints JSON. Money-moving commands take `--key` (the idempotency key; replaying it prints the
first outcome) and exit 1 when the payment was rejected; errors print their stable code and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from creditstack.app.platform import Platform, open_platform
from creditstack.core.money import Money
from creditstack.core.settings import get_settings
from creditstack.payments.api import STATEMENT_UPLOAD_BYTES_MAX
from creditstack.payments.service import Income, PaymentResult
from creditstack.payments.statement_errors import StatementTooLarge

app = typer.Typer(help="Wallets and payments.", no_args_is_help=True)
out = Console()
CLI_MEMBER = "cli"

Key = Annotated[str, typer.Option("--key", help="Idempotency key (replays print the first outcome)")]
BankAccount = Annotated[str, typer.Option("--bank-account", help="The customer's bank account token")]


def _print(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


@contextmanager
def _platform() -> Iterator[Platform]:
    platform = open_platform(get_settings())
    try:
        yield platform
    finally:
        platform.close()


def _pay(call: Callable[[Platform], PaymentResult]) -> None:
    with _platform() as platform:
        result = call(platform)
    _print({"status_code": result.status_code, "replayed": result.replayed, **result.body})
    if "error" in result.body:
        raise typer.Exit(1)


def _income(text: str) -> Income:
    try:
        as_of, amount, currency = text.split(":")
        return Income(date.fromisoformat(as_of), Money.of(int(amount), currency))
    except ValueError as exc:
        raise typer.BadParameter("an income is AS_OF:AMOUNT_MINOR:CURRENCY, e.g. 2025-12-31:12000000:CNY") from exc


@app.command("register-customer")
def register_customer(
    kind: Annotated[str, typer.Option(help="consumer | merchant | biller")],
    legal_name: Annotated[str, typer.Option()],
    national_id: Annotated[str | None, typer.Option()] = None,
    date_of_birth: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    address: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    kyc_tier: Annotated[int, typer.Option(min=1)] = 1,
    income: Annotated[list[str] | None, typer.Option(help="AS_OF:AMOUNT_MINOR:CURRENCY (repeatable)")] = None,
    merchant_category: Annotated[str | None, typer.Option(help="Merchants: 4-digit MCC")] = None,
    fee_bps: Annotated[int | None, typer.Option(help="Merchants: fee in basis points")] = None,
    refund_fee_policy: Annotated[str | None, typer.Option(help="Merchants: pro_rata | none")] = None,
    reference_pattern: Annotated[str | None, typer.Option(help="Billers: reference regular expression")] = None,
) -> None:
    """Register a customer; prints its id (personal data is sealed and never printed)."""
    incomes = [_income(text) for text in income or []]
    with _platform() as platform:
        _print(
            platform.payments.register_customer(
                kind=kind,
                legal_name=legal_name,
                national_id=national_id,
                date_of_birth=date.fromisoformat(date_of_birth) if date_of_birth else None,
                address=address,
                phone=phone,
                kyc_tier=kyc_tier,
                incomes=incomes,
                merchant_category=merchant_category,
                fee_bps=fee_bps,
                refund_fee_policy=refund_fee_policy,
                reference_pattern=reference_pattern,
            )
        )


@app.command("open-wallet")
def open_wallet(customer_id: str, currency: str = "CNY") -> None:
    """Open a wallet (no overdraft) for a customer."""
    with _platform() as platform:
        _print(platform.payments.open_wallet(customer_id, currency))


@app.command("top-up")
def top_up(wallet_id: str, amount_minor: int, currency: str, key: Key, bank_account: BankAccount) -> None:
    """Collect from the customer's bank account over the rail; credited when the rail settles."""
    _pay(
        lambda p: p.payments.top_up(
            member=CLI_MEMBER,
            key=key,
            wallet_id=wallet_id,
            amount=Money.of(amount_minor, currency),
            bank_account_token=bank_account,
        )
    )


@app.command("withdraw")
def withdraw(wallet_id: str, amount_minor: int, currency: str, key: Key, bank_account: BankAccount) -> None:
    """Pay out to the customer's bank account; the funds stay held until the rail decides."""
    _pay(
        lambda p: p.payments.withdraw(
            member=CLI_MEMBER,
            key=key,
            wallet_id=wallet_id,
            amount=Money.of(amount_minor, currency),
            bank_account_token=bank_account,
        )
    )


@app.command("transfer")
def transfer(payer_wallet_id: str, payee_wallet_id: str, amount_minor: int, currency: str, key: Key) -> None:
    """A peer-to-peer transfer."""
    _pay(
        lambda p: p.payments.transfer(
            member=CLI_MEMBER,
            key=key,
            payer_wallet_id=payer_wallet_id,
            payee_wallet_id=payee_wallet_id,
            amount=Money.of(amount_minor, currency),
        )
    )


@app.command("pay-merchant")
def pay_merchant(
    payer_wallet_id: str,
    merchant_wallet_id: str,
    amount_minor: int,
    currency: str,
    key: Key,
    funding: Annotated[str, typer.Option(help="wallet, or a funding source such as the credit line")] = "wallet",
) -> None:
    """Pay a merchant (the merchant fee goes to fee income)."""
    _pay(
        lambda p: p.payments.pay_merchant(
            member=CLI_MEMBER,
            key=key,
            payer_wallet_id=payer_wallet_id,
            merchant_wallet_id=merchant_wallet_id,
            amount=Money.of(amount_minor, currency),
            funding=funding,
        )
    )


@app.command("refund")
def refund(payment_id: str, amount_minor: int, currency: str, key: Key) -> None:
    """Refund all or part of a merchant payment."""
    _pay(
        lambda p: p.payments.refund(
            member=CLI_MEMBER, key=key, payment_id=payment_id, amount=Money.of(amount_minor, currency)
        )
    )


@app.command("pay-bill")
def pay_bill(
    payer_wallet_id: str,
    biller_wallet_id: str,
    reference: str,
    amount_minor: int,
    currency: str,
    key: Key,
    due_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
) -> None:
    """Pay a registered biller with a biller reference."""
    _pay(
        lambda p: p.payments.pay_bill(
            member=CLI_MEMBER,
            key=key,
            payer_wallet_id=payer_wallet_id,
            biller_wallet_id=biller_wallet_id,
            reference=reference,
            amount=Money.of(amount_minor, currency),
            due_date=date.fromisoformat(due_date) if due_date else None,
        )
    )


@app.command("wallet")
def wallet(wallet_id: str) -> None:
    """A wallet: balance, available, held and limits."""
    with _platform() as platform:
        _print(platform.payments.get_wallet(wallet_id))


@app.command("history")
def history(
    wallet_id: str,
    from_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    to_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    kind: Annotated[str | None, typer.Option(help="top_up, withdrawal, p2p, merchant, refund, bill")] = None,
    counterparty: Annotated[str | None, typer.Option(help="The other wallet's id")] = None,
    before: Annotated[int | None, typer.Option(help="next_before of the previous page")] = None,
    limit: int = 50,
) -> None:
    """A wallet's payments, newest first."""
    with _platform() as platform:
        _print(
            platform.payments.history(
                wallet_id,
                from_date=date.fromisoformat(from_date) if from_date else None,
                to_date=date.fromisoformat(to_date) if to_date else None,
                kind=kind,
                counterparty=counterparty,
                before=before,
                limit=limit,
            )
        )


@app.command("reconcile")
def reconcile(
    file: Annotated[Path, typer.Option("--file", exists=True, dir_okay=False, help="The bank statement file")],
    statement_format: Annotated[str, typer.Option("--format", help="camt053 | csv")] = "camt053",
    timing_tolerance_business_days: Annotated[int | None, typer.Option(min=0)] = None,
) -> None:
    """Reconcile the custodian bank's statement against the ledger; exit 1 when anything does not reconcile."""
    if statement_format not in ("camt053", "csv"):
        raise typer.BadParameter("--format is camt053 or csv")
    if file.stat().st_size > STATEMENT_UPLOAD_BYTES_MAX:
        raise StatementTooLarge(f"{file} is larger than {STATEMENT_UPLOAD_BYTES_MAX} bytes")
    data = file.read_bytes()
    with _platform() as platform:
        answer = platform.payments.reconcile_statement(
            data, statement_format, timing_tolerance_business_days=timing_tolerance_business_days
        )
    _print(answer)
    if not answer["reconciled"]:
        raise typer.Exit(1)
