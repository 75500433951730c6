"""Onboarding in batches is the single path, in bulk: `PaymentsService.register_batch` against
`register_customer` followed by `open_wallet`.

Hypothesis draws one or two batches of onboarding requests from small pools, so that they collide: seven
registration keys (one malformed), wallet keys that are absent (derived), shared, equal to a registration
key or too long; four national ids (one with a wrong check digit, one malformed, lower case and spaced);
consumers, merchants and billers; missing, future and valid dates of birth; unknown KYC tiers; CNY, USD
and an unknown currency. Two copies of one database (SQLite, the same personal-data keys): one gets the
batches through `register_batch`, the other the same requests one by one through the single calls (each
pair as one unit, `Database.batch`, so a wallet refused after its registration takes the registration back
with it, as the batch does). Then the answers (status, body, replayed), the customers (personal data
unsealed), incomes, wallets, ledger accounts and stored outcomes are the same.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditstack.app.platform import Platform, open_platform
from creditstack.core import idempotency
from creditstack.core.clock import FixedClock
from creditstack.core.errors import CreditstackError
from creditstack.core.money import CNY, Money
from creditstack.core.security import PiiVault
from creditstack.core.settings import Settings
from creditstack.core.tables import PLATFORM_CORE
from creditstack.ledger import tables as lt
from creditstack.payments import tables as pt
from creditstack.payments.domain import Income, Onboarding

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
VAULT = PiiVault.generate()
MEMBER = "onboardprop"
INCOME = (Income(date(2025, 12, 31), Money(6_000_000, CNY)),)
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def resident_id(n: int) -> str:
    body = f"31010419850702{n:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


NATIONAL_IDS = [resident_id(1), resident_id(2), f" {resident_id(2).lower()[:9]} {resident_id(2)[9:]}", "ID-7"]
NATIONAL_IDS += [resident_id(3)[:-1] + ("1" if resident_id(3)[-1] != "1" else "2"), "no/such id", None]

requests = st.builds(
    lambda key, wallet_key, kind, name, national_id, born, tier, currency, incomes: Onboarding(
        key=key,
        wallet_key=wallet_key,
        kind=kind,
        legal_name=name,
        national_id=national_id,
        date_of_birth=born,
        kyc_tier=tier,
        currency=currency,
        incomes=incomes,
        merchant_category="5411" if kind == "merchant" else None,
        fee_bps=60 if kind == "merchant" else None,
        reference_pattern=r"\d{8}" if kind == "biller" else None,
    ),
    key=st.sampled_from(["k1", "k2", "k3", "k4", "k5", "k6", "bad key"]),
    wallet_key=st.sampled_from([None, None, "w1", "w2", "w3", "k1", "k2:wallet", "w" * 201]),
    kind=st.sampled_from(["consumer"] * 6 + ["merchant", "biller", "robot"]),
    name=st.sampled_from(["Wang Fang", "Wang Fang", "Wang  Fang", "Li Na", ""]),
    national_id=st.sampled_from(NATIONAL_IDS),
    born=st.sampled_from([date(1985, 7, 2)] * 3 + [None, date(2030, 1, 1)]),
    tier=st.sampled_from([1, 2, 3, 3, 7]),
    currency=st.sampled_from(["CNY", "CNY", "CNY", "USD", "XYZ"]),
    incomes=st.sampled_from([INCOME, ()]),
)
programs = st.lists(st.lists(requests, min_size=1, max_size=8), min_size=1, max_size=2)


def open_world(url: str, directory: Path) -> Platform:
    settings_ = Settings(database_url=url, var_dir=directory)
    return open_platform(settings_, FixedClock(START), migrate_schema=False, vault=VAULT)


def single_calls(platform: Platform, request: Onboarding) -> tuple[int, dict[str, Any], bool]:
    pay = platform.payments
    wallet_key = request.wallet_idempotency_key

    def stored(conn: sa.Connection) -> bool:
        return len(idempotency.lookup_many(conn, PLATFORM_CORE, MEMBER, {request.key, wallet_key})) == 2

    replayed = platform.db.run(stored, readonly=True)
    try:
        with platform.db.batch():
            customer = pay.register_customer(
                kind=request.kind, legal_name=request.legal_name, national_id=request.national_id,
                date_of_birth=request.date_of_birth, kyc_tier=request.kyc_tier, incomes=request.incomes,
                merchant_category=request.merchant_category, fee_bps=request.fee_bps,
                reference_pattern=request.reference_pattern, member=MEMBER, key=request.key,
            )  # fmt: skip
            wallet = pay.open_wallet(customer["id"], request.currency, member=MEMBER, key=wallet_key)
    except CreditstackError as exc:
        return exc.http_status, {"error": exc.to_dict()}, False
    return 201, {"customer": customer, "wallet": wallet}, replayed


def state(platform: Platform) -> dict[str, Any]:
    def rows(conn: sa.Connection) -> dict[str, Any]:
        keys = PLATFORM_CORE.idempotency_keys
        return {
            "customers": [
                {k: v for k, v in r._mapping.items() if not k.endswith("_sealed")}
                for r in conn.execute(sa.select(pt.customers).order_by(pt.customers.c.id))
            ],
            "incomes": [tuple(r) for r in conn.execute(sa.select(pt.incomes).order_by(*pt.incomes.primary_key))],
            "wallets": [tuple(r) for r in conn.execute(sa.select(pt.wallets).order_by(pt.wallets.c.id))],
            "accounts": [tuple(r) for r in conn.execute(sa.select(lt.accounts).order_by(lt.accounts.c.id))],
            "keys": [tuple(r) for r in conn.execute(sa.select(keys).order_by(keys.c.member, keys.c.key))],
        }

    out = platform.db.run(rows, readonly=True)
    out["personal"] = [platform.payments.customer_personal_data(c["id"]) for c in out["customers"]]
    return out


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
def test_register_batch_answers_as_the_single_calls(fresh_sqlite: Any, program: list[list[Onboarding]]) -> None:
    with fresh_sqlite() as (url_batch, dir_batch), fresh_sqlite() as (url_single, dir_single):
        batched, single = open_world(url_batch, dir_batch), open_world(url_single, dir_single)
        try:
            got: list[Any] = []
            expected: list[Any] = []
            for batch in program:
                got += [
                    (r.status_code, r.body, r.replayed) for r in batched.payments.register_batch(batch, member=MEMBER)
                ]
                expected += [single_calls(single, r) for r in batch]
            for i, (a, b) in enumerate(zip(got, expected, strict=True)):
                assert a == b, (i, a, b)
            assert state(batched) == state(single)
        finally:
            batched.close()
            single.close()
