"""Lending over HTTP on SQLite and PostgreSQL: apply → accept → repay as a consumer, idempotent replays,
ownership, a declined application naming the policy rules it broke, a credit line's statement converted
into instalments, end of day and reconcile.

Every bad-input case asserts its status, its stable code, problem+json, and that nothing was written: the
ledger's journal position, lending's applications, accounts and transactions, the stored idempotency
outcomes, the loan's balances and the wallet's balance are all unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from creditstack.app.main import create_app
from creditstack.app.platform import Platform
from creditstack.core.security import Role

MONDAY = date(2026, 3, 2)  # the fixture clock's business date
INCOME_MINOR = 12_000_000  # CNY 120,000 a year, registered for every consumer
CAP_MINOR = 20_000_000  # CNY 200,000: cn2021.household_consumer_cap and cn2025.consumer_cap
HIGH_INCOME_MINOR = 100_000_000  # declared: high enough that the score approves loans up to the cap

Response = Any  # starlette's TestClient answers with its own httpx build's responses


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}


def client_for(platform: Platform, role: Role, member: str) -> TestClient:
    client = TestClient(create_app(platform))
    _, token = platform.keys.create(role, member)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def register_consumer(api: TestClient, name: str, national_id: str) -> str:
    response = api.post(
        "/v1/payments/customers",
        headers=_key(),
        json={
            "kind": "consumer",
            "legal_name": name,
            "national_id": national_id,
            "date_of_birth": "1990-05-17",
            "kyc_tier": 2,
            "incomes": [{"as_of": "2025-12-31", "annual_income": {"amount_minor": INCOME_MINOR, "currency": "CNY"}}],
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def open_wallet(api: TestClient, customer_id: str) -> str:
    response = api.post("/v1/payments/wallets", headers=_key(), json={"customer_id": customer_id})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@dataclass
class World:
    platform: Platform
    ops: TestClient  # the platform operator
    alice: str
    bob: str
    alice_wallet: str
    bob_wallet: str
    alice_api: TestClient
    bob_api: TestClient

    def wallet_balance(self, wallet: str) -> int:
        return int(self.ops.get(f"/v1/payments/wallets/{wallet}").json()["balance"]["amount_minor"])

    def apply(
        self,
        client: TestClient,
        amount: Any = 1_000_000,
        term_months: Any = 12,
        *,
        customer: str | None = None,
        wallet: str | None = None,
        product: str = "cash-cny",
        key: dict[str, str] | None = None,
        **extra: Any,
    ) -> Response:
        body = {
            "customer_id": customer or self.alice,
            "wallet_id": wallet or self.alice_wallet,
            "product_code": product,
            "amount_minor": amount,
            **({} if term_months is None else {"term_months": term_months}),
            **extra,
        }
        return client.post("/v1/lending/applications", headers=key or _key(), json=body)

    def open_loan(self, client: TestClient, amount: int = 1_000_000, **extra: Any) -> str:
        applied = self.apply(client, amount, **extra)
        assert applied.status_code == 201, applied.text
        accepted = client.post(f"/v1/lending/applications/{applied.json()['application_id']}/accept", headers=_key())
        assert accepted.status_code == 201, accepted.text
        return str(accepted.json()["account_id"])

    def repay(self, client: TestClient, ref: str, amount: Any, key: str | None = None, **extra: Any) -> Response:
        return client.post(
            f"/v1/lending/accounts/{ref}/repayments",
            headers={"Idempotency-Key": key} if key else _key(),
            json={"amount_minor": amount, **extra},
        )

    def eod(self, business_date: date | None = None) -> dict[str, Any]:
        body = {} if business_date is None else {"business_date": business_date.isoformat()}
        response = self.ops.post("/v1/lending/eod", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def world(platform: Platform) -> World:
    ops = client_for(platform, Role.PLATFORM_OPERATOR, "ops")
    alice = register_consumer(ops, "Alice Zhang", "P10000001")
    bob = register_consumer(ops, "Bob Li", "P10000002")
    return World(
        platform=platform,
        ops=ops,
        alice=alice,
        bob=bob,
        alice_wallet=open_wallet(ops, alice),
        bob_wallet=open_wallet(ops, bob),
        alice_api=client_for(platform, Role.CONSUMER, alice),
        bob_api=client_for(platform, Role.CONSUMER, bob),
    )


def written(platform: Platform) -> tuple[int, ...]:
    """Journal position, lending rows and stored idempotency outcomes."""
    with platform.db.transaction(readonly=True) as conn:
        counts = [
            int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("lending_applications", "lending_accounts", "lending_transactions", "idempotency_keys")
        ]
    return (platform.ledger.journal_position(), *counts)


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["code"] == code and body["status"] == status, body
    return body


def amount(view: dict[str, Any], *path: str) -> int:
    value: Any = view
    for part in path:
        value = value[part]
    assert value["currency"] == "CNY"
    return int(value["amount_minor"])


# ---------------------------------------------------------------- products


def test_products_are_listed_with_money_on_the_wire(world: World) -> None:
    response = world.bob_api.get("/v1/lending/products")
    assert response.status_code == 200
    products = {p["code"]: p for p in response.json()["items"]}
    assert set(products) >= {"cash-cny", "line-cny"}
    cash = products["cash-cny"]
    assert cash["kind"] == "instalment" and cash["amount_max"] == {"amount_minor": 20_000_000, "currency": "CNY"}
    assert (cash["term_months_min"], cash["term_months_max"]) == (3, 24)
    assert products["line-cny"]["conversion_terms_months"] == [3, 6, 12]
    assert world.bob_api.get("/v1/lending/products/line-cny").json()["kind"] == "line"
    assert_problem(world.bob_api.get("/v1/lending/products/nope"), 404, "lending.product_not_found")
    refused = TestClient(create_app(world.platform)).get("/v1/lending/products")
    assert_problem(refused, 401, "auth.unauthenticated")


# ---------------------------------------------------------------- the consumer's loan


def test_a_consumer_applies_accepts_sees_the_loan_and_repays_from_the_wallet(world: World) -> None:
    api = world.alice_api
    applied = world.apply(api, 1_000_000, 12, key={"Idempotency-Key": "apply-1"})
    assert applied.status_code == 201, applied.text
    application = applied.json()
    offer = application["offer"]
    assert application["status"] == "approved" and application["account_id"] is None
    assert offer["principal"] == {"amount_minor": 1_000_000, "currency": "CNY"} and offer["term_months"] == 12
    assert offer["first_due_date"] == "2026-04-02" and offer["expires_on"] == "2026-03-09"
    assert 0 < float(offer["apr"]) <= 24
    replay = world.apply(api, 1_000_000, 12, key={"Idempotency-Key": "apply-1"})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == application
    reused = world.apply(api, 1_000_001, 12, key={"Idempotency-Key": "apply-1"})
    assert_problem(reused, 422, "idempotency.key_reused")
    application_id = application["application_id"]
    assert api.get(f"/v1/lending/applications/{application_id}").json()["status"] == "approved"

    accepted = api.post(f"/v1/lending/applications/{application_id}/accept", headers={"Idempotency-Key": "accept-1"})
    assert accepted.status_code == 201, accepted.text
    loan = accepted.json()
    ref = loan["account_id"]
    assert loan["kind"] == "loan" and loan["status"] == "active" and loan["customer_id"] == world.alice
    assert amount(loan, "balances", "principal") == 1_000_000 and len(loan["instalments"]) == 12
    assert sum(amount(row, "principal") for row in loan["instalments"]) == 1_000_000
    assert world.wallet_balance(world.alice_wallet) == 1_000_000  # disbursed into the wallet (no fee)
    again = api.post(f"/v1/lending/applications/{application_id}/accept", headers={"Idempotency-Key": "accept-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true" and again.json() == loan
    assert world.wallet_balance(world.alice_wallet) == 1_000_000  # disbursed once
    twice = api.post(f"/v1/lending/applications/{application_id}/accept", headers=_key())
    assert_problem(twice, 409, "lending.application_not_acceptable")
    after_accept = api.get(f"/v1/lending/applications/{application_id}").json()
    assert after_accept["status"] == "accepted" and after_accept["account_id"] == ref

    listed = api.get("/v1/lending/accounts").json()["items"]
    assert [a["account_id"] for a in listed] == [ref] and "instalments" not in listed[0]
    view = api.get(f"/v1/lending/accounts/{ref}").json()
    assert view == loan
    assert api.get(f"/v1/lending/accounts/{ref}/statements").json() == {"account_id": ref, "items": []}
    quote = api.get(f"/v1/lending/accounts/{ref}/payoff").json()
    assert quote["on"] == MONDAY.isoformat() and amount(quote, "total") == 1_000_000
    later = api.get(f"/v1/lending/accounts/{ref}/payoff", params={"on": "2026-04-01"}).json()
    assert amount(later, "interest") > 0 and amount(later, "total") == 1_000_000 + amount(later, "interest")

    repaid = world.repay(api, ref, 100_000, key="repay-1")
    assert repaid.status_code == 201, repaid.text
    repayment = repaid.json()
    assert amount(repayment, "allocation", "principal") == 100_000  # nothing billed yet: a prepayment
    assert amount(repayment, "account", "balances", "principal") == 900_000
    assert world.wallet_balance(world.alice_wallet) == 900_000
    replayed = world.repay(api, ref, 100_000, key="repay-1")
    assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == repayment
    assert world.wallet_balance(world.alice_wallet) == 900_000  # taken once
    assert_problem(world.repay(api, ref, 50_000, key="repay-1"), 422, "idempotency.key_reused")

    paid_off = world.repay(api, ref, amount(api.get(f"/v1/lending/accounts/{ref}/payoff").json(), "total"))
    assert paid_off.status_code == 201, paid_off.text
    closed = paid_off.json()["account"]
    assert closed["status"] == "closed" and amount(closed, "balances", "total_owed") == 0
    assert world.wallet_balance(world.alice_wallet) == 0
    before = written(world.platform)
    assert_problem(world.repay(api, ref, 1_000), 409, "lending.account_not_active")
    assert written(world.platform) == before
    assert api.get(f"/v1/lending/accounts/{ref}").json() == closed
    reconciled = world.ops.get("/v1/lending/reconcile").json()
    assert reconciled["clean"] is True


def test_one_consumer_cannot_see_or_touch_anothers_applications_and_loans(world: World) -> None:
    applied = world.apply(world.alice_api)
    application_id = applied.json()["application_id"]
    bob = world.bob_api
    assert_problem(bob.get(f"/v1/lending/applications/{application_id}"), 404, "lending.application_not_found")
    before = written(world.platform)
    stolen = bob.post(f"/v1/lending/applications/{application_id}/accept", headers=_key())
    assert_problem(stolen, 404, "lending.application_not_found")
    assert written(world.platform) == before
    ref = world.open_loan(world.alice_api)
    alice_loan = world.alice_api.get(f"/v1/lending/accounts/{ref}").json()
    bob_wallet = world.wallet_balance(world.bob_wallet)
    before = written(world.platform)
    for path in ("", "/statements", "/payoff"):
        assert_problem(bob.get(f"/v1/lending/accounts/{ref}{path}"), 404, "lending.account_not_found")
    assert_problem(world.repay(bob, ref, 1_000), 404, "lending.account_not_found")
    converted = bob.post(f"/v1/lending/accounts/{ref}/conversions", headers=_key(), json={"term_months": 3})
    assert_problem(converted, 404, "lending.account_not_found")
    assert bob.get("/v1/lending/accounts").json() == {"items": [], "next_after": None}
    assert bob.get("/v1/lending/accounts", params={"customer_id": world.alice}).json() == {
        "items": [],
        "next_after": None,
    }
    for_alice = world.apply(bob, customer=world.alice, wallet=world.alice_wallet)
    assert_problem(for_alice, 422, "lending.invalid_application")
    with_her_wallet = world.apply(bob, customer=world.bob, wallet=world.alice_wallet)
    assert_problem(with_her_wallet, 422, "lending.invalid_application")
    assert written(world.platform) == before
    assert world.alice_api.get(f"/v1/lending/accounts/{ref}").json() == alice_loan
    assert world.wallet_balance(world.bob_wallet) == bob_wallet
    # the operator sees every account, and may filter by customer
    every = world.ops.get("/v1/lending/accounts").json()["items"]
    assert ref in {a["account_id"] for a in every}
    assert world.ops.get("/v1/lending/accounts", params={"customer_id": world.bob}).json() == {
        "items": [],
        "next_after": None,
    }


def test_consumers_cannot_record_external_money_or_run_the_book(world: World) -> None:
    ref = world.open_loan(world.alice_api)
    before = written(world.platform)
    api = world.alice_api
    assert_problem(world.repay(api, ref, 1_000, source="external"), 403, "auth.forbidden")
    recovery = api.post(f"/v1/lending/accounts/{ref}/recoveries", headers=_key(), json={"amount_minor": 1_000})
    assert_problem(recovery, 403, "auth.forbidden")
    assert_problem(api.post("/v1/lending/eod", json={}), 403, "auth.forbidden")
    assert_problem(api.get("/v1/lending/reconcile"), 403, "auth.forbidden")
    merchant = client_for(world.platform, Role.MERCHANT, "cus_shop")
    assert_problem(merchant.get("/v1/lending/accounts"), 403, "auth.forbidden")
    assert written(world.platform) == before
    # the platform records a repayment collected at the bank
    external = world.repay(world.ops, ref, 10_000, source="external")
    assert external.status_code == 201, external.text
    assert amount(external.json(), "account", "balances", "principal") == 990_000
    assert world.wallet_balance(world.alice_wallet) == 1_000_000  # the wallet was not touched


# ---------------------------------------------------------------- bad input


def _bad_cases(world: World, ref: str) -> list[tuple[str, Callable[[], Response], int, str]]:
    api = world.alice_api
    return [
        ("negative amount", lambda: world.apply(api, -1_000_000), 422, "lending.invalid_application"),
        ("zero amount", lambda: world.apply(api, 0), 422, "lending.invalid_application"),
        ("float amount", lambda: world.apply(api, 1_000_000.0), 422, "money.invalid_amount"),
        ("fractional amount", lambda: world.apply(api, 1_000.5), 422, "money.invalid_amount"),
        ("string amount", lambda: world.apply(api, "1000000"), 422, "money.invalid_amount"),
        ("boolean amount", lambda: world.apply(api, True), 422, "money.invalid_amount"),
        ("amount beyond 2**53", lambda: world.apply(api, 2**53), 422, "money.amount_out_of_range"),
        ("over the product max", lambda: world.apply(api, 20_000_001), 422, "lending.invalid_application"),
        ("under the product min", lambda: world.apply(api, 49_999), 422, "lending.invalid_application"),
        ("unknown product", lambda: world.apply(api, product="gold-bars"), 404, "lending.product_not_found"),
        ("term too long", lambda: world.apply(api, term_months=36), 422, "lending.invalid_application"),
        ("term too short", lambda: world.apply(api, term_months=2), 422, "lending.invalid_application"),
        ("term missing", lambda: world.apply(api, term_months=None), 422, "lending.invalid_application"),
        ("term as text", lambda: world.apply(api, term_months="12"), 422, "request.invalid"),
        (
            "a line with a term",
            lambda: world.apply(api, 500_000, 12, product="line-cny"),
            422,
            "lending.invalid_application",
        ),
        (
            "negative income",
            lambda: world.apply(api, income_3y_average_minor=-1),
            422,
            "lending.invalid_application",
        ),
        ("float income", lambda: world.apply(api, income_3y_average_minor=1e7), 422, "money.invalid_amount"),
        ("unknown field", lambda: world.apply(api, currency="CNY"), 422, "request.invalid"),
        ("unknown wallet", lambda: world.apply(api, wallet="wal_nope"), 404, "payments.wallet_not_found"),
        (
            "no idempotency key",
            lambda: api.post(
                "/v1/lending/applications",
                json={"customer_id": world.alice, "wallet_id": world.alice_wallet, "product_code": "cash-cny"},
            ),
            422,
            "request.invalid",
        ),
        (
            "accept an unknown application",
            lambda: api.post("/v1/lending/applications/app_nope/accept", headers=_key()),
            404,
            "lending.application_not_found",
        ),
        ("negative repayment", lambda: world.repay(api, ref, -100), 422, "lending.invalid_repayment"),
        ("zero repayment", lambda: world.repay(api, ref, 0), 422, "lending.invalid_repayment"),
        ("float repayment", lambda: world.repay(api, ref, 100.0), 422, "money.invalid_amount"),
        ("string repayment", lambda: world.repay(api, ref, "100"), 422, "money.invalid_amount"),
        ("unknown source", lambda: world.repay(api, ref, 100, source="bank"), 422, "request.invalid"),
        ("repay an unknown loan", lambda: world.repay(api, "loan_nope", 100), 404, "lending.account_not_found"),
        (
            "repay more than the wallet holds",
            lambda: world.repay(api, ref, 5_000_000),
            409,
            "lending.insufficient_funds",
        ),
        (
            "convert a loan",
            lambda: api.post(f"/v1/lending/accounts/{ref}/conversions", headers=_key(), json={"term_months": 3}),
            409,
            "lending.not_convertible",
        ),
        (
            "recover on an active loan",
            lambda: world.ops.post(
                f"/v1/lending/accounts/{ref}/recoveries", headers=_key(), json={"amount_minor": 100}
            ),
            409,
            "lending.recovery_not_allowed",
        ),
        (
            "payoff before the business date",
            lambda: api.get(f"/v1/lending/accounts/{ref}/payoff", params={"on": "2026-03-01"}),
            422,
            "lending.date_before_disbursement",
        ),
        (
            "payoff on no date",
            lambda: api.get(f"/v1/lending/accounts/{ref}/payoff", params={"on": "2026-13-01"}),
            422,
            "request.invalid",
        ),
        (
            "a page too large",
            lambda: world.ops.get("/v1/lending/accounts", params={"limit": 501}),
            422,
            "request.invalid",
        ),
        (
            "end of day in the future",
            lambda: world.ops.post("/v1/lending/eod", json={"business_date": "2026-03-03"}),
            422,
            "lending.eod_date_invalid",
        ),
        (
            "end of day on a timestamp",
            lambda: world.ops.post("/v1/lending/eod", json={"business_date": 1772409600}),
            422,
            "request.invalid",
        ),
    ]


def test_bad_input_gets_a_stable_code_and_writes_nothing(world: World) -> None:
    ref = world.open_loan(world.alice_api, 1_000_000)
    loan = world.alice_api.get(f"/v1/lending/accounts/{ref}").json()
    wallet = world.wallet_balance(world.alice_wallet)
    before = written(world.platform)
    for name, call, status, code in _bad_cases(world, ref):
        response = call()
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), name
        assert response.json()["code"] == code, (name, response.text)
        assert written(world.platform) == before, name
    assert world.alice_api.get(f"/v1/lending/accounts/{ref}").json() == loan
    assert world.wallet_balance(world.alice_wallet) == wallet
    assert world.platform.ledger.business_date() == MONDAY


# ---------------------------------------------------------------- the household cap


def test_a_second_loan_over_the_household_cap_is_declined_naming_the_rules(world: World) -> None:
    income = HIGH_INCOME_MINOR
    first = world.open_loan(world.alice_api, 15_000_000, income_3y_average_minor=income)
    wallet = world.wallet_balance(world.alice_wallet)
    before = written(world.platform)
    declined = world.apply(
        world.alice_api, 15_000_000, key={"Idempotency-Key": "second"}, income_3y_average_minor=income
    )
    problem = assert_problem(declined, 409, "lending.application_declined")
    rules = {r.get("rule_id") for r in problem["details"]["reasons"]}
    assert rules == {"cn2021.household_consumer_cap", "cn2025.consumer_cap"}
    assert "cn2021.household_consumer_cap" in problem["detail"] and "cn2025.consumer_cap" in problem["detail"]
    cap = next(r for r in problem["details"]["reasons"] if r["rule_id"] == "cn2025.consumer_cap")
    assert cap["numbers"]["cap_minor"] == CAP_MINOR and cap["numbers"]["exposure_minor"] == 30_000_000
    application = problem["application"]
    assert application["status"] == "declined" and application["offer"] is None
    assert problem["details"]["application_id"] == application["application_id"]
    # the decline is stored (its application row and the key's outcome), and nothing else moved
    journal, applications, accounts, transactions, keys = before
    assert written(world.platform) == (journal, applications + 1, accounts, transactions, keys + 1)
    assert world.wallet_balance(world.alice_wallet) == wallet
    stored = world.alice_api.get(f"/v1/lending/applications/{application['application_id']}").json()
    assert stored["status"] == "declined" and stored["decision"]["reasons"] == problem["details"]["reasons"]
    replay = world.apply(world.alice_api, 15_000_000, key={"Idempotency-Key": "second"}, income_3y_average_minor=income)
    assert replay.status_code == 409 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == problem
    accept = world.alice_api.post(f"/v1/lending/applications/{application['application_id']}/accept", headers=_key())
    assert_problem(accept, 409, "lending.application_not_acceptable")
    # up to the cap is fine
    within = world.apply(world.alice_api, CAP_MINOR - 15_000_000, income_3y_average_minor=income)
    assert within.status_code == 201, within.text
    assert world.alice_api.get(f"/v1/lending/accounts/{first}").json()["status"] == "active"


# ---------------------------------------------------------------- a credit line


def test_a_line_is_drawn_by_a_merchant_payment_and_its_statement_converts(world: World) -> None:
    api = world.alice_api
    applied = world.apply(api, 5_000_000, None, product="line-cny")
    assert applied.status_code == 201, applied.text
    assert applied.json()["offer"]["kind"] == "line"
    accepted = api.post(f"/v1/lending/applications/{applied.json()['application_id']}/accept", headers=_key())
    assert accepted.status_code == 201, accepted.text
    line = accepted.json()
    ref = line["account_id"]
    assert line["kind"] == "line" and amount(line, "available") == 5_000_000
    shop = world.ops.post(
        "/v1/payments/customers",
        headers=_key(),
        json={"kind": "merchant", "legal_name": "Tea Shop Ltd", "merchant_category": "5814", "fee_bps": 60},
    ).json()["id"]
    shop_wallet = open_wallet(world.ops, shop)
    paid = api.post(
        "/v1/payments/merchant-payments",
        headers=_key(),
        json={
            "payer_wallet_id": world.alice_wallet,
            "merchant_wallet_id": shop_wallet,
            "amount": {"amount_minor": 150_000, "currency": "CNY"},
            "funding": "credit_line",
        },
    )
    assert paid.status_code == 201, paid.text
    assert amount(api.get(f"/v1/lending/accounts/{ref}").json(), "balances", "principal") == 150_000
    before = written(world.platform)
    early = api.post(f"/v1/lending/accounts/{ref}/conversions", headers=_key(), json={"term_months": 3})
    assert_problem(early, 409, "lending.not_convertible")  # no statement yet
    assert written(world.platform) == before
    day = MONDAY
    while not api.get(f"/v1/lending/accounts/{ref}/statements").json()["items"]:
        assert world.eod()["reports"][0]["business_date"] == day.isoformat()
        day = world.platform.ledger.business_date()
        assert day <= date(2026, 3, 6), "no statement by the statement day"
    statement = api.get(f"/v1/lending/accounts/{ref}/statements").json()["items"][0]
    assert statement["statement_date"] == "2026-03-05" and amount(statement, "principal") == 150_000
    wrong_term = api.post(f"/v1/lending/accounts/{ref}/conversions", headers=_key(), json={"term_months": 5})
    assert_problem(wrong_term, 409, "lending.not_convertible")
    conversion = api.post(
        f"/v1/lending/accounts/{ref}/conversions", headers={"Idempotency-Key": "conv-1"}, json={"term_months": 3}
    )
    assert conversion.status_code == 201, conversion.text
    converted = conversion.json()
    assert amount(converted, "converted") == 150_000 and len(converted["due_dates"]) == 3
    again = api.post(
        f"/v1/lending/accounts/{ref}/conversions", headers={"Idempotency-Key": "conv-1"}, json={"term_months": 3}
    )
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true" and again.json() == converted
    assert world.ops.get("/v1/lending/reconcile").json()["clean"] is True


# ---------------------------------------------------------------- end of day and reconcile


def test_end_of_day_advances_the_business_date_and_the_book_reconciles(world: World) -> None:
    ref = world.open_loan(world.alice_api, 1_000_000)
    ran = world.eod()
    assert ran["business_date"] == "2026-03-03"
    assert [r["business_date"] for r in ran["reports"]] == ["2026-03-02"]
    steps = [s["step"] for s in ran["reports"][0]["steps"]]
    assert steps[0] == "accrue" and steps[-1] == "post_gl"
    assert world.ops.get("/healthz").json()["business_date"] == "2026-03-03"
    loan = world.alice_api.get(f"/v1/lending/accounts/{ref}").json()
    assert loan["accrued_through"] == "2026-03-02" and amount(loan, "balances", "interest_accrued_unbilled") > 0
    again = world.eod(MONDAY)
    assert again["reports"] == [{"business_date": "2026-03-02", "already_complete": True, "seconds": 0.0, "steps": []}]
    assert again["business_date"] == "2026-03-03"
    bare = world.ops.post("/v1/lending/eod")  # no body: the current business date
    assert bare.status_code == 200 and bare.json()["business_date"] == "2026-03-04"
    report = world.ops.get("/v1/lending/reconcile").json()
    assert report["clean"] is True
    lines = [line for product in report["products"] for line in product["accounts"]]
    assert lines and all(line["difference_minor"] == 0 for line in lines)
    receivable = next(line for line in lines if line["gl_account"] == "lending:cash-cny:loans_receivable")
    assert receivable["ledger_minor"] == receivable["subledger_minor"] == 1_000_000
    # a repayment after end of day catches the loan up and still reconciles
    repaid = world.repay(world.alice_api, ref, 50_000)
    assert repaid.status_code == 201, repaid.text
    assert amount(repaid.json(), "allocation", "interest") > 0  # the accrued interest is taken first
    assert world.ops.get("/v1/lending/reconcile").json()["clean"] is True


def test_the_openapi_document_lists_every_lending_endpoint(world: World) -> None:
    spec = world.ops.get("/openapi.json").json()
    expected = {
        ("get", "/v1/lending/products"),
        ("post", "/v1/lending/applications"),
        ("get", "/v1/lending/applications/{application_id}"),
        ("post", "/v1/lending/applications/{application_id}/accept"),
        ("get", "/v1/lending/accounts"),
        ("get", "/v1/lending/accounts/{account_ref}"),
        ("get", "/v1/lending/accounts/{account_ref}/statements"),
        ("get", "/v1/lending/accounts/{account_ref}/payoff"),
        ("post", "/v1/lending/accounts/{account_ref}/repayments"),
        ("post", "/v1/lending/accounts/{account_ref}/conversions"),
        ("post", "/v1/lending/accounts/{account_ref}/recoveries"),
        ("post", "/v1/lending/eod"),
        ("get", "/v1/lending/reconcile"),
        ("post", "/v1/lending/apr"),
    }
    for method, path in expected:
        operation = spec["paths"][path][method]
        assert operation["summary"], (method, path)
    apply_body = spec["components"]["schemas"]["ApplicationIn"]
    assert apply_body["properties"]["amount_minor"]["type"] == "integer"
    assert apply_body["additionalProperties"] is False
