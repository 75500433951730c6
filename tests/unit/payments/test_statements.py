"""Bank-statement parsing against every real sample in shared/data/iso20022 (facts from its README.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from creditstack.core.errors import ValidationFailed
from creditstack.core.money import Money
from creditstack.payments.statement_errors import (
    StatementInvalid,
    StatementMalformed,
    StatementTooLarge,
    StatementUnsupportedMessage,
)
from creditstack.payments.statements import (
    STATEMENT_LEVEL_INDEX,
    STATEMENT_SIZE_BYTES_MAX,
    BankStatement,
    CreditDebit,
    StatementBalance,
    parse_camt053,
    parse_statement_csv,
)

DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "iso20022"

POSTFINANCE_053 = "camt.053_P_CH2909000000250094239_1110092698_0_2020112503071366.xml"
FFFS_053 = "FI_camt_053_sample.xml.xml"
LITHUANIAN_053 = "statement_1.xml"
MINIMAL = "camt053.v2.minimal.xml"
MULTI = "camt053.v2.multi.statement.xml"
FIVE_DECIMALS = "camt053.v2.five.decimals.xml"
ALL_BALANCE_TYPES = "camt053.v2.all-balance-types.xml"
V4 = "camt053.v4.xml"
V8 = "camt053.v8.xml"
WRONG = "camt053.v2.wrong.xml"
ONLY_DT_WITH_DTTM = "camt53.only-Dt-with-DtTm.xml"
POSTFINANCE_054_ESR = "200519_camt054-ESR-ASR_P_CH2909000000250094239_1110092704_0_2019042500372179.xml"
POSTFINANCE_054_QRR = "200519_camt.054_P_CH2909000000250094239_1111091335_0_2020061900081727.xml"
V8_054_UETR = "camt054.v8-with-UETR.xml"
V6_052 = "camt052.v6.Amt-zero.xml"

# README "Files" table: file -> (message type, statements, entries) — None for the file that must be refused.
EXPECTED: dict[str, tuple[str, int, int] | None] = {
    POSTFINANCE_053: ("camt.053.001.04", 1, 5),
    FFFS_053: ("camt.053.001.02", 1, 10),
    LITHUANIAN_053: ("camt.053.001.02", 1, 4),
    MINIMAL: ("camt.053.001.02", 1, 1),
    MULTI: ("camt.053.001.02", 2, 2),
    FIVE_DECIMALS: ("camt.053.001.02", 1, 1),
    ALL_BALANCE_TYPES: ("camt.053.001.02", 1, 1),
    V4: ("camt.053.001.04", 1, 1),
    V8: ("camt.053.001.08", 1, 1),
    WRONG: None,
    ONLY_DT_WITH_DTTM: ("camt.053.001.02", 1, 0),
    POSTFINANCE_054_ESR: ("camt.054.001.04", 1, 2),
    POSTFINANCE_054_QRR: ("camt.054.001.04", 1, 1),
    V8_054_UETR: ("camt.054.001.08", 1, 1),
    V6_052: ("camt.052.001.06", 1, 1),
}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"ISO 20022 samples not found at {DATA_DIR} (expected ../shared/data/iso20022 next to the repo)")
    return DATA_DIR


def read(data_dir: Path, name: str) -> bytes:
    return (data_dir / name).read_bytes()


def one(data_dir: Path, name: str) -> BankStatement:
    statements = parse_camt053(read(data_dir, name))
    assert len(statements) == 1
    return statements[0]


def eur(text: str) -> Money:
    return Money.from_decimal(text, "EUR")


def chf(text: str) -> Money:
    return Money.from_decimal(text, "CHF")


def codes(statement: BankStatement) -> list[str]:
    return [issue.code for issue in statement.issues]


def amount_of(balance: StatementBalance | None) -> Money:
    assert balance is not None and balance.amount is not None
    return balance.amount


def booked_net(statement: BankStatement) -> Money:
    total = Money.zero(statement.currency_code or "EUR")
    for entry in statement.entries:
        assert entry.signed_amount is not None
        total = total + entry.signed_amount
    return total


# --- every file -------------------------------------------------------------------------------------------


def test_every_sample_file_is_covered(data_dir: Path) -> None:
    assert {p.name for p in data_dir.glob("*.xml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_file_parses_to_the_documented_shape_or_is_refused(data_dir: Path, name: str) -> None:
    expected = EXPECTED[name]
    if expected is None:
        with pytest.raises(StatementInvalid):
            parse_camt053(read(data_dir, name))
        return
    message_type, statements_count, entries_count = expected
    statements = parse_camt053(read(data_dir, name))
    assert len(statements) == statements_count
    assert sum(len(s.entries) for s in statements) == entries_count
    for statement in statements:
        assert statement.message_type == message_type
        assert statement.statement_id
        assert statement.account_id
        statement.to_dict()  # serialisable shape, no exception


# --- camt.053 ----------------------------------------------------------------------------------------------


def test_postfinance_053_opening_plus_entries_reaches_forward_available_not_closing(data_dir: Path) -> None:
    statement = one(data_dir, POSTFINANCE_053)
    assert statement.account_iban == "CH2909000000250094239"
    assert not statement.currency_stated and statement.currency_code == "CHF"  # no Acct/Ccy
    assert statement.opening_balance is not None and statement.closing_balance is not None
    assert statement.opening_balance.amount == chf("211993.19")
    assert statement.closing_balance.amount == chf("215112.21")
    assert statement.other_balances["CLAV"].amount == chf("215112.21")
    assert statement.other_balances["FWAV"].amount == chf("216649.21")
    directions = [e.credit_debit for e in statement.entries]
    assert directions.count(CreditDebit.CREDIT) == 4 and directions.count(CreditDebit.DEBIT) == 1
    net = booked_net(statement)
    assert net == chf("4656.02")
    reached = statement.opening_balance.amount + net
    assert reached == chf("216649.21") == statement.other_balances["FWAV"].amount
    assert reached - statement.closing_balance.amount == chf("1537.00")
    forward = [e for e in statement.entries if e.value_date == date(2020, 11, 25)]
    assert [e.amount for e in forward] == [chf("1537.00")]


def test_postfinance_053_quirks_are_flagged_not_fatal(data_dir: Path) -> None:
    statement = one(data_dir, POSTFINANCE_053)
    # Entry 2 (index 1) is DBIT at entry level but CRDT in its TxDtls.
    inconsistent = statement.issues_with_code("payments.statement_direction_inconsistent")
    assert [i.index for i in inconsistent] == [1]
    # Entries 4 and 5 share AcctSvcrRef 07582000303KBMSU.
    duplicated = statement.issues_with_code("payments.statement_duplicate_servicer_reference")
    assert [(i.index, i.details["reference"]) for i in duplicated] == [(4, "07582000303KBMSU")]
    # FrToDt (2020-06-24) does not match the booking date (2020-11-24): read as written.
    assert statement.from_date == date(2020, 6, 24)
    assert {e.booking_date for e in statement.entries} == {date(2020, 11, 24)}
    assert "FÜR" in (statement.entries[2].additional_information or "")
    assert statement.entries[3].entry_reference == "014295803"
    assert statement.entries[0].bank_transaction_code == "PMNT/IDDT/PMDD"
    assert set(codes(statement)) == {
        "payments.statement_direction_inconsistent",
        "payments.statement_duplicate_servicer_reference",
    }


def test_fffs_sample_reconciles_and_its_control_totals_match(data_dir: Path) -> None:
    statement = one(data_dir, FFFS_053)
    assert statement.currency_stated and statement.currency_code == "EUR"
    assert statement.issues == ()  # the summary matches: no payments.statement_summary_mismatch
    summary = statement.summary
    assert summary is not None
    assert summary.entries_count == 10
    assert (summary.credit_entries_count, summary.credit_entries_sum) == (6, Decimal("23075.00"))
    assert (summary.debit_entries_count, summary.debit_entries_sum) == (4, Decimal("9430.17"))
    credits = [e.amount for e in statement.entries if e.credit_debit is CreditDebit.CREDIT]
    debits = [e.amount for e in statement.entries if e.credit_debit is CreditDebit.DEBIT]
    assert len(credits) == 6 and sum(m.amount_minor for m in credits if m) == 2307500
    assert len(debits) == 4 and sum(m.amount_minor for m in debits if m) == 943017
    assert statement.opening_balance is not None and statement.closing_balance is not None
    assert statement.opening_balance.type_code == "OPBD" and statement.opening_balance.amount == eur("10000.00")
    assert statement.balance("PRCD") is not None and statement.balance("PRCD").amount == eur("10000.00")  # type: ignore[union-attr]
    assert statement.other_balances["CLAV"].amount == eur("33644.83")
    assert booked_net(statement) == eur("13644.83")
    assert statement.opening_balance.amount + booked_net(statement) == statement.closing_balance.amount
    batches = [e.batch_transaction_count for e in statement.entries if e.batch_transaction_count is not None]
    assert batches == [4, 3, 3, 2, 2, 2]
    itemised = [len(e.transactions) for e in statement.entries if e.batch_transaction_count is not None]
    assert itemised == [1, 0, 3, 1, 1, 1]  # NbOfTxs often differs from the number of TxDtls
    batch_of_three = statement.entries[2]
    assert batch_of_three.amount == eur("4230.05")
    assert [t.amount for t in batch_of_three.transactions] == [eur("2000.02"), eur("1000.01"), eur("1230.02")]
    assert statement.entries[8].end_to_end_ids == ("EndToEndIdSCT01",)
    assert statement.entries[6].value_date == date(2009, 10, 30)  # the FX credit: value date after booking


def test_fffs_sample_with_a_wrong_control_sum_is_flagged(data_dir: Path) -> None:
    broken = read(data_dir, FFFS_053).replace(b"<Sum>23075.00</Sum>", b"<Sum>23075.01</Sum>")
    statement = parse_camt053(broken)[0]
    mismatched = statement.issues_with_code("payments.statement_summary_mismatch")
    assert [i.field for i in mismatched] == ["Stmt[0]/TxsSummry/TtlCdtNtries/Sum"]
    assert mismatched[0].details == {"stated": "23075.01", "actual": "23075.00"}


def test_lithuanian_statement_has_only_available_balances_that_tie(data_dir: Path) -> None:
    statement = one(data_dir, LITHUANIAN_053)
    assert statement.opening_balance is None and statement.closing_balance is None
    opening, closing = statement.balance("OPAV"), statement.balance("CLAV")
    assert opening is not None and closing is not None
    assert opening.amount == eur("2768.08") and closing.amount == eur("0.00")
    assert all(e.credit_debit is CreditDebit.DEBIT for e in statement.entries)
    assert opening.amount + booked_net(statement) == closing.amount
    single_decimal = statement.entries[3]
    assert single_decimal.amount_decimal == Decimal("1.7") and single_decimal.amount == eur("1.70")
    assert "sąskaitą" in statement.entries[0].remittance_information[0]
    assert statement.issues == ()


@pytest.mark.parametrize("name", [MINIMAL, V4, V8])
def test_balances_in_four_currencies_are_flagged(data_dir: Path, name: str) -> None:
    statement = one(data_dir, name)
    assert statement.currency_code == "EUR"
    mismatched = statement.issues_with_code("payments.statement_currency_mismatch")
    assert sorted(i.details["balance_type"] for i in mismatched) == ["CLAV", "CLBD", "OPAV"]
    assert all(i.index == STATEMENT_LEVEL_INDEX for i in mismatched)
    assert statement.closing_balance is not None
    assert statement.closing_balance.signed_amount == Money.of(-2700, "SEK")  # 27.00 DR in SEK
    clav = statement.balance("CLAV")
    assert clav is not None and clav.amount == Money.of(2700, "JPY")  # JPY has no decimals
    assert statement.entries[0].amount == eur("8.85")


def test_minimal_v2_states_the_account_currency(data_dir: Path) -> None:
    assert one(data_dir, MINIMAL).currency_stated


def test_v4_layout(data_dir: Path) -> None:
    entry = one(data_dir, V4).entries[0]
    assert entry.status == "BOOK"  # a plain code
    assert entry.bank_transaction_code == "PAYM/0001/0005"  # non-standard domain codes kept as written
    assert entry.transactions[0].amount == Money.of(0, "SEK")  # TxDtls 0 SEK against an 8.85 EUR entry


def test_v8_layout_reads_a_date_time_in_its_own_offset(data_dir: Path) -> None:
    statement = one(data_dir, V8)
    assert statement.account_iban is None and statement.account_other_id == "NL26VAYB8060476890"
    assert not statement.currency_stated
    entry = statement.entries[0]
    assert entry.status == "BOOK"  # nested Sts/Cd
    assert entry.booking_date == date(2014, 12, 31)  # 2014-12-31T13:15:00+01:00
    assert entry.value_date == date(2015, 1, 2)
    assert entry.end_to_end_ids == ("MUELL/FINP/RA12345",)
    assert entry.account_servicer_reference == "AAAASESS-FP-CN_98765/01"
    assert entry.bank_transaction_code == "PMNT/RCDT/BOOK"
    assert statement.from_date == date(2007, 10, 18)


def test_multi_statement_message_each_reconciles_and_carries_over(data_dir: Path) -> None:
    first, second = parse_camt053(read(data_dir, MULTI))
    assert first.account_iban == second.account_iban == "NL26VAYB8060476890"
    assert first.statement_id != second.statement_id
    for statement in (first, second):
        assert statement.opening_balance is not None and statement.closing_balance is not None
        assert amount_of(statement.opening_balance) + booked_net(statement) == statement.closing_balance.amount
        assert statement.issues == ()
    assert first.closing_balance is not None and second.opening_balance is not None
    assert first.closing_balance.amount == second.opening_balance.amount == eur("27.00")
    assert second.closing_balance is not None and second.closing_balance.amount == eur("20.00")
    assert first.electronic_sequence_number == "12312" and second.electronic_sequence_number is None


def test_five_decimals_file_parses_exactly_and_is_off_by_five_cents(data_dir: Path) -> None:
    statement = one(data_dir, FIVE_DECIMALS)
    assert statement.opening_balance is not None and statement.closing_balance is not None
    assert statement.opening_balance.amount == Money.of(1815, "EUR")  # 18.150 is exactly 18.15
    assert statement.opening_balance.amount_decimal == Decimal("18.150")
    assert str(statement.opening_balance.amount_decimal) == "18.150"  # kept as written
    assert statement.entries[0].amount == Money.of(885, "EUR")
    assert statement.closing_balance.amount == Money.of(2705, "EUR")
    assert statement.issues_with_code("payments.statement_amount_precision") == []
    reached = statement.opening_balance.amount + booked_net(statement)
    assert reached == eur("27.00")
    assert statement.closing_balance.amount - reached == eur("0.05")


def test_an_amount_with_too_many_decimals_is_kept_and_flagged_never_rounded(data_dir: Path) -> None:
    data = read(data_dir, FIVE_DECIMALS).replace(b">8.850<", b">8.855<").replace(b">27.050<", b">27.0051<")
    statement = parse_camt053(data)[0]
    entry = statement.entries[0]
    assert entry.amount is None and entry.signed_amount is None
    assert entry.amount_decimal == Decimal("8.855")
    assert statement.closing_balance is not None and statement.closing_balance.amount is None
    assert statement.closing_balance.amount_decimal == Decimal("27.0051")
    flagged = statement.issues_with_code("payments.statement_amount_precision")
    assert sorted(i.index for i in flagged) == [STATEMENT_LEVEL_INDEX, 0]
    assert {i.details["amount"] for i in flagged} == {"8.855", "27.0051"}


def test_all_ten_balance_types(data_dir: Path) -> None:
    statement = one(data_dir, ALL_BALANCE_TYPES)
    assert [b.type_code for b in statement.balances] == [
        "OPBD",
        "PRCD",
        "OPAV",
        "CLBD",
        "CLAV",
        "FWAV",
        "INFO",
        "ITAV",
        "ITBD",
        "XPCD",
    ]
    assert [b.amount_decimal for b in statement.balances] == [Decimal(f"{i}.{i:02d}") for i in range(1, 11)]
    assert set(statement.other_balances) == {"PRCD", "OPAV", "CLAV", "FWAV", "INFO", "ITAV", "ITBD", "XPCD"}
    assert not statement.currency_stated and statement.currency_code == "EUR"
    assert statement.entries[0].amount == eur("8.85")  # written 8.850
    assert statement.opening_balance is not None and statement.closing_balance is not None
    assert amount_of(statement.opening_balance) + booked_net(statement) != statement.closing_balance.amount


def test_wrong_file_without_a_statement_is_refused_with_a_stable_code(data_dir: Path) -> None:
    with pytest.raises(StatementInvalid) as caught:
        parse_camt053(read(data_dir, WRONG))
    error = caught.value
    assert error.code == "payments.statement_invalid"
    assert isinstance(error, StatementMalformed) and isinstance(error, ValidationFailed)
    assert error.field == "Stmt"
    assert [e["field"] for e in error.details["errors"]] == ["Stmt"]
    assert error.to_dict()["code"] == "payments.statement_invalid"


def test_empty_statement_with_a_nanosecond_date_time_and_an_unknown_currency(data_dir: Path) -> None:
    statement = one(data_dir, ONLY_DT_WITH_DTTM)
    assert statement.entries == () and statement.closing_balance is None
    opening = statement.opening_balance
    assert opening is not None
    assert opening.date == date(2025, 7, 23)  # DtTm 2025-07-23T00:00:00.000000000
    assert opening.amount_decimal == Decimal("5442.09000") and opening.currency_code == "RON"
    # RON is not in the platform's currency table: kept exactly, flagged, not turned into Money.
    assert opening.amount is None
    assert codes(statement) == ["payments.statement_unknown_currency"]
    assert statement.account_iban == "GB33BUKB20201555555555" and statement.currency_code == "RON"


# --- camt.054 / camt.052 -------------------------------------------------------------------------------------


def test_postfinance_esr_notification_breaks_down_the_collective_credit(data_dir: Path) -> None:
    notification = one(data_dir, POSTFINANCE_054_ESR)
    assert notification.kind == "notification"
    assert notification.opening_balance is None and notification.balances == ()
    collective, debit = notification.entries
    assert collective.amount == chf("1537.00") and collective.batch_transaction_count == 5
    assert [t.amount for t in collective.transactions] == [chf(x) for x in ("250", "200", "300", "324", "463")]
    assert sum((t.amount for t in collective.transactions if t.amount), chf("0")) == collective.amount
    assert collective.end_to_end_ids == ("EndToEndId-001-02-02", "EndToEndId-001-02-01", "EndToEndId-001-02-03")
    isr_reference = "120000000000234478943216899"
    assert [t.remittance_information for t in collective.transactions].count((isr_reference,)) == 3
    assert debit.amount == chf("147.00") and debit.credit_debit is CreditDebit.DEBIT
    assert debit.batch_transaction_count == 1
    # Same NtryRef / AcctSvcrRef / amount as entry 4 of the PostFinance camt.053 (dates differ).
    statement_entry = one(data_dir, POSTFINANCE_053).entries[3]
    assert (collective.entry_reference, collective.account_servicer_reference, collective.amount) == (
        statement_entry.entry_reference,
        statement_entry.account_servicer_reference,
        statement_entry.amount,
    )
    assert collective.booking_date == date(2019, 4, 24) != statement_entry.booking_date
    assert notification.issues == ()


def test_postfinance_qrr_notification(data_dir: Path) -> None:
    notification = one(data_dir, POSTFINANCE_054_QRR)
    (entry,) = notification.entries
    assert entry.entry_reference == "CH7730000001250094239"
    assert entry.amount == chf("1692.22") and entry.batch_transaction_count == 2
    assert [t.amount for t in entry.transactions] == [chf("778.29"), chf("913.93")]
    assert notification.issues == ()


def test_v8_notification_with_only_a_uetr(data_dir: Path) -> None:
    notification = one(data_dir, V8_054_UETR)
    (entry,) = notification.entries
    assert entry.amount == Money.of(20_000_000, "SEK")  # integer amount 200000
    assert entry.booking_date is None and entry.value_date is None
    assert entry.bank_transaction_code is None  # empty <BkTxCd>
    assert entry.end_to_end_ids == ()
    assert entry.transactions[0].uetr == "255ae394-9965-4438-ac86-f406feada396"
    assert notification.currency_code == "SEK"


def test_v6_report_with_zero_amounts_and_a_pending_entry_in_another_currency(data_dir: Path) -> None:
    report = one(data_dir, V6_052)
    assert report.kind == "report"
    assert [b.type_code for b in report.balances] == ["ITBD"]
    assert report.currency_code == "CHF"
    (entry,) = report.entries
    assert entry.status == "PDNG" and not entry.is_booked
    assert entry.amount == Money.of(20_000_000, "SEK")
    assert entry.transactions[0].amount == Money.of(0, "USD")  # "0"
    mismatched = report.issues_with_code("payments.statement_currency_mismatch")
    assert [(i.index, i.details["currency"]) for i in mismatched] == [(0, "SEK")]


# --- refusals -------------------------------------------------------------------------------------------------

CAMT_TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>M1</MsgId><CreDtTm>2024-01-02T10:00:00Z</CreDtTm></GrpHdr>
    <Stmt>
      <Id>S1</Id>
      <Acct><Id><IBAN>DE89370400440532013000</IBAN></Id><Ccy>EUR</Ccy></Acct>
      {entries}
    </Stmt>
  </BkToCstmrStmt>
</Document>"""

