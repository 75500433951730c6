"""Database plumbing: one `MetaData` per service database, engines, transactions with retry, unit of work.

SQLite is the embedded default (WAL, synchronous=FULL, foreign keys on, writers take `BEGIN IMMEDIATE`
so that a read-then-write never upgrades a lock mid-transaction); PostgreSQL is production (psycopg 3,
READ COMMITTED with explicit row locks taken in a fixed order). A transaction that loses a deadlock or
serialisation race, or finds SQLite busy, is retried a bounded number of times.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The platform service's database: ledger, payments, lending, co-lending, scoring.
PLATFORM_METADATA = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: How many times a transaction that lost a race is tried again before the error surfaces.
TRANSACTION_RETRIES_MAX = 8
#: SQLite waits this long for the write lock before reporting busy.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite's page cache per connection, KiB (its default is 2 MiB: a book of millions of rows then reads most
#: index pages of every insert back from the operating system). Pages are allocated as they are used.
SQLITE_CACHE_KIB = 256 * 1024

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` and use the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _is_retryable(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in {"40001", "40P01", "55P03"}:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text


class Database:
    """An engine for one service database plus the transaction helpers every repository uses."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.is_postgres = self.url.startswith("postgresql")
        self._sqlite_writer = (
            threading.RLock()
        )  # re-entrant: a nested writer fails on SQLite's busy timeout, never hangs
        self._batch = threading.local()  # the open batch's connection, per thread
        if self.is_sqlite:
            self.engine: Engine = sa.create_engine(
                self.url,
                echo=echo,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                pool_size=pool_size,
                max_overflow=pool_size * 2,
            )
            _install_sqlite_hooks(self.engine)
        else:
            # JIT compilation costs more than it saves on these short statements (measured: 325 of 480 ms of
            # an end-of-day chunk); the set-based passes are index-driven and need no JIT either.
            self.engine = sa.create_engine(
                self.url,
                echo=echo,
                pool_size=pool_size,
                max_overflow=pool_size * 2,
                pool_pre_ping=True,
                connect_args={"options": "-c jit=off"},
            )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Connection]:
        """One transaction: committed when the block ends normally, rolled back on any exception.

        SQLite admits one writer at a time; writers of this process queue on a lock here instead of
        polling SQLite's busy handler, whose growing sleeps made the latency tail (seconds under load).
        Inside `batch()` (same thread) it is a savepoint of the batch's transaction instead.
        """
        shared: Connection | None = getattr(self._batch, "conn", None)
        if shared is not None:
            if readonly and self.is_sqlite:
                # A read has nothing to roll back, and on SQLite a failed statement leaves the transaction
                # usable: no savepoint (two statements saved per read). PostgreSQL aborts the whole
                # transaction on any error, so there a read keeps its savepoint and the batch survives it.
                yield shared
                return
            with shared.begin_nested():
                yield shared
            return
        if self.is_sqlite and not readonly:
            with self._sqlite_writer, self.engine.connect() as raw, raw.begin():
                yield raw
            return
        with self.engine.connect() as raw:
            conn = raw.execution_options(creditstack_readonly=True) if readonly else raw
            with conn.begin():
                yield conn

    @contextmanager
    def batch(self) -> Iterator[Connection]:
        """Group commit for one caller: every transaction this thread opens inside the block (through
        `run` or `transaction`, in any service on this database) becomes a savepoint of one transaction,
        committed once at the end — one fsync for a whole batch of service operations instead of one each.

        A unit of work that raises is rolled back to its savepoint alone and its error goes to its caller
        as usual; the others stand. If the block itself raises, the whole batch is rolled back. Lost races
        are not retried inside a batch (the batch holds its locks to the end): they surface to the caller.
        Only this thread's work joins; other threads keep their own transactions (on SQLite they wait for
        the batch to commit). Batches do not nest. Read-only work (`readonly=True`) inside a batch runs on
        the batch's connection without a savepoint on SQLite: it has nothing to roll back.
        """
        if getattr(self._batch, "conn", None) is not None:
            raise RuntimeError("a batch is already open in this thread")
        with self.transaction() as conn:
            self._batch.conn = conn
            try:
                yield conn
            finally:
                self._batch.conn = None

    @property
    def in_batch(self) -> bool:
        return getattr(self._batch, "conn", None) is not None

    def run(self, work: Callable[[Connection], T], *, readonly: bool = False) -> T:
        """Run `work` in a transaction, retrying lost races (deadlock, serialisation, SQLite busy)."""
        if self.in_batch:
            with self.transaction(readonly=readonly) as conn:
                return work(conn)
        attempt = 0
        while True:
            try:
                with self.transaction(readonly=readonly) as conn:
                    return work(conn)
            except (sa.exc.DBAPIError, psycopg.Error, sqlite3.Error) as exc:
                # Raw-driver fast paths (COPY, executemany) raise the driver's own errors, unwrapped.
                attempt += 1
                if attempt >= TRANSACTION_RETRIES_MAX or not _is_retryable(exc):
                    raise
                time.sleep(random.uniform(0, 0.002 * 2**attempt))

    def dispose(self) -> None:
        self.engine.dispose()


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("creditstack_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def driver_connection(conn: Connection) -> Any:
    """The DB-API connection under an SQLAlchemy connection, for COPY and executemany fast paths."""
    return conn.connection.driver_connection
