"""Payments over HTTP on SQLite and PostgreSQL: every endpoint, roles and ownership, idempotency, limits at the
boundary, bad input, and reconciliation of generated and real ISO 20022 camt.053 statements.

Every bad-input case asserts its stable code and that nothing was written: the ledger's journal position,
the payments table and the idempotency table are unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from creditstack.app.main import create_app
from creditstack.app.platform import Platform
from creditstack.core import business_date
from creditstack.core.security import Role
from creditstack.core.tables import PLATFORM_CORE
from creditstack.payments.rail import SimulatedRail
from creditstack.payments.statements import parse_camt053

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "iso20022"
MONDAY = date(2026, 3, 2)  # the fixture clock's business date


def _new_key() -> dict[str, str]:
    """A fresh idempotency key for a creation call."""
    return {"Idempotency-Key": f"create-{uuid.uuid4().hex}"}


def money(amount: Any, currency: str = "CNY") -> dict[str, Any]:
    return {"amount_minor": amount, "currency": currency}


@dataclass
class World:
    api: TestClient  # the platform operator
    platform: Platform
    alice: str  # customer ids
    bob: str
    shop: str
    other_shop: str
    power: str  # a biller
    alice_wallet: str
    bob_wallet: str
    shop_wallet: str
    other_shop_wallet: str
    power_wallet: str
    alice_key: TestClient
    bob_key: TestClient
    shop_key: TestClient
    other_shop_key: TestClient

    @property
    def rail(self) -> SimulatedRail:
        assert isinstance(self.platform.rail, SimulatedRail)
        return self.platform.rail


def client_for(platform: Platform, role: Role, member: str) -> TestClient:
    client = TestClient(create_app(platform))
    _, token = platform.keys.create(role, member)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def register(api: TestClient, **body: Any) -> str:
    response = api.post("/v1/payments/customers", headers=_new_key(), json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def consumer_body(name: str, national_id: str, tier: int = 1) -> dict[str, Any]:
    return {
        "kind": "consumer",
        "legal_name": name,
        "national_id": national_id,
        "date_of_birth": "1990-05-17",
        "address": f"{name}'s flat, 1 Nanjing Road, Shanghai",
        "phone": "+86-21-5555-0101",
        "kyc_tier": tier,
        "incomes": [{"as_of": "2025-12-31", "annual_income": money(12_000_000)}],
    }


def open_wallet(api: TestClient, customer_id: str, currency: str = "CNY") -> str:
    response = api.post(
        "/v1/payments/wallets", headers=_new_key(), json={"customer_id": customer_id, "currency": currency}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def top_up(api: TestClient, wallet: str, amount: int, key: str) -> dict[str, Any]:
    response = api.post(
        "/v1/payments/top-ups",
        headers={"Idempotency-Key": key},
        json={"wallet_id": wallet, "amount": money(amount), "bank_account_token": "tok-1"},
    )
    assert response.status_code in (200, 201, 202), response.text
    return dict(response.json())


def pay_merchant(client: TestClient, payer: str, merchant: str, amount: Any, key: str) -> Any:
    return client.post(
        "/v1/payments/merchant-payments",
        headers={"Idempotency-Key": key},
        json={"payer_wallet_id": payer, "merchant_wallet_id": merchant, "amount": money(amount)},
    )


def transfer(client: TestClient, payer: str, payee: str, amount: Any, key: str) -> Any:
    return client.post(
        "/v1/payments/transfers",
        headers={"Idempotency-Key": key},
        json={"payer_wallet_id": payer, "payee_wallet_id": payee, "amount": money(amount)},
    )


@pytest.fixture
def world(platform: Platform) -> World:
    api = client_for(platform, Role.PLATFORM_OPERATOR, "ops")
    alice = register(api, **consumer_body("Alice Zhang", "P10000001"))
    bob = register(api, **consumer_body("Bob Li", "P10000002"))
    shop = register(
        api,
        kind="merchant",
        legal_name="Tea Shop Ltd",
        merchant_category="5814",
        fee_bps=60,
        refund_fee_policy="pro_rata",
    )
    other_shop = register(api, kind="merchant", legal_name="Noodle Bar Ltd", merchant_category="5812", fee_bps=100)
    power = register(api, kind="biller", legal_name="Shanghai Power", reference_pattern=r"\d{10}")
    world = World(
        api=api,
        platform=platform,
        alice=alice,
        bob=bob,
        shop=shop,
        other_shop=other_shop,
        power=power,
        alice_wallet=open_wallet(api, alice),
        bob_wallet=open_wallet(api, bob),
        shop_wallet=open_wallet(api, shop),
        other_shop_wallet=open_wallet(api, other_shop),
        power_wallet=open_wallet(api, power),
        alice_key=client_for(platform, Role.CONSUMER, alice),
        bob_key=client_for(platform, Role.CONSUMER, bob),
        shop_key=client_for(platform, Role.MERCHANT, shop),
        other_shop_key=client_for(platform, Role.MERCHANT, other_shop),
    )
    top_up(api, world.alice_wallet, 1_000_000, "seed-alice")
    top_up(api, world.bob_wallet, 100_000, "seed-bob")
    return world


def written(platform: Platform) -> tuple[int, int, int]:
    """Journal position, payment rows and stored idempotency outcomes."""
    with platform.db.transaction(readonly=True) as conn:
        payments = conn.execute(sa.text("SELECT count(*) FROM payments")).scalar_one()
        keys = conn.execute(sa.text("SELECT count(*) FROM idempotency_keys")).scalar_one()
    return platform.ledger.journal_position(), int(payments), int(keys)


def balance(world: World, wallet: str) -> tuple[int, int, int]:
    body = world.api.get(f"/v1/payments/wallets/{wallet}").json()
    return body["balance"]["amount_minor"], body["available"]["amount_minor"], body["held"]["amount_minor"]


def outbox(platform: Platform, topic: str) -> list[dict[str, Any]]:
    with platform.db.transaction(readonly=True) as conn:
        rows = conn.execute(
            sa.text("SELECT payload FROM outbox WHERE topic = :t ORDER BY position"), {"t": topic}
        ).all()
    return [r.payload if isinstance(r.payload, dict) else json.loads(r.payload) for r in rows]


def advance_business_date(platform: Platform, to: date) -> None:
    platform.db.run(lambda conn: business_date.advance(conn, PLATFORM_CORE, "platform", to, platform.clock.now()))


# ---------------------------------------------------------------- customers and wallets


def test_registration_answers_no_personal_data_and_seals_it_at_rest(world: World) -> None:
    body = consumer_body("Carol Wang", "P10000003", tier=2)
    response = world.api.post("/v1/payments/customers", headers=_new_key(), json=body)
    assert response.status_code == 201
    text = response.text
    for secret in ("Carol", "Wang", "P10000003", "1990-05-17", "Nanjing", "5555-0101"):
        assert secret not in text
    customer = response.json()
    assert customer["kind"] == "consumer" and customer["kyc_tier"] == 2
    with world.platform.db.transaction(readonly=True) as conn:
        row = conn.execute(sa.text("SELECT * FROM payments_customers WHERE id = :i"), {"i": customer["id"]}).one()
    stored = json.dumps([str(v) for v in row._mapping.values()])
    for secret in ("Carol", "P10000003", "1990-05-17", "Nanjing", "5555-0101"):
        assert secret not in stored
    # The keyed hash finds the customer again; a second consumer with the same id is refused.
    assert world.platform.payments.find_customer_by_national_id("p1000 0003") == customer["id"]
    again = world.api.post("/v1/payments/customers", headers=_new_key(), json=body)
    assert again.status_code == 409 and again.json()["code"] == "payments.duplicate_customer"
    own = world.alice_key.get(f"/v1/payments/customers/{world.alice}")
    assert own.status_code == 200 and own.json()["wallets"] == [world.alice_wallet]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"kyc_tier": 9}, "payments.invalid_customer"),
        ({"kyc_tier": "2"}, "request.invalid"),
        ({"date_of_birth": None}, "payments.invalid_customer"),
        ({"national_id": "110105194912310028"}, "payments.invalid_customer"),  # wrong check digit
        ({"kind": "robot"}, "request.invalid"),
        ({"incomes": [{"as_of": "2025-12-31", "annual_income": money(1.5)}]}, "money.invalid_amount"),
        ({"extra": 1}, "request.invalid"),
    ],
)
def test_bad_registrations_are_refused_and_store_nothing(world: World, change: dict[str, Any], code: str) -> None:
    before = written(world.platform)
    response = world.api.post(
        "/v1/payments/customers", headers=_new_key(), json={**consumer_body("Dan", "P10000009"), **change}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert written(world.platform) == before
    assert world.platform.payments.find_customer_by_national_id("P10000009") is None


def test_wallet_freeze_unfreeze_and_close(world: World) -> None:
    frozen = world.api.post(f"/v1/payments/wallets/{world.bob_wallet}/freeze")
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
    refused = transfer(world.alice_key, world.alice_wallet, world.bob_wallet, 100, "to-frozen")
    assert refused.status_code == 409 and refused.json()["code"] == "payments.wallet_frozen"
    assert world.api.post(f"/v1/payments/wallets/{world.bob_wallet}/unfreeze").json()["status"] == "active"
    not_empty = world.bob_key.post(f"/v1/payments/wallets/{world.bob_wallet}/close")
    assert not_empty.status_code == 409 and not_empty.json()["code"] == "payments.wallet_not_empty"
    empty = open_wallet(world.bob_key, world.bob)
    closed = world.bob_key.post(f"/v1/payments/wallets/{empty}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    refused = transfer(world.alice_key, world.alice_wallet, empty, 100, "to-closed")
    assert refused.status_code == 409 and refused.json()["code"] == "payments.wallet_closed"


# ---------------------------------------------------------------- flows


def test_top_up_withdraw_transfer_merchant_refund_bill_and_history(world: World) -> None:
    assert balance(world, world.alice_wallet) == (1_000_000, 1_000_000, 0)
    p2p = transfer(world.alice_key, world.alice_wallet, world.bob_wallet, 10_000, "p2p-1")
    assert p2p.status_code == 201 and p2p.json()["kind"] == "p2p"
    buy = pay_merchant(world.alice_key, world.alice_wallet, world.shop_wallet, 10_000, "buy-1")
    assert buy.status_code == 201, buy.text
    assert buy.json()["fee"] == money(60) and buy.json()["merchant_category"] == "5814"
    assert balance(world, world.shop_wallet)[0] == 9_940
    bill = world.alice_key.post(
        "/v1/payments/bill-payments",
        headers={"Idempotency-Key": "bill-1"},
        json={
            "payer_wallet_id": world.alice_wallet,
            "biller_wallet_id": world.power_wallet,
            "reference": "0123456789",
            "amount": money(8_000),
            "due_date": "2026-03-15",
        },
    )
    assert bill.status_code == 201 and bill.json()["biller_reference"] == "0123456789"
    bad_reference = world.alice_key.post(
        "/v1/payments/bill-payments",
        headers={"Idempotency-Key": "bill-2"},
        json={
            "payer_wallet_id": world.alice_wallet,
            "biller_wallet_id": world.power_wallet,
            "reference": "ABC",
            "amount": money(8_000),
        },
    )
    assert bad_reference.status_code == 422 and bad_reference.json()["code"] == "payments.biller_reference_invalid"
    refund = world.shop_key.post(
        "/v1/payments/refunds",
        headers={"Idempotency-Key": "refund-1"},
        json={"payment_id": buy.json()["payment_id"], "amount": money(2_500)},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["fee"] == money(15)  # 60 × 2,500 / 10,000 returned pro rata
    withdrawal = world.alice_key.post(
        "/v1/payments/withdrawals",
        headers={"Idempotency-Key": "out-1"},
        json={"wallet_id": world.alice_wallet, "amount": money(100_000), "bank_account_token": "tok-1"},
    )
    assert withdrawal.json()["status"] == "completed"
    # 1,000,000 − 10,000 − 10,000 − 8,000 + 2,500 − 100,000
    assert balance(world, world.alice_wallet) == (874_500, 874_500, 0)
    payment = world.alice_key.get(f"/v1/payments/payments/{buy.json()['payment_id']}").json()
    assert payment["refunded"] == money(2_500)
    history = world.alice_key.get(f"/v1/payments/wallets/{world.alice_wallet}/payments").json()
    kinds = [item["kind"] for item in history["items"]]
    assert kinds == ["withdrawal", "refund", "bill", "merchant", "p2p", "top_up"]
    assert history["items"][1]["direction"] == "in" and history["items"][0]["direction"] == "out"
    only = world.alice_key.get(
        f"/v1/payments/wallets/{world.alice_wallet}/payments", params={"counterparty": world.bob_wallet}
    ).json()
    assert [i["payment_id"] for i in only["items"]] == [p2p.json()["payment_id"]]
    merchant = world.alice_key.get(
        f"/v1/payments/wallets/{world.alice_wallet}/payments", params={"kind": "merchant"}
    ).json()
    assert len(merchant["items"]) == 1
    dated = world.alice_key.get(
        f"/v1/payments/wallets/{world.alice_wallet}/payments",
        params={"from_date": "2026-03-03", "to_date": "2026-03-31"},
    ).json()
    assert dated["items"] == []
    page = world.alice_key.get(f"/v1/payments/wallets/{world.alice_wallet}/payments", params={"limit": 4}).json()
    rest = world.alice_key.get(
        f"/v1/payments/wallets/{world.alice_wallet}/payments", params={"limit": 4, "before": page["next_before"]}
    ).json()
    assert [i["kind"] for i in page["items"] + rest["items"]] == kinds and rest["next_before"] is None
    too_big = world.alice_key.get(f"/v1/payments/wallets/{world.alice_wallet}/payments", params={"limit": 501})
    assert too_big.status_code == 422


def test_refunds_never_exceed_the_payment_and_fail_when_the_merchant_cannot_cover(world: World) -> None:
    buy = pay_merchant(world.alice_key, world.alice_wallet, world.shop_wallet, 10_000, "buy-r").json()
    refunds = [("r1", 3_333), ("r2", 6_667)]
    for key, amount in refunds:
        r = world.shop_key.post(
            "/v1/payments/refunds",
            headers={"Idempotency-Key": key},
            json={"payment_id": buy["payment_id"], "amount": money(amount)},
        )
        assert r.status_code == 201, r.text
    refunded = world.shop_key.get(f"/v1/payments/payments/{buy['payment_id']}").json()
    assert refunded["refunded"] == money(10_000)
    one_more = world.shop_key.post(
        "/v1/payments/refunds",
        headers={"Idempotency-Key": "r3"},
        json={"payment_id": buy["payment_id"], "amount": money(1)},
    )
    assert one_more.status_code == 409 and one_more.json()["code"] == "payments.refund_exceeds_payment"
    assert balance(world, world.shop_wallet)[0] == 0  # 9,940 received, 9,940 returned; the fee came back whole
    # A merchant with an empty wallet cannot refund.
    buy2 = pay_merchant(world.alice_key, world.alice_wallet, world.other_shop_wallet, 5_000, "buy-o").json()
    drain = world.other_shop_key.post(
        "/v1/payments/withdrawals",
        headers={"Idempotency-Key": "drain"},
        json={"wallet_id": world.other_shop_wallet, "amount": money(4_950), "bank_account_token": "tok-shop"},
    )
    assert drain.json()["status"] == "completed"
    broke = world.other_shop_key.post(
        "/v1/payments/refunds",
        headers={"Idempotency-Key": "r-broke"},
        json={"payment_id": buy2["payment_id"], "amount": money(5_000)},
    )
    assert broke.status_code == 409 and broke.json()["code"] == "payments.merchant_insufficient_funds"


# ---------------------------------------------------------------- ownership and roles


def test_one_consumer_cannot_read_or_move_anothers_objects(world: World) -> None:
    bobs_payment = transfer(world.bob_key, world.bob_wallet, world.alice_wallet, 1_000, "bob-pays").json()
    before = written(world.platform)
    alice = world.alice_key
    attempts = [
        (alice.get(f"/v1/payments/wallets/{world.bob_wallet}"), "payments.wallet_not_found"),
        (alice.get(f"/v1/payments/wallets/{world.bob_wallet}/payments"), "payments.wallet_not_found"),
        (alice.get(f"/v1/payments/customers/{world.bob}"), "payments.customer_not_found"),
        (
            alice.post("/v1/payments/wallets", headers=_new_key(), json={"customer_id": world.bob}),
            "payments.customer_not_found",
        ),
        (alice.post(f"/v1/payments/wallets/{world.bob_wallet}/close"), "payments.wallet_not_found"),
        (transfer(alice, world.bob_wallet, world.alice_wallet, 500, "steal"), "payments.wallet_not_found"),
        (pay_merchant(alice, world.bob_wallet, world.shop_wallet, 500, "steal-2"), "payments.wallet_not_found"),
        (
            alice.post(
                "/v1/payments/withdrawals",
                headers={"Idempotency-Key": "steal-3"},
                json={"wallet_id": world.bob_wallet, "amount": money(500), "bank_account_token": "tok-a"},
            ),
            "payments.wallet_not_found",
        ),
        (
            alice.post(
                "/v1/payments/top-ups",
                headers={"Idempotency-Key": "steal-4"},
                json={"wallet_id": world.bob_wallet, "amount": money(500), "bank_account_token": "tok-a"},
            ),
            "payments.wallet_not_found",
        ),
        (
            alice.post(
                "/v1/payments/bill-payments",
                headers={"Idempotency-Key": "steal-5"},
                json={
                    "payer_wallet_id": world.bob_wallet,
                    "biller_wallet_id": world.power_wallet,
                    "reference": "0123456789",
                    "amount": money(500),
                },
            ),
            "payments.wallet_not_found",
        ),
        (
            alice.post(
                f"/v1/payments/withdrawals/{bobs_payment['payment_id']}/retry", json={"bank_account_token": "t"}
            ),
            "payments.payment_not_found",
        ),
    ]
    for response, code in attempts:
        assert response.status_code == 404, response.text
        assert response.json()["code"] == code
    # The payment Bob made to Alice is hers to see too, but not a payment between Bob and the shop.
    assert alice.get(f"/v1/payments/payments/{bobs_payment['payment_id']}").status_code == 200
    bobs_buy = pay_merchant(world.bob_key, world.bob_wallet, world.shop_wallet, 1_000, "bob-buys").json()
    after = written(world.platform)
    hidden = alice.get(f"/v1/payments/payments/{bobs_buy['payment_id']}")
    assert hidden.status_code == 404 and hidden.json()["code"] == "payments.payment_not_found"
    assert after[0] == before[0] + 1  # only Bob's own purchase moved money


def test_a_merchant_refunds_only_its_own_payments(world: World) -> None:
    buy = pay_merchant(world.alice_key, world.alice_wallet, world.shop_wallet, 10_000, "buy-m").json()
    before = written(world.platform)
    foreign = world.other_shop_key.post(
        "/v1/payments/refunds",
        headers={"Idempotency-Key": "not-mine"},
        json={"payment_id": buy["payment_id"], "amount": money(100)},
    )
    assert foreign.status_code == 404 and foreign.json()["code"] == "payments.payment_not_found"
    by_consumer = world.alice_key.post(
        "/v1/payments/refunds",
        headers={"Idempotency-Key": "self-refund"},
        json={"payment_id": buy["payment_id"], "amount": money(100)},
    )
    assert by_consumer.status_code == 403 and by_consumer.json()["code"] == "auth.forbidden"
    assert written(world.platform) == before


def test_consumers_cannot_call_operator_endpoints(world: World) -> None:
    alice = world.alice_key
    calls = [
        alice.post("/v1/payments/customers", headers=_new_key(), json=consumer_body("Eve", "P10000066")),
        alice.post(f"/v1/payments/wallets/{world.alice_wallet}/freeze"),
        alice.post(f"/v1/payments/wallets/{world.alice_wallet}/unfreeze"),
        alice.post("/v1/payments/rail/outcomes", json={"end_to_end_id": "CSX", "outcome": "settled"}),
        alice.post("/v1/payments/withdrawals/pay_x/release"),
        alice.post("/v1/payments/reconciliations?format=csv", content=b"x"),
    ]
    for response in calls:
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "auth.forbidden"
    anonymous = TestClient(create_app(world.platform)).get(f"/v1/payments/wallets/{world.alice_wallet}")
    assert anonymous.status_code == 401


# ---------------------------------------------------------------- idempotency


def _mutations(world: World, buy_id: str) -> dict[str, tuple[TestClient, str, dict[str, Any], dict[str, Any]]]:
    rail = {"wallet_id": world.alice_wallet, "amount": money(1_000), "bank_account_token": "tok-1"}
    return {
        "top_up": (world.alice_key, "/v1/payments/top-ups", rail, {**rail, "amount": money(1_001)}),
        "withdrawal": (world.alice_key, "/v1/payments/withdrawals", rail, {**rail, "amount": money(1_001)}),
        "transfer": (
            world.alice_key,
            "/v1/payments/transfers",
            {"payer_wallet_id": world.alice_wallet, "payee_wallet_id": world.bob_wallet, "amount": money(1_000)},
            {"payer_wallet_id": world.alice_wallet, "payee_wallet_id": world.bob_wallet, "amount": money(999)},
        ),
        "merchant": (
            world.alice_key,
            "/v1/payments/merchant-payments",
            {"payer_wallet_id": world.alice_wallet, "merchant_wallet_id": world.shop_wallet, "amount": money(1_000)},
            {"payer_wallet_id": world.alice_wallet, "merchant_wallet_id": world.shop_wallet, "amount": money(999)},
        ),
        "refund": (
            world.shop_key,
            "/v1/payments/refunds",
            {"payment_id": buy_id, "amount": money(1_000)},
            {"payment_id": buy_id, "amount": money(999)},
        ),
        "bill": (
            world.alice_key,
            "/v1/payments/bill-payments",
            {
                "payer_wallet_id": world.alice_wallet,
                "biller_wallet_id": world.power_wallet,
                "reference": "0123456789",
                "amount": money(1_000),
            },
            {
                "payer_wallet_id": world.alice_wallet,
                "biller_wallet_id": world.power_wallet,
                "reference": "0123456780",
                "amount": money(1_000),
            },
        ),
    }


@pytest.mark.parametrize("operation", ["top_up", "withdrawal", "transfer", "merchant", "refund", "bill"])
def test_every_money_call_is_idempotent(world: World, operation: str) -> None:
    buy = pay_merchant(world.alice_key, world.alice_wallet, world.shop_wallet, 5_000, "buy-i").json()
    client, path, body, other = _mutations(world, buy["payment_id"])[operation]
    first = client.post(path, headers={"Idempotency-Key": f"idem-{operation}"}, json=body)
    assert first.status_code in (201, 202), first.text  # 202: a rail payment is accepted, its status in the body
    position, payments, keys = written(world.platform)
    replay = client.post(path, headers={"Idempotency-Key": f"idem-{operation}"}, json=body)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert written(world.platform) == (position, payments, keys)
    reused = client.post(path, headers={"Idempotency-Key": f"idem-{operation}"}, json=other)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency.key_reused"
    assert written(world.platform) == (position, payments, keys)
    missing = client.post(path, json=body)
    assert missing.status_code == 422 and missing.json()["field"] == "header.Idempotency-Key"


def test_a_stored_business_rejection_is_replayed_as_it_was(world: World) -> None:
    first = transfer(world.bob_key, world.bob_wallet, world.alice_wallet, 100_001, "too-much")
    assert first.status_code == 409 and first.json()["code"] == "payments.insufficient_funds"
    assert first.json()["payment"]["status"] == "rejected"
    top_up(world.api, world.bob_wallet, 50_000, "bob-more")
    again = transfer(world.bob_key, world.bob_wallet, world.alice_wallet, 100_001, "too-much")
    assert again.status_code == 409 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_a_rail_payment_replays_with_its_first_status_code(world: World) -> None:
    body = {"wallet_id": world.alice_wallet, "amount": money(1_000), "bank_account_token": "tok-1"}
    first = world.alice_key.post("/v1/payments/top-ups", headers={"Idempotency-Key": "tu-status"}, json=body)
    replay = world.alice_key.post("/v1/payments/top-ups", headers={"Idempotency-Key": "tu-status"}, json=body)
    assert replay.status_code == first.status_code


# ---------------------------------------------------------------- limits at the boundary


def _pay_ok(world: World, amount: int, key: str) -> None:
    r = pay_merchant(world.alice_key, world.alice_wallet, world.shop_wallet, amount, key)
    assert r.status_code == 201, r.text


def _pay_refused(world: World, amount: int, key: str, limit: str) -> None:
    position = world.platform.ledger.journal_position()
    r = pay_merchant(world.alice_key, world.alice_wallet, world.shop_wallet, amount, key)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == "payments.limit_exceeded"
    assert problem["details"]["limit"] == limit and limit in problem["detail"]
    assert world.platform.ledger.journal_position() == position


def test_per_transaction_limit_equal_passes_one_more_fails(world: World) -> None:
    _pay_refused(world, 200_001, "pt-over", "per_transaction")
    _pay_ok(world, 200_000, "pt-equal")


def test_daily_limit_equal_to_remaining_passes_one_more_fails(world: World) -> None:
    _pay_ok(world, 200_000, "d1")
    _pay_ok(world, 200_000, "d2")
    _pay_refused(world, 100_001, "d3", "daily")
    _pay_ok(world, 100_000, "d4")  # exactly the remaining 100,000
    _pay_refused(world, 1, "d5", "daily")


def test_monthly_limit_counts_business_dates(world: World) -> None:
    top_up(world.api, world.alice_wallet, 1_000_000, "more-money")
    for offset, amounts in ((0, (200_000, 200_000, 100_000)), (1, (200_000, 200_000))):
        advance_business_date(world.platform, MONDAY + timedelta(days=offset))
        for i, amount in enumerate(amounts):
            _pay_ok(world, amount, f"m-{offset}-{i}")
    advance_business_date(world.platform, MONDAY + timedelta(days=2))  # 900,000 used this month
    _pay_refused(world, 100_001, "m-over", "monthly")
    _pay_ok(world, 100_000, "m-equal")  # the month is now exactly at 1,000,000
    advance_business_date(world.platform, MONDAY + timedelta(days=3))
    _pay_refused(world, 1, "m-next-day", "monthly")
    advance_business_date(world.platform, date(2026, 4, 1))  # a new month
    _pay_ok(world, 1, "m-april")


def test_daily_count_limit_is_a_velocity_limit(world: World) -> None:
    for i in range(20):
        _pay_ok(world, 1, f"v-{i}")
    _pay_refused(world, 1, "v-20", "daily_count")


# ---------------------------------------------------------------- bad input writes nothing


def test_bad_input_gets_a_stable_code_and_writes_nothing(world: World) -> None:
    buy = pay_merchant(world.alice_key, world.alice_wallet, world.shop_wallet, 5_000, "buy-b").json()
    refund = world.shop_key.post(
        "/v1/payments/refunds",
        headers={"Idempotency-Key": "refund-b"},
        json={"payment_id": buy["payment_id"], "amount": money(1_000)},
    ).json()
    world.api.post(f"/v1/payments/wallets/{world.bob_wallet}/freeze")
    cases: list[tuple[str, Any, int, str]] = [
        (
            "unknown wallet",
            lambda: transfer(world.api, "wal_nope", world.bob_wallet, 100, "b1"),
            404,
            "payments.wallet_not_found",
        ),
        (
            "frozen wallet",
            lambda: transfer(world.api, world.alice_wallet, world.bob_wallet, 100, "b2"),
            409,
            "payments.wallet_frozen",
        ),
        (
            "self transfer",
            lambda: transfer(world.api, world.alice_wallet, world.alice_wallet, 100, "b3"),
            422,
            "payments.self_transfer",
        ),
        (
            "wrong currency",
            lambda: world.api.post(
                "/v1/payments/merchant-payments",
                headers={"Idempotency-Key": "b4"},
                json={
                    "payer_wallet_id": world.alice_wallet,
                    "merchant_wallet_id": world.shop_wallet,
                    "amount": money(100, "USD"),
                },
            ),
            422,
            "payments.currency_mismatch",
        ),
        (
            "refund of a refund",
            lambda: world.api.post(
                "/v1/payments/refunds",
                headers={"Idempotency-Key": "b5"},
                json={"payment_id": refund["payment_id"], "amount": money(100)},
            ),
            422,
            "payments.not_refundable",
        ),
        (
            "malformed body",
            lambda: world.api.post(
                "/v1/payments/transfers",
                headers={"Idempotency-Key": "b6", "Content-Type": "application/json"},
                content=b'{"payer_wallet_id": ',
            ),
            400,
            "request.malformed_json",
        ),
        (
            "float amount",
            lambda: transfer(world.api, world.alice_wallet, world.shop_wallet, 100.5, "b7"),
            422,
            "money.invalid_amount",
        ),
        (
            "string amount",
            lambda: transfer(world.api, world.alice_wallet, world.shop_wallet, "100", "b8"),
            422,
            "money.invalid_amount",
        ),
        (
            "zero amount",
            lambda: transfer(world.api, world.alice_wallet, world.shop_wallet, 0, "b9"),
            422,
            "request.invalid",
        ),
        (
            "missing field",
            lambda: world.api.post(
                "/v1/payments/transfers", headers={"Idempotency-Key": "b10"}, json={"amount": money(1)}
            ),
            422,
            "request.invalid",
        ),
        (
            "unknown funding source",
            lambda: world.api.post(
                "/v1/payments/merchant-payments",
                headers={"Idempotency-Key": "b12"},
                json={
                    "payer_wallet_id": world.alice_wallet,
                    "merchant_wallet_id": world.shop_wallet,
                    "amount": money(100),
                    "funding": "no-such-source",
                },
            ),
            409,
            "payments.funding_source_unavailable",
        ),
        (
            "bad idempotency key",
            lambda: transfer(world.api, world.alice_wallet, world.shop_wallet, 1, "has space"),
            422,
            "idempotency.invalid_key",
        ),
    ]
    before = written(world.platform)
    for name, call, status, code in cases:
        response = call()
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), name
        assert response.json()["code"] == code, (name, response.json())
        assert written(world.platform) == before, name
    world.api.post(f"/v1/payments/wallets/{world.bob_wallet}/unfreeze")
    kind = pay_merchant(world.api, world.alice_wallet, world.bob_wallet, 100, "b13")
    assert kind.status_code == 422 and kind.json()["code"] == "payments.wallet_kind_mismatch"
    assert written(world.platform) == before


# ---------------------------------------------------------------- rail over HTTP


def test_withdrawal_timeout_retry_release_and_late_settlement_over_http(world: World) -> None:
    world.rail.behaviour = lambda _i: "timeout_settle"
    body = {"wallet_id": world.alice_wallet, "amount": money(30_000), "bank_account_token": "tok-1"}
    first = world.alice_key.post("/v1/payments/withdrawals", headers={"Idempotency-Key": "w-t"}, json=body)
    assert first.status_code == 202 and first.json()["status"] == "unknown"
    payment_id, e2e = first.json()["payment_id"], first.json()["end_to_end_id"]
    assert balance(world, world.alice_wallet) == (1_000_000, 970_000, 30_000)
    retried = world.alice_key.post(f"/v1/payments/withdrawals/{payment_id}/retry", json={"bank_account_token": "tok-1"})
    assert retried.status_code == 200 and retried.json()["status"] == "unknown"
    assert retried.json()["end_to_end_id"] == e2e
    by_consumer = world.alice_key.post(f"/v1/payments/withdrawals/{payment_id}/release")
    assert by_consumer.status_code == 403
    released = world.api.post(f"/v1/payments/withdrawals/{payment_id}/release")
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert balance(world, world.alice_wallet) == (1_000_000, 1_000_000, 0)
    again = world.api.post(f"/v1/payments/withdrawals/{payment_id}/release")
    assert again.status_code == 200 and again.json()["status"] == "released"  # releasing again changes nothing
    # The bank paid after all: the operator feeds the outcome in; it goes to suspense as a break.
    assert world.rail.finish_pending() == {e2e: "settled"}
    late = world.api.post("/v1/payments/rail/outcomes", json={"end_to_end_id": e2e, "outcome": "settled"})
    assert late.status_code == 200 and late.json()["error_code"] == "payments.settled_after_release"
    repeat = world.api.post("/v1/payments/rail/outcomes", json={"end_to_end_id": e2e, "outcome": "settled"})
    assert repeat.json() == late.json()
    assert balance(world, world.alice_wallet) == (1_000_000, 1_000_000, 0)
    suspense = world.platform.ledger.get_account(world.platform.payments.house_account("suspense", "CNY"))
    assert suspense.to_json()["balance"] == money(30_000)
    breaks = outbox(world.platform, "payments.rail_break")
    assert [(b["payment_id"], b["reason"]) for b in breaks] == [(payment_id, "settled_after_release")]
    unknown = world.api.post("/v1/payments/rail/outcomes", json={"end_to_end_id": "CSNOPE", "outcome": "settled"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "payments.rail_instruction_not_found"


# ---------------------------------------------------------------- reconciliation over HTTP


def reconcile(world: World, data: bytes, fmt: str) -> dict[str, Any]:
    response = world.api.post(f"/v1/payments/reconciliations?format={fmt}", content=data)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize("fmt", ["csv", "camt053"])
def test_the_simulated_banks_statement_reconciles_with_zero_breaks(world: World, fmt: str) -> None:
    transfer(world.alice_key, world.alice_wallet, world.bob_wallet, 1_000, "p")
    world.alice_key.post(
        "/v1/payments/withdrawals",
        headers={"Idempotency-Key": "w"},
        json={"wallet_id": world.alice_wallet, "amount": money(20_000), "bank_account_token": "tok-1"},
    )
    data = (
        world.rail.statement_csv(MONDAY, MONDAY).encode()
        if fmt == "csv"
        else world.rail.statement_camt053(MONDAY, MONDAY)
    )
    answer = reconcile(world, data, fmt)
    report = answer["reports"][0]
    assert answer["reconciled"] is True, report
    assert report["breaks"] == [] and report["timing_differences"] == []
    assert report["balance_check"]["status"] == "ok"
    assert report["totals"]["entries_matched"] == 3 and report["totals"]["ledger_items_matched"] == 3


def test_a_tampered_csv_statement_shows_balance_and_precision_breaks(world: World) -> None:
    lines = world.rail.statement_csv(MONDAY, MONDAY).splitlines()
    header, first = lines[0], lines[1].split(",")
    closing = first[3]
    wrong_closing = [header, *(line.replace(f",{closing},", ",1.00,", 1) for line in lines[1:])]
    answer = reconcile(world, ("\n".join(wrong_closing) + "\n").encode(), "csv")
    report = answer["reports"][0]
    assert [b["kind"] for b in report["breaks"]] == ["balance_mismatch"]
    assert report["balance_check"]["status"] == "mismatch"
    odd = [*first[:4], MONDAY.isoformat(), MONDAY.isoformat(), "0.005", "CRDT", "", "ODD1", "half a fen"]
    answer = reconcile(world, ("\n".join([*lines, ",".join(odd)]) + "\n").encode(), "csv")
    report = answer["reports"][0]
    (precision,) = report["breaks"]
    assert precision["kind"] == "precision" and precision["details"]["amount_decimal"] == "0.005"
    assert report["balance_check"]["status"] == "unavailable"  # never rounded into the arithmetic


#: What the folder's README says of each camt.053 sample: does it reconcile on booked balances?
CAMT053_SAMPLES = {
    "camt.053_P_CH2909000000250094239_1110092698_0_2020112503071366.xml": False,  # reaches FWAV, not CLBD
    "FI_camt_053_sample.xml.xml": True,
    "camt053.v2.minimal.xml": False,
    "camt053.v2.multi.statement.xml": True,
    "camt053.v2.five.decimals.xml": False,  # off by 0.05
    "camt053.v2.all-balance-types.xml": False,
    "camt053.v4.xml": False,
    "camt053.v8.xml": False,
    "statement_1.xml": None,  # available balances only: no booked balances to check
}


@pytest.mark.parametrize("name", sorted(CAMT053_SAMPLES))
def test_real_camt053_samples_give_balance_mismatches_and_extra_entries(world: World, name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    answer = reconcile(world, data, "camt053")
    statements = parse_camt053(data)
    assert answer["statements"] == len(statements) and answer["reconciled"] is False
    for statement, report in zip(statements, answer["reports"], strict=True):
        kinds = Counter(b["kind"] for b in report["breaks"])
        expected = CAMT053_SAMPLES[name]
        if expected is False:
            assert kinds["balance_mismatch"] >= 1, report["balance_check"]
        else:
            assert kinds["balance_mismatch"] == 0
            assert report["balance_check"]["status"] == ("ok" if expected else "unavailable")
        # We never booked any of these entries: each booked, exact entry is extra in the bank.
        booked = [e for e in statement.entries if e.is_booked and e.amount is not None]
        assert kinds["extra_in_bank"] == len(booked) > 0
        assert report["totals"]["ledger_items"] == 0


def test_the_postfinance_gap_is_the_forward_value_dated_entry(world: World) -> None:
    data = (SAMPLES / "camt.053_P_CH2909000000250094239_1110092698_0_2020112503071366.xml").read_bytes()
    report = reconcile(world, data, "camt053")["reports"][0]
    (gap,) = [b for b in report["breaks"] if b["kind"] == "balance_mismatch"]
    assert gap["details"]["difference"] == money(-153_700, "CHF")
    assert gap["details"]["explained_by_forward_value_dated_entries"] is True


def test_an_invalid_or_oversized_statement_is_refused(world: World) -> None:
    wrong = world.api.post(
        "/v1/payments/reconciliations?format=camt053", content=(SAMPLES / "camt053.v2.wrong.xml").read_bytes()
    )
    assert wrong.status_code == 422 and wrong.json()["code"] == "payments.statement_invalid"
    garbage = world.api.post("/v1/payments/reconciliations?format=camt053", content=b"<not xml")
    assert garbage.status_code == 422 and garbage.json()["code"] == "payments.statement_malformed"
    empty = world.api.post("/v1/payments/reconciliations?format=csv", content=b"")
    assert empty.status_code == 422 and empty.json()["code"] == "payments.statement_malformed"
    bad_format = world.api.post("/v1/payments/reconciliations?format=mt940", content=b"x")
    assert bad_format.status_code == 422 and bad_format.json()["code"] == "request.invalid"
    huge = world.api.post(
        "/v1/payments/reconciliations?format=csv",
        content=b"x" * (world.platform.settings.request_body_bytes_max + 1),
    )
    assert huge.status_code == 413 and huge.json()["code"] == "request.limit_exceeded"


def test_creating_customers_and_wallets_is_idempotent(world: World) -> None:
    body = consumer_body("Faye Wong", "P10000123")
    first = world.api.post("/v1/payments/customers", headers={"Idempotency-Key": "cust-1"}, json=body)
    again = world.api.post("/v1/payments/customers", headers={"Idempotency-Key": "cust-1"}, json=body)
    assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    other = world.api.post(
        "/v1/payments/customers", headers={"Idempotency-Key": "cust-1"}, json={**body, "kyc_tier": 2}
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency.key_reused"
    missing = world.api.post("/v1/payments/customers", json=consumer_body("Gao Yuan", "P10000124"))
    assert missing.status_code == 422  # the key is required on every creation
    customer = first.json()["id"]
    w1 = world.api.post("/v1/payments/wallets", headers={"Idempotency-Key": "wal-1"}, json={"customer_id": customer})
    w2 = world.api.post("/v1/payments/wallets", headers={"Idempotency-Key": "wal-1"}, json={"customer_id": customer})
    assert w1.status_code == w2.status_code == 201 and w1.json()["id"] == w2.json()["id"]
    assert world.api.get(f"/v1/payments/customers/{customer}").json()["wallets"] == [w1.json()["id"]]
    closed = world.api.post(f"/v1/payments/wallets/{w1.json()['id']}/close")
    closed_again = world.api.post(f"/v1/payments/wallets/{w1.json()['id']}/close")
    assert closed.status_code == closed_again.status_code == 200
    assert closed.json()["status"] == closed_again.json()["status"] == "closed"
