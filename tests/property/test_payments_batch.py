"""The batch path is the single path, in bulk: `PaymentsService.submit_batch` against the single methods.

Hypothesis draws one or two batches of random requests — merchant payments (three merchants: 60 bps, a fee
of the whole amount, no fee), credit-line merchant payments (a test `FundingSource` with a running limit,
and a source that is not registered), bill payments (valid and invalid references, with and without a due
date), transfers (also to oneself, from a merchant that is paid earlier in the same batch) and top-ups
(the rail settles, rejects, times out or answers late, by amount) — over wallets of KYC tiers 1–3 with small
limits and balances, a frozen, a closed, an unknown and a USD wallet, with zero, negative, over-limit and
over-balance amounts; keys are new, repeated with the same request, reused with another request, stored by
the earlier batch, or malformed.

The same world is built once per database kind and copied for each example, twice: one copy gets the
batches through `submit_batch`, the other the same requests one by one through `pay_merchant` / `pay_bill` /
`transfer` / `top_up` (an error they raise counts as `(status, {"error": ...})`, which is what the batch
answers for it). Then, with generated ids (payments, end-to-end ids) replaced by their order of first
appearance:
- every answer (status code, body, replayed flag) is the same, in order — entry sequence numbers included;
- every wallet's balance, available and held, and the house and credit-line accounts, are the same;
  `audit()` is clean on both and the journal positions agree;
- the limit-usage rows, the outbox (topic and payload, in position order), the payment rows and the
  stored idempotency outcomes are the same; the credit line drew the same total.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditstack.app.platform import Platform, open_platform
from creditstack.core.clock import FixedClock
from creditstack.core.errors import BusinessRuleViolated, CreditstackError
from creditstack.core.events import DomainEvent
from creditstack.core.money import CNY, USD, Money
from creditstack.core.security import PiiVault
from creditstack.core.settings import Settings
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger.domain import transfer
from creditstack.payments import tables as pt
from creditstack.payments.domain import (
    DEFAULT_TIERS,
    BillPayment,
    FundingLeg,
    MerchantPayment,
    PaymentRequest,
    RailInstruction,
    TierLimits,
    TopUp,
    Transfer,
)
from creditstack.payments.rail import SimulatedRail

PG_ADMIN_URL = os.environ.get("CREDITSTACK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
VAULT = PiiVault.generate()
MEMBER = "batchprop"
SETUP = "setup"
TIERS = {
    1: TierLimits(1, 60_000, 100_000, 250_000, 4),
    2: TierLimits(2, 150_000, 200_000, 600_000, 8),
    3: DEFAULT_TIERS[3],
}
LINE = "test_line"
LINE_LIMIT_MINOR = 60_000
#: name -> (customer, tier or merchant fee, funding)
CONSUMERS = {"c1": (1, 40_000), "c2": (2, 120_000), "c3": (3, 300_000), "cf": (3, 50_000), "cx": (1, 0)}
MERCHANTS = {"m60": 60, "mall": 10_000, "m0": 0}
WALLETS = [*CONSUMERS, *MERCHANTS, "b", "usd", "nope"]
PAYERS = ["c1", "c2", "c3", "c3", "c2", "cf", "cx", "m60", "usd", "nope"]
PAYEES = ["m60", "mall", "m0", "m60", "b", "c1", "c2", "c3", "cf", "usd", "nope"]


class LineOverLimit(BusinessRuleViolated):
    """The test credit line's limit is exceeded."""

    code = "test.line_over_limit"


