"""Bank statements from the custodian bank: ISO 20022 camt.053 (also camt.052 and camt.054) and a simple CSV.

Pure: bytes or text in, frozen values out; no database, no clock. Two kinds of trouble are kept apart:

- the file cannot be read (not well-formed, unsafe XML, a mandatory element missing, an unreadable amount or
  date): `parse_camt053` / `parse_statement_csv` raise `StatementMalformed` (or its subclasses
  `StatementInvalid`, `StatementUnsupportedMessage`) or `StatementTooLarge`, listing *every* problem found in
  `details["errors"]`, never a raw parser exception;
- a single balance or entry is doubtful (more decimals than the currency allows, an unknown currency, a
  currency different from the account's, a summary that does not add up): the value is kept exactly as the
  bank wrote it and a `RecordError` is appended to `BankStatement.issues`. Nothing is ever rounded: an amount
  that is not a whole number of minor units has `amount=None` and its exact `amount_decimal`, and the
  reconciler leaves it out of matching and balance arithmetic.

camt (namespace-agnostic; camt.053.001.02/.04/.08 tested, other versions read the same way)
    `Document/BkToCstmrStmt/Stmt`, `Document/BkToCstmrAcctRpt/Rpt` (camt.052) and
    `Document/BkToCstmrDbtCdtNtfctn/Ntfctn` (camt.054) each become one `BankStatement`. Dates written as
    `DtTm` with an offset are read in that offset and the calendar date is taken there: the bank's own
    business date (`2014-12-31T23:30:00-05:00` is 31 December, not 1 January UTC).

CSV layout (UTF-8, a BOM is tolerated; comma separated, RFC 4180 quoting; one row per entry)::

    account,currency,opening_balance,closing_balance,booking_date,value_date,amount,credit_debit,end_to_end_id,reference,description
    CH2909000000250094239,CHF,211993.19,215112.21,2020-11-24,2020-11-24,4.50,CRDT,E2E-1,0758103031480900,Top-up

- the header names all eleven columns (any order, no others);
- `account`, `currency` (an ISO 4217 code the platform knows), `opening_balance` and `closing_balance` are
  repeated on every row and must be the same on every row; the balances are signed decimals in major units
  (a leading `-` is a debit balance, i.e. overdrawn) and may be empty on every row (no balance reported);
- `booking_date` and `value_date` are `YYYY-MM-DD`; `value_date` may be empty;
- `amount` is an unsigned decimal in major units with `.` as separator and no thousands separator; the
  direction is `credit_debit`: `CRDT` (money into the account) or `DBIT` (money out);
- `end_to_end_id` (may be empty), `reference` (the bank's own reference, may be empty), `description`
  (free text, may be empty);
- a row whose `booking_date`, `amount` and `credit_debit` are all empty carries balances only (an
  empty statement is one such row);
- the statement id is `csv-` + the first 16 hex digits of the SHA-256 of the text, so the same file always
  gets the same id; its period runs from the first to the last booking date.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import xml.etree.ElementTree as StdElementTree
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeElementTree

from creditstack.core.errors import CreditstackError, RecordError
from creditstack.core.money import Currency, InvalidAmount, Money, UnknownCurrency, known_currency_codes
from creditstack.payments.statement_errors import (
    StatementAmountPrecisionIssue,
    StatementCurrencyMismatchIssue,
    StatementDetailsSumMismatchIssue,
    StatementDirectionInconsistentIssue,
    StatementDuplicateServicerReferenceIssue,
    StatementInvalid,
    StatementMalformed,
    StatementSummaryMismatchIssue,
    StatementTooLarge,
    StatementUnknownCurrencyIssue,
    StatementUnsupportedMessage,
)

#: Largest statement file accepted, in bytes (camt or CSV).
STATEMENT_SIZE_BYTES_MAX = 20 * 1024 * 1024
#: Most statements (`Stmt`/`Rpt`/`Ntfctn` blocks) in one message.
STATEMENTS_PER_MESSAGE_MAX = 1_000
#: Most entries in one message, over all its statements (and most data rows in one CSV file).
STATEMENT_ENTRIES_MAX = 200_000
#: Most transaction details (`TxDtls`) read per entry; a batch may hold more, the rest are counted only.
TRANSACTIONS_PER_ENTRY_MAX = 10_000
#: Most problems listed in one `StatementInvalid`; the count of the rest is given.
STATEMENT_ERRORS_LISTED_MAX = 100
#: Statement-level issues (balances, account) use this `RecordError.index`; entry issues use the entry's.
STATEMENT_LEVEL_INDEX = -1

#: Entry status codes: booked, pending, information only (ISO 20022 `EntryStatus`).
STATUS_BOOKED = "BOOK"
STATUS_PENDING = "PDNG"
STATUS_INFO = "INFO"

_CONTAINERS = {
    "BkToCstmrStmt": ("Stmt", "statement"),
    "BkToCstmrAcctRpt": ("Rpt", "report"),
    "BkToCstmrDbtCdtNtfctn": ("Ntfctn", "notification"),
}
_MESSAGE_TYPE = re.compile(r"(camt\.05[234]\.\d{3}\.\d{2})")
# At most 15 integer digits: with up to 3 decimals the amount still fits a BIGINT of minor units.
_DECIMAL = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,18})?$")
_SIGNED_DECIMAL = re.compile(r"^-?[0-9]{1,15}(\.[0-9]{1,18})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})T(?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,12}))?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?$"
)
#: The SEPA placeholder for "the payer gave no end-to-end id".
NOT_PROVIDED = "NOTPROVIDED"


class CreditDebit(StrEnum):
    """Direction of a balance or entry as the bank reports it (ISO 20022 `CdtDbtInd`)."""

    CREDIT = "CRDT"  # money into the account / a credit (positive) balance
    DEBIT = "DBIT"  # money out of the account / a debit (overdrawn) balance

    @property
    def sign(self) -> int:
        return 1 if self is CreditDebit.CREDIT else -1


@dataclass(frozen=True, slots=True)
class StatementBalance:
    """One `Bal`: a balance of a type (OPBD, CLBD, CLAV, …) on a date.

    `amount` is unsigned (the direction is `credit_debit`) and `None` when the amount cannot be held exactly
    in minor units (too many decimals, unknown currency); `amount_decimal` is always the exact value written.
    """

    type_code: str
    amount: Money | None
    amount_decimal: Decimal
    currency_code: str
    credit_debit: CreditDebit
    date: date | None

    @property
    def signed_amount(self) -> Money | None:
        """The balance with its sign: negative for a debit (overdrawn) balance."""
        return None if self.amount is None else self.amount * self.credit_debit.sign

    @property
    def signed_decimal(self) -> Decimal:
        return self.amount_decimal * self.credit_debit.sign

    def to_dict(self) -> dict[str, Any]:
        return {
            "type_code": self.type_code,
            "amount": None if self.amount is None else self.amount.to_wire(),
            "amount_decimal": str(self.amount_decimal),
            "currency": self.currency_code,
            "credit_debit": self.credit_debit.value,
            "date": None if self.date is None else self.date.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class StatementTransaction:
    """One `TxDtls` inside an entry: references and, when given, its own amount (unsigned)."""

    end_to_end_id: str | None = None
    account_servicer_reference: str | None = None
    instruction_id: str | None = None
    uetr: str | None = None
    amount: Money | None = None
    amount_decimal: Decimal | None = None
    currency_code: str | None = None
    credit_debit: CreditDebit | None = None
    remittance_information: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """One `Ntry` (or CSV row): a movement on the account as the bank booked it.

    `amount` is unsigned; `credit_debit` gives the direction. `amount` is `None` when the written amount
    (`amount_decimal`, exact) is not a whole number of minor units of a known currency — see `issues`.
    `end_to_end_ids` are the distinct `TxDtls/Refs/EndToEndId` values, in file order.
    """

    amount: Money | None
    amount_decimal: Decimal
    currency_code: str
    credit_debit: CreditDebit
    status: str
    booking_date: date | None
    value_date: date | None
    entry_reference: str | None = None
    account_servicer_reference: str | None = None
    end_to_end_ids: tuple[str, ...] = ()
    reversal: bool = False
    bank_transaction_code: str | None = None  # the ISO domain code, "PMNT/RCDT/ESCT"
    bank_transaction_code_proprietary: str | None = None
    remittance_information: tuple[str, ...] = ()
    additional_information: str | None = None
    batch_transaction_count: int | None = None  # `Btch/NbOfTxs`: may exceed len(transactions)
    transactions: tuple[StatementTransaction, ...] = ()

    @property
    def signed_amount(self) -> Money | None:
        """The entry with its sign: positive for a credit to the account, negative for a debit."""
        return None if self.amount is None else self.amount * self.credit_debit.sign

    @property
    def is_booked(self) -> bool:
        return self.status == STATUS_BOOKED

    @property
    def business_date(self) -> date | None:
        """The bank's date for matching: the booking date, else the value date."""
        return self.booking_date or self.value_date

    def to_dict(self) -> dict[str, Any]:
        return {
            "amount": None if self.amount is None else self.amount.to_wire(),
            "amount_decimal": str(self.amount_decimal),
            "currency": self.currency_code,
            "credit_debit": self.credit_debit.value,
            "status": self.status,
            "booking_date": None if self.booking_date is None else self.booking_date.isoformat(),
            "value_date": None if self.value_date is None else self.value_date.isoformat(),
            "entry_reference": self.entry_reference,
            "account_servicer_reference": self.account_servicer_reference,
            "end_to_end_ids": list(self.end_to_end_ids),
            "reversal": self.reversal,
            "bank_transaction_code": self.bank_transaction_code,
            "bank_transaction_code_proprietary": self.bank_transaction_code_proprietary,
            "remittance_information": list(self.remittance_information),
            "additional_information": self.additional_information,
            "batch_transaction_count": self.batch_transaction_count,
        }


