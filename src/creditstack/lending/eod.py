"""End of day: set-based, journaled, restartable.

End of day for business date D first rolls the online business date to D+1 (in the same transaction that
records the run), so online activity goes on dated D+1. Then it runs the named steps over the whole book:

    accrue            interest on principal and penalty interest on overdue principal, for day D
    bill              instalments due on D+1: principal and the interest accrued to D; credits applied
    statements        lines: grace kept or lost at a due date; statements close on their statement day
    late_fees         unpaid instalments past due + grace days take the product's late fee
    age               past-due date, overdue principal, days past due and bucket
    non_accrual       accounts at or over the product's non-accrual DPD stop accruing (and restart when cured)
    charge_off        accounts at the product's charge-off DPD are written off
    snapshot          at month end, one account-month row per account
    post_gl           the day's per-chunk totals post to the ledger, one entry per product

Every step but the last runs per chunk of account ids, each chunk in its own transaction that also
writes its `lending_eod_steps(business_date, step, chunk)` row and its totals for the ledger
(`lending_gl_pending`). A rerun skips the chunks already journaled, so a crash at any point loses and
doubles nothing. Each step is a handful of `UPDATE … / INSERT … SELECT` statements per chunk and product
— never a Python loop per loan — in integer arithmetic, identical on PostgreSQL and SQLite.

Online repayments and draws on a loan lock its row first (as the chunks' statements do), and bring an
account that end of day has not reached yet up to date with the very same rules (`catch_up`), so the
two never overwrite each other and a payment dated D+1 never changes the interest of D.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache, partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from creditstack.core import business_date as business_dates
from creditstack.core import sequence
from creditstack.core.clock import Clock
from creditstack.core.db import Database
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.service import SERVICE, LedgerService
from creditstack.lending import gl
from creditstack.lending import tables as t
from creditstack.lending.calendar import add_months
from creditstack.lending.errors import EodDateInvalid, EodOutOfOrder, LedgerRefused
from creditstack.lending.products import Product, day_units

STEPS = ("accrue", "bill", "statements", "late_fees", "age", "non_accrual", "charge_off", "snapshot", "post_gl")
CHUNK_SIZE_DEFAULT = 50_000
#: Steps that take a commit counter (outbox events, a ledger entry): a transaction of several steps ends there.
_COUNTER_STEPS = frozenset({"age", "charge_off", "post_gl"})
#: Distinct SQL texts end of day builds (per step, product and dialect): a bound on the cache of parsed texts.
SQL_TEXTS_CACHED_MAX = 1_024


@lru_cache(maxsize=SQL_TEXTS_CACHED_MAX)
def _sql(text: str) -> sa.TextClause:
    """The parsed statement of `text`: the steps build the same few texts every day, parsed once."""
    return sa.text(text)


# Bookkeeping statements, built once.
_r, _st = t.eod_runs.c, t.eod_steps.c
_PENDING_RUN = sa.select(sa.func.min(_r.business_date)).where(_r.status == "running")
_LAST_RUN = sa.select(_r.business_date, _r.status).order_by(_r.business_date.desc()).limit(1)
_MAX_ACCOUNT_ID = sa.select(sa.func.coalesce(sa.func.max(t.accounts.c.id), 0))
_RUN = sa.select(t.eod_runs).where(_r.business_date == sa.bindparam("d", type_=sa.Date))
_JOURNALED = sa.select(_st.step, _st.chunk).where(_st.business_date == sa.bindparam("d", type_=sa.Date))
_JOURNALED_CHUNKS = sa.select(_st.step, _st.chunk).where(
    _st.business_date == sa.bindparam("d", type_=sa.Date),
    _st.chunk.between(sa.bindparam("first", type_=sa.Integer), sa.bindparam("last", type_=sa.Integer)),
)
_FINISH_RUN = (
    sa.update(t.eod_runs)
    .where(_r.business_date == sa.bindparam("d", type_=sa.Date))
    .values(status="complete", finished_at=sa.bindparam("now", type_=sa.DateTime(timezone=True)))
)


@dataclass
class StepTiming:
    step: str
    chunks: int = 0
    skipped: int = 0
    rows: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "chunks": self.chunks,
            "skipped": self.skipped,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class EodReport:
    business_date: date
    already_complete: bool = False
    steps: list[StepTiming] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "business_date": self.business_date.isoformat(),
            "already_complete": self.already_complete,
            "seconds": round(self.seconds, 3),
            "steps": [s.to_json() for s in self.steps],
        }


class Dialect:
    """The few places where the two databases' SQL differs."""

    def __init__(self, is_postgres: bool) -> None:
        self.pg = is_postgres

    def least(self, a: str, b: str) -> str:
        return f"LEAST({a}, {b})" if self.pg else f"MIN({a}, {b})"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})" if self.pg else f"MAX({a}, {b})"

    def days_between(self, later_param: str, earlier_column: str) -> str:
        if self.pg:
            return f"(CAST({later_param} AS DATE) - {earlier_column})"
        return f"CAST(julianday({later_param}) - julianday({earlier_column}) AS INTEGER)"

    def int_param(self, name: str) -> str:
        return f"CAST(:{name} AS BIGINT)" if self.pg else f":{name}"

    def json_object(self, pairs: dict[str, str]) -> str:
        args = ", ".join(f"'{k}', {v}" for k, v in pairs.items())
        return f"jsonb_build_object({args})" if self.pg else f"json_object({args})"

    def in_ids(self, column: str, name: str = "ids") -> str:
        """`column` is one of the ids passed as parameter `name` (see `ids`)."""
        if self.pg:
            return f"{column} = ANY(CAST(:{name} AS BIGINT[]))"
        return f"{column} IN (SELECT value FROM json_each(:{name}))"

    def ids(self, values: list[int]) -> Any:
        return list(values) if self.pg else json.dumps(list(values))


