"""`PaymentsService.register_batch` on a real database (SQLite and PostgreSQL):

- a batch of consumers, a merchant and a biller — with replays of keys stored by the single path, a customer
  the single path registered without a wallet, duplicate national ids (registered before and twice in the
  batch), keys reused with other details (stored and within the batch) and malformed requests — answers
  what `register_customer` followed by `open_wallet` answers for each request in order, and leaves the same
  customers (personal data included), incomes, wallets, ledger accounts and stored outcomes as those calls
  (each pair all or nothing: see `single_calls`);
- it is one transaction; sent again, every request replays with the same ids and nothing is written;
- a malformed request is refused with its own error, the others go on, and nothing of it is stored: sent
  again corrected, it registers the customer it would have registered;
- a batch over the bound is refused whole; `LedgerService.open_accounts` checks every definition first;
- racing batches (two platforms, as two processes would be) register each shared key once (one fresh answer,
  one replay with the same ids) and each contested national id once (the other: duplicate_customer) — on
  PostgreSQL the second batch collides on the key or the national id and is decided again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from creditstack.app.platform import Platform, open_platform
from creditstack.core import idempotency
from creditstack.core.clock import FixedClock
from creditstack.core.errors import CreditstackError, LimitExceeded
from creditstack.core.money import CNY, Money
from creditstack.core.settings import Settings
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger import errors as ledger_errors
from creditstack.ledger import tables as lt
from creditstack.ledger.service import BatchRejected, NewAccount
from creditstack.payments import tables as pt
from creditstack.payments.domain import ONBOARDING_BATCH_MAX, Income, Onboarding

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
MEMBER = "onboarder"
DOB = date(1990, 5, 17)
INCOME = (Income(date(2025, 12, 31), Money(9_600_000, CNY)),)


def resident_id(n: int) -> str:
    """A valid 18-character PRC resident id (GB 11643-1999 check digit)."""
    body = f"11010119900101{n:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def consumer(n: int, **changes: Any) -> Onboarding:
    fields: dict[str, Any] = {
        "key": f"reg-{n}",
        "wallet_key": f"wal-{n}",
        "legal_name": f"Consumer {n}",
        "national_id": resident_id(n),
        "date_of_birth": DOB,
        "phone": f"+86-1380000{n:04d}",
        "kyc_tier": 1 + n % 3,
        "incomes": INCOME,
    }
    return Onboarding(**{**fields, **changes})


def single_calls(platform: Platform, request: Onboarding, member: str = MEMBER) -> tuple[int, dict[str, Any], bool]:
    """What the single path answers: `register_customer` then `open_wallet`, as one unit (`Database.batch`: a
    wallet refused after the registration takes the registration back with it, as `register_batch` does);
    replayed when both keys had been stored before."""
    pay = platform.payments
    wallet_key = request.wallet_idempotency_key

    def stored(conn: sa.Connection) -> bool:
        found = idempotency.lookup_many(conn, PLATFORM_CORE, member, [request.key, wallet_key])
        return request.key in found and wallet_key in found

    replayed = platform.db.run(stored, readonly=True)
    try:
        with platform.db.batch():
            customer = pay.register_customer(
                kind=request.kind, legal_name=request.legal_name, national_id=request.national_id,
                date_of_birth=request.date_of_birth, address=request.address, phone=request.phone,
                kyc_tier=request.kyc_tier, incomes=request.incomes, merchant_category=request.merchant_category,
                fee_bps=request.fee_bps, refund_fee_policy=request.refund_fee_policy,
                reference_pattern=request.reference_pattern, member=member, key=request.key,
            )  # fmt: skip
            wallet = pay.open_wallet(customer["id"], request.currency, member=member, key=wallet_key)
    except CreditstackError as exc:
        return exc.http_status, {"error": exc.to_dict()}, False
    return 201, {"customer": customer, "wallet": wallet}, replayed


def answers(results: list[Any]) -> list[tuple[int, dict[str, Any], bool]]:
    return [(r.status_code, r.body, r.replayed) for r in results]


def state(platform: Platform) -> dict[str, Any]:
    """Everything onboarding writes, with personal data unsealed (the seals themselves differ: fresh nonces)."""

    def rows(conn: sa.Connection) -> dict[str, Any]:
        core = PLATFORM_CORE
        customers = [
            {k: v for k, v in r._mapping.items() if not k.endswith("_sealed")}
            for r in conn.execute(sa.select(pt.customers).order_by(pt.customers.c.id))
        ]
        return {
            "customers": customers,
            "incomes": [tuple(r) for r in conn.execute(sa.select(pt.incomes).order_by(*pt.incomes.primary_key))],
            "wallets": [tuple(r) for r in conn.execute(sa.select(pt.wallets).order_by(pt.wallets.c.id))],
            "accounts": [tuple(r) for r in conn.execute(sa.select(lt.accounts).order_by(lt.accounts.c.id))],
            "keys": [
                (r.member, r.key, r.request_hash, r.operation, r.status_code, r.outcome, r.created_at)
                for r in conn.execute(sa.select(core.idempotency_keys).order_by(core.idempotency_keys.c.key))
            ],
        }

    out = platform.db.run(rows, readonly=True)
    out["personal"] = [platform.payments.customer_personal_data(c["id"]) for c in out["customers"]]
    return out


@pytest.fixture
def twin(platform: Platform, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """A second platform on a fresh database of the same kind, with the same personal-data keys: the single
    path's world, to compare with the batch's."""
    fresh = request.getfixturevalue("fresh_sqlite" if platform.db.is_sqlite else "fresh_pg")
    copies: AbstractContextManager[tuple[str, Path]] = fresh()
    with copies as (url, directory):
        other = open_platform(
            Settings(database_url=url, var_dir=directory),
            FixedClock(START),
            migrate_schema=False,
            vault=platform.payments.vault,
        )
        try:
            yield other
        finally:
            other.close()


def history(pay_world: Platform) -> None:
    """What both worlds hold before the batch: a consumer registered with a wallet, one registered whose
    wallet was never opened (a client cut off between the two calls), and a stored payment-like key."""
    pay = pay_world.payments
    single_calls(pay_world, consumer(90))
    pay.register_customer(
        kind="consumer", legal_name="Consumer 91", national_id=resident_id(91), date_of_birth=DOB,
        phone="+86-13800000091", kyc_tier=2, incomes=INCOME, member=MEMBER, key="reg-91",
    )  # fmt: skip
    pay.register_customer(
        kind="consumer", legal_name="Elsewhere", national_id=resident_id(92), date_of_birth=DOB, member="other", key="e"
    )


def mixed_batch() -> list[Onboarding]:
    return [
        consumer(1),
        consumer(2, wallet_key=None, address="1 Bund Road, Shanghai"),  # wallet key derived: reg-2:wallet
        Onboarding(
            key="shop",
            legal_name="Corner Shop",
            kind="merchant",
            merchant_category="5411",
            fee_bps=60,
            wallet_key="shop-wallet",
        ),
        Onboarding(key="power", legal_name="Power Co", kind="biller", reference_pattern=r"\d{10}"),
        consumer(90),  # both keys stored: a replay
        consumer(91, kyc_tier=2, phone="+86-13800000091"),  # registered before, wallet opened now
        consumer(3, national_id=resident_id(92)),  # a consumer with this national id exists
        consumer(4, national_id=resident_id(1)),  # ... registered earlier in this batch
        consumer(1),  # the first request again: a replay within the batch
        consumer(1, legal_name="Someone Else", wallet_key="wal-1b"),  # reg-1 with other details: key reused
        consumer(5, wallet_key="reg-2:wallet"),  # an earlier request's (derived) wallet key: key reused
        consumer(6, wallet_key="reg-6"),  # the registration's own key: key reused
        consumer(7, national_id=resident_id(7)[:-1] + "0"),  # wrong check digit
        consumer(8, date_of_birth=None),  # a consumer needs a date of birth
        consumer(9, currency="XYZ"),  # unknown currency: nothing registered
        consumer(10, key="bad key"),  # malformed registration key
        consumer(11, wallet_key="x" * 201),  # malformed wallet key: nothing registered
        consumer(12, kyc_tier=9),
        consumer(13, incomes=(*INCOME, Income(date(2025, 12, 31), Money(1, CNY)))),  # two incomes on a date
        consumer(91, kyc_tier=2, phone="+86-13800000091", wallet_key="wal-91-usd", currency="USD"),
        consumer(14, national_id=f" {resident_id(14).lower()} "),  # normalised as the single path does
    ]


def test_a_batch_answers_and_stores_what_the_single_calls_do(platform: Platform, twin: Platform) -> None:
    history(platform)
    history(twin)
    requests = mixed_batch()
    got = answers(platform.payments.register_batch(requests, member=MEMBER))
    expected = [single_calls(twin, r) for r in requests]
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a == b, (i, requests[i].key, a, b)
    codes = [body.get("error", {}).get("code") for _, body, _ in got]
    assert codes == [
        None, None, None, None, None, None, "payments.duplicate_customer", "payments.duplicate_customer", None,
        "idempotency.key_reused", "idempotency.key_reused", "idempotency.key_reused", "payments.invalid_customer",
        "payments.invalid_customer", "money.unknown_currency", "idempotency.invalid_key", "idempotency.invalid_key",
        "payments.invalid_customer", "payments.invalid_customer", None, None,
    ]  # fmt: skip
    assert [replayed for _, _, replayed in got].count(True) == 2  # consumer 90, and consumer 1 the second time
    shown = got[5][1]
    assert shown["customer"]["wallets"] == [] and shown["wallet"]["customer_id"] == shown["customer"]["id"]
    assert got[19][1]["customer"]["wallets"] == [shown["wallet"]["id"]]  # what get_customer shows by then
    assert got[0][1]["customer"]["national_id_masked"] == resident_id(1)[:2] + "*" * 12 + resident_id(1)[-4:]
    assert state(platform) == state(twin)
    assert platform.ledger.audit().clean


def test_one_transaction_and_a_replay_changes_nothing(platform: Platform) -> None:
    commits = [0]

    def count(_conn: Any) -> None:
        commits[0] += 1

    requests = [consumer(n) for n in range(40)] + [consumer(3, legal_name="Other")]
    sa.event.listen(platform.db.engine, "commit", count)
    first = platform.payments.register_batch(requests, member=MEMBER)
    assert commits[0] == 1
    assert all(r.ok and not r.replayed and r.status_code == 201 for r in first[:40])
    assert first[40].error_code == "idempotency.key_reused"
    before = state(platform)
    again = platform.payments.register_batch(requests, member=MEMBER)
    assert all(r.replayed for r in again[:40])
    assert [(r.customer_id, r.wallet_id) for r in again] == [(r.customer_id, r.wallet_id) for r in first]
    assert again[40].error_code == "idempotency.key_reused"
    assert state(platform) == before
    assert answers(again)[:40] == [single_calls(platform, r) for r in requests[:40]]  # the single calls' replays
    for r, replay in zip(first, again[:40], strict=False):  # the same, now with the wallet the first call opened
        assert replay.body == {"customer": {**r.body["customer"], "wallets": [r.wallet_id]}, "wallet": r.body["wallet"]}


def test_a_malformed_request_is_refused_alone_and_stores_nothing(platform: Platform) -> None:
    pay = platform.payments
    before = state(platform)
    results = pay.register_batch(
        [consumer(1, currency="XYZ"), consumer(2, wallet_key="bad key"), consumer(3, kyc_tier=0)], member=MEMBER
    )
    assert [r.error_code for r in results] == [
        "money.unknown_currency",
        "idempotency.invalid_key",
        "payments.invalid_customer",
    ]
    assert [r.status_code for r in results] == [422, 422, 422]
    assert results[2].body["error"]["field"] == "kyc_tier"
    assert state(platform) == before  # nothing half-applied: no customer, key, account or wallet
    fixed = pay.register_batch([consumer(1), consumer(2), consumer(3)], member=MEMBER)
    assert all(r.ok and not r.replayed for r in fixed)
    ok = pay.register_batch([consumer(4), consumer(5, legal_name=""), consumer(6)], member=MEMBER)
    assert [r.ok for r in ok] == [True, False, True]
    assert pay.find_customer_by_national_id(resident_id(5)) is None
    assert pay.find_customer_by_national_id(resident_id(6)) == ok[2].customer_id


def test_a_batch_over_the_bound_is_refused_whole(platform: Platform) -> None:
    requests = [consumer(0)] * (ONBOARDING_BATCH_MAX + 1)
    with pytest.raises(LimitExceeded) as refused:
        platform.payments.register_batch(requests, member=MEMBER)
    assert refused.value.details["requests_max"] == ONBOARDING_BATCH_MAX
    assert platform.payments.register_batch([], member=MEMBER) == []
    assert state(platform)["customers"] == []


def test_open_accounts_checks_every_definition_then_inserts_once(platform: Platform) -> None:
    ledger = platform.ledger
    good = [NewAccount("t", f"test:{n}", "CNY", "liability", no_overdraft=True, metadata={"n": n}) for n in range(3)]
    with pytest.raises(BatchRejected) as rejected:
        ledger.open_accounts(
            [*good, NewAccount("t", "test:x", "CNY", "nonsense"), NewAccount("t", "test:0", "XYZ", "asset")]
        )
    assert [(e.index, e.code) for e in rejected.value.record_errors] == [
        (3, "ledger.invalid_account"),
        (4, "money.unknown_currency"),
    ]
    with pytest.raises(BatchRejected):
        ledger.open_accounts([*good, good[0]])  # a code twice
    opened = ledger.open_accounts(good)
    assert [a.id for a in opened] == sorted(a.id for a in opened)
    assert [ledger.get_account(a.id) for a in opened] == opened
    with pytest.raises(ledger_errors.AccountCodeTaken):
        ledger.open_accounts([NewAccount("t", "test:new", "CNY", "asset"), good[1]])
    assert ledger.find_account("test:new") is None
    reused = ledger.open_accounts([NewAccount("t", "test:new", "CNY", "asset"), good[1]], reuse_existing=True)
    assert reused[1] == opened[1] and reused[0].id > opened[2].id


def race(platform: Platform, tmp_path: Path, first: list[Onboarding], second: list[Onboarding]) -> list[list[Any]]:
    """Two batches sent at once, through two platforms on the database (as two processes would)."""
    other = open_platform(
        Settings(database_url=platform.settings.database_url, var_dir=tmp_path),
        FixedClock(START),
        migrate_schema=False,
        vault=platform.payments.vault,
    )
    results: list[list[Any]] = [[], []]
    barrier = threading.Barrier(2)

    def send(slot: int, world: Platform, requests: list[Onboarding]) -> None:
        barrier.wait()
        results[slot] = world.payments.register_batch(requests, member=MEMBER)

    try:
        threads = [
            threading.Thread(target=send, args=(0, platform, first)),
            threading.Thread(target=send, args=(1, other, second)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        other.close()
    return results


def test_racing_batches_register_each_key_and_national_id_once(platform: Platform, tmp_path: Path) -> None:
    """Two batches at once sharing half their keys: each shared key is registered once (one fresh answer and
    one replay, with the same ids). Then two batches with the same national ids under different keys: each
    national id is registered once, the other request answers `payments.duplicate_customer`."""
    first = [consumer(n) for n in range(30)]
    second = [consumer(n) for n in range(15, 45)]
    a, b = race(platform, tmp_path / "one", first, second)
    for n in range(15, 30):
        mine, theirs = a[n], b[n - 15]
        assert mine.ok and theirs.ok and sorted([mine.replayed, theirs.replayed]) == [False, True]
        assert (mine.customer_id, mine.wallet_id) == (theirs.customer_id, theirs.wallet_id)
    assert all(r.ok for r in a + b)
    first = [consumer(n, key=f"c-{n}", wallet_key=f"cw-{n}") for n in range(50, 60)]
    second = [consumer(n, key=f"d-{n}", wallet_key=f"dw-{n}") for n in range(55, 65)]
    a, b = race(platform, tmp_path / "two", first, second)
    for n in range(55, 60):
        codes = sorted([str(a[n - 50].error_code), str(b[n - 55].error_code)])
        assert codes == ["None", "payments.duplicate_customer"]
    assert [r.ok for r in a[:5] + b[5:]] == [True] * 10
    customers = state(platform)["customers"]
    assert len(customers) == 45 + 15 == len({c["national_id_hash"] for c in customers})
    assert platform.ledger.audit().clean