@dataclass(frozen=True, slots=True)
class TransactionsSummary:
    """`TxsSummry`: the bank's own control totals (sums are unsigned, exact decimals as written)."""

    entries_count: int | None = None
    credit_entries_count: int | None = None
    credit_entries_sum: Decimal | None = None
    debit_entries_count: int | None = None
    debit_entries_sum: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BankStatement:
    """One statement (camt.053 `Stmt`, camt.052 `Rpt`, camt.054 `Ntfctn`, or one CSV file).

    `currency_code` is the account currency: `Acct/Ccy` when stated (`currency_stated`), otherwise the
    currency of the opening booked balance, else the closing one, else of the first balance, else of the
    first entry. `opening_balance` is OPBD (PRCD when there is no OPBD), `closing_balance` is CLBD;
    `balances` holds every balance in file order (opening and closing included).
    """

    message_id: str
    message_type: str  # "camt.053.001.02", "camt.054.001.08", "csv"
    kind: str  # "statement", "report", "notification"
    statement_id: str
    account_iban: str | None
    account_other_id: str | None
    currency_code: str | None
    currency_stated: bool
    opening_balance: StatementBalance | None
    closing_balance: StatementBalance | None
    balances: tuple[StatementBalance, ...]
    from_date: date | None
    to_date: date | None
    entries: tuple[StatementEntry, ...]
    issues: tuple[RecordError, ...] = ()
    summary: TransactionsSummary | None = None
    electronic_sequence_number: str | None = None
    legal_sequence_number: str | None = None

    @property
    def account_id(self) -> str | None:
        """The IBAN, else the other (proprietary) account id."""
        return self.account_iban or self.account_other_id

    @property
    def currency(self) -> Currency | None:
        """The account currency, when it is one the platform knows."""
        try:
            return None if self.currency_code is None else Currency.of(self.currency_code)
        except UnknownCurrency:
            return None

    @property
    def other_balances(self) -> dict[str, StatementBalance]:
        """Balances other than the opening and closing booked ones, by type code (first of each type)."""
        found: dict[str, StatementBalance] = {}
        for balance in self.balances:
            if balance is self.opening_balance or balance is self.closing_balance:
                continue
            found.setdefault(balance.type_code, balance)
        return found

    def balance(self, type_code: str) -> StatementBalance | None:
        """The first balance of a type code (OPBD, CLBD, CLAV, …), or None."""
        return next((b for b in self.balances if b.type_code == type_code), None)

    def issues_with_code(self, code: str) -> list[RecordError]:
        return [issue for issue in self.issues if issue.code == code]

    def to_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "message_type": self.message_type,
            "kind": self.kind,
            "statement_id": self.statement_id,
            "account_iban": self.account_iban,
            "account_other_id": self.account_other_id,
            "currency": self.currency_code,
            "currency_stated": self.currency_stated,
            "opening_balance": None if self.opening_balance is None else self.opening_balance.to_dict(),
            "closing_balance": None if self.closing_balance is None else self.closing_balance.to_dict(),
            "balances": [b.to_dict() for b in self.balances],
            "from_date": None if self.from_date is None else self.from_date.isoformat(),
            "to_date": None if self.to_date is None else self.to_date.isoformat(),
            "entries": [e.to_dict() for e in self.entries],
            "issues": [i.to_dict() for i in self.issues],
        }