def unpaid_expr(prefix: str = "") -> str:
    p = prefix
    return f"({p}principal_due + {p}interest_due + {p}fee_due - {p}principal_paid - {p}interest_paid - {p}fee_paid)"


def interest_base_expr() -> str:
    """The balance that accrues contract interest: a loan's principal; a line's principal outside the
    interest-free period, less principal converted into instalments and not yet billed."""
    return (
        "(CASE WHEN kind = 'line' THEN (CASE WHEN grace = 1 THEN 0 "
        "ELSE principal_minor - converted_unbilled_minor END) ELSE principal_minor END) * accruing"
    )


class EndOfDay:
    """Runs end of day for the platform's lending book (see module docstring)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        ledger: LedgerService,
        products: Callable[[], dict[str, Product]],
        gl_accounts: Callable[[str], gl.GlAccounts],
        *,
        chunk_size: int = CHUNK_SIZE_DEFAULT,
        on_chunk: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.ledger = ledger
        self.products = products
        self.gl_accounts = gl_accounts
        self.chunk_size = chunk_size
        self.dialect = Dialect(db.is_postgres)
        self.on_chunk = on_chunk  # progress: (step, chunk, chunks)
        #: The latest business date this process has seen end of day complete for (a run once complete stays
        #: complete): the online paths need not look for instalments to bill ahead of a run that is done.
        self.complete_through: date | None = None

    def _completed(self, day: date) -> None:
        if self.complete_through is None or day > self.complete_through:
            self.complete_through = day

    # ------------------------------------------------------------ orchestration

    def pending_date(self) -> date | None:
        """The date of a run that started and has not completed (a crash), if any."""
        r = t.eod_runs.c
        return self.db.run(
            lambda conn: conn.execute(
                sa.select(sa.func.min(r.business_date)).where(r.status == "running")
            ).scalar_one_or_none(),
            readonly=True,
        )

    def last_complete(self) -> date | None:
        r = t.eod_runs.c
        return self.db.run(
            lambda conn: conn.execute(
                sa.select(sa.func.max(r.business_date)).where(r.status == "complete")
            ).scalar_one_or_none(),
            readonly=True,
        )

    def run(self, business_date: date | None = None) -> list[EodReport]:
        """Finish any interrupted run, then close `business_date` (default: the current business date)."""
        reports = []
        pending, current = self.db.run(self._pending_and_current, readonly=True)  # one read for both
        if pending is not None:
            reports.append(self._execute(pending))
            if business_date is not None and business_date == pending:
                return reports
            current = self.ledger.business_date()
        target = business_date or current
        if target > current:
            raise EodDateInvalid(
                f"end of day can close the current business date {current}, not {target}", field="business_date"
            )
        if target < current:
            if self._is_complete(target):
                return reports or [EodReport(target, already_complete=True)]
            raise EodDateInvalid(f"{target} is before the current business date {current}", field="business_date")
        if self.db.is_sqlite:  # writers are serialised: a book of one chunk closes the day in one commit
            report = self._run_whole(target)
            if report is not None:
                reports.append(report)
                return reports
        started = self._start(target)
        reports.append(self._execute(target, started))
        return reports

    def _run_whole(self, day: date) -> EodReport | None:
        """SQLite, a book of one chunk: the run recorded, the date rolled, every step journaled and the run
        marked complete in one transaction — one commit (each costs an fsync) instead of four. A crash rolls
        all of it back, and the rerun starts the day afresh. None (nothing done) for a larger book."""
        started = time.perf_counter()
        products = self.products()
        report = EodReport(day)
        timings = {step: StepTiming(step) for step in STEPS}
        report.steps = list(timings.values())

        def work(conn: Connection) -> list[tuple[str, int, int, float]] | None:
            max_id = int(conn.execute(_MAX_ACCOUNT_ID).scalar_one())
            chunks = list(_chunks(max_id, self.chunk_size))
            if len(chunks) != 1:
                return None
            self._start_in(conn, day)
            [unit] = _units(day, chunks, set(), {}, together=True)
            return self._unit_in(conn, day, unit, products, finish=True)

        ran = self.db.run(work)
        if ran is None:
            return None
        self._record(ran, timings, chunks=1)
        self._completed(day)
        report.seconds = time.perf_counter() - started
        return report

    @staticmethod
    def _pending_and_current(conn: Connection) -> tuple[date | None, date]:
        pending = conn.execute(_PENDING_RUN).scalar_one_or_none()
        return pending, business_dates.current(conn, PLATFORM_CORE, SERVICE)

    def catch_up(self, through: date) -> list[EodReport]:
        """Run end of day for every date from the current business date through `through`, in order."""
        reports: list[EodReport] = []
        pending = self.pending_date()
        if pending is not None:
            reports.append(self._execute(pending))
        while self.ledger.business_date() <= through:
            reports.extend(self.run())
        return reports

    def _is_complete(self, day: date) -> bool:
        r = t.eod_runs.c
        status = self.db.run(
            lambda conn: conn.execute(sa.select(r.status).where(r.business_date == day)).scalar_one_or_none(),
            readonly=True,
        )
        return status == "complete"

    def _start(self, day: date) -> tuple[int, int]:
        """Record the run and roll the business date; returns the run's (max account id, chunk size)."""
        return self.db.run(lambda conn: self._start_in(conn, day))

    def _start_in(self, conn: Connection, day: date) -> tuple[int, int]:
        previous = conn.execute(_LAST_RUN).first()
        if previous is not None:
            last, status = previous
            if last >= day:
                raise EodDateInvalid(f"end of day for {day} has already started", field="business_date")
            if status != "complete" or last != day - timedelta(days=1):
                raise EodOutOfOrder(
                    f"end of day for {day} needs {day - timedelta(days=1)} complete first (last run: {last}, {status})",
                    field="business_date",
                )
        max_id = int(conn.execute(_MAX_ACCOUNT_ID).scalar_one())
        conn.execute(
            t.eod_runs.insert().values(
                business_date=day,
                status="running",
                max_account_id=max_id,
                chunk_size=self.chunk_size,
                started_at=self.clock.now(),
            )
        )
        business_dates.advance(conn, PLATFORM_CORE, SERVICE, day + timedelta(days=1), self.clock.now())
        return max_id, self.chunk_size

    def _execute(self, day: date, started_run: tuple[int, int] | None = None) -> EodReport:
        """Run the steps not journaled yet. A book of one chunk runs them in three transactions instead of one
        per step: a transaction ends after each step that takes a commit counter (the outbox's: `age`,
        `charge_off`; the journal's: `post_gl`), so that end of day, like every online path, locks accounts
        before a counter and never the other way round. A larger book runs each chunk of each step in its own
        transaction. The run is marked complete in the last one."""
        started = time.perf_counter()
        if started_run is None:
            row = self.db.run(lambda conn: conn.execute(_RUN, {"d": day}).one(), readonly=True)
            if row.status == "complete":
                self._completed(day)
                return EodReport(day, already_complete=True)
            started_run = (int(row.max_account_id), int(row.chunk_size))
        report = EodReport(day)
        chunks = list(_chunks(*started_run))
        products = self.products()
        done = set(self.db.run(lambda conn: conn.execute(_JOURNALED, {"d": day}).all(), readonly=True))
        timings = {step: StepTiming(step) for step in STEPS}
        report.steps = list(timings.values())
        units = _units(day, chunks, done, timings)
        for index, unit in enumerate(units):
            last = index == len(units) - 1
            ran = self.db.run(partial(self._unit_in, day=day, unit=unit, products=products, finish=last))
            self._record(ran, timings, chunks=len(chunks))
        self._completed(day)
        report.seconds = time.perf_counter() - started
        return report

    def _unit_in(
        self,
        conn: Connection,
        day: date,
        unit: list[tuple[str, int, int, int]],
        products: dict[str, Product],
        *,
        finish: bool,
    ) -> list[tuple[str, int, int, float]]:
        """In the caller's transaction: the unit's (step, chunk)s not journaled meanwhile by another runner,
        their journal rows, and (`finish`) the run marked complete. Returns (step, chunk, rows, seconds) of
        each it ran."""
        ran: list[tuple[str, int, int, float]] = []
        if unit:
            chunks = sorted({chunk for _, chunk, _, _ in unit})
            journaled = set(conn.execute(_JOURNALED_CHUNKS, {"d": day, "first": chunks[0], "last": chunks[-1]}).all())
            for step, chunk, lo, hi in unit:
                if (step, chunk) in journaled:
                    continue  # another runner committed it meanwhile
                step_started = time.perf_counter()
                rows = int(getattr(self, f"_step_{step}")(conn, day, chunk, lo, hi, products))
                ran.append((step, chunk, rows, time.perf_counter() - step_started))
            if ran:
                now = self.clock.now()
                conn.execute(
                    t.eod_steps.insert(),
                    [
                        {"business_date": day, "step": step, "chunk": chunk, "rows": rows, "seconds": seconds}
                        | {"finished_at": now}
                        for step, chunk, rows, seconds in ran
                    ],
                )
        if finish:
            conn.execute(_FINISH_RUN, {"d": day, "now": self.clock.now()})
        return ran

    def _record(self, ran: list[tuple[str, int, int, float]], timings: dict[str, StepTiming], *, chunks: int) -> None:
        """After the commit: the report's timings, and the progress callback."""
        for step, chunk, rows, seconds in ran:
            timings[step].chunks += 1
            timings[step].rows += rows
            timings[step].seconds += seconds
            if self.on_chunk is not None:
                self.on_chunk(step, chunk, 1 if step == "post_gl" else chunks)

    # ------------------------------------------------------------ shared SQL helpers

    def _params(self, day: date, lo: int, hi: int, **extra: Any) -> dict[str, Any]:
        return {"d": day, "d1": day + timedelta(days=1), "lo": lo, "hi": hi, **extra}

    def _pending(
        self, conn: Connection, day: date, step: str, chunk: int, select_sql: str, params: dict[str, Any]
    ) -> None:
        """Record the chunk's ledger totals: `select_sql` yields (product_code, currency, movement, amount)."""
        rows = conn.execute(_sql(select_sql), params).all()
        values = [
            {
                "business_date": day,
                "step": step,
                "chunk": chunk,
                "product_code": row[0],
                "currency": row[1],
                "movement": row[2],
                "amount_minor": int(row[3]),
            }
            for row in rows
            if row[3] and int(row[3]) != 0
        ]
        if values:
            conn.execute(t.gl_pending.insert(), values)

    def _events(
        self, conn: Connection, day: date, topic: str, where: str, payload: dict[str, str], params: dict[str, Any]
    ) -> int:
        """Outbox events for the accounts matching `where`, numbered set-based after the counter."""
        count = int(conn.execute(_sql(f"SELECT COUNT(*) FROM lending_accounts WHERE {where}"), params).scalar_one())
        if not count:
            return 0
        first = sequence.take(conn, PLATFORM_CORE, "outbox", count)
        conn.execute(
            _sql(
                "INSERT INTO outbox (position, topic, aggregate_id, business_date, created_at, payload) "
                f"SELECT {self.dialect.int_param('first')} - 1 + ROW_NUMBER() OVER (ORDER BY id), :topic, ref, "
                f":d, :now, {self.dialect.json_object(payload)} FROM lending_accounts WHERE {where}"
            ),
            {**params, "first": first, "topic": topic, "now": self.clock.now()},
        )
        return count

    # ------------------------------------------------------------ steps

    def _step_accrue(
        self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]
    ) -> int:
        rows = 0
        d = self.dialect
        for day_count in sorted({p.day_count for p in products.values()}, key=lambda dc: dc.value):
            n = day_units(day_count, day)
            base = interest_base_expr()
            den = "(1000000 * days_per_year)"
            half = "(500000 * days_per_year)"
            i_total = f"({base} * rate_micro * {d.int_param('n')} + carry)"
            i_posted = f"(({i_total} + {half}) / {den})"
            p_total = f"(overdue_principal_minor * accruing * penalty_rate_micro * {d.int_param('n')} + penalty_carry)"
            p_posted = f"(({p_total} + {half}) / {den})"
            result = conn.execute(
                _sql(
                    f"UPDATE lending_accounts SET "
                    f"interest_unbilled_minor = interest_unbilled_minor + {i_posted}, "
                    f"interest_accrued_minor = interest_accrued_minor + {i_posted}, "
                    f"last_interest_minor = {i_posted}, "
                    f"carry = {i_total} - {i_posted} * {den}, "
                    f"penalty_minor = penalty_minor + {p_posted}, "
                    f"penalty_accrued_minor = penalty_accrued_minor + {p_posted}, "
                    f"last_penalty_minor = {p_posted}, "
                    f"penalty_carry = {p_total} - {p_posted} * {den}, "
                    f"accrued_through = :d, last_accrual_on = :d, version = version + 1 "
                    f"WHERE id >= :lo AND id < :hi AND status = 'active' AND accrued_through < :d "
                    f"AND opened_on <= :d AND day_count = :dc"
                ),
                self._params(day, lo, hi, n=n, dc=day_count.value),
            )
            rows += result.rowcount or 0
        self._pending(
            conn,
            day,
            "accrue",
            chunk,
            "SELECT product_code, currency, 'interest', SUM(last_interest_minor) FROM lending_accounts "
            "WHERE id >= :lo AND id < :hi AND last_accrual_on = :d GROUP BY product_code, currency "
            "UNION ALL SELECT product_code, currency, 'penalty', SUM(last_penalty_minor) FROM lending_accounts "
            "WHERE id >= :lo AND id < :hi AND last_accrual_on = :d GROUP BY product_code, currency",
            self._params(day, lo, hi),
        )
        return rows

    def _ids(self, conn: Connection, sql: str, params: dict[str, Any]) -> list[int]:
        return [int(r[0]) for r in conn.execute(_sql(sql), params)]

    def _active(self, conn: Connection, ids: list[int], extra: str = "") -> list[tuple[int, str]]:
        """(id, product) of the active accounts among `ids`, locked in id order on PostgreSQL (online
        paths lock the account row first too, so the two never deadlock)."""
        if not ids:
            return []
        lock = " ORDER BY id FOR UPDATE" if self.dialect.pg else ""
        rows = conn.execute(
            _sql(
                f"SELECT id, product_code FROM lending_accounts WHERE {self.dialect.in_ids('id')} "
                f"AND status = 'active'{extra}{lock}"
            ),
            {"ids": self.dialect.ids(ids)},
        ).all()
        return [(int(r[0]), str(r[1])) for r in rows]

    def _step_bill(
        self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]
    ) -> int:
        d = self.dialect
        params = self._params(day, lo, hi)
        due = self._ids(
            conn,
            "SELECT DISTINCT account_id FROM lending_instalments WHERE billed_on IS NULL AND due_date <= :d1 "
            "AND account_id >= :lo AND account_id < :hi",
            params,
        )
        accounts = [account for account, _ in self._active(conn, due)]
        if not accounts:
            return 0
        params["ids"] = d.ids(accounts)
        to_bill = f"billed_on IS NULL AND due_date <= :d1 AND {d.in_ids('account_id')}"
        # 1. a scheduled instalment's interest is the interest accrued since the last due date
        conn.execute(
            _sql(
                "UPDATE lending_instalments SET interest_due = (SELECT a.interest_unbilled_minor FROM "
                "lending_accounts a WHERE a.id = lending_instalments.account_id) "
                f"WHERE kind = 'scheduled' AND {to_bill}"
            ),
            params,
        )
        # 2. conversion fees become receivable (ledger total per product)
        self._pending(
            conn,
            day,
            "bill",
            chunk,
            "SELECT a.product_code, a.currency, 'conversion_fee', SUM(i.fee_due) FROM lending_instalments i "
            "JOIN lending_accounts a ON a.id = i.account_id WHERE i.kind = 'conversion' AND i.billed_on IS NULL "
            f"AND i.due_date <= :d1 AND {d.in_ids('i.account_id')} GROUP BY a.product_code, a.currency",
            params,
        )
        # 3. the accounts: billed principal and interest, fees, converted principal now billed
        billed = conn.execute(
            _sql(
                "UPDATE lending_accounts SET "
                "principal_billed_minor = principal_billed_minor + s.p, "
                "interest_billed_minor = interest_billed_minor + (CASE WHEN s.sched > 0 "
                "THEN interest_unbilled_minor ELSE 0 END), "
                "interest_unbilled_minor = (CASE WHEN s.sched > 0 THEN 0 ELSE interest_unbilled_minor END), "
                "fees_minor = fees_minor + s.fee, fees_charged_minor = fees_charged_minor + s.fee, "
                "converted_unbilled_minor = converted_unbilled_minor - s.conv, version = version + 1 "
                "FROM (SELECT account_id, SUM(principal_due) AS p, SUM(fee_due) AS fee, "
                "SUM(CASE WHEN kind = 'conversion' THEN principal_due ELSE 0 END) AS conv, "
                "SUM(CASE WHEN kind = 'scheduled' THEN 1 ELSE 0 END) AS sched "
                f"FROM lending_instalments WHERE {to_bill} GROUP BY account_id) AS s "
                "WHERE lending_accounts.id = s.account_id"
            ),
            params,
        ).rowcount
        # 4. mark the rows billed
        conn.execute(_sql(f"UPDATE lending_instalments SET billed_on = :d WHERE {to_bill}"), params)
        # 5. credits held for the next due date pay the new instalment: interest, then principal
        with_credit = self._ids(
            conn,
            f"SELECT id FROM lending_accounts WHERE {d.in_ids('id')} AND credit_minor > 0",
            params,
        )
        if with_credit:
            self._apply_credits(conn, day, chunk, {**params, "ids": d.ids(with_credit)})
        return int(billed or 0)

    def _apply_credits(self, conn: Connection, day: date, chunk: int, params: dict[str, Any]) -> None:
        """A credit held pays the row billed today: its fee (a conversion's), then interest, then principal.
        One row per account (the lowest number), so a credit is never spent twice."""
        d = self.dialect
        credit_rows = (
            "billed_on = :d AND billed_online = 0 AND kind IN ('scheduled', 'conversion') AND settled_on IS NULL "
            f"AND {d.in_ids('account_id')} AND number = (SELECT MIN(j.number) FROM lending_instalments j "
            "WHERE j.account_id = lending_instalments.account_id AND j.billed_on = :d AND j.billed_online = 0 "
            "AND j.kind IN ('scheduled', 'conversion'))"
        )
        credit = "(SELECT a.credit_minor FROM lending_accounts a WHERE a.id = lending_instalments.account_id)"
        to_fee = d.least("fee_due", credit)
        to_interest = d.least("interest_due", f"{credit} - {to_fee}")
        to_principal = d.least("principal_due", f"{credit} - {to_fee} - {to_interest}")
        conn.execute(
            _sql(
                f"UPDATE lending_instalments SET fee_paid = {to_fee}, interest_paid = {to_interest}, "
                f"principal_paid = {to_principal} WHERE {credit_rows}"
            ),
            params,
        )
        applied = (
            "SELECT account_id, SUM(fee_paid) AS fp, SUM(interest_paid) AS ip, SUM(principal_paid) AS pp, "
            "SUM(CASE WHEN kind = 'conversion' THEN principal_paid ELSE 0 END) AS cp "
            f"FROM lending_instalments WHERE {credit_rows} GROUP BY account_id"
        )
        self._pending(
            conn,
            day,
            "bill",
            chunk,
            " UNION ALL ".join(
                f"SELECT a.product_code, a.currency, 'credit_to_{name}', SUM(s.{column}) FROM ({applied}) AS s "
                "JOIN lending_accounts a ON a.id = s.account_id GROUP BY a.product_code, a.currency"
                for name, column in (("fees", "fp"), ("interest", "ip"), ("principal", "pp"))
            ),
            params,
        )
        conn.execute(
            _sql(
                "UPDATE lending_accounts SET credit_minor = credit_minor - s.fp - s.ip - s.pp, "
                "fees_minor = fees_minor - s.fp, interest_billed_minor = interest_billed_minor - s.ip, "
                "principal_billed_minor = principal_billed_minor - s.pp, principal_minor = principal_minor - s.pp "
                f"FROM ({applied}) AS s WHERE lending_accounts.id = s.account_id"
            ),
            params,
        )
        conn.execute(
            _sql(f"UPDATE lending_instalments SET settled_on = :d1 WHERE {credit_rows} AND {unpaid_expr()} = 0"),
            params,
        )

    def _step_statements(
        self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]
    ) -> int:
        d = self.dialect
        params = self._params(day, lo, hi, sd=day.day)
        lines = self._ids(
            conn,
            "SELECT id FROM lending_accounts WHERE id >= :lo AND id < :hi AND kind = 'line' AND status = 'active' "
            "AND (statement_day = :sd OR stmt_due_date = :d)",
            params,
        )
        if not lines:
            return 0
        by_product: dict[str, list[int]] = {}
        for account, product_code in self._active(conn, lines):
            by_product.setdefault(product_code, []).append(account)
        params["ids"] = d.ids([account for ids in by_product.values() for account in ids])
        # a due date passed: the interest-free period is kept only by paying the statement in full
        conn.execute(
            _sql(
                "UPDATE lending_accounts SET "
                "grace = (CASE WHEN stmt_paid_minor >= stmt_balance_minor THEN 1 ELSE 0 END) "
                f"WHERE {d.in_ids('id')} AND stmt_due_date = :d"
            ),
            params,
        )
        rows = 0
        for product_code, ids in sorted(by_product.items()):
            product = products[product_code]
            due = product.calendar.roll(day + timedelta(days=product.due_days), product.roll)
            p = {**params, "ids": d.ids(ids), "due": due}
            p.update(floor=product.min_payment_floor_minor, bps=product.min_payment_bps)
            stmt_principal = "(principal_minor - converted_unbilled_minor)"
            balance = (
                f"({stmt_principal} + interest_unbilled_minor + interest_billed_minor + fees_minor + penalty_minor)"
            )
            closing = f"{d.in_ids('id')} AND statement_day = :sd AND (stmt_date IS NULL OR stmt_date < :d)"
            closed = f"{closing} AND {balance} > 0"
            revolving_unbilled = "(principal_minor - principal_billed_minor - converted_unbilled_minor)"
            pct = f"(({stmt_principal} * {d.int_param('bps')} + 5000) / 10000)"
            min_principal = d.least(revolving_unbilled, d.greatest(d.int_param("floor"), pct))
            conn.execute(
                _sql(
                    "INSERT INTO lending_instalments (account_id, number, kind, due_date, billed_on, billed_online, "
                    "principal_due, interest_due, fee_due, principal_paid, interest_paid, fee_paid, penalty_paid) "
                    "SELECT id, (SELECT COALESCE(MAX(i.number), 0) + 1 FROM lending_instalments i "
                    "WHERE i.account_id = lending_accounts.id), 'statement', :due, :d, 0, "
                    f"{min_principal}, interest_unbilled_minor, 0, 0, 0, 0, 0 "
                    f"FROM lending_accounts WHERE {closed}"
                ),
                p,
            )
            open_due = (
                f"(SELECT COALESCE(SUM({unpaid_expr('i.')}), 0) FROM lending_instalments i "
                "WHERE i.account_id = lending_accounts.id AND i.billed_on IS NOT NULL AND i.settled_on IS NULL)"
            )
            new_row = (
                "(SELECT i.principal_due FROM lending_instalments i WHERE i.account_id = lending_accounts.id "
                "AND i.kind = 'statement' AND i.billed_on = :d AND i.due_date = :due)"
            )
            conn.execute(
                _sql(
                    "INSERT INTO lending_statements (account_id, statement_date, due_date, balance_minor, "
                    "principal_minor, interest_minor, fees_minor, minimum_payment_minor, grace) "
                    f"SELECT id, :d, :due, {balance}, {stmt_principal}, interest_unbilled_minor + "
                    f"interest_billed_minor, fees_minor + penalty_minor, {open_due} + penalty_minor, grace "
                    f"FROM lending_accounts WHERE {closed}"
                ),
                p,
            )
            result = conn.execute(
                _sql(
                    "UPDATE lending_accounts SET "
                    f"stmt_date = :d, stmt_due_date = :due, stmt_balance_minor = {balance}, "
                    f"stmt_principal_minor = {stmt_principal}, stmt_paid_minor = 0, stmt_converted = 0, "
                    "interest_billed_minor = interest_billed_minor + interest_unbilled_minor, "
                    f"interest_unbilled_minor = 0, principal_billed_minor = principal_billed_minor + {new_row}, "
                    f"version = version + 1 WHERE {closed}"
                ),
                p,
            )
            rows += result.rowcount or 0
        return rows

    def _step_late_fees(
        self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]
    ) -> int:
        d = self.dialect
        charging = {code: p for code, p in products.items() if p.late_fee_minor > 0}
        if not charging:
            return 0
        latest_cutoff = day - timedelta(days=min(p.late_fee_grace_days for p in charging.values()))
        late_rows = (
            "billed_on IS NOT NULL AND settled_on IS NULL AND late_fee_on IS NULL AND due_date <= :cutoff "
            f"AND {unpaid_expr()} > :tol"
        )
        params = self._params(
            day, lo, hi, cutoff=latest_cutoff, tol=min(p.dpd_tolerance_minor for p in charging.values())
        )
        late = self._ids(
            conn,
            f"SELECT DISTINCT account_id FROM lending_instalments WHERE {late_rows} "
            "AND account_id >= :lo AND account_id < :hi",
            params,
        )
        by_product: dict[str, list[int]] = {}
        for account, product_code in self._active(conn, late):
            if product_code in charging:
                by_product.setdefault(product_code, []).append(account)
        rows = 0
        for product_code, ids in sorted(by_product.items()):
            product = charging[product_code]
            p = self._params(
                day,
                lo,
                hi,
                ids=d.ids(ids),
                fee=product.late_fee_minor,
                tol=product.dpd_tolerance_minor,
                cutoff=day - timedelta(days=product.late_fee_grace_days),
            )
            count = conn.execute(
                _sql(
                    "UPDATE lending_instalments SET fee_due = fee_due + :fee, late_fee_on = :d "
                    f"WHERE {late_rows} AND {d.in_ids('account_id')}"
                ),
                p,
            ).rowcount
            if not count:
                continue
            charged = (
                "SELECT account_id, COUNT(*) AS n FROM lending_instalments WHERE billed_on IS NOT NULL "
                f"AND settled_on IS NULL AND late_fee_on = :d AND {d.in_ids('account_id')} GROUP BY account_id"
            )
            conn.execute(
                _sql(
                    "UPDATE lending_accounts SET fees_minor = fees_minor + s.n * :fee, "
                    "fees_charged_minor = fees_charged_minor + s.n * :fee, version = version + 1 "
                    f"FROM ({charged}) AS s WHERE lending_accounts.id = s.account_id"
                ),
                p,
            )
            conn.execute(
                t.gl_pending.insert().values(
                    business_date=day,
                    step="late_fees",
                    chunk=chunk,
                    product_code=product.code,
                    currency=product.currency,
                    movement="late_fee",
                    amount_minor=int(count) * product.late_fee_minor,
                )
            )
            rows += int(count)
        return rows

    def _step_age(self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]) -> int:
        d = self.dialect
        params = self._params(day, lo, hi)
        due_rows = self._ids(
            conn,
            "SELECT DISTINCT account_id FROM lending_instalments WHERE billed_on IS NOT NULL AND settled_on IS NULL "
            "AND due_date <= :d AND account_id >= :lo AND account_id < :hi",
            params,
        )
        # a union in Python: an `OR id = ANY(…)` in the scan would test every row against the whole list
        delinquent = self._ids(
            conn,
            "SELECT id FROM lending_accounts WHERE id >= :lo AND id < :hi AND status = 'active' "
            "AND (past_due_since IS NOT NULL OR dpd > 0 OR last_paid_on > :d)",
            params,
        )
        candidates = sorted(set(delinquent) | set(due_rows))
        by_product: dict[str, list[int]] = {}
        for account, product_code in self._active(conn, candidates):
            by_product.setdefault(product_code, []).append(account)
        rows = 0
        for product_code, ids in sorted(by_product.items()):
            product = products[product_code]
            p = self._params(day, lo, hi, ids=d.ids(ids), tol=product.dpd_tolerance_minor, p=product_code)
            rows_of = "i.account_id = lending_accounts.id AND i.billed_on IS NOT NULL AND i.due_date <= :d"
            result = conn.execute(
                _sql(
                    "UPDATE lending_accounts SET "
                    f"past_due_since = (SELECT MIN(i.due_date) FROM lending_instalments i WHERE {rows_of} "
                    f"AND ((i.settled_on IS NULL AND {unpaid_expr('i.')} > :tol) OR i.settled_on > :d)), "
                    "overdue_principal_minor = (SELECT COALESCE(SUM(i.principal_due - i.principal_paid), 0) "
                    f"FROM lending_instalments i WHERE {rows_of} AND i.settled_on IS NULL), "
                    f"prev_bucket = bucket, aged_on = :d WHERE {d.in_ids('id')}"
                ),
                p,
            )
            rows += result.rowcount or 0
            days = d.days_between(":d1", "past_due_since")
            bucket = (
                "CASE "
                + " ".join(
                    f"WHEN {days} >= {bound} THEN {index}"
                    for index, bound in reversed(list(enumerate(product.buckets, start=1)))
                )
                + " ELSE 0 END"
            )
            conn.execute(
                _sql(
                    "UPDATE lending_accounts SET "
                    f"dpd = CASE WHEN past_due_since IS NULL THEN 0 ELSE {days} END, "
                    f"bucket = CASE WHEN past_due_since IS NULL THEN 0 ELSE {bucket} END, "
                    "first_delinquent_on = COALESCE(first_delinquent_on, past_due_since) "
                    f"WHERE {d.in_ids('id')}"
                ),
                p,
            )
            self._events(
                conn,
                day,
                "lending.days_past_due_changed",
                f"{d.in_ids('id')} AND bucket <> prev_bucket",
                {"account_id": "ref", "dpd": "dpd", "bucket": "bucket", "previous_bucket": "prev_bucket"},
                p,
            )
        return rows

    def _threshold(self, products: dict[str, Product], attribute: str) -> str:
        """`CASE product_code WHEN … THEN <the product's threshold> END`: one pass for every product."""
        whens = " ".join(f"WHEN '{code}' THEN {int(getattr(p, attribute))}" for code, p in sorted(products.items()))
        return f"(CASE product_code {whens} ELSE 2147483647 END)"

    def _step_non_accrual(
        self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]
    ) -> int:
        threshold = self._threshold(products, "non_accrual_dpd")
        result = conn.execute(
            _sql(
                f"UPDATE lending_accounts SET accruing = (CASE WHEN dpd >= {threshold} THEN 0 ELSE 1 END) "
                "WHERE id >= :lo AND id < :hi AND status = 'active' "
                f"AND accruing <> (CASE WHEN dpd >= {threshold} THEN 0 ELSE 1 END)"
            ),
            self._params(day, lo, hi),
        )
        return result.rowcount or 0

    def _step_charge_off(
        self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]
    ) -> int:
        d = self.dialect
        params = self._params(day, lo, hi, now=self.clock.now())
        reached = self._ids(
            conn,
            "SELECT id FROM lending_accounts WHERE id >= :lo AND id < :hi AND status = 'active' "
            f"AND dpd >= {self._threshold(products, 'charge_off_dpd')}",
            params,
        )
        ids = [account for account, _ in self._active(conn, reached)]
        if not ids:
            return 0
        params["ids"] = d.ids(ids)
        count = conn.execute(
            _sql(
                "UPDATE lending_accounts SET status = 'charged_off', charged_off_on = :d, accruing = 0, "
                "charged_off_principal_minor = principal_minor, "
                "charged_off_interest_minor = interest_unbilled_minor + interest_billed_minor, "
                "charged_off_fees_minor = fees_minor + penalty_minor, principal_minor = 0, "
                "principal_billed_minor = 0, overdue_principal_minor = 0, interest_unbilled_minor = 0, "
                "interest_billed_minor = 0, fees_minor = 0, penalty_minor = 0, converted_unbilled_minor = 0, "
                f"version = version + 1 WHERE {d.in_ids('id')}"
            ),
            params,
        ).rowcount
        done = d.in_ids("id")
        self._pending(
            conn,
            day,
            "charge_off",
            chunk,
            f"SELECT product_code, currency, 'charge_off_principal', SUM(charged_off_principal_minor) "
            f"FROM lending_accounts WHERE {done} GROUP BY product_code, currency UNION ALL "
            f"SELECT product_code, currency, 'charge_off_interest', SUM(charged_off_interest_minor) "
            f"FROM lending_accounts WHERE {done} GROUP BY product_code, currency UNION ALL "
            f"SELECT product_code, currency, 'charge_off_fees', SUM(charged_off_fees_minor) "
            f"FROM lending_accounts WHERE {done} GROUP BY product_code, currency",
            params,
        )
        empty = "'{}'::jsonb" if d.pg else "'{}'"
        conn.execute(
            _sql(
                "INSERT INTO lending_transactions (account_id, kind, business_date, reference, amount_minor, "
                "principal_minor, interest_minor, penalty_minor, fees_minor, credit_minor, ledger_key, details, "
                "created_at) SELECT id, 'charge_off', :d, 'eod', charged_off_principal_minor + "
                "charged_off_interest_minor + charged_off_fees_minor, charged_off_principal_minor, "
                f"charged_off_interest_minor, 0, charged_off_fees_minor, 0, NULL, {empty}, :now "
                f"FROM lending_accounts WHERE {done}"
            ),
            params,
        )
        # the rows not yet billed will never be: they close with the account
        conn.execute(
            _sql(
                "UPDATE lending_instalments SET billed_on = :d, settled_on = :d "
                f"WHERE billed_on IS NULL AND {d.in_ids('account_id')}"
            ),
            params,
        )
        self._events(
            conn,
            day,
            "lending.charged_off",
            done,
            {
                "account_id": "ref",
                "customer_id": "customer_id",
                "principal_minor": "charged_off_principal_minor",
                "interest_minor": "charged_off_interest_minor",
                "fees_minor": "charged_off_fees_minor",
                "currency": "currency",
            },
            params,
        )
        return int(count or 0)

    def _step_snapshot(
        self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]
    ) -> int:
        month_start = day.replace(day=1)
        past_due = (
            f"(CASE WHEN past_due_since IS NULL THEN 0 ELSE (SELECT COALESCE(SUM({unpaid_expr('i.')}), 0) "
            "FROM lending_instalments i WHERE i.account_id = lending_accounts.id AND i.billed_on IS NOT NULL "
            "AND i.settled_on IS NULL AND i.due_date <= :d) + penalty_minor END)"
        )
        result = conn.execute(
            _sql(
                "INSERT INTO lending_account_months (month_end, account_id, ref, customer_id, product_code, kind, "
                "currency, opened_on, limit_minor, original_principal_minor, balance_minor, principal_minor, "
                "past_due_minor, dpd, bucket, status, first_delinquent_on, charged_off_minor, recovered_minor, "
                "funding) SELECT :d, id, ref, customer_id, product_code, kind, currency, opened_on, limit_minor, "
                "original_principal_minor, principal_minor + interest_unbilled_minor + interest_billed_minor + "
                f"fees_minor + penalty_minor, principal_minor, {past_due}, dpd, bucket, status, first_delinquent_on, "
                "charged_off_principal_minor + charged_off_interest_minor + charged_off_fees_minor, recovered_minor, "
                "funding FROM lending_accounts WHERE id >= :lo AND id < :hi AND opened_on <= :d "
                "AND (closed_on IS NULL OR closed_on >= :ms)"
            ),
            self._params(day, lo, hi, ms=month_start),
        )
        return result.rowcount or 0

    def _step_post_gl(
        self, conn: Connection, day: date, chunk: int, lo: int, hi: int, products: dict[str, Product]
    ) -> int:
        g = t.gl_pending.c
        totals = conn.execute(
            sa.select(g.product_code, g.movement, sa.func.sum(g.amount_minor))
            .where(g.business_date == day, g.posted == 0)
            .group_by(g.product_code, g.movement)
            .order_by(g.product_code, g.movement)
        ).all()
        by_product: dict[str, dict[str, int]] = {}
        for product_code, movement, amount in totals:
            by_product.setdefault(product_code, {})[movement] = int(amount)
        entries = []
        for product_code, movements in sorted(by_product.items()):
            entry = gl.eod_entry(
                self.gl_accounts(product_code),
                day.isoformat(),
                movements,
                f"lending:eod:{day.isoformat()}:{product_code}",
            )
            if entry is not None:
                entries.append(entry)
        if entries:
            results = self.ledger.post_in_transaction(conn, entries)
            refused = [r for r in results if not r.ok]
            if refused:
                raise LedgerRefused(f"the ledger refused the end-of-day entries: {refused[0].error_code}")
        conn.execute(sa.update(t.gl_pending).where(g.business_date == day).values(posted=1))
        return len(entries)


