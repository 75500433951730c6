"""Co-lending end to end, on SQLite and PostgreSQL: loans and a credit line co-funded by partner banks,
their cash flows shared and settled, and the limits every funding keeps — one at a time and all at once.

**The book** (`test_a_co_funded_book_shares_every_cash_flow_and_settles_to_the_ledger`): three banks with
different agreements (rates above and below the borrower's, fees to the platform or pro rata, minimum
shares that the pro-rata split alone would miss) co-fund five instalment loans and a credit line. Over ten
weeks of end of day: a loan paid off early; three loans prepaid in part then charged off (on a product that
charges off at 20 days past due, to keep end of day short), one recovered in part; a loan paid late with its
late fee and penalty, then paid off; draws on the line, refunds onto it (one beyond what it owes) and its
repayment. Settled on several days. Then, with the exact pro-rata figures computed here in `Fraction`s from
the participations' weights and lending's own events:

* each partner's running amount per account and component is within one unit of its exact share, and its
  principal in every paid-off or charged-off account is exactly zero (funding = principal repaid + lost);
* each settlement's lines are the sum of its movements (and of its CSV), and its ledger entry's postings are
  exactly those lines (participations, the house accounts, the custodian's settlement account;
  due-to-partner nets out);
* the co-lending and lending subledgers reconcile with the ledger and the ledger audits clean;
* running the event consumer again changes nothing (it records its position with what it wrote), and a day
  is settled once.

**Any program** (hypothesis, `test_any_program_of_cash_flows_shares_exactly_on_*`): random repayments,
draws, refunds, end-of-day runs and settlements on co-funded accounts, then everything paid off: the same
checks.

**The limits** (`test_acceptances_at_once_never_break_a_banks_limits_or_the_platforms_share`): twelve
acceptances from twelve threads against banks with small room under each limit — the agreement's exposure
cap, 25 % of net tier-1 capital, 50 % of total loans — and a platform allowed at most half of a loan. Each
acceptance is funded or refused with `colending.funding_not_possible` (409), and a refusal changes nothing;
afterwards every bank is within every limit and every loan's platform share is at least ⌈30 %⌉. The event
consumer run from four threads at once applies each event once.

**Settling while events are processed** (PostgreSQL): a movement committed after a settlement read its
totals is left for the next settlement, never marked settled unpaid.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import threading
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditstack.app.platform import Platform, open_platform
from creditstack.colending import tables as ct
from creditstack.colending.allocation import PLATFORM, FundingNotPossible, share_ceil, share_floor
from creditstack.colending.service import Agreement, SettlementExists
from creditstack.core.clock import FixedClock
from creditstack.core.errors import CreditstackError
from creditstack.core.money import CNY, Money
from creditstack.core.settings import Settings
from creditstack.lending import tables as lt
from creditstack.payments.service import Income

MEMBER = "flows"
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # the platform opens on Monday 2026-03-02
FAST = "cash-cny-fast"  # cash-cny, charged off at 20 days past due (non-accrual from 10)


class Book:
    """Borrowers, a merchant and the keys, through the services."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.lending = platform.lending
        self.pay = platform.payments
        self.colending = platform.colending
        self.keys = 0
        self.wallets: dict[str, str] = {}  # account ref -> wallet
        merchant = self.pay.register_customer(
            kind="merchant", legal_name="Shop", merchant_category="5411", fee_bps=0, refund_fee_policy="none"
        )["id"]
        self.shop = self.pay.open_wallet(merchant)["id"]
        self.customers = 0

    def key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    def borrower(self, funds_minor: int = 0) -> tuple[str, str]:
        self.customers += 1
        customer = self.pay.register_customer(
            kind="consumer",
            legal_name=f"Borrower {self.customers}",
            national_id=f"CLF{self.customers:06d}",
            date_of_birth=date(1990, 1, 1),
            incomes=[Income(date(2025, 12, 31), Money(60_000_000, CNY))],
        )["id"]
        wallet = self.pay.open_wallet(customer)["id"]
        if funds_minor:
            topped = self.pay.top_up(
                member=MEMBER, key=self.key(), wallet_id=wallet, amount=Money(funds_minor, CNY), bank_account_token="t"
            )
            assert topped.body["status"] == "completed", topped.body
        return customer, wallet

    def apply(self, product: str, amount_minor: int, term_months: int | None, funds_minor: int = 0) -> tuple[str, str]:
        """(application id, wallet) of an approved application of a new borrower."""
        customer, wallet = self.borrower(funds_minor)
        applied = self.lending.apply(
            member=MEMBER,
            key=self.key(),
            customer_id=customer,
            wallet_id=wallet,
            product_code=product,
            amount_minor=amount_minor,
            term_months=term_months,
        )
        assert applied.status_code == 201, applied.body
        return applied.body["application_id"], wallet

    def open(self, product: str, amount_minor: int, term_months: int | None = None) -> str:
        application, wallet = self.apply(product, amount_minor, term_months, funds_minor=3_000_000)
        accepted = self.lending.accept(member=MEMBER, key=self.key(), application_id=application)
        assert accepted.status_code == 201, accepted.body
        ref = str(accepted.body["account_id"])
        self.wallets[ref] = wallet
        return ref

    def buy(self, line: str, amount_minor: int) -> str:
        paid = self.pay.pay_merchant(
            member=MEMBER,
            key=self.key(),
            payer_wallet_id=self.wallets[line],
            merchant_wallet_id=self.shop,
            amount=Money(amount_minor, CNY),
            funding="credit_line",
        )
        assert paid.ok and paid.body["funding"] == "credit_line", paid.body
        return str(paid.payment_id)

    def refund(self, payment_id: str, amount_minor: int) -> None:
        refunded = self.pay.refund(
            member=MEMBER, key=self.key(), payment_id=payment_id, amount=Money(amount_minor, CNY)
        )
        assert refunded.ok, refunded.body

    def repay(self, ref: str, amount_minor: int) -> None:
        result = self.lending.repay(member=MEMBER, key=self.key(), account_id=ref, amount_minor=amount_minor)
        assert result.status_code == 201, result.body

    def pay_off(self, ref: str) -> None:
        self.repay(ref, self.lending.payoff_quote(ref)["total"]["amount_minor"])
        assert self.lending.get_account(ref)["balances"]["principal"]["amount_minor"] == 0

    def eod_through(self, last: date) -> None:
        self.lending.eod.catch_up(last)

    def today(self) -> date:
        return self.platform.ledger.business_date()