# --- shared helpers ------------------------------------------------------------------------------------


@dataclass
class _Problems:
    """Fatal problems collected while reading one file; raised together as one `StatementInvalid`."""

    errors: list[RecordError] = field(default_factory=list)

    def add(self, index: int, field_path: str, message: str) -> None:
        self.errors.append(RecordError(index, StatementInvalid.code, message, field_path))

    def raise_if_any(self, what: str) -> None:
        if not self.errors:
            return
        listed = self.errors[:STATEMENT_ERRORS_LISTED_MAX]
        first = listed[0]
        raise StatementInvalid(
            f"{what}: {len(self.errors)} problem(s); first: {first.field}: {first.message}",
            field=first.field,
            errors=[e.to_dict() for e in listed],
            errors_count=len(self.errors),
        )


@dataclass(frozen=True, slots=True)
class _Amount:
    money: Money | None
    exact: Decimal
    currency_code: str
    issue: CreditstackError | None


def _read_amount(text: str, currency_code: str, where: str) -> _Amount:
    """An exact amount; `money` is None (with the issue to flag) if it is not whole minor units."""
    value = Decimal(text)
    try:
        currency = Currency.of(currency_code)
    except UnknownCurrency:
        issue: CreditstackError = StatementUnknownCurrencyIssue(
            f"{where}: {text} {currency_code}: currency {currency_code!r} is not known",
            field=where,
            amount=text,
            currency=currency_code,
        )
        return _Amount(None, value, currency_code, issue)
    try:
        return _Amount(Money.from_decimal(value, currency), value, currency_code, None)
    except InvalidAmount:
        issue = StatementAmountPrecisionIssue(
            f"{where}: {text} {currency_code} has more than {currency.exponent} decimal places; kept, not rounded",
            field=where,
            amount=text,
            currency=currency_code,
        )
        return _Amount(None, value, currency_code, issue)


