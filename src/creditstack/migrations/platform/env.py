"""Alembic environment of the platform database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

import creditstack.colending.tables
import creditstack.ledger.tables
import creditstack.lending.tables
import creditstack.payments.tables
import creditstack.scoring.tables  # noqa: F401 - registers the scoring (feature store) tables
from creditstack.core.db import PLATFORM_METADATA, normalise_url
from creditstack.core.tables import PLATFORM_CORE  # noqa: F401 - registers the core tables

config = context.config
target_metadata = PLATFORM_METADATA


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = normalise_url(config.get_main_option("sqlalchemy.url") or "")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
