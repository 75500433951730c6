"""Repayments in batches are the single path, in bulk: random mixes through `LendingService.repay_batch`
against `repay` one by one, on twin copies of one lending book (SQLite).

The book (`tests/integration/_lending_twins.build_base`, built once): instalment loans, credit lines, a loan
that holds an excess as a credit and a line paid from the same wallet, end of day run to 2026-04-05, a
stored repayment and a paid-off loan. Hypothesis draws one or two batches from small pools so that they
collide: seven keys (one malformed, one stored before), every account plus an unknown one, amounts from one
minor unit to more than any wallet holds (and zero), wallet and external sources (and an unknown one);
sometimes with the business date rolled past end of day (every account behind). Each example copies the
book twice; then the answers and every row the repayments write are the same, in the same order.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditstack.core import business_date
from creditstack.core.clock import FixedClock
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.service import SERVICE
from creditstack.lending.repayments import Repayment

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
INTEGRATION = Path(__file__).resolve().parents[1] / "integration"


def _load_twins() -> Any:
    name = "creditstack_test__lending_twins"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, INTEGRATION / "_lending_twins.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


twins = _load_twins()

# (account index into `Base.accounts`, amount, source, key)
requests = st.tuples(
    st.integers(0, 9),
    st.one_of(
        st.integers(1, 3_000),
        st.integers(3_000, 60_000),
        st.sampled_from([0, 150_000, 400_000, 2_500_000]),
    ),
    st.sampled_from(["wallet", "wallet", "external", "cash"]),
    st.sampled_from(["k1", "k2", "k3", "k4", "k5", "pre-1", "bad key"]),
)
programs = st.lists(st.lists(requests, min_size=1, max_size=12), min_size=1, max_size=2)


class Base:
    def __init__(self, url: str, var_dir: Path, behind: bool) -> None:
        self.url, self.var_dir = url, var_dir
        clock = FixedClock(START)
        platform = twins.open_book(url, var_dir, clock)
        try:
            refs = twins.build_base(platform)
            if behind:

                def roll(conn: sa.Connection) -> None:
                    today = business_date.current(conn, PLATFORM_CORE, SERVICE)
                    business_date.advance(conn, PLATFORM_CORE, SERVICE, today + timedelta(days=1), clock.now())

                platform.db.run(roll)
        finally:
            platform.close()
        self.now = clock.now()
        # loans (the fourth paid off), lines, the credit-holding loan and the line sharing its wallet, unknown
        self.accounts = [*refs.loans, *refs.lines, refs.hold_loan, refs.shared_line, "lac_nosuchaccount"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> dict[bool, Base]:
    import shutil

    found = {}
    for behind in (False, True):
        directory = tmp_path_factory.mktemp(f"repay-batch-{behind}")
        shutil.copy(sqlite_template, directory / "platform.db")
        found[behind] = Base(f"sqlite:///{directory / 'platform.db'}", directory, behind)
    return found


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=programs, behind=st.booleans())
def test_random_batches_answer_and_write_as_the_requests_one_by_one(
    bases: dict[bool, Base], program: Any, behind: bool
) -> None:
    base = bases[behind]
    batches = [
        [Repayment(key, base.accounts[account], amount, source) for account, amount, source, key in batch]
        for batch in program
    ]
    twins.compare(base.url, base.var_dir, base.var_dir, base.now, batches)
