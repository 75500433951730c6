"""`creditstack simulate`: run (or resume) the synthetic economy on the configured platform database."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from creditstack.app.clikit import date_option, print_json
from creditstack.core.settings import get_settings
from creditstack.simulation import engine
from creditstack.simulation.engine import DEFAULT_SEED, Simulation, SimulationConfig, open_simulation, summarise

out = Console()
err = Console(stderr=True)


def simulate(
    consumers: Annotated[int, typer.Option("--consumers", min=1, max=2_000_000, help="Population size")] = 2_000,
    months: Annotated[int, typer.Option("--months", min=1, max=120, help="Months to simulate")] = 12,
    seed: Annotated[int, typer.Option("--seed", min=0, help="The economy's seed")] = DEFAULT_SEED,
    start: Annotated[str | None, typer.Option("--start", help="First day, YYYY-MM-DD (default 2026-01-01)")] = None,
    url: Annotated[str, typer.Option("--url", help="Platform database URL (default: the configured one)")] = "",
    store: Annotated[str, typer.Option("--store", help="Simulation store URL (default: var/simulation.db)")] = "",
    training_set: Annotated[
        Path | None,
        typer.Option(
            "--training-set",
            help="Keep month-start feature vectors and write them with ground-truth labels to this CSV",
        ),
    ] = None,
) -> None:
    """Simulate consumers paying, borrowing and repaying, and banks co-funding, day by day through the
    platform's services. Resumable: run the same command again to continue after a stop. Prints a summary
    of counts and totals that is the same for the same seed."""
    settings = get_settings()
    if url:
        settings = settings.model_copy(update={"database_url": url})
    config = SimulationConfig(
        seed=seed,
        consumers=consumers,
        months=months,
        start=date_option(start, "--start") or date(2026, 1, 1),
        training_snapshots=training_set is not None,
    )
    with open_simulation(settings, config, store_url=store or None) as sim:
        run_with_progress(sim)
        if training_set is not None:
            rows = engine.training_set(sim)
            write_csv(training_set, rows)
            err.print(f"{len(rows)} training rows written to {training_set}")
        print_json(out, summarise(sim))


def run_with_progress(sim: Simulation) -> None:
    """Run (or resume) the simulation with a progress bar of its days on stderr."""
    days = sim.days()
    with Progress(
        TextColumn("[bold]simulating[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(str(sim.config.start), total=len(days))
        sim.run(lambda day: progress.update(task, advance=1, description=day.isoformat()))


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        if not rows:
            return
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
