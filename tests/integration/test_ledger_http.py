"""The ledger over HTTP on SQLite and PostgreSQL: flows, idempotency, holds, reversals, roles and bad input.

Every bad-input case asserts its stable code and that nothing was written (the journal position and the
idempotency table are unchanged).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from creditstack.app.main import create_app
from creditstack.app.platform import Platform
from creditstack.core.security import Role


@pytest.fixture
def api(platform: Platform) -> TestClient:
    client = TestClient(create_app(platform))
    _, token = platform.keys.create(Role.PLATFORM_OPERATOR, "ops")
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def money(amount: Any, currency: str = "CNY") -> dict[str, Any]:
    return {"amount_minor": amount, "currency": currency}


def open_account(api: TestClient, code: str, type: str = "liability", **extra: Any) -> int:
    response = api.post("/v1/ledger/accounts", json={"code": code, "currency": "CNY", "type": type, **extra})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.fixture
def accounts(api: TestClient) -> dict[str, int]:
    ids = {
        "bank": open_account(api, "bank", "asset"),
        "alice": open_account(api, "wallet:alice", no_overdraft=True),
        "bob": open_account(api, "wallet:bob", no_overdraft=True),
        "fees": open_account(api, "fees", "income", uses_deltas=True),
    }
    r = api.post(
        "/v1/ledger/transfers",
        headers={"Idempotency-Key": "fund-alice"},
        json={"debit_account_id": ids["bank"], "credit_account_id": ids["alice"], "amount": money(10_000)},
    )
    assert r.status_code == 201, r.text
    return ids


def journal_and_keys(platform: Platform) -> tuple[int, int]:
    with platform.db.transaction(readonly=True) as conn:
        keys = conn.execute(sa.text("SELECT count(*) FROM idempotency_keys")).scalar_one()
    return platform.ledger.journal_position(), int(keys)


def transfer_body(accounts: dict[str, int], amount: Any, frm: str = "alice", to: str = "bob") -> dict[str, Any]:
    return {"debit_account_id": accounts[frm], "credit_account_id": accounts[to], "amount": money(amount)}


def test_transfer_moves_money_and_replays_the_first_outcome(api: TestClient, accounts: dict[str, int]) -> None:
    body = transfer_body(accounts, 2_500)
    first = api.post("/v1/ledger/transfers", headers={"Idempotency-Key": "t1"}, json=body)
    assert first.status_code == 201
    replay = api.post("/v1/ledger/transfers", headers={"Idempotency-Key": "t1"}, json=body)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    alice = api.get(f"/v1/ledger/accounts/{accounts['alice']}").json()
    bob = api.get(f"/v1/ledger/accounts/{accounts['bob']}").json()
    assert alice["balance"] == money(7_500) and bob["balance"] == money(2_500)
    reused = api.post("/v1/ledger/transfers", headers={"Idempotency-Key": "t1"}, json=transfer_body(accounts, 1))
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency.key_reused"


def test_business_rejection_is_stored_and_replayed(
    api: TestClient, accounts: dict[str, int], platform: Platform
) -> None:
    position, _ = journal_and_keys(platform)
    body = transfer_body(accounts, 10_001)
    first = api.post("/v1/ledger/transfers", headers={"Idempotency-Key": "too-much"}, json=body)
    assert first.status_code == 409
    assert first.headers["content-type"].startswith("application/problem+json")
    assert first.json()["code"] == "ledger.insufficient_funds"
    # Funds arrive later, but the key keeps its first outcome.
    api.post(
        "/v1/ledger/transfers",
        headers={"Idempotency-Key": "fund-more"},
        json=transfer_body(accounts, 5_000, "bank", "alice"),
    )
    again = api.post("/v1/ledger/transfers", headers={"Idempotency-Key": "too-much"}, json=body)
    assert again.status_code == 409 and again.json()["code"] == "ledger.insufficient_funds"
    assert platform.ledger.journal_position() == position + 1  # only the extra funding committed


@pytest.mark.parametrize(
    ("body", "code", "status"),
    [
        ({"amount": money(0)}, "ledger.amount_not_positive", 422),
        ({"amount": money(-5)}, "ledger.amount_not_positive", 422),
        ({"amount": money(1.5)}, "money.invalid_amount", 422),
        ({"amount": money("100")}, "money.invalid_amount", 422),
        ({"amount": money(True)}, "money.invalid_amount", 422),
        ({"amount": money(2**53)}, "money.amount_out_of_range", 422),
        ({"amount": money(100, "XYZ")}, "money.unknown_currency", 422),
        ({"amount": money(100, "USD")}, "ledger.currency_mismatch", 409),
        ({"debit_account_id": 999_999}, "ledger.unknown_account", 404),
        ({"amount": money(10_001)}, "ledger.insufficient_funds", 409),
    ],
)
def test_bad_transfers_get_stable_codes_and_move_nothing(
    api: TestClient, accounts: dict[str, int], platform: Platform, body: dict[str, Any], code: str, status: int
) -> None:
    before_alice = api.get(f"/v1/ledger/accounts/{accounts['alice']}").json()
    position, keys = journal_and_keys(platform)
    request = {**transfer_body(accounts, 100), **body}
    response = api.post("/v1/ledger/transfers", headers={"Idempotency-Key": f"bad-{code}"}, json=request)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert api.get(f"/v1/ledger/accounts/{accounts['alice']}").json() == before_alice
    new_position, new_keys = journal_and_keys(platform)
    assert new_position == position
    # Validation refusals store nothing; business rejections store their outcome under the key.
    assert new_keys == keys + (1 if status in (404, 409) else 0)


def test_unbalanced_and_short_entries_are_refused(
    api: TestClient, accounts: dict[str, int], platform: Platform
) -> None:
    position, keys = journal_and_keys(platform)
    unbalanced = {
        "postings": [
            {"account_id": accounts["alice"], "side": "debit", "amount": money(100)},
            {"account_id": accounts["bob"], "side": "credit", "amount": money(99)},
        ]
    }
    r = api.post("/v1/ledger/entries", headers={"Idempotency-Key": "u1"}, json=unbalanced)
    assert r.status_code == 422 and r.json()["code"] == "ledger.unbalanced_entry"
    short = {"postings": [{"account_id": accounts["alice"], "side": "debit", "amount": money(100)}]}
    r = api.post("/v1/ledger/entries", headers={"Idempotency-Key": "u2"}, json=short)
    assert r.status_code == 422 and r.json()["code"] == "ledger.too_few_postings"
    r = api.post(
        "/v1/ledger/entries",
        headers={"Idempotency-Key": "u3", "Content-Type": "application/json"},
        content=b'{"postings": [',
    )
    assert r.status_code == 400 and r.json()["code"] == "request.malformed_json"
    assert journal_and_keys(platform) == (position, keys)


def test_multi_currency_entry_balances_per_currency(api: TestClient, platform: Platform) -> None:
    cny_bank = open_account(api, "bank-cny", "asset")
    usd = api.post("/v1/ledger/accounts", json={"code": "bank-usd", "currency": "USD", "type": "asset"}).json()["id"]
    fx_cny = open_account(api, "fx-cny", "liability")
    fx_usd = api.post("/v1/ledger/accounts", json={"code": "fx-usd", "currency": "USD", "type": "liability"}).json()
    entry = {
        "postings": [
            {"account_id": cny_bank, "side": "debit", "amount": money(7_100)},
            {"account_id": fx_cny, "side": "credit", "amount": money(7_100)},
            {"account_id": fx_usd["id"], "side": "debit", "amount": money(1_000, "USD")},
            {"account_id": usd, "side": "credit", "amount": money(1_000, "USD")},
        ]
    }
    r = api.post("/v1/ledger/entries", headers={"Idempotency-Key": "fx1"}, json=entry)
    assert r.status_code == 201, r.text
    assert platform.ledger.audit().clean


def test_hold_post_partial_then_void_is_refused(api: TestClient, accounts: dict[str, int]) -> None:
    hold = api.post(
        "/v1/ledger/holds",
        headers={"Idempotency-Key": "h1"},
        json={**transfer_body(accounts, 3_000), "description": "purchase"},
    )
    assert hold.status_code == 201
    hold_id = hold.json()["hold_id"]
    alice = api.get(f"/v1/ledger/accounts/{accounts['alice']}").json()
    assert alice["available"] == money(7_000) and alice["balance"] == money(10_000)
    posted = api.post(
        f"/v1/ledger/holds/{hold_id}/post", headers={"Idempotency-Key": "h1-post"}, json={"amount": money(2_000)}
    )
    assert posted.status_code == 201
    alice = api.get(f"/v1/ledger/accounts/{accounts['alice']}").json()
    assert alice["available"] == money(8_000) and alice["pending"] == money(0)
    void = api.post(f"/v1/ledger/holds/{hold_id}/void", headers={"Idempotency-Key": "h1-void"})
    assert void.status_code == 409 and void.json()["code"] == "ledger.hold_not_pending"
    assert api.get(f"/v1/ledger/holds/{hold_id}").json()["status"] == "posted"


def test_hold_cannot_post_more_than_held(api: TestClient, accounts: dict[str, int]) -> None:
    hold_id = api.post(
        "/v1/ledger/holds", headers={"Idempotency-Key": "h2"}, json=transfer_body(accounts, 1_000)
    ).json()["hold_id"]
    r = api.post(
        f"/v1/ledger/holds/{hold_id}/post", headers={"Idempotency-Key": "h2-post"}, json={"amount": money(1_001)}
    )
    assert r.status_code == 409 and r.json()["code"] == "ledger.hold_amount_exceeded"


def test_expired_hold_stops_counting_at_once(api: TestClient, accounts: dict[str, int], platform: Platform) -> None:
    clock = platform.clock
    expires = clock.now() + timedelta(minutes=5)
    hold_id = api.post(
        "/v1/ledger/holds",
        headers={"Idempotency-Key": "h3"},
        json={**transfer_body(accounts, 4_000), "expires_at": expires.isoformat()},
    ).json()["hold_id"]
    assert api.get(f"/v1/ledger/accounts/{accounts['alice']}").json()["available"] == money(6_000)
    clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    assert api.get(f"/v1/ledger/accounts/{accounts['alice']}").json()["available"] == money(10_000)
    assert api.get(f"/v1/ledger/holds/{hold_id}").json()["status"] == "expired"
    r = api.post(f"/v1/ledger/holds/{hold_id}/post", headers={"Idempotency-Key": "h3-post"}, json={})
    assert r.status_code == 409 and r.json()["code"] == "ledger.hold_expired"
    # The freed funds can be spent in full.
    spend = api.post(
        "/v1/ledger/transfers", headers={"Idempotency-Key": "spend-all"}, json=transfer_body(accounts, 10_000)
    )
    assert spend.status_code == 201
    assert platform.ledger.audit().clean


def test_reversal_is_a_new_entry_and_happens_once(
    api: TestClient, accounts: dict[str, int], platform: Platform
) -> None:
    seq = api.post(
        "/v1/ledger/transfers", headers={"Idempotency-Key": "oops"}, json=transfer_body(accounts, 1_234)
    ).json()["entry"]["seq"]
    r = api.post(f"/v1/ledger/entries/{seq}/reverse", headers={"Idempotency-Key": "oops-rev"}, json={})
    assert r.status_code == 201
    assert r.json()["entry"]["reverses_seq"] == seq
    again = api.post(f"/v1/ledger/entries/{seq}/reverse", headers={"Idempotency-Key": "oops-rev-2"}, json={})
    assert again.status_code == 409 and again.json()["code"] == "ledger.entry_already_reversed"
    assert api.get(f"/v1/ledger/accounts/{accounts['bob']}").json()["balance"] == money(0)
    original = api.get(f"/v1/ledger/entries/{seq}").json()
    assert [p["side"] for p in original["postings"]] == ["debit", "credit"]  # never edited


def test_linked_batch_is_all_or_nothing(api: TestClient, accounts: dict[str, int], platform: Platform) -> None:
    position, _ = journal_and_keys(platform)

    def entry(key: str, amount: int) -> dict[str, Any]:
        return {
            "idempotency_key": key,
            "postings": [
                {"account_id": accounts["alice"], "side": "debit", "amount": money(amount)},
                {"account_id": accounts["bob"], "side": "credit", "amount": money(amount)},
            ],
        }

    r = api.post("/v1/ledger/batches", json={"linked": True, "entries": [entry("l1", 6_000), entry("l2", 6_000)]})
    assert r.status_code == 200
    codes = [x["error"]["code"] for x in r.json()["results"]]
    assert codes == ["ledger.linked_entry_failed", "ledger.insufficient_funds"]
    assert platform.ledger.journal_position() == position
    invalid = api.post(
        "/v1/ledger/batches",
        json={
            "linked": True,
            "entries": [
                entry("l3", 10),
                entry("l4", 0),
                {**entry("l5", 5), "postings": entry("l5", 5)["postings"][:1]},
            ],
        },
    )
    assert invalid.status_code == 422
    problem = invalid.json()
    assert problem["code"] == "ledger.batch_invalid"
    assert [e["index"] for e in problem["details"]["errors"]] == [1, 2]
    ok = api.post("/v1/ledger/batches", json={"linked": True, "entries": [entry("l6", 6_000), entry("l7", 4_000)]})
    assert ok.json()["committed"] == 2
    assert api.get(f"/v1/ledger/accounts/{accounts['alice']}").json()["balance"] == money(0)


def test_oversized_batch_is_refused(api: TestClient, accounts: dict[str, int], platform: Platform) -> None:
    platform.ledger.batch_entries_max = 3
    entries = [
        {
            "idempotency_key": f"o{i}",
            "postings": [
                {"account_id": accounts["alice"], "side": "debit", "amount": money(1)},
                {"account_id": accounts["bob"], "side": "credit", "amount": money(1)},
            ],
        }
        for i in range(4)
    ]
    position, keys = journal_and_keys(platform)
    r = api.post("/v1/ledger/batches", json={"entries": entries})
    assert r.status_code == 413 and r.json()["code"] == "ledger.batch_too_large"
    assert journal_and_keys(platform) == (position, keys)


def test_history_and_point_in_time_balances(api: TestClient, accounts: dict[str, int], platform: Platform) -> None:
    seqs = []
    for i in range(5):
        r = api.post(
            "/v1/ledger/transfers", headers={"Idempotency-Key": f"hist{i}"}, json=transfer_body(accounts, 100 * (i + 1))
        )
        seqs.append(r.json()["entry"]["seq"])
    page1 = api.get(f"/v1/ledger/accounts/{accounts['bob']}/history", params={"limit": 3}).json()
    assert [i["entry_seq"] for i in page1["items"]] == seqs[:3]
    page2 = api.get(
        f"/v1/ledger/accounts/{accounts['bob']}/history", params={"limit": 3, "after_seq": page1["next_after_seq"]}
    ).json()
    assert [i["entry_seq"] for i in page2["items"]] == seqs[3:] and page2["next_after_seq"] is None
    at = api.get(f"/v1/ledger/accounts/{accounts['bob']}/balance", params={"as_of_seq": seqs[1]}).json()
    assert at["balance"] == money(300)
    today = platform.ledger.business_date().isoformat()
    eod = api.get(f"/v1/ledger/accounts/{accounts['bob']}/balance", params={"as_of_date": today}).json()
    assert eod["balance"] == money(1_500)
    r = api.get(f"/v1/ledger/accounts/{accounts['bob']}/history", params={"limit": 100_000})
    assert r.status_code == 422


def test_hot_account_deltas_fold_and_audit(api: TestClient, accounts: dict[str, int], platform: Platform) -> None:
    for i in range(5):
        api.post(
            "/v1/ledger/transfers",
            headers={"Idempotency-Key": f"fee{i}"},
            json=transfer_body(accounts, 10, "alice", "fees"),
        )
    fees = api.get(f"/v1/ledger/accounts/{accounts['fees']}").json()
    assert fees["balance"] == money(50)
    assert api.post("/v1/ledger/audit").json()["clean"] is True
    assert api.post("/v1/ledger/compact").json()["folded_deltas"] == 5
    assert api.get(f"/v1/ledger/accounts/{accounts['fees']}").json()["balance"] == money(50)
    assert api.post("/v1/ledger/audit").json()["clean"] is True


def test_roles_and_authentication(api: TestClient, accounts: dict[str, int], platform: Platform) -> None:
    anonymous = TestClient(api.app)
    r = anonymous.get(f"/v1/ledger/accounts/{accounts['alice']}")
    assert r.status_code == 401 and r.json()["code"] == "auth.unauthenticated"
    bad = TestClient(api.app, headers={"Authorization": "Bearer cs_nope_nope"})
    assert bad.get(f"/v1/ledger/accounts/{accounts['alice']}").status_code == 401
    for role in (Role.CONSUMER, Role.PARTNER_BANK, Role.SUPERVISOR, Role.BUREAU_OPERATOR):
        _, token = platform.keys.create(role, "someone")
        client = TestClient(api.app, headers={"Authorization": f"Bearer {token}"})
        r = client.post(
            "/v1/ledger/transfers", headers={"Idempotency-Key": f"x-{role}"}, json=transfer_body(accounts, 1)
        )
        assert r.status_code == 403 and r.json()["code"] == "auth.forbidden"
        assert client.get(f"/v1/ledger/accounts/{accounts['alice']}").status_code == 403
    _, service_token = platform.keys.create(Role.SERVICE, "payments")
    service = TestClient(api.app, headers={"X-API-Key": service_token})
    assert service.post("/v1/ledger/audit").status_code == 403  # operators only
    assert service.get(f"/v1/ledger/accounts/{accounts['alice']}").status_code == 200


def test_idempotency_keys_are_per_member(api: TestClient, accounts: dict[str, int], platform: Platform) -> None:
    _, other = platform.keys.create(Role.SERVICE, "lending")
    client = TestClient(api.app, headers={"Authorization": f"Bearer {other}"})
    a = api.post("/v1/ledger/transfers", headers={"Idempotency-Key": "same"}, json=transfer_body(accounts, 10))
    b = client.post("/v1/ledger/transfers", headers={"Idempotency-Key": "same"}, json=transfer_body(accounts, 20))
    assert a.status_code == b.status_code == 201
    assert a.json()["entry"]["seq"] != b.json()["entry"]["seq"]


def test_openapi_lists_the_ledger(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert "/v1/ledger/transfers" in spec["paths"]
    assert json.dumps(spec)  # serialisable


def test_database_refuses_edits_of_postings(platform: Platform, api: TestClient, accounts: dict[str, int]) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="append_only"), platform.db.transaction() as conn:
        conn.execute(sa.text("UPDATE ledger_postings SET amount_minor = amount_minor + 1"))
    with pytest.raises(sa.exc.DBAPIError, match="append_only"), platform.db.transaction() as conn:
        conn.execute(sa.text("DELETE FROM ledger_entries"))
    with pytest.raises(sa.exc.DBAPIError), platform.db.transaction() as conn:
        conn.execute(
            sa.text("UPDATE ledger_accounts SET debits_posted = debits_posted + 20000 WHERE code = 'wallet:alice'")
        )


@pytest.mark.postgres
def test_postgres_refuses_an_unbalanced_entry(pg_url: str, clock: Any, tmp_path: Any) -> None:
    from creditstack.app.platform import open_platform
    from creditstack.core.settings import Settings

    platform = open_platform(Settings(database_url=pg_url, var_dir=tmp_path), clock, migrate_schema=False)
    try:
        a = platform.ledger.open_account(member="m", code="a", currency="CNY", type="asset")
        b = platform.ledger.open_account(member="m", code="b", currency="CNY", type="liability")
        with pytest.raises(sa.exc.DBAPIError, match="unbalanced_entry"), platform.db.transaction() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO ledger_entries (seq, member, idempotency_key, kind, business_date, committed_at, "
                    "description, metadata) VALUES (1, 'm', 'x', 'entry', current_date, now(), '', '{}')"
                )
            )
            conn.execute(
                sa.text(
                    f"INSERT INTO ledger_postings VALUES (1, 0, {a.id}, 'D', 100, 'CNY'), "
                    f"(1, 1, {b.id}, 'C', 99, 'CNY')"
                )
            )
        with pytest.raises(sa.exc.DBAPIError, match="too_few_postings"), platform.db.transaction() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO ledger_entries (seq, member, idempotency_key, kind, business_date, committed_at, "
                    "description, metadata) VALUES (1, 'm', 'x', 'entry', current_date, now(), '', '{}')"
                )
            )
            conn.execute(sa.text(f"INSERT INTO ledger_postings VALUES (1, 0, {a.id}, 'D', 100, 'CNY')"))
    finally:
        platform.close()
