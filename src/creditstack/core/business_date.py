"""The business date of a service: stored in its database, advanced only by EOD or the simulation clock."""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core.clock import Clock, local_date
from creditstack.core.errors import BusinessRuleViolated
from creditstack.core.tables import CoreTables


class BusinessDateNotSet(BusinessRuleViolated):
    """The service has no business date yet; run `creditstack init`."""

    code = "time.business_date_not_set"


class BusinessDateBackwards(BusinessRuleViolated):
    """A business date may only move forward."""

    code = "time.business_date_backwards"


def initialise(conn: Connection, tables: CoreTables, service: str, timezone: str, clock: Clock) -> date:
    """Set the service's business date to today in its zone, unless it already has one."""
    bd = tables.business_dates.c
    existing = conn.execute(sa.select(bd.business_date).where(bd.service == service)).scalar_one_or_none()
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    today = local_date(clock.now(), timezone)
    conn.execute(
        tables.business_dates.insert().values(
            service=service, business_date=today, timezone=timezone, updated_at=clock.now()
        )
    )
    return today


@cache
def _current_query(tables: CoreTables) -> sa.Select[Any]:
    """Built once per database's tables: read on almost every operation, and building a statement costs
    several times what executing this one does."""
    bd = tables.business_dates.c
    return sa.select(bd.business_date).where(bd.service == sa.bindparam("service"))


def current(conn: Connection, tables: CoreTables, service: str) -> date:
    value = conn.execute(_current_query(tables), {"service": service}).scalar_one_or_none()
    if value is None:
        raise BusinessDateNotSet(f"service {service!r} has no business date")
    return value  # type: ignore[no-any-return]


def advance(conn: Connection, tables: CoreTables, service: str, to: date, now: datetime) -> date:
    """Move the business date forward to `to` (EOD and the simulation clock only)."""
    bd = tables.business_dates.c
    row = conn.execute(sa.select(bd.business_date).where(bd.service == service).with_for_update()).scalar_one_or_none()
    if row is None:
        raise BusinessDateNotSet(f"service {service!r} has no business date")
    if to < row:
        raise BusinessDateBackwards(f"business date cannot move back from {row} to {to}")
    conn.execute(sa.update(tables.business_dates).where(bd.service == service).values(business_date=to, updated_at=now))
    return to
