"""Repayments in batches are the single path, in bulk: `LendingService.repay_batch` against `repay` called
once per request in the same order, on twin copies of one lending book (SQLite and PostgreSQL).

The book: four instalment loans and three credit lines (`_lending_book`), one loan of a product that holds
an excess as a credit, and a credit line of the same borrower paid from the same wallet; end of day run to
2026-04-05 (instalments billed, some past due); before the copy, one repayment stored and one loan paid off.
Then each twin gets the same requests, and the answers (status, body, replayed — or the error: type, code,
message, field), the accounts and instalments, lending transactions, journal entries and postings in order,
outbox events in order, stored outcomes, ledger balances and the reconcile report are the same.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from creditstack.app.platform import Platform
from creditstack.core import business_date
from creditstack.core.clock import FixedClock
from creditstack.core.errors import LimitExceeded
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.service import SERVICE
from creditstack.lending.repayments import REPAY_BATCH_MAX, Repayment

HERE = Path(__file__).resolve().parent
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
MEMBER = "book"  # the book's member: the keys stored while building share its namespace


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"creditstack_test_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


twins = _load("_lending_twins")
Refs = twins.Refs
build_base = twins.build_base


Prepare = Callable[[Platform, Refs], None]


def compare(
    db_url: str, tmp_path: Path, requests: Callable[[Refs], list[Repayment]], prepare: Prepare | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """Build the base book, then compare the two paths on copies of it (`_lending_twins.compare`)."""
    clock = FixedClock(START)
    base = twins.open_book(db_url, tmp_path / "base", clock)
    try:
        refs = build_base(base)
        if prepare is not None:
            prepare(base, refs)
    finally:
        base.close()
    return twins.compare(db_url, tmp_path, tmp_path / "base", clock.now(), [requests(refs)])


def _codes(answers: list[Any]) -> list[Any]:
    return [a[2] if a[0] == "error" else (a[0], a[2]) for a in answers]


def test_a_batch_answers_and_writes_as_the_requests_one_by_one(db_url: str, tmp_path: Path) -> None:
    def requests(r: Refs) -> list[Repayment]:
        return [
            Repayment("b1", r.loans[0], 30_000),
            Repayment("pre-1", r.loans[0], 5_000),  # stored before the batch: a replay
            Repayment("pre-1", r.loans[0], 6_000),  # ... with another request: key reused
            Repayment("b2", r.loans[1], 10_000, "external"),
            Repayment("b3", r.lines[0], 15_000),
            Repayment("b4", "lac_nosuchaccount", 15_000),
            Repayment("b5", r.loans[3], 1_000),  # paid off before: not active
            Repayment("b6", r.hold_loan, r.hold_payoff_minor),  # pays the loan off (its unbilled rows go)
            Repayment("b16", r.hold_loan, 1_000),  # closed a moment ago
            Repayment("b7", r.shared_line, 400_000),  # the same wallet, 300,000 left: short
            Repayment("b7", r.shared_line, 40_000, "external"),  # the key stored nothing: runs afresh
            Repayment("b1", r.loans[0], 30_000),  # used earlier in this batch: a replay
            Repayment("b8", r.loans[2], 150_000),  # a prepayment that re-amortises: the single path
            Repayment("b9", r.loans[2], 1_000),  # ... and the account after it
            Repayment("b10", r.lines[1], 5_000),
            Repayment("b11", r.lines[1], 7_000, "external"),  # the same account twice
            Repayment("b12", r.lines[2], 0),  # refused before it runs
            Repayment("bad key", r.lines[2], 100),
            Repayment("b13", r.lines[2], 100, "cash"),
            Repayment("b14", r.lines[2], 2_500_000),  # more than the wallet holds
            Repayment("b15", r.lines[2], 2_000),
        ]

    answers, state = compare(db_url, tmp_path, requests)
    assert _codes(answers) == [
        (201, False),
        (201, True),
        "idempotency.key_reused",
        (201, False),
        (201, False),
        "lending.account_not_found",
        "lending.account_not_active",
        (201, False),
        "lending.account_not_active",
        "lending.insufficient_funds",
        (201, False),
        (201, True),
        (201, False),
        (201, False),
        (201, False),
        (201, False),
        "lending.invalid_repayment",
        "idempotency.invalid_key",
        "lending.invalid_repayment",
        "lending.insufficient_funds",
        (201, False),
    ]
    assert answers[7][1]["account"]["status"] == "closed"
    assert state["reconcile"]["clean"] and state["audit_clean"]


def _behind(platform: Platform, refs: Refs) -> None:
    """The business date rolled without end of day: every account has a day's accrual (and billing) to
    catch up with before it takes a repayment."""

    def work(conn: sa.Connection) -> None:
        today = business_date.current(conn, PLATFORM_CORE, SERVICE)
        business_date.advance(conn, PLATFORM_CORE, SERVICE, today + timedelta(days=1), platform.clock.now())

    platform.db.run(work)


def test_accounts_end_of_day_has_not_reached_go_through_the_single_path(db_url: str, tmp_path: Path) -> None:
    def requests(r: Refs) -> list[Repayment]:
        return [
            Repayment("c1", r.loans[0], 30_000),
            Repayment("c2", r.lines[0], 15_000),
            Repayment("c3", r.loans[0], 2_000, "external"),
            Repayment("c4", r.loans[3], 2_000),
        ]

    answers, _ = compare(db_url, tmp_path, requests, _behind)
    assert _codes(answers) == [(201, False), (201, False), (201, False), "lending.account_not_active"]


def _charge_off(platform: Platform, refs: Refs) -> None:
    platform.db.run(
        lambda conn: conn.execute(
            sa.text("UPDATE lending_accounts SET status = 'charged_off' WHERE ref = :ref"), {"ref": refs.lines[2]}
        )
    )


def test_a_charged_off_account_is_refused_as_an_error(db_url: str, tmp_path: Path) -> None:
    def requests(r: Refs) -> list[Repayment]:
        return [Repayment("d1", r.lines[2], 1_000), Repayment("d2", r.lines[1], 1_000)]

    answers, _ = compare(db_url, tmp_path, requests, _charge_off)
    assert _codes(answers) == ["lending.account_not_active", (201, False)]
    assert "charged_off" in answers[0][3]


def test_a_batch_over_the_bound_is_refused_whole(platform: Platform) -> None:
    requests = [Repayment(f"k{n}", "lac_x", 100) for n in range(REPAY_BATCH_MAX + 1)]
    with pytest.raises(LimitExceeded):
        platform.lending.repay_batch(requests, member=MEMBER)
    assert platform.lending.repay_batch([], member=MEMBER) == []