def _parse_date_text(text: str) -> date:
    """A `Dt` (`YYYY-MM-DD`) or a `DtTm`; a date-time is read in its own stated offset and its date taken.

    Raises ValueError if the text is neither.
    """
    if _DATE.match(text):
        return date.fromisoformat(text)
    found = _DATE_TIME.match(text)
    if not found:
        raise ValueError(f"not an ISO date or date-time: {text!r}")
    tz_text = found["tz"]
    tz: timezone | None = None
    if tz_text == "Z":
        tz = UTC
    elif tz_text:
        sign = 1 if tz_text[0] == "+" else -1
        hours, minutes = int(tz_text[1:3]), int(tz_text[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"offset out of range: {text!r}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    day = date.fromisoformat(found["date"])
    microseconds = int((found["frac"] or "0")[:6].ljust(6, "0"))
    stamp = datetime(
        day.year, day.month, day.day, int(found["h"]), int(found["m"]), int(found["s"]), microseconds, tzinfo=tz
    )
    # Read in the bank's own offset: the calendar date as stated there, not converted to UTC.
    return stamp.date()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if "}" in tag else tag


def _children(element: StdElementTree.Element, name: str) -> list[StdElementTree.Element]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: StdElementTree.Element | None, *path: str) -> StdElementTree.Element | None:
    current = element
    for name in path:
        if current is None:
            return None
        current = next((child for child in current if _local(child.tag) == name), None)
    return current


def _text(element: StdElementTree.Element | None, *path: str) -> str | None:
    found = _child(element, *path)
    if found is None or found.text is None:
        return None
    stripped = found.text.strip()
    return stripped or None


# --- camt ------------------------------------------------------------------------------------------------


def parse_camt053(data: bytes) -> list[BankStatement]:
    """Every statement in an ISO 20022 camt.053 message (and camt.052 reports, camt.054 notifications).

    Raises `StatementTooLarge` over `STATEMENT_SIZE_BYTES_MAX` (or too many statements or entries),
    `StatementMalformed` for XML that is not well-formed or uses DTDs/entities, `StatementUnsupportedMessage`
    for another document, and `StatementInvalid` (listing every problem) for missing mandatory elements or
    unreadable values. Doubtful balances and entries are kept and listed in each statement's `issues`.
    """
    if not isinstance(data, bytes | bytearray):
        raise StatementMalformed("a camt statement must be given as bytes", field="data")
    if len(data) > STATEMENT_SIZE_BYTES_MAX:
        raise StatementTooLarge(
            f"statement is {len(data)} bytes; the limit is {STATEMENT_SIZE_BYTES_MAX}",
            size_bytes=len(data),
            size_bytes_max=STATEMENT_SIZE_BYTES_MAX,
        )
    try:
        root: StdElementTree.Element = SafeElementTree.fromstring(bytes(data), forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise StatementMalformed(f"unsafe XML refused: {type(exc).__name__}") from exc
    except (StdElementTree.ParseError, UnicodeDecodeError, ValueError) as exc:
        raise StatementMalformed(f"not well-formed XML: {exc}") from exc

    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    container: StdElementTree.Element | None = root
    if _local(root.tag) == "Document":
        container = next((child for child in root if _local(child.tag) in _CONTAINERS), None)
    if container is None or _local(container.tag) not in _CONTAINERS:
        inner = ", ".join(_local(child.tag) for child in root) or "nothing"
        raise StatementUnsupportedMessage(
            f"{_local(root.tag)} holding {inner} is not a camt.052/053/054 message", root=_local(root.tag)
        )
    block_name, kind = _CONTAINERS[_local(container.tag)]
    found_type = _MESSAGE_TYPE.search(namespace)
    message_type = (
        found_type.group(1) if found_type else {"Stmt": "camt.053", "Rpt": "camt.052"}.get(block_name, "camt.054")
    )

    problems = _Problems()
    message_id = _text(container, "GrpHdr", "MsgId")
    if message_id is None:
        problems.add(STATEMENT_LEVEL_INDEX, "GrpHdr/MsgId", "the message id is missing")
    blocks = _children(container, block_name)
    if not blocks:
        problems.add(STATEMENT_LEVEL_INDEX, block_name, f"the message has no {block_name} (at least one is required)")
    if len(blocks) > STATEMENTS_PER_MESSAGE_MAX:
        raise StatementTooLarge(
            f"{len(blocks)} statements in one message; the limit is {STATEMENTS_PER_MESSAGE_MAX}",
            statements_max=STATEMENTS_PER_MESSAGE_MAX,
        )
    entries_total = sum(len(_children(block, "Ntry")) for block in blocks)
    if entries_total > STATEMENT_ENTRIES_MAX:
        raise StatementTooLarge(
            f"{entries_total} entries in one message; the limit is {STATEMENT_ENTRIES_MAX}",
            entries_max=STATEMENT_ENTRIES_MAX,
        )
    statements = [
        _read_block(block, f"{block_name}[{position}]", message_id or "", message_type, kind, problems)
        for position, block in enumerate(blocks)
    ]
    problems.raise_if_any(f"{message_type} message {message_id or '?'} is invalid")
    return [statement for statement in statements if statement is not None]


def _read_block(
    block: StdElementTree.Element,
    where: str,
    message_id: str,
    message_type: str,
    kind: str,
    problems: _Problems,
) -> BankStatement | None:
    errors_before = len(problems.errors)
    issues: list[RecordError] = []

    statement_id = _text(block, "Id")
    if statement_id is None:
        problems.add(STATEMENT_LEVEL_INDEX, f"{where}/Id", "the statement id is missing")
    account = _child(block, "Acct")
    iban = _text(account, "Id", "IBAN")
    other_id = _text(account, "Id", "Othr", "Id")
    if account is None or (iban is None and other_id is None):
        problems.add(STATEMENT_LEVEL_INDEX, f"{where}/Acct/Id", "the account id (IBAN or Othr/Id) is missing")
    stated_currency = _text(account, "Ccy")

    from_date = _date_at(block, ("FrToDt", "FrDtTm"), f"{where}/FrToDt/FrDtTm", problems)
    to_date = _date_at(block, ("FrToDt", "ToDtTm"), f"{where}/FrToDt/ToDtTm", problems)

    balances: list[StatementBalance] = []
    for position, element in enumerate(_children(block, "Bal")):
        balance = _read_balance(element, f"{where}/Bal[{position}]", issues, problems)
        if balance is not None:
            balances.append(balance)

    entries: list[StatementEntry] = []
    for position, element in enumerate(_children(block, "Ntry")):
        entry = _read_entry(element, position, f"{where}/Ntry[{position}]", issues, problems)
        if entry is not None:
            entries.append(entry)

    summary = _read_summary(_child(block, "TxsSummry"), f"{where}/TxsSummry", problems)
    if len(problems.errors) > errors_before:
        return None

    opening = next((b for b in balances if b.type_code == "OPBD"), None) or next(
        (b for b in balances if b.type_code == "PRCD"), None
    )
    closing = next((b for b in balances if b.type_code == "CLBD"), None)
    currency_code = stated_currency
    if currency_code is None:
        source = opening or closing or (balances[0] if balances else None)
        currency_code = source.currency_code if source else (entries[0].currency_code if entries else None)
    issues.extend(_consistency_issues(currency_code, balances, entries, summary, where))
    return BankStatement(
        message_id=message_id,
        message_type=message_type,
        kind=kind,
        statement_id=statement_id or "",
        account_iban=iban,
        account_other_id=other_id,
        currency_code=currency_code,
        currency_stated=stated_currency is not None,
        opening_balance=opening,
        closing_balance=closing,
        balances=tuple(balances),
        from_date=from_date,
        to_date=to_date,
        entries=tuple(entries),
        issues=tuple(issues),
        summary=summary,
        electronic_sequence_number=_text(block, "ElctrncSeqNb"),
        legal_sequence_number=_text(block, "LglSeqNb"),
    )


def _date_at(
    element: StdElementTree.Element | None, path: tuple[str, ...], where: str, problems: _Problems, index: int = -1
) -> date | None:
    text = _text(element, *path)
    if text is None:
        return None
    try:
        return _parse_date_text(text)
    except ValueError:
        problems.add(index, where, f"not a date: {text!r}")
        return None


def _date_choice(element: StdElementTree.Element | None, where: str, problems: _Problems, index: int) -> date | None:
    """A `DateAndDateTimeChoice`: `Dt` or `DtTm`."""
    if element is None:
        return None
    for name in ("Dt", "DtTm"):
        if _child(element, name) is not None:
            return _date_at(element, (name,), f"{where}/{name}", problems, index)
    problems.add(index, where, "neither Dt nor DtTm is given")
    return None


def _read_amount_element(
    element: StdElementTree.Element | None, where: str, problems: _Problems, index: int
) -> _Amount | None:
    """An `Amt Ccy="…"` element; missing or unreadable is a fatal problem."""
    if element is None:
        problems.add(index, where, "the amount is missing")
        return None
    text = (element.text or "").strip()
    currency_code = (element.get("Ccy") or "").strip()
    if not currency_code:
        problems.add(index, where, "the amount has no Ccy attribute")
        return None
    if not _DECIMAL.match(text):
        problems.add(index, where, f"not an unsigned decimal amount: {text!r}")
        return None
    return _read_amount(text, currency_code, where)


def _read_credit_debit(
    element: StdElementTree.Element | None, where: str, problems: _Problems, index: int
) -> CreditDebit | None:
    text = _text(element, "CdtDbtInd")
    if text is None:
        problems.add(index, f"{where}/CdtDbtInd", "the credit/debit indicator is missing")
        return None
    try:
        return CreditDebit(text)
    except ValueError:
        problems.add(index, f"{where}/CdtDbtInd", f"not CRDT or DBIT: {text!r}")
        return None


def _read_balance(
    element: StdElementTree.Element, where: str, issues: list[RecordError], problems: _Problems
) -> StatementBalance | None:
    index = STATEMENT_LEVEL_INDEX
    type_code = _text(element, "Tp", "CdOrPrtry", "Cd") or _text(element, "Tp", "CdOrPrtry", "Prtry")
    if type_code is None:
        problems.add(index, f"{where}/Tp/CdOrPrtry", "the balance type is missing")
    amount = _read_amount_element(_child(element, "Amt"), f"{where}/Amt", problems, index)
    credit_debit = _read_credit_debit(element, where, problems, index)
    dated = _child(element, "Dt")
    if dated is None:
        problems.add(index, f"{where}/Dt", "the balance date is missing")
    balance_date = _date_choice(dated, f"{where}/Dt", problems, index)
    if type_code is None or amount is None or credit_debit is None:
        return None
    if amount.issue is not None:
        issues.append(RecordError.from_error(index, amount.issue))
    return StatementBalance(type_code, amount.money, amount.exact, amount.currency_code, credit_debit, balance_date)


def _remittance(element: StdElementTree.Element | None) -> list[str]:
    if element is None:
        return []
    lines = [text for item in _children(element, "Ustrd") if (text := (item.text or "").strip())]
    for structured in _children(element, "Strd"):
        reference = _text(structured, "CdtrRefInf", "Ref")
        if reference:
            lines.append(reference)
    return lines


def _read_transaction(
    element: StdElementTree.Element, where: str, issues: list[RecordError], index: int
) -> StatementTransaction:
    refs = _child(element, "Refs")
    amount_element = _child(element, "Amt")
    if amount_element is None:
        amount_element = _child(element, "AmtDtls", "TxAmt", "Amt")
    amount: _Amount | None = None
    if amount_element is not None:
        text = (amount_element.text or "").strip()
        currency_code = (amount_element.get("Ccy") or "").strip()
        if currency_code and _DECIMAL.match(text):
            amount = _read_amount(text, currency_code, f"{where}/Amt")
            if amount.issue is not None:
                issues.append(RecordError.from_error(index, amount.issue))
    indicator = _text(element, "CdtDbtInd")
    return StatementTransaction(
        end_to_end_id=_text(refs, "EndToEndId"),
        account_servicer_reference=_text(refs, "AcctSvcrRef"),
        instruction_id=_text(refs, "InstrId"),
        uetr=_text(refs, "UETR"),
        amount=None if amount is None else amount.money,
        amount_decimal=None if amount is None else amount.exact,
        currency_code=None if amount is None else amount.currency_code,
        credit_debit=CreditDebit(indicator) if indicator in {"CRDT", "DBIT"} else None,
        remittance_information=tuple(_remittance(_child(element, "RmtInf"))),
    )


def _read_entry(
    element: StdElementTree.Element,
    index: int,
    where: str,
    issues: list[RecordError],
    problems: _Problems,
) -> StatementEntry | None:
    amount = _read_amount_element(_child(element, "Amt"), f"{where}/Amt", problems, index)
    credit_debit = _read_credit_debit(element, where, problems, index)
    status = _text(element, "Sts", "Cd") or _text(element, "Sts")  # .08 nests the code; .02/.04 do not
    if status is None:
        problems.add(index, f"{where}/Sts", "the entry status is missing")
    booking_date = _date_choice(_child(element, "BookgDt"), f"{where}/BookgDt", problems, index)
    value_date = _date_choice(_child(element, "ValDt"), f"{where}/ValDt", problems, index)
    if amount is None or credit_debit is None or status is None:
        return None
    if amount.issue is not None:
        issues.append(RecordError.from_error(index, amount.issue))

    transactions: list[StatementTransaction] = []
    batch_count: int | None = None
    remittance: list[str] = []
    for details in _children(element, "NtryDtls"):
        count_text = _text(details, "Btch", "NbOfTxs")
        if count_text is not None and count_text.isdigit():
            batch_count = (batch_count or 0) + int(count_text)
        for position, tx in enumerate(_children(details, "TxDtls")):
            if len(transactions) >= TRANSACTIONS_PER_ENTRY_MAX:
                break
            transaction = _read_transaction(tx, f"{where}/NtryDtls/TxDtls[{position}]", issues, index)
            transactions.append(transaction)
            remittance.extend(transaction.remittance_information)
    end_to_end_ids = tuple(dict.fromkeys(t.end_to_end_id for t in transactions if t.end_to_end_id))

    domain = _child(element, "BkTxCd", "Domn")
    domain_parts = [_text(domain, "Cd"), _text(domain, "Fmly", "Cd"), _text(domain, "Fmly", "SubFmlyCd")]
    entry = StatementEntry(
        amount=amount.money,
        amount_decimal=amount.exact,
        currency_code=amount.currency_code,
        credit_debit=credit_debit,
        status=status,
        booking_date=booking_date,
        value_date=value_date,
        entry_reference=_text(element, "NtryRef"),
        account_servicer_reference=_text(element, "AcctSvcrRef"),
        end_to_end_ids=end_to_end_ids,
        reversal=(_text(element, "RvslInd") or "").lower() == "true",
        bank_transaction_code="/".join(p for p in domain_parts if p) or None,
        bank_transaction_code_proprietary=_text(element, "BkTxCd", "Prtry", "Cd"),
        remittance_information=tuple(remittance),
        additional_information=_text(element, "AddtlNtryInf"),
        batch_transaction_count=batch_count,
        transactions=tuple(transactions),
    )
    issues.extend(_entry_detail_issues(entry, index, where))
    return entry


def _entry_detail_issues(entry: StatementEntry, index: int, where: str) -> list[RecordError]:
    found: list[RecordError] = []
    opposite = [t for t in entry.transactions if t.credit_debit is not None and t.credit_debit != entry.credit_debit]
    if opposite:
        found.append(
            RecordError.from_error(
                index,
                StatementDirectionInconsistentIssue(
                    f"{where}: entry is {entry.credit_debit.value} but {len(opposite)} transaction(s) say "
                    f"{opposite[0].credit_debit.value if opposite[0].credit_debit else '?'}",
                    field=f"{where}/NtryDtls/TxDtls/CdtDbtInd",
                ),
            )
        )
    itemised = [t.amount for t in entry.transactions]
    same_currency = (
        entry.amount is not None
        and itemised
        and all(a is not None and a.currency == entry.amount.currency for a in itemised)
    )
    if same_currency and entry.amount is not None:
        total = sum((a for a in itemised if a is not None), Money.zero(entry.amount.currency))
        if total != entry.amount:
            found.append(
                RecordError.from_error(
                    index,
                    StatementDetailsSumMismatchIssue(
                        f"{where}: transactions sum to {total}, the entry is {entry.amount}",
                        field=f"{where}/NtryDtls",
                        details_sum=total.to_wire(),
                        entry_amount=entry.amount.to_wire(),
                    ),
                )
            )
    return found


def _read_summary(
    element: StdElementTree.Element | None, where: str, problems: _Problems
) -> TransactionsSummary | None:
    if element is None:
        return None

    def count(*path: str) -> int | None:
        text = _text(element, *path)
        if text is None:
            return None
        if not text.isdigit():
            problems.add(STATEMENT_LEVEL_INDEX, f"{where}/{'/'.join(path)}", f"not a count: {text!r}")
            return None
        return int(text)

    def total(*path: str) -> Decimal | None:
        text = _text(element, *path)
        if text is None:
            return None
        if not _DECIMAL.match(text):
            problems.add(STATEMENT_LEVEL_INDEX, f"{where}/{'/'.join(path)}", f"not a decimal sum: {text!r}")
            return None
        return Decimal(text)

    return TransactionsSummary(
        entries_count=count("TtlNtries", "NbOfNtries"),
        credit_entries_count=count("TtlCdtNtries", "NbOfNtries"),
        credit_entries_sum=total("TtlCdtNtries", "Sum"),
        debit_entries_count=count("TtlDbtNtries", "NbOfNtries"),
        debit_entries_sum=total("TtlDbtNtries", "Sum"),
    )


def _consistency_issues(
    currency_code: str | None,
    balances: Sequence[StatementBalance],
    entries: Sequence[StatementEntry],
    summary: TransactionsSummary | None,
    where: str,
) -> list[RecordError]:
    found: list[RecordError] = []
    if currency_code is not None:
        for balance in balances:
            if balance.currency_code != currency_code:
                found.append(
                    RecordError.from_error(
                        STATEMENT_LEVEL_INDEX,
                        StatementCurrencyMismatchIssue(
                            f"{where}: balance {balance.type_code} is in {balance.currency_code}, "
                            f"the account in {currency_code}",
                            field=f"{where}/Bal[{balance.type_code}]/Amt",
                            balance_type=balance.type_code,
                            currency=balance.currency_code,
                            account_currency=currency_code,
                        ),
                    )
                )
        for position, entry in enumerate(entries):
            if entry.currency_code != currency_code:
                found.append(
                    RecordError.from_error(
                        position,
                        StatementCurrencyMismatchIssue(
                            f"{where}: entry {position} is in {entry.currency_code}, the account in {currency_code}",
                            field=f"{where}/Ntry[{position}]/Amt",
                            currency=entry.currency_code,
                            account_currency=currency_code,
                        ),
                    )
                )
    seen_refs: dict[str, int] = {}
    for position, entry in enumerate(entries):
        reference = entry.account_servicer_reference
        if reference is None:
            continue
        if reference in seen_refs:
            found.append(
                RecordError.from_error(
                    position,
                    StatementDuplicateServicerReferenceIssue(
                        f"{where}: entry {position} repeats AcctSvcrRef {reference!r} of entry {seen_refs[reference]}",
                        field=f"{where}/Ntry[{position}]/AcctSvcrRef",
                        reference=reference,
                        first_index=seen_refs[reference],
                    ),
                )
            )
        else:
            seen_refs[reference] = position
    if summary is not None:
        found.extend(_summary_issues(summary, entries, where))
    return found


def _summary_issues(summary: TransactionsSummary, entries: Sequence[StatementEntry], where: str) -> list[RecordError]:
    credits = [e.amount_decimal for e in entries if e.credit_debit is CreditDebit.CREDIT]
    debits = [e.amount_decimal for e in entries if e.credit_debit is CreditDebit.DEBIT]
    checks: list[tuple[str, object, object]] = [
        ("TtlNtries/NbOfNtries", summary.entries_count, len(entries)),
        ("TtlCdtNtries/NbOfNtries", summary.credit_entries_count, len(credits)),
        ("TtlCdtNtries/Sum", summary.credit_entries_sum, sum(credits, Decimal(0))),
        ("TtlDbtNtries/NbOfNtries", summary.debit_entries_count, len(debits)),
        ("TtlDbtNtries/Sum", summary.debit_entries_sum, sum(debits, Decimal(0))),
    ]
    return [
        RecordError.from_error(
            STATEMENT_LEVEL_INDEX,
            StatementSummaryMismatchIssue(
                f"{where}/TxsSummry/{path}: the bank says {stated}, the entries give {actual}",
                field=f"{where}/TxsSummry/{path}",
                stated=str(stated),
                actual=str(actual),
            ),
        )
        for path, stated, actual in checks
        if stated is not None and stated != actual
    ]


# --- CSV -------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "account",
    "currency",
    "opening_balance",
    "closing_balance",
    "booking_date",
    "value_date",
    "amount",
    "credit_debit",
    "end_to_end_id",
    "reference",
    "description",
)
_CSV_STATEMENT_COLUMNS = ("account", "currency", "opening_balance", "closing_balance")


def parse_statement_csv(text: str) -> BankStatement:
    """One statement from the simple CSV layout described in this module's docstring.

    Raises `StatementTooLarge` over `STATEMENT_SIZE_BYTES_MAX` or `STATEMENT_ENTRIES_MAX` rows,
    `StatementMalformed` for text that is not CSV, and `StatementInvalid` listing every bad row and field
    (`RecordError.index` is the 1-based line number of the record, the header being line 1).
    """
    if not isinstance(text, str):
        raise StatementMalformed("a CSV statement must be given as text", field="text")
    size_bytes = len(text.encode("utf-8", errors="surrogatepass"))
    if size_bytes > STATEMENT_SIZE_BYTES_MAX:
        raise StatementTooLarge(
            f"statement is {size_bytes} bytes; the limit is {STATEMENT_SIZE_BYTES_MAX}",
            size_bytes=size_bytes,
            size_bytes_max=STATEMENT_SIZE_BYTES_MAX,
        )
    body = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(body, newline=""), strict=True)
    problems = _Problems()
    try:
        header = next(reader, None)
        if header is None:
            raise StatementInvalid("the CSV statement is empty: a header is required", field="header")
        names = [name.strip().lower() for name in header]
        missing = [c for c in CSV_COLUMNS if c not in names]
        unknown = [n for n in names if n not in CSV_COLUMNS]
        if missing or unknown or len(names) != len(set(names)):
            raise StatementInvalid(
                f"the CSV header must name exactly {', '.join(CSV_COLUMNS)}",
                field="header",
                missing=missing,
                unknown=unknown,
            )
        rows: list[tuple[int, dict[str, str]]] = []
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(rows) >= STATEMENT_ENTRIES_MAX:
                raise StatementTooLarge(f"more than {STATEMENT_ENTRIES_MAX} rows", rows_max=STATEMENT_ENTRIES_MAX)
            if len(record) != len(names):
                problems.add(line, "row", f"{len(record)} fields, the header has {len(names)}")
                continue
            rows.append((line, {n: cell.strip() for n, cell in zip(names, record, strict=True)}))
    except csv.Error as exc:
        raise StatementMalformed(f"not valid CSV at line {reader.line_num}: {exc}") from exc
    if not rows and not problems.errors:
        raise StatementInvalid("the CSV statement has no rows: at least one is required", field="row")

    statement_values = _csv_statement_values(rows, problems)
    account, currency_code, opening_text, closing_text = statement_values
    issues: list[RecordError] = []
    entries: list[StatementEntry] = []
    for line, row in rows:
        entry = _csv_entry(line, row, currency_code, len(entries), issues, problems)
        if entry is not None:
            entries.append(entry)
    dates = [e.booking_date for e in entries if e.booking_date is not None]
    closing_date = max(dates) if dates else None
    opening = _csv_balance("OPBD", opening_text, currency_code, closing_date, issues, problems)
    closing = _csv_balance("CLBD", closing_text, currency_code, closing_date, issues, problems)
    problems.raise_if_any("the CSV statement is invalid")

    digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]
    balances = tuple(b for b in (opening, closing) if b is not None)
    issues.extend(_consistency_issues(currency_code, balances, entries, None, "csv"))
    return BankStatement(
        message_id=f"csv-{digest}",
        message_type="csv",
        kind="statement",
        statement_id=f"csv-{digest}",
        account_iban=account if _looks_like_iban(account) else None,
        account_other_id=None if _looks_like_iban(account) else account,
        currency_code=currency_code,
        currency_stated=True,
        opening_balance=opening,
        closing_balance=closing,
        balances=balances,
        from_date=min(dates) if dates else None,
        to_date=closing_date,
        entries=tuple(entries),
        issues=tuple(issues),
    )


