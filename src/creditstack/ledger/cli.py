"""`creditstack ledger …`: accounts, entries, holds, batches from a file, audit and compaction."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from creditstack.app.platform import open_platform
from creditstack.core.errors import CreditstackError
from creditstack.core.settings import get_settings
from creditstack.ledger.domain import Command, PostEntry, PostingSpec, Side, transfer
from creditstack.ledger.service import BATCH_ENTRIES_MAX

app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
CLI_MEMBER = "cli"
#: Largest entries file the CLI reads.
ENTRIES_FILE_BYTES_MAX = 256 * 1024 * 1024


def _print(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


@app.command("open-account")
def open_account(
    code: str,
    currency: str,
    type: Annotated[str, typer.Option(help="asset | liability | equity | income | expense")],
    no_overdraft: bool = False,
    credit_limit_minor: int = 0,
    uses_deltas: bool = False,
) -> None:
    """Open an account."""
    platform = open_platform(get_settings())
    try:
        view = platform.ledger.open_account(
            member=CLI_MEMBER,
            code=code,
            currency=currency,
            type=type,
            no_overdraft=no_overdraft,
            credit_limit_minor=credit_limit_minor,
            uses_deltas=uses_deltas,
        )
        _print(view.to_json())
    finally:
        platform.close()


@app.command("transfer")
def transfer_command(
    debit_account_id: int,
    credit_account_id: int,
    amount_minor: int,
    currency: str,
    key: Annotated[str, typer.Option(help="Idempotency key")],
    description: str = "",
) -> None:
    """Post a two-posting transfer."""
    platform = open_platform(get_settings())
    try:
        result = platform.ledger.execute(
            transfer(CLI_MEMBER, key, debit_account_id, credit_account_id, amount_minor, currency, description)
        )
        _print(result.body)
        if not result.ok:
            raise typer.Exit(1)
    finally:
        platform.close()


@app.command("balance")
def balance(account_id: int, as_of_date: str | None = None, as_of_seq: int | None = None) -> None:
    """An account's balances now, or its posted balance at a business date or sequence number."""
    platform = open_platform(get_settings())
    try:
        if as_of_date is None and as_of_seq is None:
            _print(platform.ledger.get_account(account_id).to_json())
        else:
            day = date.fromisoformat(as_of_date) if as_of_date else None
            _print(platform.ledger.balance_as_of(account_id, business_date=day, seq=as_of_seq))
    finally:
        platform.close()


@app.command("history")
def history(account_id: int, after_seq: int = 0, limit: int = 100) -> None:
    """Postings of an account in journal order."""
    platform = open_platform(get_settings())
    try:
        _print(platform.ledger.history(account_id, after_seq=after_seq, limit=limit))
    finally:
        platform.close()


def _command_from_json(index: int, item: Any) -> Command:
    if not isinstance(item, dict) or not isinstance(item.get("idempotency_key"), str):
        raise CreditstackError(f"entry {index}: needs an object with idempotency_key")
    postings = tuple(
        PostingSpec(int(p["account_id"]), Side.parse(p["side"]), p["amount"]["amount_minor"], p["amount"]["currency"])
        for p in item.get("postings", [])
    )
    return PostEntry(
        CLI_MEMBER,
        item["idempotency_key"],
        postings,
        str(item.get("description", "")),
        dict(item.get("metadata", {})),
    )


@app.command("post-file")
def post_file(path: Path, linked: bool = False, batch_size: int = BATCH_ENTRIES_MAX) -> None:
    """Post entries from a JSON file (a list of {idempotency_key, postings, description}), in batches."""
    if path.stat().st_size > ENTRIES_FILE_BYTES_MAX:
        err.print(f"[red]{path} is larger than {ENTRIES_FILE_BYTES_MAX} bytes[/red]")
        raise typer.Exit(2)
    items = json.loads(path.read_text())
    if not isinstance(items, list):
        err.print("[red]the file must hold a JSON list of entries[/red]")
        raise typer.Exit(2)
    commands = [_command_from_json(i, item) for i, item in enumerate(items)]
    platform = open_platform(get_settings())
    committed = rejected = 0
    try:
        with Progress(console=err) as progress:
            task = progress.add_task("posting", total=len(commands))
            for start in range(0, len(commands), batch_size):
                results = platform.ledger.submit(commands[start : start + batch_size], linked=linked)
                committed += sum(1 for r in results if r.ok)
                rejected += sum(1 for r in results if not r.ok)
                for i, r in enumerate(results):
                    if not r.ok:
                        err.print(f"entry {start + i} ({r.key}): {r.error_code}")
                progress.advance(task, len(results))
    finally:
        platform.close()
    _print({"committed": committed, "rejected": rejected})


@app.command("audit")
def audit() -> None:
    """Re-derive every balance from the postings; exit 1 if anything differs."""
    platform = open_platform(get_settings())
    try:
        report = platform.ledger.audit()
        _print(report.to_json())
        if not report.clean:
            raise typer.Exit(1)
    finally:
        platform.close()


@app.command("compact")
def compact() -> None:
    """Fold hot accounts' balance deltas into their account rows."""
    platform = open_platform(get_settings())
    try:
        _print({"folded_deltas": platform.ledger.compact()})
    finally:
        platform.close()