def agreement(**overrides: Any) -> Agreement:
    terms: dict[str, Any] = {
        "products": ("cash-cny", FAST, "line-cny"),
        "share_min_bps": 1_000,
        "share_max_bps": 6_000,
        "exposure_cap_minor": 50_000_000,
        "score_floor": 500,
        "term_months_max": 24,
        "bank_rate": Decimal("0.060000"),
    }
    return Agreement(**{**terms, **overrides})


def register(platform: Platform, partner_id: str, terms: Agreement, **figures: int) -> None:
    platform.colending.register_partner(
        name=f"Bank {partner_id}",
        member=partner_id,
        currency="CNY",
        net_tier1_capital_minor=figures.get("tier1", 1_000_000_000),
        total_loans_minor=figures.get("total_loans", 10_000_000_000),
        joint_loans_elsewhere_minor=figures.get("elsewhere", 0),
        agreement=terms,
        partner_id=partner_id,
    )


# ---------------------------------------------------------------- reading what co-lending wrote


def rows(platform: Platform, table: sa.Table) -> list[Any]:
    return platform.db.run(lambda conn: list(conn.execute(sa.select(table)).all()), readonly=True)


def snapshot(platform: Platform) -> dict[str, list[tuple[Any, ...]]]:
    tables = (ct.partners, ct.participations, ct.totals, ct.allocated, ct.movements, ct.settlements)
    return {table.name: sorted(tuple(map(str, r)) for r in rows(platform, table)) for table in tables}