def _looks_like_iban(account: str) -> bool:
    return bool(re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}", account))


def _csv_statement_values(rows: Iterable[tuple[int, dict[str, str]]], problems: _Problems) -> tuple[str, str, str, str]:
    first: dict[str, str] | None = None
    for line, row in rows:
        if first is None:
            first = row
            for column in ("account", "currency"):
                if not row[column]:
                    problems.add(line, column, f"{column} is empty")
            if row["currency"] and row["currency"].upper() not in known_currency_codes():
                problems.add(line, "currency", f"not an ISO 4217 currency the platform knows: {row['currency']!r}")
            continue
        for column in _CSV_STATEMENT_COLUMNS:
            if row[column] != first[column]:
                problems.add(line, column, f"{column} {row[column]!r} differs from the first row's {first[column]!r}")
    if first is None:
        return "", "", "", ""
    return first["account"], first["currency"].upper(), first["opening_balance"], first["closing_balance"]


def _csv_balance(
    type_code: str,
    text: str,
    currency_code: str,
    on: date | None,
    issues: list[RecordError],
    problems: _Problems,
) -> StatementBalance | None:
    if not text:
        return None
    column = "opening_balance" if type_code == "OPBD" else "closing_balance"
    if not _SIGNED_DECIMAL.match(text):
        problems.add(1, column, f"not a signed decimal balance: {text!r}")
        return None
    if not currency_code:
        return None
    negative = text.startswith("-")
    amount = _read_amount(text.lstrip("-"), currency_code, column)
    if amount.issue is not None:
        issues.append(RecordError.from_error(STATEMENT_LEVEL_INDEX, amount.issue))
    direction = CreditDebit.DEBIT if negative and amount.exact != 0 else CreditDebit.CREDIT
    return StatementBalance(type_code, amount.money, amount.exact, currency_code, direction, on)


