"""Reconcile the custodian bank's statement against what our ledger says moved through the settlement account.

Pure: a `BankStatement` and a list of `LedgerItem`s in, a `ReconciliationReport` out. Every statement entry
and every ledger item ends up in exactly one place — a match, a break, or a timing difference — and
`ReconciliationReport.check_totals()` proves it (`reconcile` calls it before returning).

Directions are the bank's: `CRDT` is money into our account at the bank (a customer's top-up arriving),
`DBIT` is money out (a withdrawal paid out).

Order of work:

1. statement entries whose amount cannot be held exactly are `precision` (too many decimals) or
   `unknown_currency` breaks and take no further part;
2. an end-to-end id (not the SEPA placeholder `NOTPROVIDED`) seen a second time — on a later statement
   entry or a later ledger item — makes that later one a `duplicate_reference` break; the first goes on;
3. match by end-to-end id: the ledger items carrying any of an entry's ids (one, or several for a batch
   entry) are netted and compared with the entry — equal is a match (or a `date_mismatch` when more than
   `date_tolerance_business_days` apart), the exact opposite a `direction_mismatch`, anything else an
   `amount_mismatch`;
4. match the rest by (amount, currency, direction, date within the tolerance), never pairing an entry and an
   item that both carry (different) ids; the nearest date wins, then statement and ledger order;
5. an unmatched ledger item is a `timing` difference while it is younger than
   `timing_tolerance_business_days` at the statement date (or dated after it), else `missing_in_bank`;
   an unmatched booked entry is `extra_in_bank`; a pending (`PDNG`) or information (`INFO`) entry is never a
   break: matched or not, it is a `timing` difference;
6. balances: opening booked (OPBD, else PRCD) + booked entries must equal closing booked (CLBD), and every
   balance must be in the account currency; each failure is a `balance_mismatch` break (it names no entry or
   item). When the gap equals the entries value-dated after the closing balance date, the break says so.

Business days: `BusinessCalendar` (weekends and holidays), or any `Callable[[date], bool]`. "n business days
between a and b" counts the business days after `a` up to and including `b`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from typing import Any

from creditstack.core.errors import RecordError
from creditstack.core.money import Money
from creditstack.payments.statement_errors import ReconciliationInputInvalid, ReconciliationTotalsBroken
from creditstack.payments.statements import (
    NOT_PROVIDED,
    STATUS_BOOKED,
    BankStatement,
    CreditDebit,
    StatementBalance,
    StatementEntry,
)

#: Largest tolerance accepted, in business days (about a year).
TOLERANCE_BUSINESS_DAYS_MAX = 250
#: Spans longer than this many calendar days count as beyond any tolerance (bounds every calendar walk).
CALENDAR_SPAN_DAYS_MAX = 3_660
#: Most ledger items in one reconciliation.
LEDGER_ITEMS_MAX = 200_000

#: What a business-day function looks like: True if the bank is open on that date.
IsBusinessDay = Callable[[date], bool]


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """Weekends (ISO weekday numbers 6 = Saturday, 7 = Sunday) and holidays on which the bank is closed."""

    holidays: frozenset[date] = frozenset()
    weekend_isoweekdays: frozenset[int] = frozenset({6, 7})

    def __call__(self, day: date) -> bool:
        return day.isoweekday() not in self.weekend_isoweekdays and day not in self.holidays


def business_days_between(start: date, end: date, is_business_day: IsBusinessDay, cap: int) -> int:
    """Business days after `start` up to and including `end` (negative when `end` is before `start`),
    counted no further than `cap + 1` in magnitude: enough to compare with a tolerance of `cap`."""
    if end == start:
        return 0
    if end < start:
        return -business_days_between(end, start, is_business_day, cap)
    if (end - start).days > CALENDAR_SPAN_DAYS_MAX:
        return cap + 1
    count = 0
    day = start
    while day < end and count <= cap:
        day += timedelta(days=1)
        if is_business_day(day):
            count += 1
    return count


class LedgerStatus(StrEnum):
    """The ledger's view of an item: posted (final) or pending (reserved, not yet final)."""

    POSTED = "posted"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class LedgerItem:
    """One movement our ledger booked on the settlement account, seen from the bank's side.

    `amount` is unsigned and `direction` is the bank's: CREDIT when money should arrive at the bank account.
    """

    item_id: str
    end_to_end_id: str | None
    amount: Money
    direction: CreditDebit
    business_date: date
    status: LedgerStatus = LedgerStatus.POSTED

    @property
    def signed_amount(self) -> Money:
        return self.amount * self.direction.sign

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "end_to_end_id": self.end_to_end_id,
            "amount": self.amount.to_wire(),
            "direction": self.direction.value,
            "business_date": self.business_date.isoformat(),
            "status": self.status.value,
        }