class CreditLine:
    """A `FundingSource` with a running limit; each draw also writes an event with the payment's. A draw of a
    multiple of 5 is paid from a credit held, as lending's line does: the source posts its own journal entry
    in the payment's transaction (before the payment's) and the draw does not count against the limit."""

    name = LINE

    def __init__(self, platform: Platform) -> None:
        self.ledger = platform.ledger
        line = platform.ledger.ensure_account(member="test", code="test:line", currency="CNY", type="asset")
        credits = platform.ledger.ensure_account(member="test", code="test:credits", currency="CNY", type="asset")
        self.account_id, self.credits_id = line.id, credits.id
        self.drawn_minor = 0

    def reserve(
        self, transaction: Any, *, customer_id: str, amount_minor: int, currency: str, payment_id: str
    ) -> FundingLeg:
        assert transaction is not None
        drawn = DomainEvent("test.line_drawn", payment_id, START.date(), {"payment_id": payment_id})
        if amount_minor % 5 == 0:
            key = f"test:credit:{payment_id}"
            entry = transfer("test", key, self.credits_id, self.account_id, amount_minor, currency)
            [posted] = self.ledger.post_in_transaction(transaction, [entry])
            assert posted.ok, posted
            return FundingLeg(self.account_id, customer_id, (drawn,))
        if self.drawn_minor + amount_minor > LINE_LIMIT_MINOR:
            raise LineOverLimit(f"line limit {LINE_LIMIT_MINOR} exceeded")
        self.drawn_minor += amount_minor
        return FundingLeg(self.account_id, customer_id, (drawn,))

    def refunded(self, transaction: Any, *, payment_id: str, amount_minor: int, currency: str) -> FundingLeg:
        raise NotImplementedError


def rail_behaviour(instruction: RailInstruction) -> str:
    """What the bank does with a top-up, by amount: the same in both worlds (ids differ, amounts do not).
    The setup's own top-ups settle."""
    if instruction.account_reference == "tok-setup":
        return "settle"
    return {1: "reject", 2: "timeout_settle", 3: "late"}.get(instruction.amount_minor % 7, "settle")


# ================================================================ one world


@dataclass
class World:
    platform: Platform
    line: CreditLine
    ids: dict[str, str]

    @property
    def pay(self) -> Any:
        return self.platform.payments


def open_world(url: str, directory: Path, ids: dict[str, str] | None = None) -> World:
    """A platform on a database (a copy of the built world, or a fresh one for `build_world`)."""
    rail = SimulatedRail(behaviour=rail_behaviour)
    platform = open_platform(
        Settings(database_url=url, var_dir=directory), FixedClock(START), migrate_schema=False, rail=rail, vault=VAULT
    )
    rail.business_date = platform.ledger.business_date
    platform.payments.tiers = dict(TIERS)
    line = CreditLine(platform)
    platform.payments.register_funding_source(line)
    platform.payments.ensure_house_accounts("CNY")
    return World(platform, line, dict(ids or {}))


def build_world(url: str, directory: Path) -> dict[str, str]:
    """Customers, wallets (keyed, so their ids are the same in every world), funding, a frozen and a closed
    wallet; returns the wallets' ids by name."""
    world = open_world(url, directory)
    pay, ids = world.pay, world.ids
    for n, (name, (tier, _)) in enumerate(CONSUMERS.items()):
        customer = pay.register_customer(
            kind="consumer", legal_name=name, national_id=f"BATCH{n:04d}", date_of_birth=date(1990, 1, 1),
            kyc_tier=tier, member=SETUP, key=f"cus-{name}",
        )["id"]  # fmt: skip
        ids[name] = pay.open_wallet(customer, member=SETUP, key=f"wal-{name}")["id"]
        if name == "c3":
            ids["usd"] = pay.open_wallet(customer, "USD", member=SETUP, key="wal-usd")["id"]
    for name, fee_bps in MERCHANTS.items():
        customer = pay.register_customer(
            kind="merchant", legal_name=name, merchant_category="5411", fee_bps=fee_bps, member=SETUP, key=f"cus-{name}"
        )["id"]
        ids[name] = pay.open_wallet(customer, member=SETUP, key=f"wal-{name}")["id"]
    biller = pay.register_customer(
        kind="biller", legal_name="Power", reference_pattern=r"\d{10}", member=SETUP, key="cus-b"
    )["id"]
    ids["b"] = pay.open_wallet(biller, member=SETUP, key="wal-b")["id"]
    ids["nope"] = "wal_doesnotexist00000"
    for name, (_, funding) in CONSUMERS.items():
        if funding:
            done = pay.top_up(
                member=SETUP, key=f"fund-{name}", wallet_id=ids[name], amount=Money(funding, CNY),
                bank_account_token="tok-setup",
            )  # fmt: skip
            assert done.body["status"] == "completed", done.body
    pay.set_wallet_frozen(ids["cf"], True)
    pay.close_wallet(ids["cx"])
    world.platform.close()
    return ids