def _csv_entry(
    line: int,
    row: dict[str, str],
    currency_code: str,
    index: int,
    issues: list[RecordError],
    problems: _Problems,
) -> StatementEntry | None:
    if not row["amount"] and not row["booking_date"] and not row["credit_debit"]:
        return None  # a balances-only row
    errors_before = len(problems.errors)
    booking_date = value_date = None
    try:
        booking_date = date.fromisoformat(row["booking_date"]) if _DATE.match(row["booking_date"]) else None
    except ValueError:
        booking_date = None
    if booking_date is None:
        problems.add(line, "booking_date", f"not a YYYY-MM-DD date: {row['booking_date']!r}")
    if row["value_date"]:
        try:
            value_date = date.fromisoformat(row["value_date"]) if _DATE.match(row["value_date"]) else None
        except ValueError:
            value_date = None
        if value_date is None:
            problems.add(line, "value_date", f"not a YYYY-MM-DD date: {row['value_date']!r}")
    if not _DECIMAL.match(row["amount"]):
        problems.add(line, "amount", f"not an unsigned decimal amount: {row['amount']!r}")
    indicator = row["credit_debit"].upper()
    if indicator not in {"CRDT", "DBIT"}:
        problems.add(line, "credit_debit", f"not CRDT or DBIT: {row['credit_debit']!r}")
    if len(problems.errors) > errors_before or not currency_code:
        return None
    try:
        amount = _read_amount(row["amount"], currency_code, "amount")
    except InvalidOperation:  # pragma: no cover - the pattern above admits only decimals
        problems.add(line, "amount", f"not a decimal amount: {row['amount']!r}")
        return None
    if amount.issue is not None:
        issues.append(RecordError.from_error(index, amount.issue))
    return StatementEntry(
        amount=amount.money,
        amount_decimal=amount.exact,
        currency_code=currency_code,
        credit_debit=CreditDebit(indicator),
        status=STATUS_BOOKED,
        booking_date=booking_date,
        value_date=value_date,
        account_servicer_reference=row["reference"] or None,
        end_to_end_ids=(row["end_to_end_id"],) if row["end_to_end_id"] else (),
        remittance_information=(row["description"],) if row["description"] else (),
    )