class BreakKind(StrEnum):
    """What kind of disagreement a `Break` records; the values are stable codes."""

    MISSING_IN_BANK = "missing_in_bank"
    EXTRA_IN_BANK = "extra_in_bank"
    AMOUNT_MISMATCH = "amount_mismatch"
    DATE_MISMATCH = "date_mismatch"
    DIRECTION_MISMATCH = "direction_mismatch"
    PRECISION = "precision"
    UNKNOWN_CURRENCY = "unknown_currency"
    BALANCE_MISMATCH = "balance_mismatch"
    DUPLICATE_REFERENCE = "duplicate_reference"
    TIMING = "timing"  # not a break: listed apart, in `timing_differences`


class MatchMethod(StrEnum):
    END_TO_END_ID = "end_to_end_id"
    AMOUNT_AND_DATE = "amount_and_date"


@dataclass(frozen=True, slots=True)
class Match:
    """A statement entry and the ledger item(s) it settles (several for a batch entry)."""

    entry_index: int
    ledger_item_ids: tuple[str, ...]
    method: MatchMethod
    amount: Money

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_index": self.entry_index,
            "ledger_item_ids": list(self.ledger_item_ids),
            "method": self.method.value,
            "amount": self.amount.to_wire(),
        }


@dataclass(frozen=True, slots=True)
class Break:
    """One disagreement (or, with kind `timing`, one timing difference).

    `bank_amount` and `ledger_amount` are signed from the bank's side (credits positive) when known.
    """

    kind: BreakKind
    message: str
    entry_indexes: tuple[int, ...] = ()
    ledger_item_ids: tuple[str, ...] = ()
    bank_amount: Money | None = None
    ledger_amount: Money | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "message": self.message,
            "entry_indexes": list(self.entry_indexes),
            "ledger_item_ids": list(self.ledger_item_ids),
            "bank_amount": None if self.bank_amount is None else self.bank_amount.to_wire(),
            "ledger_amount": None if self.ledger_amount is None else self.ledger_amount.to_wire(),
            "details": self.details,
        }


class BalanceCheckStatus(StrEnum):
    OK = "ok"
    MISMATCH = "mismatch"
    UNAVAILABLE = "unavailable"  # no opening or closing booked balance, or amounts not in minor units


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """Opening booked balance + booked entries against the closing booked balance (signed amounts)."""

    status: BalanceCheckStatus
    reason: str
    opening: Money | None = None
    booked_net: Money | None = None
    expected_closing: Money | None = None
    closing: Money | None = None
    difference: Money | None = None  # closing − expected_closing

    def to_dict(self) -> dict[str, Any]:
        def wire(value: Money | None) -> dict[str, int | str] | None:
            return None if value is None else value.to_wire()

        return {
            "status": self.status.value,
            "reason": self.reason,
            "opening": wire(self.opening),
            "booked_net": wire(self.booked_net),
            "expected_closing": wire(self.expected_closing),
            "closing": wire(self.closing),
            "difference": wire(self.difference),
        }


