"""Fixtures: a migrated database per test on SQLite and on PostgreSQL, a platform, an HTTP client.

PostgreSQL tests need a server (CREDITSTACK_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/test).
Without one they skip with a message — except in CI (CI=true), where they must run and a missing
server fails the run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from creditstack.app.platform import Platform, open_platform
from creditstack.core import migrate
from creditstack.core.clock import FixedClock
from creditstack.core.settings import Settings

PG_ADMIN_URL = os.environ.get("CREDITSTACK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, a Monday


def _pg_admin():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(
        PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=3
    )


def _pg_available() -> str | None:
    try:
        with _pg_admin() as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _url_for(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    problem = _pg_available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({problem}); PostgreSQL tests skipped")
    name = f"cs_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate.upgrade(_url_for(name))
    yield name
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    name = f"cs_t_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _url_for(name)
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "platform.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "platform.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


FreshDatabase = Callable[[], AbstractContextManager[tuple[str, Path]]]


@pytest.fixture(scope="session")
def fresh_sqlite(sqlite_template: Path) -> FreshDatabase:
    """A factory of fresh migrated SQLite databases, for tests that need one per example (hypothesis):
    `with fresh_sqlite() as (url, directory): ...`; the files go when the block ends."""

    @contextmanager
    def fresh() -> Iterator[tuple[str, Path]]:
        directory = Path(tempfile.mkdtemp(prefix="cs_fresh_"))
        try:
            shutil.copy(sqlite_template, directory / "platform.db")
            yield f"sqlite:///{directory / 'platform.db'}", directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    return fresh


@pytest.fixture(scope="session")
def fresh_pg(pg_template: str) -> FreshDatabase:
    """The same on PostgreSQL: a database created from the migrated template, dropped when the block ends."""

    @contextmanager
    def fresh() -> Iterator[tuple[str, Path]]:
        name = f"cs_fresh_{uuid.uuid4().hex[:12]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        directory = Path(tempfile.mkdtemp(prefix="cs_fresh_"))
        try:
            yield _url_for(name), directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            with _pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return fresh


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def platform(db_url: str, clock: FixedClock, tmp_path: Path) -> Iterator[Platform]:
    settings = Settings(database_url=db_url, var_dir=tmp_path)
    p = open_platform(settings, clock, migrate_schema=False)
    yield p
    p.close()
