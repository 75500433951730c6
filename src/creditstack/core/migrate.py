"""Run a service database's Alembic migrations from code (the CLI, the tests and CI use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from creditstack.core.db import normalise_url

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str, service: str = "platform") -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS / service))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, service: str = "platform", revision: str = "head") -> None:
    command.upgrade(alembic_config(url, service), revision)


def check(url: str, service: str = "platform") -> None:
    """Raise if the models and the migrations disagree (alembic's `check`)."""
    command.check(alembic_config(url, service))