@dataclass(frozen=True, slots=True)
class ReconciliationTotals:
    entries: int
    entries_matched: int
    entries_in_breaks: int
    entries_in_timing: int
    ledger_items: int
    ledger_items_matched: int
    ledger_items_in_breaks: int
    ledger_items_in_timing: int

    def to_dict(self) -> dict[str, int]:
        return {
            "entries": self.entries,
            "entries_matched": self.entries_matched,
            "entries_in_breaks": self.entries_in_breaks,
            "entries_in_timing": self.entries_in_timing,
            "ledger_items": self.ledger_items,
            "ledger_items_matched": self.ledger_items_matched,
            "ledger_items_in_breaks": self.ledger_items_in_breaks,
            "ledger_items_in_timing": self.ledger_items_in_timing,
        }


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    """The outcome: matches, breaks, timing differences and the balance check of one statement."""

    statement_id: str
    account_id: str | None
    currency_code: str | None
    as_of: date
    entries_count: int
    ledger_item_ids: tuple[str, ...]
    matches: tuple[Match, ...]
    breaks: tuple[Break, ...]
    timing_differences: tuple[Break, ...]
    balance_check: BalanceCheck
    timing_tolerance_business_days: int
    date_tolerance_business_days: int
    statement_issues: tuple[RecordError, ...] = ()

    @property
    def is_reconciled(self) -> bool:
        """No breaks at all (timing differences allowed) and the balances add up."""
        return not self.breaks and self.balance_check.status is BalanceCheckStatus.OK

    def breaks_of(self, kind: BreakKind) -> list[Break]:
        return [b for b in (*self.breaks, *self.timing_differences) if b.kind is kind]

    def totals(self) -> ReconciliationTotals:
        return ReconciliationTotals(
            entries=self.entries_count,
            entries_matched=len(self.matches),
            entries_in_breaks=sum(len(b.entry_indexes) for b in self.breaks),
            entries_in_timing=sum(len(b.entry_indexes) for b in self.timing_differences),
            ledger_items=len(self.ledger_item_ids),
            ledger_items_matched=sum(len(m.ledger_item_ids) for m in self.matches),
            ledger_items_in_breaks=sum(len(b.ledger_item_ids) for b in self.breaks),
            ledger_items_in_timing=sum(len(b.ledger_item_ids) for b in self.timing_differences),
        )

    def check_totals(self) -> ReconciliationTotals:
        """Prove every entry and every ledger item is accounted for exactly once; raise if not."""
        entry_seen: list[int] = [m.entry_index for m in self.matches]
        item_seen: list[str] = [i for m in self.matches for i in m.ledger_item_ids]
        for item in (*self.breaks, *self.timing_differences):
            entry_seen.extend(item.entry_indexes)
            item_seen.extend(item.ledger_item_ids)
        problems: dict[str, Any] = {}
        if sorted(entry_seen) != list(range(self.entries_count)):
            problems["entries"] = sorted(entry_seen)
        if sorted(item_seen) != sorted(self.ledger_item_ids):
            problems["ledger_items"] = sorted(item_seen)
        if problems:
            raise ReconciliationTotalsBroken(
                f"statement {self.statement_id}: entries or ledger items not accounted for exactly once", **problems
            )
        totals = self.totals()
        assert totals.entries == totals.entries_matched + totals.entries_in_breaks + totals.entries_in_timing
        assert totals.ledger_items == (
            totals.ledger_items_matched + totals.ledger_items_in_breaks + totals.ledger_items_in_timing
        )
        return totals

    def to_dict(self) -> dict[str, Any]:
        return {
            "statement_id": self.statement_id,
            "account_id": self.account_id,
            "currency": self.currency_code,
            "as_of": self.as_of.isoformat(),
            "reconciled": self.is_reconciled,
            "timing_tolerance_business_days": self.timing_tolerance_business_days,
            "date_tolerance_business_days": self.date_tolerance_business_days,
            "balance_check": self.balance_check.to_dict(),
            "matches": [m.to_dict() for m in self.matches],
            "breaks": [b.to_dict() for b in self.breaks],
            "timing_differences": [t.to_dict() for t in self.timing_differences],
            "totals": self.totals().to_dict(),
            "statement_issues": [issue.to_dict() for issue in self.statement_issues],
        }


# --- the matcher -------------------------------------------------------------------------------------------


def statement_date(statement: BankStatement) -> date | None:
    """The date items are aged against: the closing booked balance's date, else the end of the statement
    period, else the last booking (or value) date, else the last balance date."""
    if statement.closing_balance is not None and statement.closing_balance.date is not None:
        return statement.closing_balance.date
    if statement.to_date is not None:
        return statement.to_date
    dates = [e.business_date for e in statement.entries if e.business_date is not None]
    if dates:
        return max(dates)
    balance_dates = [b.date for b in statement.balances if b.date is not None]
    return max(balance_dates) if balance_dates else None


