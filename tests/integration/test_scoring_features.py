"""The feature store on SQLite and PostgreSQL: incremental == batch, replays change nothing.

A population is driven through the services for ten weeks from Wednesday 2026-04-01: salaries topped up
monthly, merchant payments in four categories, bills paid before or after their due date, transfers,
instalment loans and credit lines (draws at merchants), repayments on time, late, or never, and end of day
every day (so accounts age through the DPD buckets). The store's consumer runs in small batches during the
run, and every other batch is delivered twice. At two as-of dates the stored vectors must equal the vectors
recomputed from the outbox's history, feature by feature; and the population must really exercise the
features (someone late on bills, someone delinquent, a line in use, …), or the equality would prove little.

Hypothesis, on SQLite: for random sequences of synthetic outbox events (dates out of order included), the
store fed in random batch sizes with redeliveries equals the batch recomputation at every as-of date it can
serve.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditstack.app.platform import Platform, open_platform
from creditstack.core import events as outbox
from creditstack.core.clock import FixedClock
from creditstack.core.db import Database
from creditstack.core.money import CNY, Money
from creditstack.core.settings import Settings
from creditstack.core.tables import PLATFORM_CORE
from creditstack.payments.service import Income
from creditstack.scoring import tables as t
from creditstack.scoring.errors import EventsOutOfSequence
from creditstack.scoring.features import (
    CONSUMER,
    FEATURE_NAMES,
    FeatureStore,
    FeatureVector,
    Folder,
)

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # as tests/conftest.py: Monday 09:00 in Shanghai
#: The population's first day: the 1st, so that April counts as a complete month of money in.
POPULATION_START = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)
POPULATION_DAYS = 68
MEMBER = "scoring-test"
DAY = timedelta(days=1)
MERCHANTS = {"grocer": "5411", "cafe": "5812", "airline": "4511", "casino": "7995"}


@dataclass
class Population:
    customers: list[str] = field(default_factory=list)
    wallets: dict[str, str] = field(default_factory=dict)
    merchants: dict[str, str] = field(default_factory=dict)
    biller: str = ""
    accounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # customer -> (account ref, kind)
    start: date = date(2026, 4, 1)
    keys: int = 0

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"


def _habit(n: int) -> str:
    """Customer n's habit: most pay on time; some late; one never repays."""
    return ("on_time", "on_time", "late", "on_time", "never", "late", "on_time", "on_time")[n % 8]


def build_population(platform: Platform, consumers: int = 8) -> Population:
    pay = platform.payments
    people = Population(start=platform.ledger.business_date())
    for name, mcc in MERCHANTS.items():
        merchant = pay.register_customer(kind="merchant", legal_name=name, merchant_category=mcc, fee_bps=50)["id"]
        people.merchants[name] = pay.open_wallet(merchant)["id"]
    biller = pay.register_customer(kind="biller", legal_name="Power Co", reference_pattern=r"ACC-\d{4}")["id"]
    people.biller = pay.open_wallet(biller)["id"]
    for n in range(consumers):
        customer = pay.register_customer(
            kind="consumer",
            legal_name=f"Scored {n}",
            national_id=f"SCORE{n:06d}",
            date_of_birth=date(1985 + n, 1 + n, 1 + n),
            incomes=[Income(date(2025, 12, 31), Money(12_000_000 + 1_000_000 * n, CNY))],
        )["id"]
        people.customers.append(customer)
        people.wallets[customer] = pay.open_wallet(customer)["id"]
    return people