def participations(platform: Platform) -> dict[str, dict[str, Any]]:
    """account ref -> participant -> its row."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in rows(platform, ct.participations):
        out[row.account_ref][row.participant] = row
    return dict(out)


def lending_flows(platform: Platform) -> dict[str, dict[str, int]]:
    """Per account, the running total of each component, from lending's own events."""
    events = platform.db.run(
        lambda conn: conn.execute(
            sa.text("SELECT topic, aggregate_id, payload FROM outbox WHERE topic LIKE 'lending.%' ORDER BY position")
        ).all(),
        readonly=True,
    )
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for topic, ref, raw in events:
        payload = raw if isinstance(raw, dict) else json.loads(raw)
        flows = totals[ref]
        name = topic.removeprefix("lending.")
        if name in {"loan_disbursed", "line_drawn"}:
            flows["funding"] += payload["principal_minor"]
        elif name == "repayment_received":
            for component in ("principal", "interest", "fees", "penalty"):
                flows[component] += payload[f"{component}_minor"]
        elif name == "line_refunded":
            flows["principal"] += payload["principal_minor"]
        elif name == "charged_off":
            flows["loss"] += payload["principal_minor"]
        elif name == "recovered":
            flows["recovery"] += payload["amount_minor"]
    return {ref: dict(flows) for ref, flows in totals.items()}


def check_shares_exact(platform: Platform, closed: set[str]) -> None:
    """Every partner's running amount per account and component is within one unit of its exact share;
    in every closed (paid-off or charged-off) account every participant's principal is exactly zero."""
    parts = participations(platform)
    flows = lending_flows(platform)
    partners = {p["partner_id"]: p for p in platform.colending.list_partners()}
    moved: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows(platform, ct.movements):
        moved[(row.account_ref, row.partner_id)][row.component] += int(row.amount_minor)
    shared = [ref for ref, by in parts.items() if set(by) != {PLATFORM}]
    assert shared, "no account is co-funded"
    for ref in shared:
        by = parts[ref]
        weight_total = sum(int(r.weight_minor) for r in by.values())
        interest_total = sum(int(r.interest_weight) for r in by.values())
        total = flows.get(ref, {})
        for partner_id, row in by.items():
            if partner_id == PLATFORM:
                continue
            share = Fraction(int(row.weight_minor), weight_total)
            mine = moved[(ref, partner_id)]
            fees_share = share if partners[partner_id]["agreement"]["fees_to"] == "pro_rata" else Fraction(0)
            penalty_share = share if partners[partner_id]["agreement"]["penalty_to"] == "pro_rata" else Fraction(0)
            interest_share = Fraction(int(row.interest_weight), interest_total) if interest_total else share
            expected = {
                "funding": -share * total.get("funding", 0),
                "interest": interest_share * total.get("interest", 0),
                "fees": fees_share * total.get("fees", 0),
                "penalty": penalty_share * total.get("penalty", 0),
                "recovery": share * total.get("recovery", 0),
            }
            for component, exact in expected.items():
                assert abs(mine.get(component, 0) - exact) < 1, (ref, partner_id, component, mine, exact)
            reduced = mine.get("principal", 0) + mine.get("loss", 0)
            assert abs(reduced - share * (total.get("principal", 0) + total.get("loss", 0))) < 1
            if row.kind == "loan":
                assert -mine["funding"] == int(row.weight_minor)  # a loan's funding is its share, exactly
        if ref in closed:
            assert {p: int(r.outstanding_minor) for p, r in by.items()} == dict.fromkeys(by, 0), ref
            for partner_id in by:
                if partner_id != PLATFORM:
                    mine = moved[(ref, partner_id)]
                    assert -mine["funding"] == mine.get("principal", 0) + mine.get("loss", 0), (ref, partner_id)


def check_exposure(platform: Platform) -> None:
    """Each partner's exposure is what its participations hold: a loan's outstanding share, a line's limit share."""
    held: dict[str, int] = defaultdict(int)
    for by in participations(platform).values():
        for partner_id, row in by.items():
            if partner_id != PLATFORM:
                held[partner_id] += int(row.weight_minor if row.kind == "line" else row.outstanding_minor)
    for partner in platform.colending.list_partners():
        assert partner["outstanding"]["amount_minor"] == held[partner["partner_id"]], partner["partner_id"]