def error_answer(exc: CreditstackError) -> tuple[int, dict[str, Any], bool]:
    return exc.http_status, {"error": exc.to_dict()}, False


def one_by_one(world: World, request: PaymentRequest) -> tuple[int, dict[str, Any], bool]:
    pay = world.pay
    try:
        if isinstance(request, MerchantPayment):
            result = pay.pay_merchant(
                member=MEMBER, key=request.key, payer_wallet_id=request.payer_wallet_id,
                merchant_wallet_id=request.merchant_wallet_id, amount=request.amount, funding=request.funding,
            )  # fmt: skip
        elif isinstance(request, BillPayment):
            result = pay.pay_bill(
                member=MEMBER, key=request.key, payer_wallet_id=request.payer_wallet_id,
                biller_wallet_id=request.biller_wallet_id, reference=request.reference, amount=request.amount,
                due_date=request.due_date,
            )  # fmt: skip
        elif isinstance(request, Transfer):
            result = pay.transfer(
                member=MEMBER, key=request.key, payer_wallet_id=request.payer_wallet_id,
                payee_wallet_id=request.payee_wallet_id, amount=request.amount,
            )  # fmt: skip
        else:
            assert isinstance(request, TopUp)
            result = pay.top_up(
                member=MEMBER, key=request.key, wallet_id=request.wallet_id, amount=request.amount,
                bank_account_token=request.bank_account_token,
            )  # fmt: skip
    except CreditstackError as exc:
        return error_answer(exc)
    return result.status_code, result.body, result.replayed


# ================================================================ comparing two worlds

_PAYMENT_ID = re.compile(r"pay_[0-9a-z]{16}")
_END_TO_END = re.compile(r"CS[0-9A-Z]{16}")


