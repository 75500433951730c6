"""The `creditstack` command."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from creditstack.app.platform import open_platform
from creditstack.colending.cli import app as colending_app
from creditstack.core import migrate
from creditstack.core.errors import CreditstackError
from creditstack.core.security import parse_role
from creditstack.core.settings import get_settings
from creditstack.ledger.cli import app as ledger_app
from creditstack.lending.cli import app as lending_app
from creditstack.payments.cli import app as payments_app
from creditstack.simulation.cli import simulate

app = typer.Typer(help="creditstack: wallets, credit, co-lending, a bureau and a supervisor.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(ledger_app, name="ledger")
app.add_typer(lending_app, name="lending")
app.add_typer(payments_app, name="payments")
app.add_typer(colending_app, name="colending")
app.command()(simulate)
out = Console()
err = Console(stderr=True)

try:  # the scoring context plugs in its own commands when it is installed
    from creditstack.scoring.cli import app as scoring_app

    app.add_typer(scoring_app, name="scoring")
except ImportError:  # pragma: no cover - only while the context is absent
    pass


@app.command()
def init() -> None:
    """Create or upgrade the platform database and set its business date."""
    platform = open_platform(get_settings())
    out.print(f"platform database ready; business date {platform.ledger.business_date()}")
    platform.close()


@db_app.command("upgrade")
def db_upgrade(url: Annotated[str, typer.Option(help="Database URL (default: the configured one)")] = "") -> None:
    """Apply every migration (alembic upgrade head)."""
    migrate.upgrade(url or get_settings().platform_database_url())
    out.print("upgraded to head")


@db_app.command("check")
def db_check(url: Annotated[str, typer.Option(help="Database URL (default: the configured one)")] = "") -> None:
    """Fail if the table definitions and the migrations disagree (alembic check)."""
    migrate.check(url or get_settings().platform_database_url())
    out.print("models and migrations agree")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="consumer, platform_operator, partner_bank, service, …")],
    member: Annotated[str, typer.Option(help="The member (tenant) the key acts for")] = "platform",
    label: str = "",
) -> None:
    """Create an API key and print it once; only its hash is stored."""
    platform = open_platform(get_settings())
    try:
        principal, token = platform.keys.create(parse_role(role), member, label)
    finally:
        platform.close()
    out.print_json(
        json.dumps(
            {
                "key_id": principal.key_id,
                "role": principal.role.value,
                "member": principal.member,
                "api_key": token,
            }
        )
    )


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json, docs at /docs)."""
    import uvicorn

    from creditstack.app.main import app_factory

    uvicorn.run(app_factory(), host=host, port=port, log_level="warning")


#: The demo's population: sized to finish in a few minutes on a laptop on the embedded default.
DEMO_CONSUMERS = 1_000
DEMO_MONTHS = 12


@app.command()
def demo(
    host: str = "127.0.0.1",
    port: int = 8000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API and console afterwards")
    ] = True,
    consumers: Annotated[int, typer.Option("--consumers", min=1, help="Population size")] = DEMO_CONSUMERS,
    months: Annotated[int, typer.Option("--months", min=1, max=120, help="Months to simulate")] = DEMO_MONTHS,
) -> None:
    """Simulate a population on the embedded default (people paying, borrowing and repaying, banks
    co-funding), prove the books reconcile, then serve the API and the web console with demo logins.
    Run it again to continue or just to serve: finished days are not simulated twice."""
    from creditstack.core.security import Role
    from creditstack.simulation.cli import run_with_progress
    from creditstack.simulation.engine import SimulationConfig, open_simulation, summarise

    settings = get_settings()
    config = SimulationConfig(consumers=consumers, months=months)
    with open_simulation(settings, config) as sim:
        run_with_progress(sim)
        summary = summarise(sim)
        summary["ledger_audit_clean"] = sim.platform.ledger.audit().clean
        keys = sim.platform.keys
        borrower = sim.showcase_borrower()
        logins = {"platform_operator": keys.create(Role.PLATFORM_OPERATOR, "demo-operator", "demo operator")[1]}
        if borrower is not None:
            logins["consumer"] = keys.create(Role.CONSUMER, borrower, "demo consumer")[1]
        logins["partner_bank"] = keys.create(Role.PARTNER_BANK, "sim-bank-0", "demo partner bank")[1]
    summary["demo_logins"] = sorted(logins)
    out.print_json(json.dumps(summary))
    if serve_after:
        import uvicorn

        from creditstack.app.main import create_app

        out.print(f"\nConsole: http://{host}:{port}/console   API: http://{host}:{port}/docs")
        for role, token in logins.items():
            typer.echo(f"  log in as {role}: {token}")  # plain: a wrapped key could not be pasted
        uvicorn.run(create_app(settings=settings), host=host, port=port, log_level="warning")


@app.command()
def tour(
    host: str = "127.0.0.1",
    port: int = 8000,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards")] = True,
) -> None:
    """A guided walk through a small hand-made book (ledger holds and reversals, payments over the rail,
    loans and lines co-funded by three banks, forty days of end of day), proved balanced, then served."""
    from creditstack.app.demo import run_demo

    settings = get_settings()
    platform = open_platform(settings)
    try:
        summary = run_demo(platform, out)
    finally:
        platform.close()
    out.print_json(json.dumps(summary))
    if serve_after:
        import uvicorn

        from creditstack.app.main import create_app

        out.print(f"\nServing the platform API at http://{host}:{port}  (docs: http://{host}:{port}/docs)")
        out.print(f"Operator key: {summary['operator_api_key']}")
        uvicorn.run(create_app(settings=settings), host=host, port=port, log_level="warning")


def main() -> None:
    try:
        app()
    except CreditstackError as exc:
        err.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise SystemExit(2) from exc