ENTRY = """<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{cd}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
<BookgDt><DtTm>{booked}</DtTm></BookgDt></Ntry>"""


def camt(*entries: str) -> bytes:
    return CAMT_TEMPLATE.format(entries="\n".join(entries)).encode()


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2014-12-31T23:30:00-05:00", date(2014, 12, 31)),  # 04:30 UTC on 1 January: the bank's date is the 31st
        ("2015-01-01T00:30:00+09:00", date(2015, 1, 1)),  # 15:30 UTC on 31 December
        ("2015-01-01T00:00:00Z", date(2015, 1, 1)),
        ("2015-01-01T08:00:00", date(2015, 1, 1)),
        ("2015-01-01T08:00:00.123456789+01:00", date(2015, 1, 1)),
    ],
)
def test_date_time_is_read_in_its_own_offset(stamp: str, expected: date) -> None:
    (statement,) = parse_camt053(camt(ENTRY.format(amount="1.00", cd="CRDT", booked=stamp)))
    assert statement.entries[0].booking_date == expected


def test_every_problem_is_listed_at_once() -> None:
    data = camt(
        ENTRY.format(amount="1,00", cd="CRDT", booked="2024-01-02T10:00:00Z"),
        ENTRY.format(amount="2.00", cd="CREDIT", booked="2024-13-02T10:00:00Z"),
        "<Ntry><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts></Ntry>",
    )
    with pytest.raises(StatementInvalid) as caught:
        parse_camt053(data)
    fields = [e["field"] for e in caught.value.details["errors"]]
    assert fields == [
        "Stmt[0]/Ntry[0]/Amt",
        "Stmt[0]/Ntry[1]/CdtDbtInd",
        "Stmt[0]/Ntry[1]/BookgDt/DtTm",
        "Stmt[0]/Ntry[2]/Amt",
    ]
    assert [e["index"] for e in caught.value.details["errors"]] == [0, 1, 1, 2]
    assert caught.value.details["errors_count"] == 4