def check_statement(platform: Platform, statement: dict[str, Any]) -> dict[str, int]:
    """The statement's lines are the sum of its movements and its ledger entry posts exactly them."""
    lines = {c: v["amount_minor"] for c, v in statement["lines"].items()}
    by_component: dict[str, int] = defaultdict(int)
    for line in statement["accounts"]:
        by_component[line["component"]] += line["amount_minor"]
    assert {c: v for c, v in lines.items() if v} == {c: v for c, v in by_component.items() if v}
    cash = ("funding", "principal", "interest", "fees", "penalty", "recovery")
    net = sum(lines[c] for c in cash)
    assert statement["net"]["amount_minor"] == net
    # the CSV says the same
    table = list(
        csv.DictReader(
            io.StringIO(
                platform.colending.statement_csv(
                    statement["partner_id"], date.fromisoformat(statement["business_date"])
                )
            )
        )
    )
    assert sum(int(r["amount_minor"]) for r in table if r["account_id"] not in ("TOTAL", "NET")) == sum(
        by_component.values()
    )
    assert {r["component"]: int(r["amount_minor"]) for r in table if r["account_id"] == "TOTAL"} == lines
    # the ledger entry
    pid = statement["partner_id"]
    ledger = platform.ledger
    house = platform.colending.house_accounts("CNY")
    account = {
        "participations": ledger.find_account(f"colending:{pid}:participations"),
        "due_to_partner": ledger.find_account(f"colending:{pid}:due_to_partner"),
    }
    ids = {name: a.id for name, a in account.items() if a is not None}
    ids.update(house)
    ids["settlement"] = platform.payments.house_account("settlement", "CNY")
    expected = {
        ids["participations"]: lines["funding"] + lines["principal"] + lines["loss"],
        ids["interest_to_partners"]: lines["interest"],
        ids["fees_to_partners"]: lines["fees"] + lines["penalty"],
        ids["recoveries_to_partners"]: lines["recovery"],
        ids["losses_borne_by_partners"]: -lines["loss"],
        ids["settlement"]: -net,
        ids["due_to_partner"]: 0,
    }
    expected = {a: v for a, v in expected.items() if v}
    seq = statement["ledger_entry_seq"]
    if not expected:  # e.g. a loan funded and paid off the same day: nothing to post
        assert seq is None
        return lines
    debits: dict[int, int] = defaultdict(int)
    for posting in ledger.get_entry(seq)["postings"]:
        amount = posting["amount"]["amount_minor"]
        debits[posting["account_id"]] += amount if posting["side"] == "debit" else -amount
    assert {a: v for a, v in debits.items() if v} == expected
    return lines


def assert_clean(platform: Platform) -> None:
    colending = platform.colending.reconcile()
    assert colending["clean"], colending
    lending = platform.lending.reconcile()
    assert lending["clean"], [line for p in lending["products"] for line in p["accounts"] if line["difference_minor"]]
    assert platform.ledger.audit().clean


# ---------------------------------------------------------------- the book


