"""`creditstack colending …`: partner banks, the daily settlement, a statement, and reconcile.

Commands open the platform from the settings (`CREDITSTACK_DATABASE_URL`, else the embedded SQLite under
`CREDITSTACK_VAR_DIR`), or from `--url`. Tables go to standard output; `--json` prints the API's JSON
instead, and `statement --csv` the API's CSV. `reconcile` exits 1 when a partner does not reconcile;
errors print their stable code and exit 2 (`creditstack.app.cli.main`).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from creditstack.app.clikit import AsJson, Url, date_option, platform_for, print_json
from creditstack.core.money import Money

app = typer.Typer(help="Co-lending: partner banks, settlement, statements.", no_args_is_help=True)
out = Console()


def _print_json(value: Any) -> None:
    print_json(out, value)


_platform = platform_for
_date = date_option


def _money(value: dict[str, Any]) -> str:
    return str(Money.of(int(value["amount_minor"]), str(value["currency"])))


def _statements_table(statements: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    table.add_column("Partner")
    table.add_column("Business date")
    table.add_column("Component")
    table.add_column("Amount", justify="right")
    for statement in statements:
        for component, amount in statement["lines"].items():
            if amount["amount_minor"]:
                table.add_row(statement["partner_id"], statement["business_date"], component, _money(amount))
        table.add_row(
            statement["partner_id"],
            statement["business_date"],
            f"[bold]net[/bold] ({statement['direction']}, {statement['status']})",
            f"[bold]{_money(statement['net'])}[/bold]",
            end_section=True,
        )
    return table


@app.command("partners")
def partners(url: Url = "", as_json: AsJson = False) -> None:
    """Partner banks: currency, exposure against the agreement's cap, share range and products."""
    with _platform(url) as platform:
        found = platform.colending.list_partners()
    if as_json:
        _print_json({"items": found})
        return
    table = Table(title="Partner banks")
    for column in ("Id", "Name", "Currency", "Exposure", "Cap", "Share (bps)", "Products", "Bank rate"):
        table.add_column(column, justify="right" if column in ("Exposure", "Cap") else "left")
    for partner in found:
        agreement = partner["agreement"]
        table.add_row(
            partner["partner_id"],
            partner["name"],
            partner["currency"],
            _money(partner["outstanding"]),
            _money(agreement["exposure_cap"]),
            f"{agreement['share_min_bps']}–{agreement['share_max_bps']}",
            ", ".join(agreement["products"]),
            agreement["bank_rate"],
        )
    out.print(table)


@app.command("settle")
def settle(
    on: Annotated[
        str | None, typer.Option("--date", help="Settle movements up to this date (default: the day before today's)")
    ] = None,
    url: Url = "",
    as_json: AsJson = False,
) -> None:
    """Net each partner's unsettled movements into one ledger entry and one bank-rail payment, and print
    the statements made. A date already settled is `colending.settlement_exists` (exit 2)."""
    business_date = _date(on, "--date")
    with _platform(url) as platform:
        statements = platform.colending.settle(business_date)
    if as_json:
        _print_json({"items": statements})
        return
    if not statements:
        out.print("nothing to settle")
        return
    out.print(_statements_table(statements, "Co-lending settlement"))


@app.command("statement")
def statement(
    partner_id: Annotated[str, typer.Argument(help="The partner bank's id (bank_…)")],
    on: Annotated[str, typer.Argument(metavar="DATE", help="The statement's business date, YYYY-MM-DD")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the statement as CSV")] = False,
    url: Url = "",
    as_json: AsJson = False,
) -> None:
    """One partner's statement of one business date, as a table, JSON or CSV (`GET …/statements/{date}`)."""
    if as_csv and as_json:
        raise typer.BadParameter("give --csv or --json, not both")
    business_date = _date(on, "DATE")
    assert business_date is not None
    with _platform(url) as platform:
        platform.colending.get_partner(partner_id)  # an unknown partner is colending.partner_not_found
        if as_csv:
            typer.echo(platform.colending.statement_csv(partner_id, business_date), nl=False)
            return
        found = platform.colending.statement(partner_id, business_date)
    if as_json:
        _print_json(found)
        return
    out.print(_statements_table([found], f"Statement {partner_id} {business_date.isoformat()}"))
    out.print(f"settlement {found['settlement_id']}, end-to-end id {found['end_to_end_id'] or '-'}")


@app.command("reconcile")
def reconcile(url: Url = "", as_json: AsJson = False) -> None:
    """Each partner's subledger against the ledger, to the unit; exit 1 when any partner differs."""
    with _platform(url) as platform:
        report = platform.colending.reconcile()
    if as_json:
        _print_json(report)
    else:
        table = Table(title="Co-lending reconcile (minor units)")
        table.add_column("Partner")
        for column in ("Subledger outstanding", "Ledger participations", "Unsettled", "Due to partner", "Difference"):
            table.add_column(column, justify="right")
        for line in report["partners"]:
            difference = line["difference_minor"]
            due = line["due_to_partner_ledger_minor"]
            table.add_row(
                line["partner_id"],
                str(line["outstanding_subledger_minor"]),
                str(line["participations_ledger_minor"]),
                str(line["unsettled_stake_change_minor"]),
                f"[red]{due}[/red]" if due else str(due),
                f"[red]{difference}[/red]" if difference else str(difference),
            )
        out.print(table)
        out.print("[green]clean[/green]" if report["clean"] else "[red]NOT CLEAN[/red]: differences above")
    if not report["clean"]:
        raise typer.Exit(1)
