"""Twin lending books for comparing the batch repayment path with the single one (a helper module, never
collected): one database built through the services, copied (SQLite file, PostgreSQL template), so that the
two copies hold the same ids; then the same repayments, one by one through `repay` on one copy and through
`repay_batch` on the other; then the same state, row for row, in the same order."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.errors import CreditstackError
from creditstack.core.settings import Settings
from creditstack.lending import tables as lt
from creditstack.lending.products import ExcessHandling
from creditstack.lending.repayments import Repayment
from creditstack.lending.service import LendingResult

MEMBER = "book"  # the book's member: the keys stored while building share its namespace
HERE = Path(__file__).resolve().parent


def _books() -> ModuleType:
    name = "creditstack_test__lending_book"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, HERE / "_lending_book.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class Refs:
    loans: list[str]
    lines: list[str]
    hold_loan: str
    shared_line: str  # the hold loan's borrower's line: the same wallet
    hold_payoff_minor: int


def build_base(platform: Platform) -> Refs:
    lending = platform.lending
    book = _books().build(platform, loans=4, lines=3, tag="rb")
    cash = lending.product("cash-cny")
    lending.register_product(dataclasses.replace(cash, code="cash-hold-cny", excess=ExcessHandling.CREDIT))
    customer, wallet = _books().consumer(platform, 50, "rb", 300_000)
    refs = []
    for n, (product, amount, term) in enumerate([("cash-hold-cny", 200_000, 6), ("line-cny", 150_000, None)]):
        applied = lending.apply(
            member=MEMBER,
            key=f"shared-app-{n}",
            customer_id=customer,
            wallet_id=wallet,
            product_code=product,
            amount_minor=amount,
            term_months=term,
        )
        assert applied.status_code == 201, applied.body
        accepted = lending.accept(member=MEMBER, key=f"shared-acc-{n}", application_id=applied.body["application_id"])
        assert accepted.status_code == 201, accepted.body
        refs.append(accepted.body["account_id"])
    book.wallets[refs[1]] = wallet
    assert _books().draw(platform, book, refs[1], 60_000, "shared")
    while platform.ledger.business_date() < date(2026, 4, 5):
        lending.eod.run()
    paid = lending.repay(member=MEMBER, key="pre-1", account_id=book.loans[0], amount_minor=5_000)
    assert paid.status_code == 201
    payoff = lending.payoff_quote(book.loans[3])["total"]["amount_minor"]
    closed = lending.repay(member=MEMBER, key="pre-2", account_id=book.loans[3], amount_minor=payoff)
    assert closed.body["account"]["status"] == "closed"
    hold_payoff = lending.payoff_quote(refs[0])["total"]["amount_minor"]
    return Refs(book.loans, book.lines, refs[0], refs[1], hold_payoff)


def open_book(url: str, var_dir: Path, clock: FixedClock) -> Platform:
    return open_platform(Settings(database_url=url, var_dir=var_dir), clock, migrate_schema=False)


def copy_database(url: str, directory: Path, name: str) -> str:
    """A copy of a closed database: the SQLite file, or a PostgreSQL database made from it as a template."""
    if url.startswith("sqlite:///"):
        source = Path(url.removeprefix("sqlite:///"))
        target = directory / f"{name}.db"
        for suffix in ("", "-wal"):
            if Path(f"{source}{suffix}").exists():
                shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
        return f"sqlite:///{target}"
    import psycopg

    base, _, source_name = url.rpartition("/")
    target_name = f"cs_twin_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{base}/postgres".replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{target_name}" TEMPLATE "{source_name}"')
    return f"{base}/{target_name}"


def drop_database(url: str) -> None:
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{url.removeprefix('sqlite:///')}{suffix}").unlink(missing_ok=True)
    elif url.startswith("postgresql"):
        import psycopg

        base, _, name = url.rpartition("/")
        with psycopg.connect(f"{base}/postgres".replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


Answer = tuple[Any, ...]


def _scrub(value: Any, ids: dict[str, str]) -> Any:
    """Generated repayment ids (random) replaced by their order of appearance."""
    if isinstance(value, dict):
        return {k: _scrub(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, ids) for v in value]
    if isinstance(value, str) and value.startswith("rep_"):
        return ids.setdefault(value, f"rep#{len(ids)}")
    return value


def one_by_one(platform: Platform, requests: Sequence[Repayment], member: str) -> list[Answer]:
    """The single path's answers, each as (status, body, replayed) or ("error", type, code, message, field)."""
    answers: list[Answer] = []
    for r in requests:
        try:
            result = platform.lending.repay(
                member=member, key=r.key, account_id=r.account_id, amount_minor=r.amount_minor, source=r.source
            )
        except CreditstackError as exc:
            answers.append(("error", type(exc).__name__, exc.code, str(exc), exc.to_dict().get("field")))
            continue
        answers.append((result.status_code, result.body, result.replayed))
    return answers


