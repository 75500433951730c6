"""The simulation's own store: the run, how far it got, who is who on the platform, and the ground truth.

Kept apart from the platform's database (default: SQLite `{var_dir}/simulation.db`; any SQLAlchemy URL,
PostgreSQL included): the platform never sees the latent risk, the shocks or who was always going to
default — scoring is judged against this store, not trained on it.

A day's repayment plan (the only decisions that read the platform's state) is written here before the
day's batch runs, so a run cut off after the batch committed but before the day was recorded replays the
same requests with the same idempotency keys: the platform answers them from its stored outcomes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from creditstack.core.db import Database
from creditstack.core.errors import ValidationFailed

METADATA = sa.MetaData()

runs = sa.Table(
    "sim_runs",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("consumers", sa.Integer, nullable=False),
    sa.Column("months", sa.Integer, nullable=False),
    sa.Column("start", sa.Date, nullable=False),
    sa.Column("batch_done", sa.Date, nullable=True),  # the last day whose batch of operations is recorded
    sa.Column("last_day_done", sa.Date, nullable=True),  # … and whose end of day and settlement ran too
)
plans = sa.Table(
    "sim_plans",
    METADATA,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("plan", sa.JSON, nullable=False),
)
parties = sa.Table(
    "sim_parties",
    METADATA,
    sa.Column("kind", sa.String(16), primary_key=True),  # consumer, merchant, biller, partner
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("wallet_id", sa.String(64), nullable=True),
    sa.Column("joined_on", sa.Date, nullable=False),
)
feature_rows = sa.Table(
    "sim_feature_rows",
    METADATA,
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("consumer", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.String(64), nullable=False),
    sa.Column("features", sa.JSON, nullable=False),  # the feature store's vector as of `as_of` (NaN as null)
)
accounts = sa.Table(
    "sim_accounts",
    METADATA,
    sa.Column("ref", sa.String(64), primary_key=True),
    sa.Column("consumer", sa.Integer, nullable=False, index=True),
    sa.Column("kind", sa.String(8), nullable=False),  # loan | line
    sa.Column("opened_on", sa.Date, nullable=False),
    sa.Column("term_months", sa.Integer, nullable=True),
    sa.Column("worst_dpd", sa.Integer, nullable=False, server_default="0"),
    sa.Column("reached_90_on", sa.Date, nullable=True),
    sa.Column("closed", sa.Boolean, nullable=False, server_default=sa.false()),
)
applications = sa.Table(
    "sim_applications",
    METADATA,
    sa.Column("key", sa.String(120), primary_key=True),
    sa.Column("consumer", sa.Integer, nullable=False, index=True),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("product", sa.String(32), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # approved_accepted, approved_not_taken, declined, refused
    sa.Column("application_id", sa.String(64), nullable=True),
    sa.Column("account_ref", sa.String(64), nullable=True),
)
truth = sa.Table(
    "sim_truth",
    METADATA,
    sa.Column("consumer", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("segment", sa.String(16), nullable=False),
    sa.Column("risk", sa.Float, nullable=False),
    sa.Column("female", sa.Boolean, nullable=False),
    sa.Column("default_month", sa.Integer, nullable=True),  # null: no default episode within the horizon
    sa.Column("default_reason", sa.String(16), nullable=True),  # job_loss, illness, latent
    sa.Column("shock_months", sa.JSON, nullable=False),  # [[month, "job_loss"|"illness"], …]
)
counts = sa.Table(
    "sim_counts",
    METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
)


class RunMismatch(ValidationFailed):
    """The store holds a run with another seed, population or start: resume it with its own parameters."""

    code = "simulation.run_mismatch"


@dataclass(frozen=True, slots=True)
class Run:
    seed: int
    consumers: int
    months: int
    start: date
    batch_done: date | None
    last_day_done: date | None


@dataclass
class DayRecord:
    """What one simulated day adds to the store, written in one transaction when the day is done."""

    day: date
    parties: list[dict[str, Any]]
    accounts: list[dict[str, Any]]
    applications: list[dict[str, Any]]
    worst_dpd: dict[str, tuple[int, date | None]]  # ref → (worst dpd so far, day it first reached 90)
    closed: list[str]
    counts: Counter[str]
    amounts: Counter[str]


class SimulationStore:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.db = Database(url, pool_size=2)
        METADATA.create_all(self.db.engine)

    def close(self) -> None:
        self.db.dispose()

    # ------------------------------------------------------------ the run

    def open_run(self, seed: int, consumers: int, months: int, start: date) -> Run:
        """The run in this store, created on first use; a different run is refused, a longer one extended."""

        def work(conn: sa.Connection) -> Run:
            row = conn.execute(sa.select(runs).where(runs.c.id == 1)).one_or_none()
            if row is None:
                conn.execute(runs.insert().values(id=1, seed=seed, consumers=consumers, months=months, start=start))
                return Run(seed, consumers, months, start, None, None)
            if (row.seed, row.consumers, row.start) != (seed, consumers, start):
                raise RunMismatch(
                    f"this store holds seed {row.seed}, {row.consumers} consumers from {row.start}; "
                    f"asked for seed {seed}, {consumers} consumers from {start}"
                )
            if months > row.months:
                conn.execute(runs.update().where(runs.c.id == 1).values(months=months))
            return Run(row.seed, row.consumers, max(months, row.months), row.start, row.batch_done, row.last_day_done)

        return self.db.run(work)

    def run(self) -> Run | None:
        row = self.db.run(lambda conn: conn.execute(sa.select(runs)).one_or_none(), readonly=True)
        return (
            None
            if row is None
            else Run(row.seed, row.consumers, row.months, row.start, row.batch_done, row.last_day_done)
        )

    # ------------------------------------------------------------ plans

    def plan(self, day: date) -> list[Any] | None:
        row = self.db.run(
            lambda conn: conn.execute(sa.select(plans.c.plan).where(plans.c.day == day)).one_or_none(), readonly=True
        )
        return None if row is None else list(row.plan)

    def save_plan(self, day: date, plan: list[Any]) -> None:
        def work(conn: sa.Connection) -> None:
            conn.execute(plans.delete().where(plans.c.day == day))
            conn.execute(plans.insert().values(day=day, plan=plan))

        self.db.run(work)

    # ------------------------------------------------------------ who is who

    def parties(self, kind: str) -> dict[int, tuple[str, str | None]]:
        rows = self.db.run(
            lambda conn: conn.execute(
                sa.select(parties.c.number, parties.c.customer_id, parties.c.wallet_id).where(parties.c.kind == kind)
            ).all(),
            readonly=True,
        )
        return {int(r.number): (r.customer_id, r.wallet_id) for r in rows}

    def save_parties(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)

        def work(conn: sa.Connection) -> None:
            for row in rows:
                conn.execute(parties.delete().where(parties.c.kind == row["kind"], parties.c.number == row["number"]))
            if rows:
                conn.execute(parties.insert(), rows)

        self.db.run(work)

    def accounts(self) -> list[Any]:
        return self.db.run(lambda conn: list(conn.execute(sa.select(accounts)).all()), readonly=True)

    def applications(self) -> list[Any]:
        return self.db.run(lambda conn: list(conn.execute(sa.select(applications)).all()), readonly=True)

    # ------------------------------------------------------------ the day

    def record_batch(self, record: DayRecord) -> None:
        """Record a day's committed batch: its new parties, accounts, applications, the delinquency seen and
        the counters — all or nothing, and once (a day already recorded is left as it is)."""

        def work(conn: sa.Connection) -> None:
            done = conn.execute(sa.select(runs.c.batch_done).where(runs.c.id == 1)).scalar_one()
            if done is not None and done >= record.day:
                return
            if record.parties:
                keys = [(p["kind"], p["number"]) for p in record.parties]
                for kind, number in keys:
                    conn.execute(parties.delete().where(parties.c.kind == kind, parties.c.number == number))
                conn.execute(parties.insert(), record.parties)
            if record.accounts:
                refs = [a["ref"] for a in record.accounts]
                conn.execute(accounts.delete().where(accounts.c.ref.in_(refs)))
                conn.execute(accounts.insert(), record.accounts)
            if record.applications:
                app_keys = [a["key"] for a in record.applications]
                conn.execute(applications.delete().where(applications.c.key.in_(app_keys)))
                conn.execute(applications.insert(), record.applications)
            for ref, (worst, reached) in record.worst_dpd.items():
                conn.execute(
                    accounts.update().where(accounts.c.ref == ref).values(worst_dpd=worst, reached_90_on=reached)
                )
            if record.closed:
                conn.execute(accounts.update().where(accounts.c.ref.in_(record.closed)).values(closed=True))
            existing = {
                r.name: (int(r._mapping["count"]), int(r.amount_minor)) for r in conn.execute(sa.select(counts)).all()
            }
            for name in sorted(set(record.counts) | set(record.amounts)):
                n, amount = existing.get(name, (0, 0))
                values = {"count": n + record.counts.get(name, 0), "amount_minor": amount + record.amounts.get(name, 0)}
                if name in existing:
                    conn.execute(counts.update().where(counts.c.name == name).values(**values))
                else:
                    conn.execute(counts.insert().values(name=name, **values))
            conn.execute(runs.update().where(runs.c.id == 1).values(batch_done=record.day))

        self.db.run(work)

    def finish_day(self, day: date) -> None:
        """The day's end of day, settlement and month-end work ran: the day is done."""

        def work(conn: sa.Connection) -> None:
            conn.execute(plans.delete().where(plans.c.day <= day))
            conn.execute(runs.update().where(runs.c.id == 1).values(last_day_done=day))

        self.db.run(work)

    def counts(self) -> dict[str, tuple[int, int]]:
        rows = self.db.run(lambda conn: conn.execute(sa.select(counts)).all(), readonly=True)
        return {r.name: (int(r._mapping["count"]), int(r.amount_minor)) for r in rows}

    # ------------------------------------------------------------ training snapshots

    def save_feature_rows(self, as_of: date, rows: list[dict[str, Any]]) -> None:
        def work(conn: sa.Connection) -> None:
            conn.execute(feature_rows.delete().where(feature_rows.c.as_of == as_of))
            for start in range(0, len(rows), 5_000):
                conn.execute(feature_rows.insert(), rows[start : start + 5_000])

        self.db.run(work)

    def feature_rows(self) -> list[Any]:
        return self.db.run(
            lambda conn: list(
                conn.execute(sa.select(feature_rows).order_by(feature_rows.c.as_of, feature_rows.c.consumer))
            ),
            readonly=True,
        )

    # ------------------------------------------------------------ ground truth

    def has_truth(self) -> bool:
        return bool(
            self.db.run(
                lambda conn: conn.execute(sa.select(sa.func.count()).select_from(truth)).scalar_one(), readonly=True
            )
        )

    def save_truth(self, rows: list[dict[str, Any]]) -> None:
        def work(conn: sa.Connection) -> None:
            conn.execute(truth.delete())
            for start in range(0, len(rows), 10_000):
                conn.execute(truth.insert(), rows[start : start + 10_000])

        self.db.run(work)

    def truth(self) -> list[Any]:
        return self.db.run(
            lambda conn: list(conn.execute(sa.select(truth).order_by(truth.c.consumer)).all()), readonly=True
        )


def plan_json(plan: list[Any]) -> str:
    return json.dumps(plan, sort_keys=True)
