"""What the contexts' commands share: the `--url` and `--json` options, opening the platform for one command,
printing JSON, and reading a date option."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any

import typer
from rich.console import Console

from creditstack.app.platform import Platform, open_platform
from creditstack.core.settings import get_settings

Url = Annotated[str, typer.Option("--url", help="Platform database URL (default: the configured one)")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def print_json(console: Console, value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


@contextmanager
def platform_for(url: str = "") -> Iterator[Platform]:
    """The platform of the configured settings (or of `url`), closed when the command is done."""
    settings = get_settings()
    if url:
        settings = settings.model_copy(update={"database_url": url})
    platform = open_platform(settings)
    try:
        yield platform
    finally:
        platform.close()


def date_option(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{option} takes a date as YYYY-MM-DD, not {text!r}") from exc
