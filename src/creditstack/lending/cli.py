"""`creditstack lending …`: products, end of day, reconcile, an account, and the APR calculator.

Commands that read the platform open it from the settings (`CREDITSTACK_DATABASE_URL`, else the embedded
SQLite under `CREDITSTACK_VAR_DIR`), or from `--url`. Tables go to standard output, progress to standard
error; `--json` prints the API's JSON instead. `reconcile` exits 1 when the book does not reconcile;
errors print their stable code and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from creditstack.app.clikit import AsJson, Url, date_option, platform_for, print_json
from creditstack.core.money import Money
from creditstack.lending.api import product_json
from creditstack.lending.apr import compute_apr_request
from creditstack.lending.eod import EodReport
from creditstack.lending.products import ProductKind

app = typer.Typer(help="Credit lines and instalment loans.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
#: Largest APR input file read.
APR_INPUT_BYTES_MAX = 1024 * 1024


def _print_json(value: Any) -> None:
    print_json(out, value)


_platform = platform_for
_date = date_option


def _amount(amount_minor: int, currency: str) -> str:
    return str(Money.of(amount_minor, currency))


@app.command("apr")
def apr(input_file: Annotated[Path, typer.Option("--input", help="JSON: currency, advances, payments")]) -> None:
    """Compute the APR (Regulation Z Appendix J, actuarial method) and print the same JSON as the API."""
    if input_file.stat().st_size > APR_INPUT_BYTES_MAX:
        raise typer.BadParameter(f"{input_file} is larger than {APR_INPUT_BYTES_MAX} bytes")
    out.print_json(json.dumps(compute_apr_request(json.loads(input_file.read_text()))))


@app.command("products")
def products(url: Url = "", as_json: AsJson = False) -> None:
    """The products on offer: kind, currency, amounts, rate band and terms."""
    with _platform(url) as platform:
        offered = sorted(platform.lending.products().items())
    if as_json:
        _print_json({"items": [product_json(product) for _, product in offered]})
        return
    table = Table(title="Lending products")
    for column in ("Code", "Kind", "Name", "Amount", "Annual rate", "Terms"):
        table.add_column(column)
    for code, p in offered:
        if p.kind is ProductKind.INSTALMENT:
            terms = f"{p.term_months_min}–{p.term_months_max} months, {p.amortisation.value}"
        else:
            converts = "/".join(str(n) for n in p.conversion_terms)
            terms = f"statement day {p.statement_day}, due +{p.due_days} days, converts into {converts}"
        table.add_row(
            code,
            p.kind.value,
            p.name,
            f"{_amount(p.amount_min_minor, p.currency)} – {_amount(p.amount_max_minor, p.currency)}",
            f"{p.rate_min * 100:.2f} %–{p.rate_max * 100:.2f} %",
            terms,
        )
    out.print(table)


def _timings_table(reports: list[EodReport]) -> Table:
    table = Table(title="End of day")
    for column in ("Business date", "Step", "Chunks", "Skipped", "Rows", "Seconds"):
        table.add_column(column, justify="left" if column in ("Business date", "Step") else "right")
    for report in reports:
        day = report.business_date.isoformat()
        if report.already_complete:
            table.add_row(day, "(already complete)", "", "", "", "")
            continue
        for step in report.steps:
            table.add_row(day, step.step, str(step.chunks), str(step.skipped), str(step.rows), f"{step.seconds:.3f}")
        table.add_row(day, "[bold]total[/bold]", "", "", "", f"[bold]{report.seconds:.3f}[/bold]", end_section=True)
    return table


@app.command("eod")
def eod(
    on: Annotated[str | None, typer.Option("--date", help="Close this date (YYYY-MM-DD; default: today's)")] = None,
    through: Annotated[
        str | None, typer.Option("--through", help="Close every date from the business date through this one")
    ] = None,
    url: Url = "",
    as_json: AsJson = False,
) -> None:
    """Run end of day: finish an interrupted run, then close the business date (or every date through
    `--through`), with a progress bar over each step's chunks and a table of per-step timings."""
    business_date = _date(on, "--date")
    through_date = _date(through, "--through")
    if business_date is not None and through_date is not None:
        raise typer.BadParameter("give --date or --through, not both")
    with _platform(url) as platform:
        end_of_day = platform.lending.eod
        start = platform.ledger.business_date()
        dates = (through_date - start).days + 1 if through_date is not None else 1
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            days_task = progress.add_task("dates", total=max(dates, 0), visible=through_date is not None)
            step_task = progress.add_task("end of day", total=None)
            current = {"step": ""}

            def on_chunk(step: str, chunk: int, chunks: int) -> None:
                del chunk  # chunks a rerun skips are not reported, so count the ones that ran
                if current["step"] != step:
                    current["step"] = step
                    progress.reset(step_task, total=chunks, description=step)
                progress.advance(step_task)
                if step == "post_gl":  # the last step, one chunk: a date is closed
                    progress.advance(days_task)

            end_of_day.on_chunk = on_chunk
            try:
                if through_date is not None:
                    reports = end_of_day.catch_up(through_date)
                else:
                    reports = end_of_day.run(business_date)
            finally:
                end_of_day.on_chunk = None
        now = platform.ledger.business_date()
    if as_json:
        _print_json({"reports": [r.to_json() for r in reports], "business_date": now.isoformat()})
        return
    out.print(_timings_table(reports))
    out.print(f"business date now {now.isoformat()}")


@app.command("reconcile")
def reconcile(url: Url = "", as_json: AsJson = False) -> None:
    """The lending subledger against the ledger, per product and general-ledger account, to the unit;
    exit 1 when any account differs. Run it on a quiet book (after end of day)."""
    with _platform(url) as platform:
        report = platform.lending.reconcile()
    if as_json:
        _print_json(report)
    else:
        table = Table(title="Lending reconcile")
        table.add_column("GL account")
        for column in ("Subledger", "Ledger", "Pending EOD", "Difference"):
            table.add_column(column, justify="right")
        for product in report["products"]:
            currency = product["currency"]
            for line in product["accounts"]:
                difference = line["difference_minor"]
                table.add_row(
                    line["gl_account"],
                    _amount(line["subledger_minor"], currency),
                    _amount(line["ledger_minor"], currency),
                    _amount(line["pending_eod_minor"], currency),
                    f"[red]{_amount(difference, currency)}[/red]" if difference else _amount(difference, currency),
                )
            table.add_section()
        out.print(table)
        out.print("[green]clean[/green]" if report["clean"] else "[red]NOT CLEAN[/red]: differences above")
    if not report["clean"]:
        raise typer.Exit(1)


@app.command("account")
def account(ref: Annotated[str, typer.Argument(help="The loan's or line's id")], url: Url = "") -> None:
    """A loan or line as JSON: balances, delinquency, instalments (the API's `GET /accounts/{ref}`)."""
    with _platform(url) as platform:
        _print_json(platform.lending.get_account(ref))