def _usable_ids(ids: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in ids if i and i.strip() and i.strip().upper() != NOT_PROVIDED))


@dataclass
class _Work:
    """Mutable bookkeeping while one reconciliation runs."""

    statement: BankStatement
    items: dict[str, LedgerItem]
    is_business_day: IsBusinessDay
    timing_days: int
    date_days: int
    as_of: date
    matches: list[Match] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    timing: list[Break] = field(default_factory=list)
    open_entries: dict[int, StatementEntry] = field(default_factory=dict)
    open_items: dict[str, LedgerItem] = field(default_factory=dict)

    def days_apart(self, a: date, b: date) -> int:
        return abs(business_days_between(a, b, self.is_business_day, self.date_days))

    def settle_entry(
        self,
        index: int,
        entry: StatementEntry,
        items: Sequence[LedgerItem],
        outcome: Break | None,
        method: MatchMethod = MatchMethod.AMOUNT_AND_DATE,
    ) -> None:
        """Close an entry (and items) as a match, or as `outcome`; a non-booked entry becomes timing."""
        del self.open_entries[index]
        for item in items:
            del self.open_items[item.item_id]
        ids = tuple(item.item_id for item in items)
        if not entry.is_booked:
            details: dict[str, Any] = {"entry_status": entry.status, "matched": bool(items) and outcome is None}
            if outcome is not None:
                details["would_be"] = outcome.kind.value
            self.timing.append(
                Break(
                    BreakKind.TIMING,
                    f"entry {index} is {entry.status} at the bank, not booked yet",
                    (index,),
                    ids,
                    entry.signed_amount,
                    _net(items),
                    details,
                )
            )
        elif outcome is None:
            assert entry.amount is not None
            self.matches.append(Match(index, ids, method, entry.amount))
        else:
            self.breaks.append(outcome)


def _net(items: Sequence[LedgerItem]) -> Money | None:
    if not items:
        return None
    total = items[0].signed_amount
    for item in items[1:]:
        if item.amount.currency != total.currency:
            return None
        total = total + item.signed_amount
    return total


def reconcile(
    statement: BankStatement,
    ledger_items: Sequence[LedgerItem],
    *,
    timing_tolerance_business_days: int,
    business_days: BusinessCalendar | IsBusinessDay | None = None,
    date_tolerance_business_days: int | None = None,
    as_of: date | None = None,
) -> ReconciliationReport:
    """Reconcile one statement against the ledger items of the same account and period.

    `timing_tolerance_business_days`: a ledger item not (yet) at the bank is a timing difference while it is
    younger than this at `as_of` (default: `statement_date(statement)`). `date_tolerance_business_days`
    (default: the timing tolerance): how far apart the bank's booking date and the ledger's business date may
    be for a match. `business_days`: a `BusinessCalendar` or a function telling whether a date is a business
    day (default: Monday to Friday). Raises `ReconciliationInputInvalid` for duplicate ledger item ids, a
    tolerance outside 0..`TOLERANCE_BUSINESS_DAYS_MAX`, too many items, or no date to age items against.
    """
    date_days = timing_tolerance_business_days if date_tolerance_business_days is None else date_tolerance_business_days
    for name, value in (
        ("timing_tolerance_business_days", timing_tolerance_business_days),
        ("date_tolerance_business_days", date_days),
    ):
        if type(value) is not int or not 0 <= value <= TOLERANCE_BUSINESS_DAYS_MAX:
            raise ReconciliationInputInvalid(
                f"{name} must be an int in 0..{TOLERANCE_BUSINESS_DAYS_MAX}, got {value!r}", field=name
            )
    if len(ledger_items) > LEDGER_ITEMS_MAX:
        raise ReconciliationInputInvalid(f"more than {LEDGER_ITEMS_MAX} ledger items", field="ledger_items")
    items: dict[str, LedgerItem] = {}
    for item in ledger_items:
        if item.item_id in items:
            raise ReconciliationInputInvalid(f"ledger item id {item.item_id!r} appears twice", field="ledger_items")
        items[item.item_id] = item
    when = as_of or statement_date(statement)
    if when is None:
        raise ReconciliationInputInvalid(
            "the statement has no closing balance date, period or booking date; pass as_of", field="as_of"
        )
    work = _Work(
        statement=statement,
        items=items,
        is_business_day=business_days or BusinessCalendar(),
        timing_days=timing_tolerance_business_days,
        date_days=date_days,
        as_of=when,
        open_entries=dict(enumerate(statement.entries)),
        open_items=dict(items),
    )
    _exclude_unusable_entries(work)
    _exclude_duplicate_references(work)
    _match_by_end_to_end_id(work)
    _match_by_amount_and_date(work)
    _close_unmatched(work)
    balance_check, balance_breaks = _check_balances(statement)
    report = ReconciliationReport(
        statement_id=statement.statement_id,
        account_id=statement.account_id,
        currency_code=statement.currency_code,
        as_of=when,
        entries_count=len(statement.entries),
        ledger_item_ids=tuple(items),
        matches=tuple(sorted(work.matches, key=lambda m: m.entry_index)),
        breaks=tuple(work.breaks + balance_breaks),
        timing_differences=tuple(work.timing),
        balance_check=balance_check,
        timing_tolerance_business_days=timing_tolerance_business_days,
        date_tolerance_business_days=date_days,
        statement_issues=statement.issues,
    )
    report.check_totals()
    return report