def test_a_co_funded_book_shares_every_cash_flow_and_settles_to_the_ledger(platform: Platform) -> None:
    fast = dataclasses.replace(platform.lending.product("cash-cny"), code=FAST, non_accrual_dpd=10, charge_off_dpd=20)
    platform.lending.register_product(fast)
    register(platform, "bank-a", agreement())
    # above the borrower's rate: it earns the borrower's rate; fees stay with the platform, penalty is shared
    register(
        platform,
        "bank-b",
        agreement(
            products=("cash-cny", FAST),
            share_min_bps=2_000,
            share_max_bps=4_000,
            bank_rate=Decimal("0.300000"),
            fees_to="platform",
            penalty_to="pro_rata",
        ),
    )
    register(
        platform, "bank-c", agreement(share_min_bps=1_000, exposure_cap_minor=3_000_000, bank_rate=Decimal("0.081234"))
    )
    book = Book(platform)
    statements: list[dict[str, Any]] = []

    def settle_today() -> None:
        statements.extend(platform.colending.settle(book.today()))

    early = book.open("cash-cny", 1_000_003, 6)  # paid off early
    # prepaid in part, then charged off (and one recovered in part): the principal repaid and the principal
    # lost are shared as one running total, or a participant could be left a unit off zero
    charged = [book.open(FAST, amount, 3) for amount in (800_001, 654_323, 999_997)]
    late = book.open("cash-cny", 1_200_007, 12)  # paid late, then paid off
    line = book.open("line-cny", 500_000)
    parts = participations(platform)
    assert all(len(parts[ref]) >= 3 for ref in (early, *charged, late, line)), parts  # two or three banks each
    books = book.buy(line, 120_000)
    tea = book.buy(line, 33_333)
    book.refund(tea, 13_333)
    settle_today()  # the banks pay their part of the fundings
    assert statements and all(s["net"]["amount_minor"] < 0 for s in statements)

    book.eod_through(date(2026, 3, 9))
    for ref, amount in zip(charged, (100_000, 77_777, 123_457), strict=True):
        book.repay(ref, amount)  # before anything is billed: prepays principal
    book.repay(line, 50_000)
    book.buy(line, 40_000)
    book.refund(books, 100_000)  # more than the line owes: the rest is held as a credit
    settle_today()
    book.eod_through(date(2026, 3, 19))
    book.pay_off(early)
    book.eod_through(date(2026, 4, 1))  # instalments billed, due 04-02
    book.repay(late, 150_000)
    book.buy(line, 61_111)
    settle_today()

    for last in (date(2026, 4, 20), date(2026, 4, 23), date(2026, 4, 26)):
        book.eod_through(last)
        if all(platform.lending.get_account(ref)["status"] == "charged_off" for ref in charged):
            break
    assert all(platform.lending.get_account(ref)["status"] == "charged_off" for ref in charged)
    recovered = platform.lending.recover(member=MEMBER, key=book.key(), account_id=charged[0], amount_minor=50_001)
    assert recovered.status_code == 201, recovered.body
    settle_today()

    book.eod_through(date(2026, 5, 12))  # instalment 2 of `late` (due 05-04) is late: late fee and penalty
    owed = platform.lending.get_account(late)["balances"]
    assert owed["fees"]["amount_minor"] > 0 and owed["penalty_interest"]["amount_minor"] > 0
    book.pay_off(late)
    book.pay_off(line)
    assert platform.colending.process_all() > 0
    settle_today()
    assert_clean(platform)

    closed = {early, *charged, late, line}
    check_shares_exact(platform, closed)
    check_exposure(platform)
    # every movement is settled, and the statements add up to them and to the ledger
    assert all(row.settlement_id is not None for row in rows(platform, ct.movements))
    settled: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for statement in statements:
        for component, amount in check_statement(platform, statement).items():
            settled[statement["partner_id"]][component] += amount
    moved: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows(platform, ct.movements):
        moved[row.partner_id][row.component] += int(row.amount_minor)
    assert {p: {c: v for c, v in by.items() if v} for p, by in settled.items()} == {
        p: {c: v for c, v in by.items() if v} for p, by in moved.items()
    }
    for partner_id, by in moved.items():  # all paid off or charged off: what each bank funded came back or was lost
        assert -by["funding"] == by["principal"] + by["loss"], partner_id
        assert by["interest"] > 0
    assert moved["bank-b"]["fees"] == 0 and moved["bank-b"]["penalty"] > 0  # fees to the platform, penalty shared
    assert moved["bank-a"]["penalty"] == 0 and moved["bank-a"]["fees"] > 0

    # delivered again: nothing changes, and a day is settled once
    before = snapshot(platform)
    assert platform.colending.process_all() == 0
    assert snapshot(platform) == before
    with pytest.raises(SettlementExists):
        platform.colending.settle(book.today())
    assert snapshot(platform) == before
    assert_clean(platform)


# ---------------------------------------------------------------- the limits, under concurrent acceptances

LOAN_MINOR = 200_000
PLATFORM_SHARE_MAX_BPS = 5_000  # the platform funds at most half of a loan: the banks must take the rest