def _units(
    day: date,
    chunks: list[tuple[int, int, int]],
    done: set[Any],
    timings: dict[str, StepTiming],
    *,
    together: bool = False,
) -> list[list[tuple[str, int, int, int]]]:
    """The transactions of a run: lists of (step, chunk, lo, hi) not journaled yet (`done`: (step, chunk)s
    journaled; counted as skipped in `timings`). A book of one chunk takes its steps together, a transaction
    ending after each step that takes a commit counter (`together`: never); a larger book runs each chunk of
    each step alone. Never empty: the last transaction also marks the run complete."""
    units: list[list[tuple[str, int, int, int]]] = []
    for step in STEPS:
        if step == "post_gl":
            plan: list[tuple[int, int, int]] = [(0, 0, 0)]
        elif step == "snapshot" and (day + timedelta(days=1)).month == day.month:
            plan = []
        else:
            plan = chunks
        for chunk, lo, hi in plan:
            if (step, chunk) in done:
                if step in timings:
                    timings[step].skipped += 1
                continue
            if len(chunks) == 1 and units and (together or units[-1][-1][0] not in _COUNTER_STEPS):
                units[-1].append((step, chunk, lo, hi))
            else:
                units.append([(step, chunk, lo, hi)])
    return units or [[]]


def _chunks(max_id: int, size: int) -> Iterator[tuple[int, int, int]]:
    chunk = 0
    lo = 1
    while lo <= max(max_id, 1):
        yield chunk, lo, lo + size
        lo += size
        chunk += 1


def month_end(day: date) -> date:
    return add_months(day.replace(day=1), 1) - timedelta(days=1)