def test_missing_account_and_ids_are_invalid() -> None:
    data = b"""<Document><BkToCstmrStmt><GrpHdr/><Stmt><Bal/></Stmt></BkToCstmrStmt></Document>"""
    with pytest.raises(StatementInvalid) as caught:
        parse_camt053(data)
    fields = {e["field"] for e in caught.value.details["errors"]}
    assert {"GrpHdr/MsgId", "Stmt[0]/Id", "Stmt[0]/Acct/Id", "Stmt[0]/Bal[0]/Amt"} <= fields


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<Document><BkToCstmrStmt>",
        b"not xml at all",
        b'<?xml version="1.0" encoding="UTF-8"?><Document>\xff\xfe</Document>',
    ],
)
def test_not_well_formed_xml_is_malformed(data: bytes) -> None:
    with pytest.raises(StatementMalformed) as caught:
        parse_camt053(data)
    assert caught.value.code == "payments.statement_malformed"


def test_entity_expansion_is_refused() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Document><BkToCstmrStmt><GrpHdr><MsgId>&lol2;</MsgId></GrpHdr></BkToCstmrStmt></Document>"""
    with pytest.raises(StatementMalformed) as caught:
        parse_camt053(bomb)
    assert caught.value.code == "payments.statement_malformed"
    assert "unsafe" in caught.value.message


def test_other_documents_are_unsupported() -> None:
    pain = b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"><CstmrCdtTrfInitn/></Document>'
    with pytest.raises(StatementUnsupportedMessage) as caught:
        parse_camt053(pain)
    assert caught.value.code == "payments.statement_unsupported_message"


def test_size_is_bounded() -> None:
    with pytest.raises(StatementTooLarge) as caught:
        parse_camt053(b" " * (STATEMENT_SIZE_BYTES_MAX + 1))
    assert caught.value.code == "payments.statement_too_large"
    assert caught.value.http_status == 413


def test_text_instead_of_bytes_is_refused() -> None:
    with pytest.raises(StatementMalformed):
        parse_camt053("<Document/>")  # type: ignore[arg-type]


# --- CSV ---------------------------------------------------------------------------------------------------------

CSV_HEADER = (
    "account,currency,opening_balance,closing_balance,booking_date,value_date,amount,credit_debit,"
    "end_to_end_id,reference,description\n"
)


def test_csv_statement() -> None:
    text = CSV_HEADER + (
        "CH2909000000250094239,CHF,211993.19,215112.21,2020-11-24,2020-11-24,4.50,CRDT,E2E-1,REF-1,Top-up\n"
        'CH2909000000250094239,CHF,211993.19,215112.21,2020-11-24,,77.70,DBIT,,REF-2,"Withdrawal, ""urgent"""\n'
        "CH2909000000250094239,CHF,211993.19,215112.21,2020-11-25,2020-11-25,3192.22,crdt,,,\n"
    )
    statement = parse_statement_csv(text)
    assert statement.message_type == "csv" and statement.statement_id.startswith("csv-")
    assert parse_statement_csv(text).statement_id == statement.statement_id  # deterministic
    assert statement.account_iban == "CH2909000000250094239" and statement.currency_code == "CHF"
    assert statement.opening_balance is not None and statement.closing_balance is not None
    assert statement.opening_balance.amount == chf("211993.19")
    assert statement.closing_balance.date == date(2020, 11, 25)
    assert (statement.from_date, statement.to_date) == (date(2020, 11, 24), date(2020, 11, 25))
    first, second, third = statement.entries
    assert first.end_to_end_ids == ("E2E-1",) and first.account_servicer_reference == "REF-1"
    assert second.signed_amount == -chf("77.70") and second.value_date is None
    assert second.remittance_information == ('Withdrawal, "urgent"',)
    assert third.credit_debit is CreditDebit.CREDIT and third.end_to_end_ids == ()
    assert statement.opening_balance.amount + booked_net(statement) == statement.closing_balance.amount
    assert statement.issues == ()