def live_day(platform: Platform, people: Population, rng: random.Random) -> None:
    """One business day of activity, then end of day."""
    pay, lending = platform.payments, platform.lending
    today = platform.ledger.business_date()
    for n, customer in enumerate(people.customers):
        wallet = people.wallets[customer]
        habit = _habit(n)
        if today.day == 1 + n % 5 or (today == people.start and n % 2 == 0):  # salary (and some start funded)
            amount = 600_000 + 50_000 * n + rng.randrange(0, 200_000, 100) * (n % 3)
            pay.top_up(
                member=MEMBER, key=people.key(), wallet_id=wallet, amount=Money(amount, CNY), bank_account_token="t"
            )
        if rng.random() < 0.2:
            shop = rng.choice(sorted(people.merchants))
            pay.pay_merchant(
                member=MEMBER,
                key=people.key(),
                payer_wallet_id=wallet,
                merchant_wallet_id=people.merchants[shop],
                amount=Money(rng.randrange(500, 8_000), CNY),
            )
        due = today.replace(day=8)
        pays_bill_on = 5 + n % 3 if habit == "on_time" else 12 + n % 4
        if today.day == pays_bill_on:
            pay.pay_bill(
                member=MEMBER,
                key=people.key(),
                payer_wallet_id=wallet,
                biller_wallet_id=people.biller,
                reference=f"ACC-{1000 + n}",
                amount=Money(8_000 + 100 * n, CNY),
                due_date=due,
            )
        if n == 1 and today.day == 20:  # a bill without a due date
            pay.pay_bill(
                member=MEMBER,
                key=people.key(),
                payer_wallet_id=wallet,
                biller_wallet_id=people.biller,
                reference="ACC-9999",
                amount=Money(1_500, CNY),
            )
        if n % 3 == 0 and rng.random() < 0.1:
            other = people.customers[(n + 1) % len(people.customers)]
            pay.transfer(
                member=MEMBER,
                key=people.key(),
                payer_wallet_id=wallet,
                payee_wallet_id=people.wallets[other],
                amount=Money(rng.randrange(1_000, 20_000), CNY),
            )
        opening_day = people.start + timedelta(days=1 + n // 3)
        if today == opening_day and n < 7:
            line = n % 2 == 1
            applied = lending.apply(
                member=MEMBER,
                key=people.key(),
                customer_id=customer,
                wallet_id=wallet,
                product_code="line-cny" if line else "cash-cny",
                amount_minor=300_000 + 40_000 * n,
                term_months=None if line else (3 if n % 4 == 0 else 6),
            )
            assert applied.status_code == 201, applied.body
            accepted = lending.accept(member=MEMBER, key=people.key(), application_id=applied.body["application_id"])
            assert accepted.status_code == 201, accepted.body
            people.accounts[customer] = (accepted.body["account_id"], "line" if line else "loan")
        if n == 6 and today == people.start + timedelta(days=40):  # a second, later application (declined or not)
            lending.apply(
                member=MEMBER,
                key=people.key(),
                customer_id=customer,
                wallet_id=wallet,
                product_code="cash-cny",
                amount_minor=200_000,
                term_months=3,
            )
        account = people.accounts.get(customer)
        if account is None:
            continue
        ref, kind = account
        if kind == "line" and rng.random() < 0.15:
            pay.pay_merchant(
                member=MEMBER,
                key=people.key(),
                payer_wallet_id=wallet,
                merchant_wallet_id=people.merchants["grocer"],
                amount=Money(rng.randrange(2_000, 30_000), CNY),
                funding="credit_line",
            )
        _repay(platform, people, ref, habit, today)
    lending.eod.run()


def _repay(platform: Platform, people: Population, ref: str, habit: str, today: date) -> None:
    if habit == "never":
        return
    account = platform.lending.get_account(ref)
    if account["status"] != "active":
        return
    open_rows = [r for r in account["instalments"] if r["billed"] and r["settled_on"] is None]
    if not open_rows:
        return
    lag = 0 if habit == "on_time" else 12
    if min(date.fromisoformat(r["due_date"]) for r in open_rows) + timedelta(days=lag) != today:
        return
    due = sum(
        r["principal"]["amount_minor"]
        + r["interest"]["amount_minor"]
        + r["fees"]["amount_minor"]
        - r["paid"]["amount_minor"]
        for r in open_rows
    )
    due += account["balances"]["penalty_interest"]["amount_minor"]
    if due > 0:
        result = platform.lending.repay(member=MEMBER, key=people.key(), account_id=ref, amount_minor=due)
        assert result.status_code == 201, result.body


def same_vector(left: FeatureVector, right: FeatureVector) -> list[str]:
    """The names of the features that differ (NaN equals NaN; everything else exactly)."""
    differing = []
    for name in FEATURE_NAMES:
        a, b = left.values[name], right.values[name]
        if not (a == b or (math.isnan(a) and math.isnan(b))):
            differing.append(f"{name}: {a} != {b}")
    return differing


def store_vectors(store: FeatureStore, as_of: date) -> dict[str, FeatureVector]:
    return {v.customer_id: v for page in store.population(as_of, page=3) for v in page}


def consume_with_redelivery(platform: Platform, store: FeatureStore, rng: random.Random, batches: int) -> None:
    """Run the consumer in small batches; every other batch is delivered a second time (no change)."""
    for index in range(batches):
        position = store.position()
        page = platform.db.run(
            lambda conn, after=position: outbox.read_after(conn, PLATFORM_CORE, after, limit=rng.randint(1, 40)),
            readonly=True,
        )
        if not page:
            return
        assert store.apply_batch(page) == len(page)
        if index % 2 == 0:
            before = {c: store.state(c) for c in {*_touched(page)}}
            assert store.apply_batch(page) == 0  # redelivered: every event is at or below the position
            assert {c: store.state(c) for c in before} == before


def _touched(page: list[outbox.StoredEvent]) -> set[str]:
    found = set()
    for event in page:
        for key in ("payer_customer_id", "payee_customer_id", "customer_id"):
            value = event.payload.get(key)
            if isinstance(value, str):
                found.add(value)
    return found


@pytest.fixture
def population_platform(db_url: str, tmp_path: Path) -> Iterator[tuple[Platform, FixedClock]]:
    clock = FixedClock(POPULATION_START)
    platform = open_platform(Settings(database_url=db_url, var_dir=tmp_path), clock, migrate_schema=False)
    yield platform, clock
    platform.close()


def test_the_store_equals_the_recomputation_on_a_population_driven_through_the_services(
    population_platform: tuple[Platform, FixedClock],
) -> None:
    platform, clock = population_platform
    people = build_population(platform)
    store = platform.scoring.store
    rng = random.Random(5)
    checkpoint: tuple[date, dict[str, FeatureVector]] | None = None
    for day in range(POPULATION_DAYS):
        live_day(platform, people, rng)
        clock.advance(DAY)
        if day % 6 == 5:
            consume_with_redelivery(platform, store, rng, batches=3)
        if day == 40:  # a first as-of date, mid-month
            store.process_all()
            as_of = platform.ledger.business_date()
            stored = store_vectors(store, as_of)
            recomputed = store.recompute(as_of)
            assert set(stored) == set(recomputed) == set(people.customers)
            for customer in people.customers:
                assert same_vector(stored[customer], recomputed[customer]) == [], customer
            checkpoint = (as_of, recomputed)

    store.process_all()
    assert store.position() == _last_position(platform)
    as_of = platform.ledger.business_date()
    stored = store_vectors(store, as_of)
    recomputed = store.recompute(as_of)
    assert set(stored) == set(recomputed) == set(people.customers)
    for customer in people.customers:
        assert same_vector(stored[customer], recomputed[customer]) == [], customer
        # the read path (stored state + in-memory catch-up) gives the same vector
        assert same_vector(store.vector(customer, as_of), recomputed[customer]) == [], customer

    # history is history: recomputing the earlier as-of date after four more weeks gives what it gave then
    assert checkpoint is not None
    earlier, then = checkpoint
    again = store.recompute(earlier)
    for customer in people.customers:
        assert same_vector(again[customer], then[customer]) == [], customer

    # the population exercises the features (else equality would prove little)
    values = {c: v.values for c, v in stored.items()}
    by_habit = {_habit(n): values[c] for n, c in enumerate(people.customers)}
    assert by_habit["on_time"]["bill_on_time_share_12m"] == 1.0
    assert by_habit["late"]["bill_on_time_share_12m"] == 0.0 and by_habit["late"]["bill_days_late_mean_12m"] >= 4
    assert max(v["dpd_worst_days_3m"] for v in values.values() if not math.isnan(v["dpd_worst_days_3m"])) >= 30
    assert any(v["delinquencies_count_12m"] >= 1 for v in values.values())
    assert any(0 < v["line_utilisation_ratio"] < 1 for v in values.values())
    assert values[people.customers[0]]["repayment_on_time_share_12m"] == 1.0
    assert values[people.customers[2]]["repayment_on_time_share_12m"] == 0.0  # paid twelve days late, each time
    assert all(v["tenure_days"] > 60 and v["inflow_monthly_mean_minor_6m"] > 0 for v in values.values())
    assert any(v["inflow_monthly_cv_6m"] > 0 for v in values.values())
    assert any(v["spend_share_dining_12m"] > 0 for v in values.values())
    assert values[people.customers[7]]["dpd_worst_days_12m"] != values[people.customers[7]]["dpd_worst_days_12m"]
    assert values[people.customers[6]]["applications_count_3m"] == 2  # applied in April and in May
    assert all(math.isnan(v[name]) for v in values.values() for name in FEATURE_NAMES if name.startswith("bureau_"))


def _last_position(platform: Platform) -> int:
    rows = platform.db.run(lambda conn: outbox.read_after(conn, PLATFORM_CORE, 0, limit=outbox.OUTBOX_PAGE_MAX))
    return rows[-1].position if rows else 0


def test_a_vector_as_of_the_business_date_leaves_that_days_events_out(platform: Platform) -> None:
    """An application on D is never in its own vector: as of D means the events before D."""
    people = build_population(platform, consumers=1)
    customer = people.customers[0]
    pay = platform.payments
    today = platform.ledger.business_date()
    pay.top_up(
        member=MEMBER, key="t1", wallet_id=people.wallets[customer], amount=Money(50_000, CNY), bank_account_token="t"
    )
    platform.scoring.process_all()
    assert not platform.scoring.features(customer).known  # today's top-up is not before today
    platform.lending.eod.run()
    applied = platform.lending.apply(
        member=MEMBER, key="a1", customer_id=customer, wallet_id=people.wallets[customer],
        product_code="cash-cny", amount_minor=100_000, term_months=3,
    )  # fmt: skip
    assert applied.status_code == 201
    vector = platform.scoring.features(customer)  # not processed yet: the read catches up in memory
    assert vector.as_of == today + DAY and vector.values["tenure_days"] == 1
    assert vector.values["applications_count_3m"] == 0  # the one being scored (dated today) is left out
    assert vector.values["inflow_monthly_mean_minor_6m"] != vector.values["inflow_monthly_mean_minor_6m"]
    later = platform.scoring.features(customer, today + 2 * DAY)
    assert later.values["applications_count_3m"] == 1


# ---------------------------------------------------------------------------------------- random sequences
EPOCH = date(2025, 11, 3)
_kinds = st.sampled_from(
    ["top_up", "p2p", "merchant", "bill", "refund", "withdrawal", "apply", "open_line", "open_loan", "draw", "repay",
     "refund_line", "dpd", "charge_off", "recover"]
)  # fmt: skip
_step = st.tuples(
    _kinds,
    st.integers(0, 3),  # customer
    st.integers(0, 2),  # account slot
    st.integers(-2, 6),  # days forward (negative: an event that commits after a later one)
    st.integers(1, 90_000),  # amount
    st.integers(0, 5),  # bucket
)


def synthetic_events(steps: list[tuple[str, int, int, int, int, int]]) -> list[outbox.DomainEvent]:
    """Events shaped as payments and lending write them, over about a year and a half."""
    day = EPOCH
    made: list[outbox.DomainEvent] = []
    opened: dict[str, str] = {}
    for kind, who, slot, forward, amount, bucket in steps:
        day = max(EPOCH, day + timedelta(days=forward * 3))
        when = day if forward >= 0 else day - timedelta(days=5)
        customer, other = f"cus{who}", f"cus{(who + 1) % 4}"
        ref = f"acc{who}{slot}"
        payment = {"amount_minor": amount, "currency": "CNY", "payer_customer_id": customer, "payee_customer_id": other}
        if kind in ("top_up", "refund"):
            payment = payment | {"payer_customer_id": None, "payee_customer_id": customer}
        if kind == "withdrawal":
            payment["payee_customer_id"] = None
        if kind in ("top_up", "p2p", "merchant", "bill", "refund", "withdrawal"):
            extra: dict[str, Any] = {"kind": kind}
            if kind == "merchant":
                extra["merchant_category"] = ["5411", "5812", "4511", "7995", "1234", None][amount % 6]
            if kind == "bill" and amount % 3:
                extra["bill_due_date"] = (when - timedelta(days=amount % 11 - 5)).isoformat()
            made.append(outbox.DomainEvent("payments.payment_completed", f"pay{len(made)}", when, payment | extra))
            continue
        body: dict[str, Any] = {"customer_id": customer, "currency": "CNY"}

        def emit(topic: str, aggregate: str, payload: dict[str, Any], when: date = when) -> None:
            made.append(outbox.DomainEvent(f"lending.{topic}", aggregate, when, payload))

        if kind == "apply":
            emit("application_received", f"app{len(made)}", body | {"amount_minor": amount})
        elif kind in ("open_line", "open_loan") and ref not in opened:
            opened[ref] = kind
            topic = "line_opened" if kind == "open_line" else "loan_disbursed"
            emit(topic, ref, body | {"limit_minor": amount, "principal_minor": amount})
        elif kind == "draw":
            emit("line_drawn", ref, body | {"amount_minor": amount, "principal_minor": amount})
        elif kind == "repay":
            emit("repayment_received", ref, body | {"amount_minor": amount, "principal_minor": amount // 2})
        elif kind == "refund_line":
            emit("line_refunded", ref, {"principal_minor": amount // 3, "currency": "CNY"})
        elif kind == "dpd":
            previous = max(bucket - 1, 0) if amount % 2 else 0
            dpd = (0, 1, 30, 60, 90, 180)[bucket]
            emit(
                "days_past_due_changed",
                ref,
                {"account_id": ref, "dpd": dpd, "bucket": bucket, "previous_bucket": previous},
            )
        elif kind == "charge_off":
            emit("charged_off", ref, body | {"account_id": ref, "principal_minor": amount // 4})
        elif kind == "recover":
            emit("recovered", ref, body | {"amount_minor": amount})
    return made


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=60), batch_sizes=st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_incremental_equals_batch_for_random_event_sequences(
    fresh_sqlite: Any, steps: list[tuple[str, int, int, int, int, int]], batch_sizes: list[int]
) -> None:
    events_made = synthetic_events(steps)
    with fresh_sqlite() as (url, _directory):
        db = Database(url)
        try:
            clock = FixedClock(START)
            db.run(lambda conn: outbox.flush_events(conn, PLATFORM_CORE, events_made, clock.now()))
            store = FeatureStore(db, clock)
            if len(events_made) >= 2:  # a batch that skips an event is refused, and changes nothing
                skipping = db.run(lambda conn: outbox.read_after(conn, PLATFORM_CORE, 1, limit=3))
                with pytest.raises(EventsOutOfSequence):
                    store.apply_batch(skipping)
                assert store.position() == 0 and store.customers_count() == 0
            index = 0
            while True:
                size = batch_sizes[index % len(batch_sizes)]
                index += 1
                position = store.position()
                page = db.run(lambda conn, p=position, n=size: outbox.read_after(conn, PLATFORM_CORE, p, limit=n))
                if not page:
                    break
                store.apply_batch(page)
                assert store.apply_batch(page) == 0
            assert db.run(lambda conn: outbox.consumer_position(conn, PLATFORM_CORE, CONSUMER)) == len(events_made)
            latest = max(e.business_date for e in events_made)
            for as_of in (latest + DAY, latest + timedelta(days=45), latest + timedelta(days=400)):
                stored = store_vectors(store, as_of)
                recomputed = store.recompute(as_of)
                assert set(stored) == set(recomputed)
                for customer, vector in stored.items():
                    assert same_vector(vector, recomputed[customer]) == [], (customer, as_of)
        finally:
            db.dispose()


# ------------------------------------------------------------------------------ the consumer's own states
def _random_steps(seed: int, count: int) -> list[tuple[str, int, int, int, int, int]]:
    rng = random.Random(seed)
    kinds = ["top_up", "p2p", "merchant", "bill", "refund", "withdrawal", "apply", "open_line", "open_loan", "draw",
             "repay", "refund_line", "dpd", "charge_off", "recover"]  # fmt: skip
    forward = (-1, 0, 0, 0, 1, 1, 2)  # × 3 days: a few events a week, some committed after later ones
    return [
        (
            rng.choice(kinds),
            rng.randrange(4),
            rng.randrange(3),
            rng.choice(forward),
            rng.randint(1, 90_000),
            rng.randrange(6),
        )
        for _ in range(count)
    ]


def test_the_stored_states_equal_a_fold_from_empty_whatever_happens_between_transactions(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer reads only the buckets a batch can touch and keeps the states it wrote in memory for
    its next transaction. Every bucket it stores must still equal the fold of the whole history from
    empty states — over five years of events (months archived), in pages of every size, with a second
    consumer (another process) taking turns, a transaction that fails after the fold, and a batch of work
    that is rolled back."""
    events_made = synthetic_events(_random_steps(11, 1_000))
    assert (events_made[-1].business_date - events_made[0].business_date).days > 3 * 365
    db = Database(db_url)
    try:
        clock = FixedClock(START)
        db.run(lambda conn: outbox.flush_events(conn, PLATFORM_CORE, events_made, clock.now()))
        ours, theirs = FeatureStore(db, clock), FeatureStore(db, clock)
        rng = random.Random(3)
        turn = 0
        while ours.position() < len(events_made):
            turn += 1
            store = ours if rng.random() < 0.8 else theirs
            if turn % 17 == 0:  # fails after folding into the states it kept: they must not be trusted again
                monkeypatch.setattr(ours, "_save", _failing_save)
                with pytest.raises(RuntimeError):
                    ours.process_events(limit=6)
                monkeypatch.undo()
            elif turn % 23 == 0:  # the whole unit of work rolled back after the consumer's transaction
                with pytest.raises(RuntimeError), db.batch():
                    ours.process_events(limit=9)
                    raise RuntimeError("rolled back")
            elif turn % 7 == 0:  # a redelivered batch
                after = max(store.position() - 3, 0)
                page = db.run(lambda conn, after=after: outbox.read_after(conn, PLATFORM_CORE, after))
                store.apply_batch(page[: rng.randint(1, 12)])
            else:
                store.process_events(limit=rng.choice((1, 2, 3, 5, 8, 13, 40)))
            if turn % 5 == 0:
                _assert_stored_equals_fold(db, ours)
        expected = _assert_stored_equals_fold(db, ours)
        assert any(t.ARCHIVE in s.months for s in expected.states.values())
    finally:
        db.dispose()


def _failing_save(conn: Any, folder: Any) -> None:
    raise RuntimeError("the disk is full")


def _assert_stored_equals_fold(db: Database, store: FeatureStore) -> Folder:
    """Every stored bucket and account equals the fold from empty states of the events up to the consumer's
    position."""
    position = store.position()
    expected = Folder("CNY")
    expected.fold_all(db.run(lambda conn: outbox.read_after(conn, PLATFORM_CORE, 0, limit=position)))
    for customer, want in expected.states.items():
        got = store.state(customer)
        assert got is not None
        assert (got.first_date, got.open_date, got.last_position) == (
            want.first_date,
            want.open_date,
            want.last_position,
        ), (customer, position)
        assert got.open_day == want.open_day, (customer, position)
        assert got.months == want.months, (customer, position)
    assert store.customers_count() == len(expected.states)
    stored_accounts = db.run(lambda conn: conn.execute(sa.select(t.accounts)).all())
    assert {r.account_ref: (r.customer_id, r.kind, r.bucket, r.limit_minor) for r in stored_accounts} == {
        ref: (a.customer_id, a.kind, a.bucket, a.limit_minor) for ref, a in expected.accounts.items()
    }
    return expected