def as_answers(results: Sequence[LendingResult]) -> list[Answer]:
    answers: list[Answer] = []
    for result in results:
        if result.error is not None:
            exc = result.error
            assert result.status_code == exc.http_status and result.body == {"error": exc.to_dict()}
            answers.append(("error", type(exc).__name__, exc.code, str(exc), exc.to_dict().get("field")))
        else:
            answers.append((result.status_code, result.body, result.replayed))
    return answers


def scrubbed(answers: Sequence[Answer]) -> list[Answer]:
    ids: dict[str, str] = {}
    return [_scrub(list(a), ids) for a in answers]


def _json(value: Any) -> Any:
    """A JSON column as read on SQLite (text) or PostgreSQL (decoded)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        return json.loads(value)
    return value


def state(platform: Platform) -> dict[str, Any]:
    """Everything a repayment writes, in the order it was written: accounts and instalments, lending
    transactions, journal entries with their postings, outbox events, stored outcomes; and the reconcile."""

    def work(conn: sa.Connection) -> dict[str, Any]:
        ids: dict[str, str] = {}
        accounts = [dict(r._mapping) for r in conn.execute(sa.select(lt.accounts).order_by(lt.accounts.c.id))]
        instalments = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(lt.instalments).order_by(lt.instalments.c.account_id, lt.instalments.c.number)
            )
        ]
        transactions = [
            _scrub({k: _json(v) for k, v in r._mapping.items()}, ids)
            for r in conn.execute(sa.select(lt.transactions).order_by(lt.transactions.c.id))
        ]
        entries = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    "SELECT seq, member, idempotency_key, kind, business_date, committed_at, description, metadata "
                    "FROM ledger_entries ORDER BY seq"
                )
            )
        ]
        postings = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    "SELECT entry_seq, leg, account_id, side, amount_minor, currency FROM ledger_postings "
                    "ORDER BY entry_seq, leg"
                )
            )
        ]
        outbox = [
            _scrub({k: _json(v) for k, v in r._mapping.items()}, ids)
            for r in conn.execute(
                sa.text("SELECT position, topic, aggregate_id, business_date, payload FROM outbox ORDER BY position")
            )
        ]
        keys = [
            _scrub({k: _json(v) for k, v in r._mapping.items()}, ids)
            for r in conn.execute(
                sa.text(
                    "SELECT member, key, request_hash, operation, status_code, outcome FROM idempotency_keys "
                    "ORDER BY member, key"
                )
            )
        ]
        balances = [
            dict(r._mapping)
            for r in conn.execute(
                sa.text(
                    "SELECT a.id, a.debits_posted + COALESCE(SUM(d.debits_posted), 0) AS debits, "
                    "a.credits_posted + COALESCE(SUM(d.credits_posted), 0) AS credits FROM ledger_accounts a "
                    "LEFT JOIN ledger_balance_deltas d ON d.account_id = a.id "
                    "GROUP BY a.id, a.debits_posted, a.credits_posted ORDER BY a.id"
                )
            )
        ]
        return {
            "accounts": accounts,
            "instalments": instalments,
            "transactions": transactions,
            "entries": entries,
            "postings": postings,
            "outbox": outbox,
            "keys": keys,
            "ledger_balances": balances,
        }

    found = platform.db.run(work, readonly=True)
    found["audit_clean"] = platform.ledger.audit().clean
    found["reconcile"] = platform.lending.reconcile()
    return found


def compare(
    base_url: str, directory: Path, var_dir: Path, now: datetime, batches: Sequence[Sequence[Repayment]]
) -> tuple[list[Answer], dict[str, Any]]:
    """Copy the (closed) base database twice; send the batches one request at a time through `repay` on one
    copy and each as one `repay_batch` on the other; assert the answers and the states are the same, drop
    the copies and return the answers and the state."""
    tag = uuid.uuid4().hex[:8]
    urls = [copy_database(base_url, directory, f"{name}-{tag}") for name in ("single", "batch")]
    try:
        outcomes = []
        for url, batched in zip(urls, (False, True), strict=True):
            platform = open_book(url, var_dir, FixedClock(now))  # the same var_dir: the same vault keys
            try:
                answers: list[Answer] = []
                for batch in batches:
                    if batched:
                        answers += as_answers(platform.lending.repay_batch(batch, member=MEMBER))
                    else:
                        answers += one_by_one(platform, batch, MEMBER)
                outcomes.append((scrubbed(answers), state(platform)))
            finally:
                platform.close()
    finally:
        for url in urls:
            drop_database(url)
    (single_answers, single_state), (batch_answers, batch_state) = outcomes
    assert batch_answers == single_answers
    for part in single_state:
        assert batch_state[part] == single_state[part], part
    return single_answers, single_state