class Normaliser:
    """Generated ids replaced by their order of first appearance (end-to-end ids by their payment's)."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def _id(self, payment_id: str) -> str:
        return self.seen.setdefault(payment_id, f"<pay{len(self.seen)}>")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, str):
            value = _PAYMENT_ID.sub(lambda m: self._id(m.group(0)), value)
            return _END_TO_END.sub(lambda m: "e2e:" + self._id("pay_" + m.group(0)[2:].lower()), value)
        return value


def snapshot(world: World, answers: list[Any]) -> dict[str, Any]:
    """Everything the two worlds must agree on, with ids normalised (answers first, in order)."""
    norm = Normaliser()
    platform, pay, ledger = world.platform, world.pay, world.platform.ledger
    out: dict[str, Any] = {"answers": norm(answers)}
    report = ledger.audit()
    assert report.clean, report.to_json()
    out["journal"] = ledger.journal_position()
    wallets = {}
    for name in WALLETS:
        if name == "nope":
            continue
        w = pay.get_wallet(world.ids[name])
        wallets[name] = (w["status"], w["balance"], w["available"], w["held"])
        assert w["balance"]["amount_minor"] >= 0 and w["available"]["amount_minor"] >= 0
    out["wallets"] = wallets
    out["house"] = {
        (purpose, currency): ledger.get_account(pay.house_account(purpose, currency)).balance_minor
        for purpose in pay.HOUSE_PURPOSES
        for currency in ("CNY", "USD")
        if (purpose, currency) in pay._house
    }
    out["line"] = (
        ledger.get_account(world.line.account_id).balance_minor,
        ledger.get_account(world.line.credits_id).balance_minor,
        world.line.drawn_minor,
    )

    def rows(conn: sa.Connection) -> dict[str, Any]:
        core = PLATFORM_CORE
        return {
            "usage": sorted(tuple(r) for r in conn.execute(sa.select(pt.limit_usage))),
            "outbox": [
                (r.topic, r.aggregate_id, r.business_date, r.payload)
                for r in conn.execute(sa.select(core.outbox).order_by(core.outbox.c.position))
            ],
            "payments": [
                {k: v for k, v in r._mapping.items() if k not in ("serial", "created_at", "updated_at")}
                for r in conn.execute(sa.select(pt.payments))
            ],
            "keys": {
                r.key: (r.operation, r.request_hash, r.status_code, r.outcome)
                for r in conn.execute(
                    sa.select(core.idempotency_keys).where(core.idempotency_keys.c.member.in_([MEMBER, SETUP]))
                )
            },
        }

    stored = platform.db.run(rows, readonly=True)
    out["usage"] = stored["usage"]
    out["outbox"] = norm(stored["outbox"])
    payments = norm(stored["payments"])
    out["payments"] = sorted(payments, key=lambda p: str(p["id"]))
    out["keys"] = norm(stored["keys"])
    return out


# ================================================================ requests

KEY_MODES = ["new"] * 14 + ["repeat"] * 3 + ["reuse"] * 2 + ["bad"]
KINDS = ["merchant"] * 6 + ["bill"] * 2 + ["transfer"] * 3 + ["top_up"] * 2 + ["line"] * 2 + ["no_source"]
GOOD_PAYERS = ["c1", "c2", "c3", "m60"]
BAD_WALLETS = ["cf", "cx", "usd", "nope"]
GOOD_PAYEES = {
    "merchant": ["m60", "mall", "m0"],
    "line": ["m60", "mall", "m0"],
    "no_source": ["m60"],
    "bill": ["b"],
    "transfer": ["c1", "c2", "c3", "m60"],
}

amounts = st.one_of(
    st.integers(1, 30_000),
    st.integers(1, 30_000),
    st.integers(30_000, 160_000),
    st.sampled_from([0, -100, 60_000, 60_001, 150_000, 150_001]),
)

draws = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(GOOD_PAYERS * 5 + BAD_WALLETS),
    st.integers(0, 99),  # the payee: one that fits the kind, or (under 12) a wrong one
    amounts,
    st.sampled_from(["CNY"] * 15 + ["USD"]),
    st.sampled_from(KEY_MODES),
    st.booleans(),  # a valid biller reference
    st.integers(0, 1_000),  # which earlier request to repeat or reuse, and small choices
)

programs = st.lists(st.lists(draws, min_size=1, max_size=24), min_size=1, max_size=2)


def build_requests(program: list[list[tuple[Any, ...]]], ids: dict[str, str]) -> list[list[PaymentRequest]]:
    batches: list[list[PaymentRequest]] = []
    earlier: list[PaymentRequest] = []
    counter = 0
    for batch in program:
        requests: list[PaymentRequest] = []
        for kind, payer, payee_draw, amount_minor, currency, key_mode, good_reference, pick in batch:
            counter += 1
            if key_mode == "repeat" and earlier:
                requests.append(earlier[pick % len(earlier)])
                continue
            if key_mode == "reuse" and earlier:
                key = earlier[pick % len(earlier)].key
            elif key_mode == "bad":
                key = "bad key"
            else:
                key = f"k{counter}"
            amount = Money(amount_minor, CNY if currency == "CNY" else USD)
            if kind == "top_up":
                payee = payer
            elif payee_draw < 12:
                payee = [*BAD_WALLETS, "c1", "b", "m60", payer][payee_draw % 8]  # wrong kind, unusable, oneself
            else:
                fits = GOOD_PAYEES[kind]
                payee = fits[payee_draw % len(fits)]
            request: PaymentRequest
            if kind in ("merchant", "line", "no_source"):
                funding = {"merchant": "wallet", "line": LINE, "no_source": "no_such_source"}[kind]
                request = MerchantPayment(key, ids[payer], ids[payee], amount, funding)
            elif kind == "bill":
                reference = "0123456789" if good_reference else "ref-x"
                due = date(2026, 3, 10) if pick % 2 else None
                request = BillPayment(key, ids[payer], ids[payee], reference, amount, due)
            elif kind == "transfer":
                request = Transfer(key, ids[payer], ids[payee], amount)
            else:
                request = TopUp(key, ids[payee], amount, "tok-bank-1")
            requests.append(request)
            earlier.append(request)
        batches.append(requests)
    return batches


# ================================================================ the property


Copies = Callable[[], AbstractContextManager[tuple[str, Path]]]


def run(copies: Copies, ids: dict[str, str], program: list[list[tuple[Any, ...]]]) -> None:
    with copies() as (url_batch, dir_batch), copies() as (url_single, dir_single):
        batched, single = open_world(url_batch, dir_batch, ids), open_world(url_single, dir_single, ids)
        try:
            batches = build_requests(program, ids)
            batch_answers: list[Any] = []
            single_answers: list[Any] = []
            for requests in batches:
                results = batched.pay.submit_batch(requests, member=MEMBER)
                assert len(results) == len(requests)
                batch_answers += [(r.status_code, r.body, r.replayed) for r in results]
                single_answers += [one_by_one(single, r) for r in requests]
            expected = snapshot(single, single_answers)
            got = snapshot(batched, batch_answers)
            for i, (a, b) in enumerate(zip(got["answers"], expected["answers"], strict=True)):
                assert a == b, (i, a, b)
            assert got == expected
        finally:
            batched.platform.close()
            single.platform.close()


@pytest.fixture(scope="module")
def sqlite_world(fresh_sqlite: Any) -> Iterator[tuple[Copies, dict[str, str]]]:
    """The world built once on SQLite; each copy is a file copy of it."""
    with fresh_sqlite() as (url, directory):
        ids = build_world(url, directory)
        built = directory / "platform.db"

        @contextmanager
        def copy() -> Iterator[tuple[str, Path]]:
            target = Path(tempfile.mkdtemp(prefix="cs_batch_"))
            try:
                shutil.copy(built, target / "platform.db")
                yield f"sqlite:///{target / 'platform.db'}", target
            finally:
                shutil.rmtree(target, ignore_errors=True)

        yield copy, ids


@pytest.fixture(scope="module")
def pg_world(fresh_pg: Any) -> Iterator[tuple[Copies, dict[str, str]]]:
    """The world built once on PostgreSQL; each copy is a database created from it as a template (dropped in
    the background: a DROP DATABASE takes over a second, most of an example's time)."""
    with fresh_pg() as (url, directory), ThreadPoolExecutor(max_workers=1) as dropper:
        ids = build_world(url, directory)
        base, _, built = url.rpartition("/")

        def drop(name: str) -> None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        @contextmanager
        def copy() -> Iterator[tuple[str, Path]]:
            name = f"cs_batch_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{built}"')
            try:
                yield f"{base}/{name}", directory
            finally:
                dropper.submit(drop, name)

        yield copy, ids


COMMON = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the fixtures are module-scoped worlds, copied per example
    ],
}


@settings(max_examples=25, **COMMON)
@given(program=programs)
def test_batch_answers_and_writes_what_the_single_path_does_on_sqlite(sqlite_world: Any, program: Any) -> None:
    run(*sqlite_world, program)


@pytest.mark.postgres
@settings(max_examples=5, **COMMON)
@given(program=programs)
def test_batch_answers_and_writes_what_the_single_path_does_on_postgres(pg_world: Any, program: Any) -> None:
    run(*pg_world, program)
