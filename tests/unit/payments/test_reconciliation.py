"""Reconciliation: real samples from shared/data/iso20022, worked cases, and hypothesis properties."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditstack.core.money import Money
from creditstack.payments.reconciliation import (
    TOLERANCE_BUSINESS_DAYS_MAX,
    BalanceCheckStatus,
    BreakKind,
    BusinessCalendar,
    LedgerItem,
    LedgerStatus,
    MatchMethod,
    ReconciliationReport,
    business_days_between,
    reconcile,
    statement_date,
)
from creditstack.payments.statement_errors import ReconciliationInputInvalid, ReconciliationTotalsBroken
from creditstack.payments.statements import (
    STATUS_BOOKED,
    STATUS_PENDING,
    BankStatement,
    CreditDebit,
    StatementBalance,
    StatementEntry,
    parse_camt053,
)

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "iso20022"
CRDT, DBIT = CreditDebit.CREDIT, CreditDebit.DEBIT
WEEKDAYS = BusinessCalendar()


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"ISO 20022 samples not found at {DATA_DIR} (expected ../shared/data/iso20022 next to the repo)")
    return DATA_DIR


def load(data_dir: Path, name: str) -> list[BankStatement]:
    return parse_camt053((data_dir / name).read_bytes())


def money(text: str, currency: str = "EUR") -> Money:
    return Money.from_decimal(text, currency)


def item(
    item_id: str,
    amount: str,
    direction: CreditDebit,
    day: date,
    e2e: str | None = None,
    currency: str = "EUR",
    status: LedgerStatus = LedgerStatus.POSTED,
) -> LedgerItem:
    return LedgerItem(item_id, e2e, money(amount, currency), direction, day, status)


def kinds(report: ReconciliationReport) -> list[str]:
    return sorted(b.kind.value for b in report.breaks)


def entry(
    amount: str, direction: CreditDebit, day: date, e2e: tuple[str, ...] = (), status: str = STATUS_BOOKED
) -> StatementEntry:
    value = Money.from_decimal(amount, "EUR")
    return StatementEntry(value, Decimal(amount), "EUR", direction, status, day, day, end_to_end_ids=e2e)


def statement(entries: list[StatementEntry], opening_minor: int = 0, closing_minor: int | None = None) -> BankStatement:
    day = max((e.booking_date for e in entries if e.booking_date), default=date(2024, 3, 1))
    net = sum((e.signed_amount.amount_minor for e in entries if e.signed_amount and e.is_booked), 0)
    closing_minor = opening_minor + net if closing_minor is None else closing_minor

    def balance(code: str, minor: int) -> StatementBalance:
        direction = CRDT if minor >= 0 else DBIT
        return StatementBalance(
            code, Money.of(abs(minor), "EUR"), Decimal(abs(minor)).scaleb(-2), "EUR", direction, day
        )

    opening, closing = balance("OPBD", opening_minor), balance("CLBD", closing_minor)
    return BankStatement(
        message_id="M",
        message_type="test",
        kind="statement",
        statement_id="S",
        account_iban="DE89370400440532013000",
        account_other_id=None,
        currency_code="EUR",
        currency_stated=True,
        opening_balance=opening,
        closing_balance=closing,
        balances=(opening, closing),
        from_date=day,
        to_date=day,
        entries=tuple(entries),
    )


# --- real samples -------------------------------------------------------------------------------------------

POSTFINANCE_053 = "camt.053_P_CH2909000000250094239_1110092698_0_2020112503071366.xml"


def test_postfinance_balance_break_is_the_forward_value_dated_entry(data_dir: Path) -> None:
    (bank,) = load(data_dir, POSTFINANCE_053)
    day = date(2020, 11, 24)
    ledger = [
        item(f"L{i}", str(e.amount_decimal), e.credit_debit, day, currency="CHF") for i, e in enumerate(bank.entries)
    ]
    report = reconcile(bank, ledger, timing_tolerance_business_days=2)
    assert report.as_of == day  # the CLBD date
    assert len(report.matches) == 5 and all(m.method is MatchMethod.AMOUNT_AND_DATE for m in report.matches)
    assert kinds(report) == ["balance_mismatch"]
    check = report.balance_check
    assert check.status is BalanceCheckStatus.MISMATCH
    assert check.expected_closing == money("216649.21", "CHF")
    assert check.closing == money("215112.21", "CHF")
    assert check.difference == -money("1537.00", "CHF")
    (balance_break,) = report.breaks
    assert balance_break.details["forward_value_dated_entry_indexes"] == [3]
    assert balance_break.details["explained_by_forward_value_dated_entries"] is True
    assert not report.is_reconciled


def test_postfinance_against_an_empty_ledger_lists_every_entry_as_extra(data_dir: Path) -> None:
    (bank,) = load(data_dir, POSTFINANCE_053)
    report = reconcile(bank, [], timing_tolerance_business_days=2)
    assert kinds(report) == ["balance_mismatch"] + ["extra_in_bank"] * 5
    assert report.check_totals().entries_in_breaks == 5
    issue_codes = [issue["code"] for issue in report.to_dict()["statement_issues"]]
    assert issue_codes == [
        "payments.statement_direction_inconsistent",
        "payments.statement_duplicate_servicer_reference",
    ]


def test_fffs_sample_balances_and_matches_by_end_to_end_id(data_dir: Path) -> None:
    (bank,) = load(data_dir, "FI_camt_053_sample.xml.xml")
    day = date(2009, 10, 29)
    ledger = [item("sct", "10000.00", CRDT, day, e2e="EndToEndIdSCT01")]
    ledger += [
        item(f"L{i}", str(e.amount_decimal), e.credit_debit, day)
        for i, e in enumerate(bank.entries)
        if not e.end_to_end_ids
    ]
    report = reconcile(bank, ledger, timing_tolerance_business_days=1)
    assert report.balance_check.status is BalanceCheckStatus.OK
    assert report.balance_check.booked_net == money("13644.83")
    assert report.breaks == () and report.is_reconciled
    by_id = [m for m in report.matches if m.method is MatchMethod.END_TO_END_ID]
    assert [(m.entry_index, m.ledger_item_ids) for m in by_id] == [(8, ("sct",))]


@pytest.mark.parametrize("name", ["camt053.v2.minimal.xml", "camt053.v4.xml", "camt053.v8.xml"])
def test_mixed_currency_balances_are_balance_breaks(data_dir: Path, name: str) -> None:
    (bank,) = load(data_dir, name)
    report = reconcile(bank, [item("L", "8.85", CRDT, date(2014, 12, 31))], timing_tolerance_business_days=2)
    currency_breaks = [b for b in report.breaks if b.kind is BreakKind.BALANCE_MISMATCH]
    assert sorted(b.details["balance_type"] for b in currency_breaks) == ["CLAV", "CLBD", "OPAV"]
    assert all(b.details["reason"] == "currency" for b in currency_breaks)
    assert report.balance_check.status is BalanceCheckStatus.UNAVAILABLE
    assert len(report.matches) == 1


def test_all_balance_types_placeholders_do_not_reconcile(data_dir: Path) -> None:
    (bank,) = load(data_dir, "camt053.v2.all-balance-types.xml")
    report = reconcile(
        bank, [item("L", "8.85", CRDT, date(2014, 12, 31), e2e="000000001")], timing_tolerance_business_days=0
    )
    assert report.balance_check.status is BalanceCheckStatus.MISMATCH
    assert report.balance_check.difference == money("4.04") - money("1.01") - money("8.85")
    # Booked 2014-12-31 but the statement closes 2015-01-22: the id matches, the dates do not.
    assert kinds(report) == ["balance_mismatch"]


def test_five_decimals_file_is_off_by_five_cents(data_dir: Path) -> None:
    (bank,) = load(data_dir, "camt053.v2.five.decimals.xml")
    report = reconcile(
        bank, [item("L", "8.85", CRDT, date(2014, 12, 31), e2e="000000001")], timing_tolerance_business_days=2
    )
    assert report.balance_check.difference == money("0.05")
    assert kinds(report) == ["balance_mismatch"]
    assert report.matches[0].method is MatchMethod.END_TO_END_ID


def test_an_entry_with_too_many_decimals_is_a_precision_break_not_a_match(data_dir: Path) -> None:
    data = (data_dir / "camt053.v2.five.decimals.xml").read_bytes().replace(b">8.850<", b">8.855<")
    (bank,) = parse_camt053(data)
    ledger = [item("L", "8.85", CRDT, date(2014, 12, 31), e2e="000000001")]
    report = reconcile(bank, ledger, timing_tolerance_business_days=0)
    assert kinds(report) == ["missing_in_bank", "precision"]
    young = reconcile(bank, ledger, timing_tolerance_business_days=2)  # dated on the statement date: in transit
    assert kinds(young) == ["precision"] and young.timing_differences[0].ledger_item_ids == ("L",)
    (precision,) = report.breaks_of(BreakKind.PRECISION)
    assert precision.details == {"amount_decimal": "8.855", "currency": "EUR"}
    assert report.balance_check.status is BalanceCheckStatus.UNAVAILABLE
    assert report.matches == ()


def test_multi_statement_each_reconciles(data_dir: Path) -> None:
    first, second = load(data_dir, "camt053.v2.multi.statement.xml")
    day = date(2014, 12, 31)
    one = reconcile(first, [item("a", "8.85", CRDT, day, e2e="000000001")], timing_tolerance_business_days=2)
    two = reconcile(second, [item("b", "7.00", DBIT, day, e2e="000000002")], timing_tolerance_business_days=2)
    assert one.is_reconciled and two.is_reconciled


def test_lithuanian_notprovided_ids_are_not_ids(data_dir: Path) -> None:
    (bank,) = load(data_dir, "statement_1.xml")
    ledger = [
        item(f"L{i}", str(e.amount_decimal), DBIT, e.booking_date or date.min) for i, e in enumerate(bank.entries)
    ]
    report = reconcile(bank, ledger, timing_tolerance_business_days=0)
    assert report.breaks_of(BreakKind.DUPLICATE_REFERENCE) == []
    assert len(report.matches) == 4 and report.breaks == ()
    assert report.balance_check.status is BalanceCheckStatus.UNAVAILABLE  # only OPAV/CLAV


def test_esr_batch_entry_nets_the_ledger_items_of_its_ids(data_dir: Path) -> None:
    (notification,) = load(data_dir, "200519_camt054-ESR-ASR_P_CH2909000000250094239_1110092704_0_2019042500372179.xml")
    day = date(2019, 4, 24)
    ledger = [
        item("a", "250.00", CRDT, day, e2e="EndToEndId-001-02-02", currency="CHF"),
        item("b", "200.00", CRDT, day, e2e="EndToEndId-001-02-01", currency="CHF"),
        item("c", "300.00", CRDT, day, e2e="EndToEndId-001-02-03", currency="CHF"),
        item("d", "147.00", DBIT, day, currency="CHF"),
    ]
    report = reconcile(notification, ledger, timing_tolerance_business_days=1)
    (mismatch,) = report.breaks_of(BreakKind.AMOUNT_MISMATCH)
    assert mismatch.ledger_item_ids == ("a", "b", "c")
    assert mismatch.details["difference"] == money("787.00", "CHF").to_wire()  # 324 + 463 have no id
    assert [m.ledger_item_ids for m in report.matches] == [("d",)]
    with_all = [*ledger[:3], item("e", "787.00", CRDT, day, e2e="EndToEndId-001-02-03b", currency="CHF")]
    assert reconcile(notification, with_all, timing_tolerance_business_days=1).breaks_of(BreakKind.AMOUNT_MISMATCH)


def test_pending_entry_is_timing_even_when_matched(data_dir: Path) -> None:
    (bank,) = load(data_dir, "camt052.v6.Amt-zero.xml")
    ledger = [LedgerItem("L", "UXC06140000015PI00001EE00001", Money.of(20_000_000, "SEK"), DBIT, date(2007, 10, 18))]
    report = reconcile(bank, ledger, timing_tolerance_business_days=0)
    (timing,) = report.timing_differences
    assert timing.entry_indexes == (0,) and timing.ledger_item_ids == ("L",)
    assert timing.details == {"entry_status": "PDNG", "matched": True}
    assert report.breaks == ()


def test_empty_statement_ages_against_its_balance_date(data_dir: Path) -> None:
    (bank,) = load(data_dir, "camt53.only-Dt-with-DtTm.xml")
    assert statement_date(bank) == date(2025, 7, 23)
    report = reconcile(bank, [], timing_tolerance_business_days=2)
    assert report.balance_check.status is BalanceCheckStatus.UNAVAILABLE
    assert report.breaks == ()


@pytest.mark.parametrize(
    "name",
    [
        "200519_camt.054_P_CH2909000000250094239_1111091335_0_2020061900081727.xml",
        "camt054.v8-with-UETR.xml",
    ],
)
def test_notifications_without_ledger_items_are_extra(data_dir: Path, name: str) -> None:
    (bank,) = load(data_dir, name)
    report = reconcile(bank, [], timing_tolerance_business_days=2, as_of=date(2020, 6, 18))
    assert kinds(report) == ["extra_in_bank"]
    json.dumps(report.to_dict())


# --- worked cases -----------------------------------------------------------------------------------------------

MON, TUE, WED, THU, FRI, SAT = (date(2024, 3, 4) + timedelta(days=i) for i in range(6))


def test_business_days_between_skips_weekends_and_holidays() -> None:
    calendar = BusinessCalendar(holidays=frozenset({WED}))
    assert business_days_between(MON, MON, calendar, 10) == 0
    assert business_days_between(MON, TUE, calendar, 10) == 1
    assert business_days_between(MON, THU, calendar, 10) == 2  # Wednesday is a holiday
    assert business_days_between(FRI, MON + timedelta(days=7), calendar, 10) == 1  # over the weekend
    assert business_days_between(THU, MON, calendar, 10) == -2
    assert business_days_between(MON, MON + timedelta(days=400), calendar, 3) == 4  # capped at cap + 1
    assert business_days_between(date(2000, 1, 3), date(2024, 1, 3), calendar, 3) == 4
    assert business_days_between(MON, FRI, lambda d: True, 10) == 4  # any callable


def test_unmatched_ledger_items_are_timing_while_young_then_missing() -> None:
    bank = statement([entry("1.00", CRDT, FRI)])  # statement date Friday
    ledger = [
        item("matched", "1.00", CRDT, FRI),
        item("today", "2.00", CRDT, FRI),
        item("thursday", "3.00", DBIT, THU),
        item("tuesday", "4.00", CRDT, TUE),  # 3 business days old
        item("future", "5.00", CRDT, FRI + timedelta(days=3)),
    ]
    report = reconcile(bank, ledger, timing_tolerance_business_days=2, business_days=WEEKDAYS)
    timing = sorted(i for t in report.timing_differences for i in t.ledger_item_ids)
    assert timing == ["future", "thursday", "today"]
    (missing,) = report.breaks
    assert missing.kind is BreakKind.MISSING_IN_BANK and missing.ledger_item_ids == ("tuesday",)
    assert missing.ledger_amount == money("4.00")
    # A holiday on Wednesday makes Tuesday young enough.
    holiday = BusinessCalendar(holidays=frozenset({WED}))
    later = reconcile(bank, ledger, timing_tolerance_business_days=3, business_days=holiday)
    assert later.breaks == () and len(later.timing_differences) == 4


def test_amount_direction_and_date_mismatches_by_end_to_end_id() -> None:
    bank = statement(
        [
            entry("10.00", CRDT, MON, ("A",)),
            entry("20.00", DBIT, MON, ("B",)),
            entry("30.00", CRDT, FRI, ("C",)),
            entry("40.00", CRDT, FRI, ("D",)),
        ]
    )
    ledger = [
        item("a", "10.01", CRDT, MON, e2e="A"),
        item("b", "20.00", CRDT, MON, e2e="B"),
        item("c", "30.00", CRDT, MON, e2e="C"),
        item("d", "40.00", CRDT, THU, e2e="D"),
    ]
    report = reconcile(bank, ledger, timing_tolerance_business_days=1, business_days=WEEKDAYS)
    assert kinds(report) == ["amount_mismatch", "date_mismatch", "direction_mismatch"]
    (amount,) = report.breaks_of(BreakKind.AMOUNT_MISMATCH)
    assert amount.details["difference"] == {"amount_minor": -1, "currency": "EUR"}
    (direction,) = report.breaks_of(BreakKind.DIRECTION_MISMATCH)
    assert (direction.bank_amount, direction.ledger_amount) == (-money("20.00"), money("20.00"))
    assert [m.ledger_item_ids for m in report.matches] == [("d",)]  # Thursday → Friday is within 1 day


def test_fallback_match_needs_amount_direction_and_date_and_never_pairs_two_ids() -> None:
    bank = statement(
        [
            entry("5.00", CRDT, MON),
            entry("5.00", CRDT, THU),
            entry("7.00", DBIT, MON, ("X",)),
            entry("9.00", DBIT, MON),
        ]
    )
    ledger = [
        item("thu", "5.00", CRDT, THU),
        item("mon", "5.00", CRDT, MON),
        item("other-id", "7.00", DBIT, MON, e2e="Y"),
        item("credit", "9.00", CRDT, MON),
    ]
    report = reconcile(bank, ledger, timing_tolerance_business_days=0, business_days=WEEKDAYS)
    assert [(m.entry_index, m.ledger_item_ids) for m in report.matches] == [(0, ("mon",)), (1, ("thu",))]
    assert kinds(report) == ["extra_in_bank", "extra_in_bank", "missing_in_bank", "missing_in_bank"]


def test_duplicate_end_to_end_ids_on_either_side() -> None:
    bank = statement([entry("1.00", CRDT, MON, ("A",)), entry("1.00", CRDT, MON, ("A",))])
    ledger = [item("a1", "1.00", CRDT, MON, e2e="A"), item("a2", "1.00", CRDT, MON, e2e="A")]
    report = reconcile(bank, ledger, timing_tolerance_business_days=0)
    duplicates = report.breaks_of(BreakKind.DUPLICATE_REFERENCE)
    assert [(b.entry_indexes, b.ledger_item_ids) for b in duplicates] == [((1,), ()), ((), ("a2",))]
    assert [(m.entry_index, m.ledger_item_ids) for m in report.matches] == [(0, ("a1",))]
    report.check_totals()


def test_pending_unmatched_entry_is_timing() -> None:
    bank = statement([entry("1.00", CRDT, MON, status=STATUS_PENDING)])
    report = reconcile(bank, [], timing_tolerance_business_days=0)
    assert report.breaks == () and report.timing_differences[0].details["matched"] is False


def test_input_is_validated() -> None:
    bank = statement([])
    with pytest.raises(ReconciliationInputInvalid):
        reconcile(bank, [item("x", "1.00", CRDT, MON), item("x", "2.00", CRDT, MON)], timing_tolerance_business_days=0)
    for bad in (-1, TOLERANCE_BUSINESS_DAYS_MAX + 1, True):
        with pytest.raises(ReconciliationInputInvalid) as caught:
            reconcile(bank, [], timing_tolerance_business_days=bad)
        assert caught.value.code == "payments.reconciliation_input_invalid"
    undated = replace(bank, opening_balance=None, closing_balance=None, balances=(), from_date=None, to_date=None)
    with pytest.raises(ReconciliationInputInvalid):
        reconcile(undated, [], timing_tolerance_business_days=0)


def test_check_totals_catches_a_report_that_loses_an_item() -> None:
    report = reconcile(statement([entry("1.00", CRDT, MON)]), [], timing_tolerance_business_days=0)
    broken = replace(report, breaks=())
    with pytest.raises(ReconciliationTotalsBroken):
        broken.check_totals()
    doubled = replace(report, ledger_item_ids=("ghost",))
    with pytest.raises(ReconciliationTotalsBroken):
        doubled.check_totals()


def test_report_serialises_to_plain_json() -> None:
    bank = statement([entry("1.00", CRDT, MON, ("A",))], opening_minor=500, closing_minor=600)
    report = reconcile(bank, [item("a", "1.00", CRDT, MON, e2e="A")], timing_tolerance_business_days=0)
    body = json.loads(json.dumps(report.to_dict()))
    assert body["matches"] == [
        {
            "entry_index": 0,
            "ledger_item_ids": ["a"],
            "method": "end_to_end_id",
            "amount": {"amount_minor": 100, "currency": "EUR"},
        }
    ]
    assert body["balance_check"]["status"] == "ok"
    assert body["totals"]["entries"] == 1 and body["reconciled"] is True
    assert bank.closing_balance is not None
    off = reconcile(
        replace(bank, closing_balance=replace(bank.closing_balance, amount=money("6.01"))),
        [],
        timing_tolerance_business_days=0,
    )
    (balance,) = off.breaks_of(BreakKind.BALANCE_MISMATCH)
    assert json.loads(json.dumps(off.to_dict()))["balance_check"]["difference"] == {
        "amount_minor": 1,
        "currency": "EUR",
    }
    assert balance.details["reason"] == "arithmetic"


# --- properties ----------------------------------------------------------------------------------------------------

START = date(2024, 1, 1)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def ledgers(draw: st.DrawFn, *, with_ids: bool | None = None) -> list[LedgerItem]:
    count = draw(st.integers(0, 25))
    items = []
    for index in range(count):
        has_id = draw(st.booleans()) if with_ids is None else with_ids
        items.append(
            LedgerItem(
                item_id=f"L{index}",
                end_to_end_id=f"E2E-{index}" if has_id else None,
                amount=Money.of(draw(st.integers(1, 10**9)), "EUR"),
                direction=draw(st.sampled_from([CRDT, DBIT])),
                business_date=START + timedelta(days=draw(st.integers(0, 40))),
                status=draw(st.sampled_from(list(LedgerStatus))),
            )
        )
    return items


def statement_from(items: list[LedgerItem], opening_minor: int) -> BankStatement:
    entries = [
        StatementEntry(
            i.amount,
            i.amount.to_decimal(),
            "EUR",
            i.direction,
            STATUS_BOOKED,
            i.business_date,
            i.business_date,
            end_to_end_ids=(i.end_to_end_id,) if i.end_to_end_id else (),
        )
        for i in items
    ]
    built = statement(entries, opening_minor)
    assert built.closing_balance is not None
    return replace(built, closing_balance=replace(built.closing_balance, date=START + timedelta(days=40)))


@PROPERTY_SETTINGS
@given(items=ledgers(), opening=st.integers(-(10**9), 10**9))
def test_a_statement_built_from_the_ledger_has_no_breaks(items: list[LedgerItem], opening: int) -> None:
    report = reconcile(statement_from(items, opening), items, timing_tolerance_business_days=3)
    assert report.breaks == () and report.timing_differences == ()
    assert len(report.matches) == len(items)
    assert report.balance_check.status is BalanceCheckStatus.OK
    assert report.is_reconciled


@PROPERTY_SETTINGS
@given(items=ledgers(), data=st.data())
def test_perturbing_one_amount_gives_exactly_one_amount_mismatch(items: list[LedgerItem], data: st.DataObject) -> None:
    candidates = [i for i, it in enumerate(items) if it.end_to_end_id]
    if not candidates:
        items = [*items, LedgerItem("L-extra", "E2E-extra", Money.of(1234, "EUR"), CRDT, START)]
        candidates = [len(items) - 1]
    bank = statement_from(items, 0)
    target = data.draw(st.sampled_from(candidates))
    delta = data.draw(st.integers(1, 10**6))
    perturbed = list(items)
    perturbed[target] = replace(items[target], amount=items[target].amount + Money.of(delta, "EUR"))
    report = reconcile(bank, perturbed, timing_tolerance_business_days=3)
    assert [b.kind for b in report.breaks] == [BreakKind.AMOUNT_MISMATCH]
    assert report.breaks[0].ledger_item_ids == (items[target].item_id,)
    assert report.timing_differences == ()


@st.composite
def statements(draw: st.DrawFn) -> BankStatement:
    entries = []
    for _ in range(draw(st.integers(0, 25))):
        ids = draw(st.lists(st.sampled_from(["E2E-0", "E2E-1", "E2E-2", "E2E-7", "NOTPROVIDED"]), max_size=3))
        minor = draw(st.integers(0, 10**6))
        direction = draw(st.sampled_from([CRDT, DBIT]))
        day = START + timedelta(days=draw(st.integers(0, 40)))
        status = draw(st.sampled_from([STATUS_BOOKED, STATUS_BOOKED, STATUS_PENDING, "INFO"]))
        exact = Money.of(minor, "EUR")
        if draw(st.integers(0, 9)) == 0:  # too many decimals: no Money
            entries.append(StatementEntry(None, Decimal(minor).scaleb(-3), "EUR", direction, status, day, day))
            continue
        entries.append(
            StatementEntry(
                exact,
                exact.to_decimal(),
                "EUR",
                direction,
                status,
                draw(st.none() | st.just(day)),
                day,
                end_to_end_ids=tuple(ids),
            )
        )
    return statement(entries, draw(st.integers(-(10**6), 10**6)), draw(st.none() | st.integers(-(10**6), 10**6)))


@PROPERTY_SETTINGS
@given(bank=statements(), items=ledgers(), timing=st.integers(0, 5), date_tolerance=st.none() | st.integers(0, 5))
def test_every_entry_and_item_is_accounted_for_exactly_once(
    bank: BankStatement, items: list[LedgerItem], timing: int, date_tolerance: int | None
) -> None:
    report = reconcile(
        bank,
        items,
        timing_tolerance_business_days=timing,
        date_tolerance_business_days=date_tolerance,
        business_days=BusinessCalendar(holidays=frozenset({START + timedelta(days=10)})),
    )
    totals = report.check_totals()
    assert totals.entries == len(bank.entries)
    assert totals.entries == totals.entries_matched + totals.entries_in_breaks + totals.entries_in_timing
    assert totals.ledger_items == len(items)
    assert totals.ledger_items == (
        totals.ledger_items_matched + totals.ledger_items_in_breaks + totals.ledger_items_in_timing
    )
    assert all(b.kind is not BreakKind.TIMING for b in report.breaks)
    assert all(t.kind is BreakKind.TIMING for t in report.timing_differences)
    json.dumps(report.to_dict())