def test_acceptances_at_once_never_break_a_banks_limits_or_the_platforms_share(platform: Platform) -> None:
    platform.colending.platform_share_max_bps = PLATFORM_SHARE_MAX_BPS
    # each bank has little room, under a different limit
    register(platform, "cap", agreement(share_min_bps=1_000, share_max_bps=4_000, exposure_cap_minor=300_000))
    register(platform, "tier1", agreement(share_min_bps=2_000, share_max_bps=5_000), tier1=1_000_000)  # 250,000
    register(
        platform, "joint", agreement(share_min_bps=1_000, share_max_bps=3_000), total_loans=900_000, elsewhere=250_000
    )  # 450,000 − 250,000 elsewhere = 200,000
    register(platform, "lines-only", agreement(products=("line-cny",)))
    register(platform, "picky", agreement(score_floor=900))
    limits = {"cap": 300_000, "tier1": 250_000, "joint": 200_000}
    book = Book(platform)
    wallets = dict(book.apply("cash-cny", LOAN_MINOR, 6) for _ in range(12))  # application -> wallet
    applications = list(wallets)
    barrier = threading.Barrier(len(applications))
    outcomes: dict[str, Any] = {}

    def accept(application_id: str, key: str) -> None:
        barrier.wait()
        try:
            outcomes[application_id] = platform.lending.accept(member=MEMBER, key=key, application_id=application_id)
        except CreditstackError as exc:
            outcomes[application_id] = exc

    threads = [threading.Thread(target=accept, args=(a, f"race-{n}")) for n, a in enumerate(applications)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    funded = {a: r.body["account_id"] for a, r in outcomes.items() if not isinstance(r, Exception)}
    refused = {a: r for a, r in outcomes.items() if isinstance(r, Exception)}
    assert len(funded) + len(refused) == len(applications)
    assert all(r.status_code == 201 for r in outcomes.values() if not isinstance(r, Exception))
    for exc in refused.values():
        assert isinstance(exc, FundingNotPossible), exc
        assert (exc.code, exc.http_status) == ("colending.funding_not_possible", 409)
    # the banks can take at most 700,000 and each loan needs at least 100,000 of it: some are funded, some not
    assert 5 <= len(funded) <= 7 and refused

    parts = participations(platform)
    assert set(parts) == set(funded.values())  # a refusal wrote nothing
    taken: dict[str, int] = defaultdict(int)
    for ref, by in parts.items():
        shares = {p: int(r.weight_minor) for p, r in by.items()}
        assert sum(shares.values()) == LOAN_MINOR
        assert share_ceil(LOAN_MINOR, 3_000) <= shares[PLATFORM] <= share_floor(LOAN_MINOR, PLATFORM_SHARE_MAX_BPS)
        funding = platform.lending.get_account(ref)["funding"]["shares"]
        assert {s["funder"]: s["principal_minor"] for s in funding} == shares
        for partner_id, share in shares.items():
            if partner_id == PLATFORM:
                continue
            terms = platform.colending.get_partner(partner_id)["agreement"]
            assert (
                share_ceil(LOAN_MINOR, terms["share_min_bps"])
                <= share
                <= share_floor(LOAN_MINOR, terms["share_max_bps"])
            )
            taken[partner_id] += share
    assert set(taken) <= set(limits)
    for partner_id, limit in limits.items():
        assert taken[partner_id] <= limit, (partner_id, taken[partner_id], limit)
        assert platform.colending.get_partner(partner_id)["outstanding"]["amount_minor"] == taken[partner_id]

    # nothing of a refused acceptance remains: the application is still open, no account, no money moved
    for application_id in refused:
        assert platform.lending.get_application(application_id)["status"] == "approved"
        assert platform.payments.get_wallet(wallets[application_id])["balance"]["amount_minor"] == 0
    for application_id in funded:
        assert platform.payments.get_wallet(wallets[application_id])["balance"]["amount_minor"] == LOAN_MINOR
    # the event consumer, run from several threads at once, applies each event once
    failed: list[BaseException] = []

    def consume() -> None:
        try:
            platform.colending.process_all()
        except BaseException as exc:  # reported below
            failed.append(exc)

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    for thread in consumers:
        thread.start()
    for thread in consumers:
        thread.join()
    assert not failed, failed
    called: dict[str, int] = defaultdict(int)  # each bank's funding calls
    for row in rows(platform, ct.movements):
        assert row.component == "funding"
        called[row.partner_id] -= int(row.amount_minor)
    assert dict(called) == {p: v for p, v in taken.items() if v}
    accounts = platform.db.run(
        lambda conn: conn.execute(sa.select(sa.func.count()).select_from(lt.accounts)).scalar_one(), readonly=True
    )
    assert accounts == len(funded)
    assert_clean(platform)

    # once the room is gone, a refusal names each bank's binding limit
    before = snapshot(platform)
    with pytest.raises(FundingNotPossible) as again:
        platform.lending.accept(member=MEMBER, key="again", application_id=next(iter(refused)))
    assert snapshot(platform) == before
    named = dict(entry.split(": ") for entry in again.value.details["binding"])
    assert set(named) == {"cap", "tier1", "joint"}  # the banks whose agreements cover this loan
    specific = {"cap": "agreement_exposure_cap", "tier1": "tier1_capital_25pct", "joint": "joint_loans_50pct"}
    for partner_id, limit in limits.items():
        left = limit - taken[partner_id]
        share_max = share_floor(LOAN_MINOR, platform.colending.get_partner(partner_id)["agreement"]["share_max_bps"])
        expected = {specific[partner_id]} if left < share_max else {"agreement_share_max", specific[partner_id]}
        assert named[partner_id].split(" < ")[0] in expected, (partner_id, named, left)
        assert f"{partner_id}: {named[partner_id]}" in again.value.message


# ---------------------------------------------------------------- any program of cash flows (hypothesis)

operations = st.one_of(
    st.tuples(st.just("repay"), st.integers(0, 2), st.integers(1, 100)),  # percent of the payoff
    st.tuples(st.just("draw"), st.integers(1_000, 150_000)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 100)),  # percent of the draw
    st.tuples(st.just("eod"), st.integers(1, 12)),
    st.tuples(st.just("settle")),
)
programs = st.lists(operations, min_size=2, max_size=12)