def _exclude_unusable_entries(work: _Work) -> None:
    for index, entry in list(work.open_entries.items()):
        if entry.amount is not None:
            continue
        unknown = any(
            issue.index == index and issue.code == "payments.statement_unknown_currency"
            for issue in work.statement.issues
        )
        kind = BreakKind.UNKNOWN_CURRENCY if unknown else BreakKind.PRECISION
        reason = (
            f"currency {entry.currency_code} is not known"
            if unknown
            else f"{entry.amount_decimal} {entry.currency_code} has more decimals than the currency allows"
        )
        del work.open_entries[index]
        work.breaks.append(
            Break(
                kind,
                f"entry {index}: {reason}; left out of matching",
                (index,),
                details={"amount_decimal": str(entry.amount_decimal), "currency": entry.currency_code},
            )
        )


def _exclude_duplicate_references(work: _Work) -> None:
    first_entry: dict[str, int] = {}
    for index, entry in list(work.open_entries.items()):
        ids = _usable_ids(entry.end_to_end_ids)
        repeated = [i for i in ids if i in first_entry]
        if repeated:
            del work.open_entries[index]
            work.breaks.append(
                Break(
                    BreakKind.DUPLICATE_REFERENCE,
                    f"entry {index} repeats end-to-end id {repeated[0]!r} of entry {first_entry[repeated[0]]}",
                    (index,),
                    bank_amount=entry.signed_amount,
                    details={"end_to_end_id": repeated[0], "first_entry_index": first_entry[repeated[0]]},
                )
            )
            continue
        for i in ids:
            first_entry[i] = index
    first_item: dict[str, str] = {}
    for item_id, item in list(work.open_items.items()):
        ids = _usable_ids([item.end_to_end_id])
        if not ids:
            continue
        if ids[0] in first_item:
            del work.open_items[item_id]
            work.breaks.append(
                Break(
                    BreakKind.DUPLICATE_REFERENCE,
                    f"ledger item {item_id} repeats end-to-end id {ids[0]!r} of ledger item {first_item[ids[0]]}",
                    ledger_item_ids=(item_id,),
                    ledger_amount=item.signed_amount,
                    details={"end_to_end_id": ids[0], "first_ledger_item_id": first_item[ids[0]]},
                )
            )
        else:
            first_item[ids[0]] = item_id


def _match_by_end_to_end_id(work: _Work) -> None:
    by_id: dict[str, LedgerItem] = {}
    for item in work.open_items.values():
        ids = _usable_ids([item.end_to_end_id])
        if ids:
            by_id[ids[0]] = item
    for index, entry in list(work.open_entries.items()):
        ids = _usable_ids(entry.end_to_end_ids)
        found = [by_id[i] for i in ids if i in by_id and by_id[i].item_id in work.open_items]
        if not found:
            continue
        work.settle_entry(index, entry, found, _compare(work, index, entry, found), MatchMethod.END_TO_END_ID)


