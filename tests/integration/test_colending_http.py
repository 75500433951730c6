"""Co-lending over HTTP on SQLite and PostgreSQL: the operator registers two partner banks; consumers take
loans that the banks co-fund (the platform keeps at least 30 %, rounded up); end of day, repayments, the
daily settlement through the API; each bank reads its own statements (JSON and CSV) and portfolio, and
nothing of the other's; partner keys cannot reach the operator's endpoints; bad input is problem+json with
stable codes and writes nothing; the partner subledger reconciles with the ledger.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from creditstack.app.main import create_app
from creditstack.app.platform import Platform
from creditstack.core.security import Role

INCOME_MINOR = 60_000_000  # CNY 600,000 a year: the borrower caps pass for every loan below
CASH_COMPONENTS = ("funding", "principal", "interest", "fees", "penalty", "recovery")
PLATFORM_SHARE_MIN_BPS = 3_000  # the platform's minimum share of a co-funded loan, rounded up

Response = Any  # starlette's TestClient answers with its own httpx build's responses


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}


def client_for(platform: Platform, role: Role, member: str) -> TestClient:
    client = TestClient(create_app(platform))
    _, token = platform.keys.create(role, member)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def assert_problem(response: Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["code"] == code and body["status"] == status, body
    if field is not None:
        assert body.get("field") == field, body
    return body


def minor(value: dict[str, Any]) -> int:
    assert value["currency"] == "CNY", value
    return int(value["amount_minor"])


def partner_body(name: str, member: str, **changes: Any) -> dict[str, Any]:
    agreement = {
        "products": ["cash-cny"],
        "share_min_bps": 1_000,
        "share_max_bps": 5_000,
        "exposure_cap_minor": 50_000_000,
        "score_floor": 0,
        "term_months_max": 24,
        "bank_rate": "0.045",
        "fees_to": "pro_rata",
        "penalty_to": "platform",
    }
    agreement.update(changes.pop("agreement", {}))
    body = {
        "name": name,
        "member": member,
        "currency": "CNY",
        "net_tier1_capital_minor": 100_000_000,
        "total_loans_minor": 400_000_000,
        "agreement": agreement,
    }
    body.update(changes)
    return body


@dataclass
class World:
    platform: Platform
    ops: TestClient  # the platform operator
    bank_a: str
    bank_b: str
    a_api: TestClient  # bank A's partner_bank key
    b_api: TestClient

    def open_loan(self, n: int, amount_minor: int, term_months: int = 6) -> dict[str, Any]:
        """A consumer with a loan, applied for and accepted by the operator over HTTP; returns the account."""
        customer = self.ops.post(
            "/v1/payments/customers",
            headers=_key(),
            json={
                "kind": "consumer",
                "legal_name": f"Borrower {n}",
                "national_id": f"CL{n:07d}",
                "date_of_birth": "1988-07-01",
                "kyc_tier": 2,
                "incomes": [
                    {"as_of": "2025-12-31", "annual_income": {"amount_minor": INCOME_MINOR, "currency": "CNY"}}
                ],
            },
        )
        assert customer.status_code == 201, customer.text
        wallet = self.ops.post("/v1/payments/wallets", headers=_key(), json={"customer_id": customer.json()["id"]})
        assert wallet.status_code == 201, wallet.text
        applied = self.ops.post(
            "/v1/lending/applications",
            headers=_key(),
            json={
                "customer_id": customer.json()["id"],
                "wallet_id": wallet.json()["id"],
                "product_code": "cash-cny",
                "amount_minor": amount_minor,
                "term_months": term_months,
            },
        )
        assert applied.status_code == 201, applied.text
        accepted = self.ops.post(f"/v1/lending/applications/{applied.json()['application_id']}/accept", headers=_key())
        assert accepted.status_code == 201, accepted.text
        return dict(accepted.json())

    def repay(self, ref: str, amount_minor: int) -> None:
        repaid = self.ops.post(
            f"/v1/lending/accounts/{ref}/repayments",
            headers=_key(),
            json={"amount_minor": amount_minor, "source": "external"},
        )
        assert repaid.status_code == 201, repaid.text

    def settle(self, business_date: date | None = None) -> list[dict[str, Any]]:
        body = {} if business_date is None else {"business_date": business_date.isoformat()}
        response = self.ops.post("/v1/colending/settlements", json=body)
        assert response.status_code == 200, response.text
        return list(response.json()["items"])


def register(ops: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = ops.post("/v1/colending/partners", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
def world(platform: Platform) -> World:
    ops = client_for(platform, Role.PLATFORM_OPERATOR, "ops")
    a = register(ops, partner_body("Bank A", "bank-a"))
    # bank B funds loans of 12 months at most and takes a smaller slice (30 % at most)
    b = register(
        ops,
        partner_body(
            "Bank B",
            "bank-b",
            net_tier1_capital_minor=40_000_000,
            agreement={"share_max_bps": 3_000, "term_months_max": 12, "bank_rate": "0.05", "fees_to": "platform"},
        ),
    )
    return World(
        platform=platform,
        ops=ops,
        bank_a=a["partner_id"],
        bank_b=b["partner_id"],
        a_api=client_for(platform, Role.PARTNER_BANK, "bank-a"),
        b_api=client_for(platform, Role.PARTNER_BANK, "bank-b"),
    )


def written(platform: Platform) -> tuple[int, ...]:
    """Journal position and the co-lending rows."""
    with platform.db.transaction(readonly=True) as conn:
        counts = [
            int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("colending_partners", "colending_participations", "colending_settlements")
        ]
    return (platform.ledger.journal_position(), *counts)


def shares_of(account: dict[str, Any]) -> dict[str, int]:
    return {s["funder"]: int(s["principal_minor"]) for s in account["funding"]["shares"]}


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# ---------------------------------------------------------------- partners


def test_the_operator_registers_partners_and_each_bank_sees_only_its_own(world: World) -> None:
    a = world.ops.get(f"/v1/colending/partners/{world.bank_a}")
    assert a.status_code == 200, a.text
    partner = a.json()
    assert partner["name"] == "Bank A" and partner["currency"] == "CNY"
    assert minor(partner["net_tier1_capital"]) == 100_000_000 and minor(partner["outstanding"]) == 0
    agreement = partner["agreement"]
    assert agreement["products"] == ["cash-cny"] and agreement["bank_rate"] == "0.045"
    assert (agreement["share_min_bps"], agreement["share_max_bps"]) == (1_000, 5_000)
    assert minor(agreement["exposure_cap"]) == 50_000_000
    b = world.ops.get(f"/v1/colending/partners/{world.bank_b}").json()
    assert b["agreement"]["term_months_max"] == 12 and b["agreement"]["fees_to"] == "platform"
    listed = world.ops.get("/v1/colending/partners").json()["items"]
    assert sorted(p["partner_id"] for p in listed) == sorted([world.bank_a, world.bank_b])

    # a bank reads its own record; another bank's id answers exactly like an id that does not exist
    assert world.a_api.get(f"/v1/colending/partners/{world.bank_a}").json() == partner
    assert world.b_api.get(f"/v1/colending/partners/{world.bank_b}").json() == b
    foreign = assert_problem(
        world.a_api.get(f"/v1/colending/partners/{world.bank_b}"), 404, "colending.partner_not_found"
    )
    unknown = assert_problem(
        world.a_api.get("/v1/colending/partners/bank_nosuchbank"), 404, "colending.partner_not_found"
    )
    assert foreign["detail"].replace(world.bank_b, "ID") == unknown["detail"].replace("bank_nosuchbank", "ID")
    assert_problem(world.ops.get("/v1/colending/partners/bank_nosuchbank"), 404, "colending.partner_not_found")
    # a partner_bank key whose member has no partner sees no partner at all
    stranger = client_for(world.platform, Role.PARTNER_BANK, "bank-z")
    for pid in (world.bank_a, world.bank_b):
        for path in ("", "/statements", "/portfolio", "/statements/2026-03-02"):
            assert_problem(stranger.get(f"/v1/colending/partners/{pid}{path}"), 404, "colending.partner_not_found")


def test_partner_keys_and_other_roles_cannot_use_the_operators_endpoints(world: World) -> None:
    before = written(world.platform)
    consumer = client_for(world.platform, Role.CONSUMER, "cus_someone")
    service = client_for(world.platform, Role.SERVICE, "svc")
    for client in (world.a_api, consumer, service):
        assert_problem(client.get("/v1/colending/partners"), 403, "auth.forbidden")
        assert_problem(client.post("/v1/colending/partners", json=partner_body("X", "x")), 403, "auth.forbidden")
        assert_problem(client.post("/v1/colending/settlements", json={}), 403, "auth.forbidden")
        assert_problem(client.get("/v1/colending/reconcile"), 403, "auth.forbidden")
    for client in (consumer, service):  # the partner view is the partner's and the operator's only
        assert_problem(client.get(f"/v1/colending/partners/{world.bank_a}"), 403, "auth.forbidden")
        assert_problem(client.get(f"/v1/colending/partners/{world.bank_a}/portfolio"), 403, "auth.forbidden")
    anonymous = TestClient(create_app(world.platform))
    assert_problem(anonymous.get(f"/v1/colending/partners/{world.bank_a}"), 401, "auth.unauthenticated")
    assert_problem(anonymous.post("/v1/colending/settlements", json={}), 401, "auth.unauthenticated")
    assert written(world.platform) == before


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("case", "changes", "status", "code", "field"),
    [
        ("share max above 100 %", {"agreement": {"share_max_bps": 10_001}}, 422, "colending.invalid_agreement", None),
        ("share min above max", {"agreement": {"share_min_bps": 6_000}}, 422, "colending.invalid_agreement", None),
        ("negative share", {"agreement": {"share_min_bps": -1}}, 422, "colending.invalid_agreement", None),
        (
            "negative capital",
            {"net_tier1_capital_minor": -1},
            422,
            "colending.invalid_agreement",
            "net_tier1_capital_minor",
        ),
        ("negative loans", {"total_loans_minor": -5}, 422, "colending.invalid_agreement", None),
        ("negative cap", {"agreement": {"exposure_cap_minor": -1}}, 422, "colending.invalid_agreement", None),
        ("negative term", {"agreement": {"term_months_max": -1}}, 422, "colending.invalid_agreement", None),
        ("rate, 7 places", {"agreement": {"bank_rate": "0.0450001"}}, 422, "colending.invalid_agreement", None),
        ("rate negative", {"agreement": {"bank_rate": "-0.01"}}, 422, "colending.invalid_agreement", None),
        ("rate as a float", {"agreement": {"bank_rate": 0.045}}, 422, "colending.invalid_agreement", None),
        ("rate not a number", {"agreement": {"bank_rate": "NaN"}}, 422, "colending.invalid_agreement", None),
        ("rate above 100 %", {"agreement": {"bank_rate": "2500"}}, 422, "colending.invalid_agreement", None),
        ("fees to the bank", {"agreement": {"fees_to": "bank"}}, 422, "request.invalid", "agreement.fees_to"),
        ("float capital", {"net_tier1_capital_minor": 1.5}, 422, "money.invalid_amount", None),
        ("capital beyond 2**53", {"total_loans_minor": 2**53}, 422, "money.amount_out_of_range", None),
        ("bps as a string", {"agreement": {"share_max_bps": "5000"}}, 422, "request.invalid", None),
        ("bps beyond 32 bits", {"agreement": {"score_floor": 2**31}}, 422, "request.invalid", None),
        ("unknown currency", {"currency": "ABC"}, 422, "money.unknown_currency", "currency"),
        ("bad member", {"member": "bank a!"}, 422, "auth.invalid_member", "member"),
        ("unknown field", {"rating": "AAA"}, 422, "request.invalid", None),
        ("too many products", {"agreement": {"products": ["cash-cny"] * 51}}, 422, "request.invalid", None),
    ],
)
def test_bad_partner_input_is_refused_with_a_stable_code_and_writes_nothing(
    world: World, case: str, changes: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    before = written(world.platform)
    body = partner_body(f"Bad {case}", "bank-new")
    body.update({k: v for k, v in changes.items() if k != "agreement"})
    body["agreement"].update(changes.get("agreement", {}))
    response = world.ops.post("/v1/colending/partners", json=body)
    assert_problem(response, status, code, field)
    assert written(world.platform) == before


def test_one_partner_per_member_and_bad_paths(world: World) -> None:
    before = written(world.platform)
    again = assert_problem(
        world.ops.post("/v1/colending/partners", json=partner_body("Bank A again", "bank-a")),
        409,
        "colending.partner_taken",
    )
    assert again["field"] == "member"
    malformed = world.ops.post(
        "/v1/colending/partners", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(malformed, 400, "request.malformed_json")
    statements = f"/v1/colending/partners/{world.bank_a}/statements"
    for bad_date in ("2026-3-2", "2026-02-30", "1772409600", "2026-W10-1"):
        assert_problem(world.a_api.get(f"{statements}/{bad_date}"), 422, "request.invalid")
    assert_problem(world.a_api.get(f"{statements}/2026-03-02", params={"format": "xml"}), 422, "request.invalid")
    assert_problem(world.a_api.get(f"{statements}/2026-03-02"), 404, "colending.statement_not_found")
    assert_problem(world.a_api.get(statements, params={"limit": 501}), 422, "request.invalid")
    assert_problem(world.ops.get("/v1/colending/partners/" + "b" * 33), 422, "request.invalid")
    assert_problem(
        world.ops.post("/v1/colending/settlements", json={"business_date": "2026-03-02T00:00:00"}),
        422,
        "request.invalid",
    )
    assert_problem(
        world.a_api.get(f"/v1/colending/partners/{world.bank_a}/portfolio", params={"month_end": "March"}),
        422,
        "request.invalid",
    )
    assert written(world.platform) == before


# ---------------------------------------------------------------- loans, settlement, the partner's view


def test_loans_are_split_settled_and_each_bank_reads_its_own_statements_and_portfolio(world: World) -> None:
    platform = world.platform
    a, b = world.bank_a, world.bank_b
    short = world.open_loan(1, 1_000_001, term_months=6)
    mid = world.open_loan(2, 2_333_333, term_months=12)
    long = world.open_loan(3, 1_500_000, term_months=24)  # beyond bank B's 12 months
    for account, principal in ((short, 1_000_001), (mid, 2_333_333), (long, 1_500_000)):
        shares = shares_of(account)
        assert sum(shares.values()) == principal
        assert shares["platform"] >= -(-principal * PLATFORM_SHARE_MIN_BPS // 10_000)  # 30 %, rounded up
        assert shares[a] <= principal * 5_000 // 10_000  # bank A's share_max_bps, rounded down
        assert shares.get(b, 0) <= principal * 3_000 // 10_000
    assert set(shares_of(short)) == set(shares_of(mid)) == {"platform", a, b}
    assert set(shares_of(long)) == {"platform", a}
    assert shares_of(short)["platform"] == 300_001  # exactly 30 % of 1,000,001, rounded up
    refs = {short["account_id"]: short, mid["account_id"]: mid, long["account_id"]: long}
    funded = {p: sum(shares_of(acc).get(p, 0) for acc in refs.values()) for p in (a, b)}
    for pid, api in ((a, world.a_api), (b, world.b_api)):
        assert minor(api.get(f"/v1/colending/partners/{pid}").json()["outstanding"]) == funded[pid]

    # day 1 closes: the banks owe the platform their part of the fundings
    platform.lending.eod.run()
    first = {s["partner_id"]: s for s in world.settle()}
    assert set(first) == {a, b}
    for pid in (a, b):
        statement = first[pid]
        assert statement["business_date"] == "2026-03-02" and statement["direction"] == "bank_pays_platform"
        assert minor(statement["lines"]["funding"]) == -funded[pid] == minor(statement["net"])
        assert statement["status"] == "settled" and statement["ledger_entry_seq"] is not None
    assert_problem(world.ops.post("/v1/colending/settlements", json={}), 409, "colending.settlement_exists")

    # a repayment on each loan; two more days close; the banks' part of the collections comes back
    platform.lending.eod.run()  # closes 2026-03-03
    for ref in refs:
        world.repay(ref, 250_000)
    platform.lending.eod.run()  # closes 2026-03-04
    platform.lending.eod.run()  # closes 2026-03-05
    second = {s["partner_id"]: s for s in world.settle(date(2026, 3, 4))}
    assert set(second) == {a, b}
    for pid in (a, b):
        statement = second[pid]
        lines = {component: minor(amount) for component, amount in statement["lines"].items()}
        assert lines["funding"] == 0 and lines["principal"] > 0 and lines["interest"] > 0
        assert minor(statement["net"]) == sum(lines[c] for c in CASH_COMPONENTS) > 0
        assert statement["direction"] == "platform_pays_bank"
    assert_problem(
        world.ops.post("/v1/colending/settlements", json={"business_date": "2026-03-04"}),
        409,
        "colending.settlement_exists",
    )

    # bank A reads its statements, newest first, and one of them as JSON and as CSV
    listed = world.a_api.get(f"/v1/colending/partners/{a}/statements")
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [s["business_date"] for s in items] == ["2026-03-04", "2026-03-02"]
    assert items == [second[a], first[a]]
    assert [
        s["business_date"] for s in world.a_api.get(f"/v1/colending/partners/{a}/statements?limit=1").json()["items"]
    ] == ["2026-03-04"]
    one = world.a_api.get(f"/v1/colending/partners/{a}/statements/2026-03-04")
    assert one.status_code == 200 and one.json() == second[a]
    as_csv = world.a_api.get(f"/v1/colending/partners/{a}/statements/2026-03-04", params={"format": "csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = csv_rows(as_csv.text)
    assert {r["partner_id"] for r in rows} == {a} and {r["currency"] for r in rows} == {"CNY"}
    accounts = [r for r in rows if r["account_id"] not in ("TOTAL", "NET")]
    totals = {r["component"]: int(r["amount_minor"]) for r in rows if r["account_id"] == "TOTAL"}
    (net_row,) = [r for r in rows if r["account_id"] == "NET"]
    by_component: dict[str, int] = defaultdict(int)
    for r in accounts:
        by_component[r["component"]] += int(r["amount_minor"])
        assert r["account_id"] in refs
    assert {c: v for c, v in totals.items() if v} == dict(by_component)
    assert totals == {c: minor(v) for c, v in second[a]["lines"].items()}
    cash = sum(int(r["amount_minor"]) for r in accounts if r["component"] in CASH_COMPONENTS)
    assert cash == int(net_row["amount_minor"]) == minor(second[a]["net"])
    assert world.ops.get(f"/v1/colending/partners/{a}/statements/2026-03-04", params={"format": "csv"}).text == (
        as_csv.text
    )

    # bank A's portfolio: its participations, what it funded and earned, its exposure against its limits
    view = world.a_api.get(f"/v1/colending/partners/{a}/portfolio")
    assert view.status_code == 200, view.text
    portfolio = view.json()
    assert portfolio["partner_id"] == a and portfolio["loans"] == 3
    assert minor(portfolio["funded"]) == funded[a]
    repaid = minor(portfolio["principal_repaid"])
    assert repaid == minor(second[a]["lines"]["principal"]) > 0
    assert minor(portfolio["outstanding"]) == funded[a] - repaid == minor(portfolio["exposure"])
    assert minor(portfolio["interest_earned"]) == minor(second[a]["lines"]["interest"]) > 0
    assert minor(portfolio["losses"]) == 0
    assert minor(portfolio["limits"]["agreement_exposure_cap"]) == 50_000_000
    assert minor(portfolio["limits"]["tier1_capital_25pct"]) == 25_000_000
    # no month end closed yet: everything outstanding is in no bucket yet, shown apart so the buckets add up
    assert portfolio["month_end"] is None
    assert portfolio["buckets"] == {"not_yet_reported": portfolio["outstanding"]}
    assert world.ops.get(f"/v1/colending/partners/{a}/portfolio").json() == portfolio
    b_view = world.b_api.get(f"/v1/colending/partners/{b}/portfolio").json()
    assert b_view["loans"] == 2 and minor(b_view["funded"]) == funded[b]
    assert minor(world.ops.get(f"/v1/colending/partners/{a}").json()["outstanding"]) == funded[a] - repaid

    # bank A asking for bank B's objects is "not found", whatever the path
    for path in ("", "/statements", "/statements/2026-03-04", "/statements/2026-03-04?format=csv", "/portfolio"):
        assert_problem(world.a_api.get(f"/v1/colending/partners/{b}{path}"), 404, "colending.partner_not_found")
        assert_problem(world.b_api.get(f"/v1/colending/partners/{a}{path}"), 404, "colending.partner_not_found")

    reconciled = world.ops.get("/v1/colending/reconcile")
    assert reconciled.status_code == 200, reconciled.text
    report = reconciled.json()
    assert report["clean"] is True and {p["partner_id"] for p in report["partners"]} == {a, b}
    for line in report["partners"]:
        assert line["difference_minor"] == 0 and line["due_to_partner_ledger_minor"] == 0
    assert world.ops.get("/v1/lending/reconcile").json()["clean"] is True


def test_the_portfolio_buckets_come_from_the_month_end_snapshot(world: World) -> None:
    platform = world.platform
    a = world.bank_a
    loan = world.open_loan(7, 3_000_000, term_months=12)
    share = shares_of(loan)[a]
    platform.lending.eod.catch_up(date(2026, 3, 31))  # closes March: the month-end snapshots are written
    world.settle()
    view = world.a_api.get(f"/v1/colending/partners/{a}/portfolio").json()
    assert view["month_end"] == "2026-03-31"
    assert view["buckets"] == {"0": {"amount_minor": share, "currency": "CNY"}}  # current: the first due is April
    assert minor(view["outstanding"]) == share
    earlier = world.a_api.get(f"/v1/colending/partners/{a}/portfolio", params={"month_end": "2026-02-28"}).json()
    # before the loan existed: nothing reported for it then, all of it shown apart
    assert earlier["buckets"] == {"not_yet_reported": {"amount_minor": share, "currency": "CNY"}}
    assert earlier["month_end"] == "2026-02-28"
    assert world.ops.get("/v1/colending/reconcile").json()["clean"] is True
