"""A simulated custodian-bank rail that can settle, reject, time out and settle late.

It is what the demo and the tests run against; a real rail adapter implements the same `BankRail` port.
The same end-to-end id submitted twice is one instruction (the first outcome decides), so a retry after a
timeout never pays twice. It keeps its own book of what actually moved, from which it writes the bank
statement the platform reconciles against.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from xml.etree import ElementTree

from creditstack.core.money import Currency
from creditstack.payments.domain import RailInstruction, RailOutcome
from creditstack.payments.statements import CSV_COLUMNS  # the layout parse_statement_csv reads

#: What the simulated bank does with an instruction: settle now, reject, time out and then settle or
#: reject later ("timeout_settle", "timeout_reject"), or accept now and settle later ("late").
BEHAVIOURS = ("settle", "reject", "timeout_settle", "timeout_reject", "late")


#: The simulated settlement account at the custodian bank (an account id, not a real IBAN).
SETTLEMENT_ACCOUNT_ID = "CN-SIM-CUSTODIAN-SETTLEMENT-0001"


@dataclass
class _Booked:
    instruction: RailInstruction
    behaviour: str
    settled: bool = False
    rejected: bool = False
    value_date: date | None = None
    booked_amount_minor: int | None = None  # what the bank actually booked, when it differs


@dataclass(frozen=True, slots=True)
class BankEntry:
    """One movement on the settlement account as the bank booked it; `credit_debit` is CRDT (in) or DBIT."""

    booking_date: date
    amount_minor: int
    currency: str
    credit_debit: str
    end_to_end_id: str | None
    reference: str
    description: str

    @property
    def signed_minor(self) -> int:
        return self.amount_minor if self.credit_debit == "CRDT" else -self.amount_minor


@dataclass(frozen=True, slots=True)
class BankStatementData:
    """A statement of the settlement account for a period: opening and closing booked balances (signed,
    minor units) and the entries booked in between."""

    account_id: str
    currency: str
    from_date: date
    to_date: date
    opening_minor: int
    closing_minor: int
    entries: tuple[BankEntry, ...]


def _major(amount_minor: int, currency: str) -> str:
    """Minor units as a decimal string in major units with exactly the currency's decimals (never rounded)."""
    exponent = Currency.of(currency).exponent
    return f"{Decimal(amount_minor).scaleb(-exponent):.{exponent}f}"