def _compare(work: _Work, index: int, entry: StatementEntry, items: Sequence[LedgerItem]) -> Break | None:
    """None when the entry and the items agree; otherwise the break that says how they differ."""
    bank = entry.signed_amount
    ledger = _net(items)
    ids = tuple(item.item_id for item in items)
    assert bank is not None
    details: dict[str, Any] = {"end_to_end_ids": [i.end_to_end_id for i in items]}
    if ledger is None or ledger.currency != bank.currency:
        details["ledger_currencies"] = sorted({i.amount.currency.code for i in items})
        return Break(
            BreakKind.AMOUNT_MISMATCH,
            f"entry {index} is in {bank.currency.code}, its ledger item(s) are not",
            (index,),
            ids,
            bank,
            None,
            details,
        )
    if ledger != bank:
        if ledger == -bank and not bank.is_zero():
            return Break(
                BreakKind.DIRECTION_MISMATCH,
                f"entry {index} is a {entry.credit_debit.value} of {entry.amount}, the ledger has the opposite",
                (index,),
                ids,
                bank,
                ledger,
                details,
            )
        details["difference"] = (bank - ledger).to_wire()
        return Break(
            BreakKind.AMOUNT_MISMATCH,
            f"entry {index}: the bank has {bank}, the ledger {ledger}",
            (index,),
            ids,
            bank,
            ledger,
            details,
        )
    bank_date = entry.business_date
    if bank_date is not None:
        far = [item for item in items if work.days_apart(item.business_date, bank_date) > work.date_days]
        if far:
            details.update(
                bank_date=bank_date.isoformat(),
                ledger_dates=[item.business_date.isoformat() for item in items],
                date_tolerance_business_days=work.date_days,
            )
            return Break(
                BreakKind.DATE_MISMATCH,
                f"entry {index} booked {bank_date}, the ledger has {far[0].business_date}: more than "
                f"{work.date_days} business day(s) apart",
                (index,),
                ids,
                bank,
                ledger,
                details,
            )
    return None


def _match_by_amount_and_date(work: _Work) -> None:
    for index, entry in list(work.open_entries.items()):
        bank_date = entry.business_date
        if bank_date is None or entry.amount is None:
            continue
        entry_has_id = bool(_usable_ids(entry.end_to_end_ids))
        best: tuple[int, int, LedgerItem] | None = None
        for order, item in enumerate(work.open_items.values()):
            if entry_has_id and _usable_ids([item.end_to_end_id]):
                continue  # both carry ids, and they differ: not the same payment
            same_amount = item.amount.currency == entry.amount.currency and item.amount == entry.amount
            if not same_amount or item.direction is not entry.credit_debit:
                continue
            apart = work.days_apart(item.business_date, bank_date)
            if apart > work.date_days:
                continue
            if best is None or (apart, order) < best[:2]:
                best = (apart, order, item)
        if best is not None:
            work.settle_entry(index, entry, [best[2]], None)


def _close_unmatched(work: _Work) -> None:
    for index, entry in list(work.open_entries.items()):
        if not entry.is_booked:
            work.settle_entry(index, entry, [], None)
            continue
        del work.open_entries[index]
        work.breaks.append(
            Break(
                BreakKind.EXTRA_IN_BANK,
                f"entry {index} ({entry.credit_debit.value} {entry.amount}) has no ledger item",
                (index,),
                bank_amount=entry.signed_amount,
                details={
                    "end_to_end_ids": list(entry.end_to_end_ids),
                    "account_servicer_reference": entry.account_servicer_reference,
                    "booking_date": None if entry.booking_date is None else entry.booking_date.isoformat(),
                },
            )
        )
    for item_id, item in list(work.open_items.items()):
        del work.open_items[item_id]
        age = business_days_between(item.business_date, work.as_of, work.is_business_day, work.timing_days)
        details = {
            "end_to_end_id": item.end_to_end_id,
            "business_date": item.business_date.isoformat(),
            "age_business_days": age if age <= work.timing_days else f">{work.timing_days}",
            "timing_tolerance_business_days": work.timing_days,
        }
        if age < work.timing_days:
            work.timing.append(
                Break(
                    BreakKind.TIMING,
                    f"ledger item {item_id} of {item.business_date} is in transit ({age} business day(s) old)",
                    ledger_item_ids=(item_id,),
                    ledger_amount=item.signed_amount,
                    details=details,
                )
            )
        else:
            work.breaks.append(
                Break(
                    BreakKind.MISSING_IN_BANK,
                    f"ledger item {item_id} ({item.direction.value} {item.amount} of {item.business_date}) is not "
                    f"on the statement",
                    ledger_item_ids=(item_id,),
                    ledger_amount=item.signed_amount,
                    details=details,
                )
            )