def test_csv_balances_only_row_negative_balance_bom_and_precision() -> None:
    text = "\ufeff" + CSV_HEADER + "ACC-1,EUR,-10.00,-1.145,,,,,,,\n"
    statement = parse_statement_csv(text)
    assert statement.entries == () and statement.account_other_id == "ACC-1"
    assert statement.opening_balance is not None and statement.opening_balance.signed_amount == -eur("10.00")
    assert statement.closing_balance is not None and statement.closing_balance.amount is None
    assert statement.closing_balance.signed_decimal == Decimal("-1.145")
    assert codes(statement) == ["payments.statement_amount_precision"]


def test_csv_entry_with_too_many_decimals_is_kept_and_flagged() -> None:
    statement = parse_statement_csv(CSV_HEADER + "ACC-1,EUR,,,2024-01-02,,8.855,CRDT,,,\n")
    assert statement.entries[0].amount is None and statement.entries[0].amount_decimal == Decimal("8.855")
    assert [(i.index, i.code) for i in statement.issues] == [(0, "payments.statement_amount_precision")]


def test_csv_lists_every_bad_row() -> None:
    text = CSV_HEADER + (
        "ACC-1,EUR,1.00,2.00,2024-01-02,,1.00,CRDT,,,\n"
        "ACC-2,EUR,1.00,2.00,2024-01-32,,-1.00,IN,,,\n"
        "ACC-1,EUR,1.00,2.00,2024-01-02,,1.00\n"
    )
    with pytest.raises(StatementInvalid) as caught:
        parse_statement_csv(text)
    errors = [(e["index"], e["field"]) for e in caught.value.details["errors"]]
    assert errors == [(4, "row"), (3, "account"), (3, "booking_date"), (3, "amount"), (3, "credit_debit")]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "account,currency\nA,EUR\n",
        CSV_HEADER.replace("description", "memo"),
        CSV_HEADER,  # a header and no row
        CSV_HEADER + "ACC-1,XXX,,,2024-01-02,,1.00,CRDT,,,\n",  # not a currency the platform knows
    ],
)
def test_csv_without_the_layout_is_invalid(text: str) -> None:
    with pytest.raises(StatementInvalid):
        parse_statement_csv(text)


def test_csv_that_is_not_csv_is_malformed() -> None:
    with pytest.raises(StatementMalformed) as caught:
        parse_statement_csv(CSV_HEADER + 'ACC-1,EUR,,,2024-01-02,,1.00,CRDT,"unterminated\n')
    assert caught.value.code == "payments.statement_malformed"


def test_an_amount_too_large_for_minor_units_is_invalid() -> None:
    with pytest.raises(StatementInvalid) as caught:
        parse_camt053(camt(ENTRY.format(amount="1" * 16, cd="CRDT", booked="2024-01-02T10:00:00Z")))
    assert caught.value.details["errors"][0]["field"] == "Stmt[0]/Ntry[0]/Amt"