def run_program(url: str, directory: Path, program: list[tuple[Any, ...]]) -> None:
    platform = open_platform(Settings(database_url=url, var_dir=directory), FixedClock(START), migrate_schema=False)
    try:
        register(platform, "bank-a", agreement())
        register(platform, "bank-b", agreement(share_min_bps=2_000, share_max_bps=4_000, bank_rate=Decimal("0.3")))
        register(platform, "bank-c", agreement(bank_rate=Decimal("0.081234"), fees_to="platform"))
        book = Book(platform)
        loans = [book.open("cash-cny", 654_323, 3), book.open("cash-cny", 1_000_003, 6)]
        line = book.open("line-cny", 400_000)
        accounts = [*loans, line]
        draws: list[tuple[str, int]] = []  # (payment id, refundable)
        statements: list[dict[str, Any]] = []
        settled_days: set[date] = set()
        for op in program:
            if op[0] == "repay":
                ref = accounts[op[1]]
                amount = book.lending.payoff_quote(ref)["total"]["amount_minor"] * op[2] // 100
                if amount and platform.lending.get_account(ref)["status"] == "active":
                    book.repay(ref, amount)
            elif op[0] == "draw":
                if platform.lending.get_account(line)["available"]["amount_minor"] >= op[1]:
                    draws.append((book.buy(line, op[1]), op[1]))
            elif op[0] == "refund" and draws:
                n = op[1] % len(draws)
                payment_id, refundable = draws[n]
                amount = refundable * op[2] // 100
                if amount:
                    book.refund(payment_id, amount)
                    draws[n] = (payment_id, refundable - amount)
            elif op[0] == "eod":
                book.eod_through(book.today() + timedelta(days=op[1] - 1))
            elif op[0] == "settle" and book.today() - timedelta(days=1) not in settled_days:
                settled_days.add(book.today() - timedelta(days=1))
                statements.extend(platform.colending.settle())  # through yesterday (a day is settled once)
        for ref in accounts:
            if book.lending.payoff_quote(ref)["total"]["amount_minor"]:
                book.pay_off(ref)
        platform.colending.process_all()
        statements.extend(platform.colending.settle(book.today()))
        assert_clean(platform)
        check_shares_exact(platform, set(accounts))
        check_exposure(platform)
        for statement in statements:
            check_statement(platform, statement)
        assert all(row.settlement_id is not None for row in rows(platform, ct.movements))
        before = snapshot(platform)
        assert platform.colending.process_all() == 0
        assert snapshot(platform) == before
    finally:
        platform.close()


COMMON: dict[str, Any] = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=15, **COMMON)
@given(program=programs)
def test_any_program_of_cash_flows_shares_exactly_on_sqlite(fresh_sqlite: Any, program: Any) -> None:
    with fresh_sqlite() as (url, directory):
        run_program(url, directory, program)


@pytest.mark.postgres
@settings(max_examples=5, **COMMON)
@given(program=programs)
def test_any_program_of_cash_flows_shares_exactly_on_postgres(fresh_pg: Any, program: Any) -> None:
    with fresh_pg() as (url, directory):
        run_program(url, directory, program)