@dataclass
class SimulatedRail:
    """The bank side. `behaviour` picks what happens to each instruction (default: settle at once)."""

    behaviour: Callable[[RailInstruction], str] = field(default=lambda _instruction: "settle")
    business_date: Callable[[], date] = field(default=date.today)
    _book: dict[str, _Booked] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    submissions: int = 0
    #: The settlement account's balance before the first instruction (minor units, signed).
    opening_balance_minor: int = 0
    _extra: list[BankEntry] = field(default_factory=list)

    def submit(self, instruction: RailInstruction) -> RailOutcome:
        return self._submit(instruction, self.business_date)

    def _submit(self, instruction: RailInstruction, business_date: Callable[[], date]) -> RailOutcome:
        with self._lock:
            self.submissions += 1
            booked = self._book.get(instruction.end_to_end_id)
            if booked is None:
                behaviour = self.behaviour(instruction)
                if behaviour not in BEHAVIOURS:
                    raise ValueError(f"unknown rail behaviour {behaviour!r}")
                booked = _Booked(instruction, behaviour)
                self._book[instruction.end_to_end_id] = booked
                if behaviour == "settle":
                    booked.settled, booked.value_date = True, business_date()
                elif behaviour == "reject":
                    booked.rejected = True
                return self._answer(booked, first=True)
            return self._answer(booked, first=False)

    def submit_many(self, instructions: Sequence[RailInstruction]) -> list[RailOutcome | None]:
        """Each instruction as `submit` would answer it, in order, reading the business date once; an
        instruction whose submission raised answers None (as a lost answer: the others go on)."""
        today: list[date] = []

        def once() -> date:
            if not today:
                today.append(self.business_date())
            return today[0]

        outcomes: list[RailOutcome | None] = []
        for instruction in instructions:
            try:
                outcomes.append(self._submit(instruction, once))
            except Exception:
                outcomes.append(None)
        return outcomes

    def _answer(self, booked: _Booked, *, first: bool) -> RailOutcome:
        if booked.settled:
            return RailOutcome.SETTLED
        if booked.rejected:
            return RailOutcome.REJECTED
        if booked.behaviour == "late":
            return RailOutcome.ACCEPTED
        return RailOutcome.TIMEOUT if first or booked.behaviour.startswith("timeout") else RailOutcome.ACCEPTED

    def finish_pending(self) -> dict[str, RailOutcome]:
        """The bank gets round to everything it held back: returns each end-to-end id's final outcome."""
        finished = {}
        with self._lock:
            for e2e, booked in self._book.items():
                if booked.settled or booked.rejected:
                    continue
                if booked.behaviour in ("late", "timeout_settle"):
                    booked.settled, booked.value_date = True, self.business_date()
                    finished[e2e] = RailOutcome.SETTLED
                else:
                    booked.rejected = True
                    finished[e2e] = RailOutcome.REJECTED
        return finished

    def settled_instructions(self) -> list[tuple[RailInstruction, date]]:
        """What really moved through the bank account, for the bank's statement."""
        with self._lock:
            return [
                (b.instruction, b.value_date) for b in self._book.values() if b.settled and b.value_date is not None
            ]

    # ---------------------------------------------------------------- the bank's own book

    def book_bank_entry(
        self,
        booking_date: date,
        amount_minor: int,
        currency: str,
        credit_debit: str,
        *,
        reference: str,
        description: str = "",
        end_to_end_id: str | None = None,
    ) -> None:
        """Something the bank booked that no instruction of ours asked for (a charge, a stray credit)."""
        if amount_minor <= 0 or credit_debit not in ("CRDT", "DBIT"):
            raise ValueError("a bank entry needs a positive amount and CRDT or DBIT")
        with self._lock:
            self._extra.append(
                BankEntry(booking_date, amount_minor, currency, credit_debit, end_to_end_id, reference, description)
            )

    def book_different_amount(self, end_to_end_id: str, amount_minor: int) -> None:
        """The bank books a settled instruction for another amount than instructed (a bank-side error)."""
        with self._lock:
            self._book[end_to_end_id].booked_amount_minor = amount_minor

    def bank_entries(self, currency: str) -> list[BankEntry]:
        """Everything that really moved through the settlement account in `currency`, in booking order."""
        with self._lock:
            moved = [
                BankEntry(
                    b.value_date,
                    b.booked_amount_minor if b.booked_amount_minor is not None else b.instruction.amount_minor,
                    b.instruction.currency,
                    "CRDT" if b.instruction.direction == "collect" else "DBIT",
                    b.instruction.end_to_end_id,
                    f"SIM{index:08d}",
                    "top-up" if b.instruction.direction == "collect" else "withdrawal",
                )
                for index, b in enumerate(self._book.values())
                if b.settled and b.value_date is not None and b.instruction.currency == currency
            ]
            moved.extend(e for e in self._extra if e.currency == currency)
        return sorted(moved, key=lambda e: e.booking_date)

    def statement(
        self, from_date: date, to_date: date, currency: str = "CNY", *, account_id: str = SETTLEMENT_ACCOUNT_ID
    ) -> BankStatementData:
        """The settlement account's statement for `from_date`..`to_date` (booking dates, inclusive). The
        opening balance is `opening_balance_minor` plus everything booked before the period."""
        if to_date < from_date:
            raise ValueError("a statement period cannot end before it starts")
        everything = self.bank_entries(currency)
        opening = self.opening_balance_minor + sum(e.signed_minor for e in everything if e.booking_date < from_date)
        entries = tuple(e for e in everything if from_date <= e.booking_date <= to_date)
        closing = opening + sum(e.signed_minor for e in entries)
        return BankStatementData(account_id, currency, from_date, to_date, opening, closing, entries)

    def statement_csv(self, from_date: date, to_date: date, currency: str = "CNY") -> str:
        """The statement as CSV in the layout `statements.parse_statement_csv` reads (see its docstring)."""
        data = self.statement(from_date, to_date, currency)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        common = [data.account_id, currency, _major(data.opening_minor, currency), _major(data.closing_minor, currency)]
        for e in data.entries:
            writer.writerow(
                [
                    *common,
                    e.booking_date.isoformat(),
                    e.booking_date.isoformat(),
                    _major(e.amount_minor, currency),
                    e.credit_debit,
                    e.end_to_end_id or "",
                    e.reference,
                    e.description,
                ]
            )
        if not data.entries:  # an empty statement is one row of balances
            writer.writerow([*common, "", "", "", "", "", "", ""])
        return buffer.getvalue()

    def statement_camt053(self, from_date: date, to_date: date, currency: str = "CNY") -> bytes:
        """The statement as an ISO 20022 camt.053.001.02 message (one `Stmt`, OPBD and CLBD balances)."""
        data = self.statement(from_date, to_date, currency)
        namespace = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
        document = ElementTree.Element("Document", xmlns=namespace)
        root = ElementTree.SubElement(document, "BkToCstmrStmt")

        def add(parent: ElementTree.Element, tag: str, text: str | None = None, **attrs: str) -> ElementTree.Element:
            element = ElementTree.SubElement(parent, tag, attrs)
            if text is not None:
                element.text = text
            return element

        statement_id = f"SIM-{currency}-{from_date:%Y%m%d}-{to_date:%Y%m%d}"
        created = f"{to_date.isoformat()}T23:59:59"
        header = add(root, "GrpHdr")
        add(header, "MsgId", statement_id)
        add(header, "CreDtTm", created)
        stmt = add(root, "Stmt")
        add(stmt, "Id", statement_id)
        add(stmt, "CreDtTm", created)
        period = add(stmt, "FrToDt")
        add(period, "FrDtTm", f"{from_date.isoformat()}T00:00:00")
        add(period, "ToDtTm", created)
        account = add(stmt, "Acct")
        add(add(add(account, "Id"), "Othr"), "Id", data.account_id)
        add(account, "Ccy", currency)
        for code, amount_minor, when in (
            ("OPBD", data.opening_minor, from_date),
            ("CLBD", data.closing_minor, to_date),
        ):
            balance = add(stmt, "Bal")
            add(add(add(balance, "Tp"), "CdOrPrtry"), "Cd", code)
            add(balance, "Amt", _major(abs(amount_minor), currency), Ccy=currency)
            add(balance, "CdtDbtInd", "CRDT" if amount_minor >= 0 else "DBIT")
            add(add(balance, "Dt"), "Dt", when.isoformat())
        for e in data.entries:
            entry = add(stmt, "Ntry")
            add(entry, "NtryRef", e.reference)
            add(entry, "Amt", _major(e.amount_minor, currency), Ccy=currency)
            add(entry, "CdtDbtInd", e.credit_debit)
            add(entry, "Sts", "BOOK")
            add(add(entry, "BookgDt"), "Dt", e.booking_date.isoformat())
            add(add(entry, "ValDt"), "Dt", e.booking_date.isoformat())
            add(entry, "AcctSvcrRef", e.reference)
            domain = add(add(entry, "BkTxCd"), "Domn")
            add(domain, "Cd", "PMNT")
            family = add(domain, "Fmly")
            add(family, "Cd", "RCDT" if e.credit_debit == "CRDT" else "ICDT")
            add(family, "SubFmlyCd", "OTHR")
            if e.end_to_end_id:
                details = add(add(entry, "NtryDtls"), "TxDtls")
                add(add(details, "Refs"), "EndToEndId", e.end_to_end_id)
            if e.description:
                add(entry, "AddtlNtryInf", e.description)
        return bytes(ElementTree.tostring(document, encoding="utf-8", xml_declaration=True))
