"""`creditstack lending …` (so far: the APR calculator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from creditstack.lending.apr import compute_apr_request

app = typer.Typer(help="Credit lines and instalment loans.", no_args_is_help=True)
out = Console()
#: Largest APR input file read.
APR_INPUT_BYTES_MAX = 1024 * 1024


@app.command("apr")
def apr(input_file: Annotated[Path, typer.Option("--input", help="JSON: currency, advances, payments")]) -> None:
    """Compute the APR (Regulation Z Appendix J, actuarial method) and print the same JSON as the API."""
    if input_file.stat().st_size > APR_INPUT_BYTES_MAX:
        raise typer.BadParameter(f"{input_file} is larger than {APR_INPUT_BYTES_MAX} bytes")
    out.print_json(json.dumps(compute_apr_request(json.loads(input_file.read_text()))))