# ---------------------------------------------------------------- settling while events are processed


@pytest.mark.postgres
def test_movements_written_while_a_settlement_is_made_wait_for_the_next_one(pg_url: str, tmp_path: Path) -> None:
    """A settlement nets the movements it marks, exactly: a movement of the day committed by the event
    consumer after the settlement read its totals (PostgreSQL, READ COMMITTED) is left for the next
    settlement, not marked as settled unpaid. (SQLite writers are serialised: no such interleaving.)"""
    platform = open_platform(Settings(database_url=pg_url, var_dir=tmp_path), FixedClock(START), migrate_schema=False)
    try:
        register(platform, "bank-a", agreement())
        book = Book(platform)
        loan = book.open("cash-cny", 1_000_003, 6)
        platform.colending.process_all()
        post = platform.ledger.post_in_transaction
        interleaved: list[str] = []

        def post_after_a_repayment(conn: Any, commands: Any, **kwargs: Any) -> Any:
            if commands[0].key.startswith("colending:settlement:") and not interleaved:
                interleaved.append(commands[0].key)  # meanwhile, a repayment is made and its event processed

                def repay_and_process() -> None:
                    book.repay(loan, 300_000)
                    platform.colending.process_all()

                thread = threading.Thread(target=repay_and_process)
                thread.start()
                thread.join()
            return post(conn, commands, **kwargs)

        platform.ledger.post_in_transaction = post_after_a_repayment  # type: ignore[method-assign]
        [first] = platform.colending.settle(book.today())
        platform.ledger.post_in_transaction = post  # type: ignore[method-assign]
        assert interleaved
        assert first["lines"]["principal"]["amount_minor"] == 0  # the repayment came after its totals
        check_statement(platform, first)
        unsettled = [r for r in rows(platform, ct.movements) if r.settlement_id is None]
        assert {r.component for r in unsettled} >= {"principal"}
        book.eod_through(book.today())  # the next day's settlement takes it
        [second] = platform.colending.settle(book.today())
        check_statement(platform, second)
        assert second["lines"]["principal"]["amount_minor"] > 0
        assert_clean(platform)
    finally:
        platform.close()


def test_a_rail_that_fails_for_one_partner_leaves_the_others_paid_and_is_sent_again(platform: Platform) -> None:
    """Every partner is settled in one transaction before the rail is called: a submission that raises must
    not keep the others' payments from going out, nor lose their answers; the unanswered one is sent again
    (same end-to-end id) by the next settlement run, and nothing is settled twice."""
    register(platform, "bank-a", agreement())
    register(platform, "bank-b", agreement())
    book = Book(platform)
    book.open("cash-cny", 1_000_003, 6)
    book.open("cash-cny", 1_200_007, 6)
    rail = platform.payments.rail
    real_submit = rail.submit
    sent: list[str] = []

    def first_call_fails(instruction: Any) -> Any:
        sent.append(instruction.end_to_end_id)
        if len(sent) == 1:
            raise ConnectionError("rail down")
        return real_submit(instruction)

    rail.submit = first_call_fails  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        platform.colending.settle(book.today())
    made = {r.partner_id: r for r in rows(platform, ct.settlements)}
    assert set(made) == {"bank-a", "bank-b"}
    assert len(sent) == 2  # the second partner's payment went out although the first submission raised
    failed = next(r for r in made.values() if r.end_to_end_id == sent[0])
    answered = next(r for r in made.values() if r.end_to_end_id == sent[1])
    assert failed.status == "submitted" and answered.status == "settled"

    with pytest.raises(SettlementExists):  # the day is settled for both: it sends the unanswered one again first
        platform.colending.settle(book.today())
    assert sent[2:] == [failed.end_to_end_id]
    after = {r.partner_id: r for r in rows(platform, ct.settlements)}
    assert {r.status for r in after.values()} == {"settled"}
    assert len(after) == 2 and {r.id for r in after.values()} == {r.id for r in made.values()}
    settled_ids = [i.end_to_end_id for i, _ in rail.settled_instructions() if i.end_to_end_id.startswith("CLstl")]
    assert sorted(settled_ids) == sorted({failed.end_to_end_id, answered.end_to_end_id})
    assert platform.colending.reconcile()["clean"]