def _check_balances(statement: BankStatement) -> tuple[BalanceCheck, list[Break]]:
    breaks: list[Break] = []
    currency = statement.currency_code
    for balance in statement.balances:
        if currency is not None and balance.currency_code != currency:
            breaks.append(
                Break(
                    BreakKind.BALANCE_MISMATCH,
                    f"balance {balance.type_code} is in {balance.currency_code}, the account in {currency}",
                    details={
                        "reason": "currency",
                        "balance_type": balance.type_code,
                        "currency": balance.currency_code,
                        "account_currency": currency,
                    },
                )
            )
    opening, closing = statement.opening_balance, statement.closing_balance
    if opening is None or closing is None:
        missing = " and ".join(n for n, b in (("opening", opening), ("closing", closing)) if b is None)
        return BalanceCheck(BalanceCheckStatus.UNAVAILABLE, f"no {missing} booked balance"), breaks
    booked = [e for e in statement.entries if e.status == STATUS_BOOKED]
    amounts: list[StatementBalance | StatementEntry] = [opening, closing, *booked]
    if any(a.amount is None for a in amounts):
        return (
            BalanceCheck(BalanceCheckStatus.UNAVAILABLE, "an amount is not a whole number of minor units"),
            breaks,
        )
    start, end = opening.signed_amount, closing.signed_amount
    assert start is not None and end is not None
    if start.currency != end.currency or any(
        e.amount is not None and e.amount.currency != start.currency for e in booked
    ):
        if not breaks:  # opening and entries disagree with each other though each may match the account
            breaks.append(
                Break(
                    BreakKind.BALANCE_MISMATCH,
                    "the opening balance, the closing balance and the entries are not all in one currency",
                    details={"reason": "currency"},
                )
            )
        return BalanceCheck(
            BalanceCheckStatus.UNAVAILABLE, "balances and entries mix currencies", start, closing=end
        ), breaks
    net = Money.zero(start.currency)
    for entry in booked:
        signed = entry.signed_amount
        assert signed is not None
        net = net + signed
    expected = start + net
    difference = end - expected
    check = BalanceCheck(
        BalanceCheckStatus.OK if difference.is_zero() else BalanceCheckStatus.MISMATCH,
        "opening + booked entries = closing" if difference.is_zero() else "opening + booked entries ≠ closing",
        start,
        net,
        expected,
        end,
        difference,
    )
    if not difference.is_zero():
        forward = Money.zero(start.currency)
        forward_indexes = []
        for index, entry in enumerate(statement.entries):
            if (
                entry.status == STATUS_BOOKED
                and entry.value_date is not None
                and closing.date is not None
                and entry.value_date > closing.date
            ):
                signed = entry.signed_amount
                assert signed is not None
                forward = forward + signed
                forward_indexes.append(index)
        explained = bool(forward_indexes) and forward == -difference
        breaks.append(
            Break(
                BreakKind.BALANCE_MISMATCH,
                f"opening {start} + booked entries {net} = {expected}, but the closing booked balance is {end}"
                + (" (the gap is the entries value-dated after the closing date)" if explained else ""),
                details={
                    "reason": "arithmetic",
                    "opening": start.to_wire(),
                    "booked_net": net.to_wire(),
                    "expected_closing": expected.to_wire(),
                    "closing": end.to_wire(),
                    "difference": difference.to_wire(),
                    "forward_value_dated_entry_indexes": forward_indexes,
                    "forward_value_dated_net": forward.to_wire(),
                    "explained_by_forward_value_dated_entries": explained,
                },
            )
        )
    return check, breaks
