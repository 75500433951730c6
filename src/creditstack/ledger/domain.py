"""Double entry, pure: accounts, postings, holds, and the evaluator that decides a batch of commands.

The evaluator takes the current state of the accounts and holds a batch touches and decides every
command in order, as values: a command either succeeds, producing journal entries, hold changes and
balance changes, or fails with a business error. A linked group succeeds or fails as a whole. Nothing
here does I/O; the repository loads the state (with row locks) and writes what the evaluator decided.

Worked example — a wallet top-up, then a purchase held and captured::

    settlement (asset, debit-normal)   wallet (liability, no overdraft)   merchant (liability)
    top-up 100:   Dr settlement 100 / Cr wallet 100          wallet posted 100, available 100
    hold 30:      wallet debits_pending 30                    wallet posted 100, available  70
    post 25:      Dr wallet 25 / Cr merchant 25, hold closed  wallet posted  75, available  75

Balances are kept TigerBeetle-style as four non-negative totals per account (debits and credits,
posted and pending); the balance on the account's normal side and the available balance follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from creditstack.core.errors import CreditstackError, ValidationFailed
from creditstack.core.idempotency import check_key, request_hash
from creditstack.core.money import WIRE_AMOUNT_MINOR_MAX, Currency
from creditstack.ledger import errors

#: Most postings one journal entry may carry.
POSTINGS_PER_ENTRY_MAX = 64
#: Longest description.
DESCRIPTION_LENGTH_MAX = 500
#: Largest metadata object, as canonical JSON characters.
METADATA_LENGTH_MAX = 4_000


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    EXPENSE = "expense"

    @property
    def normal_side(self) -> Side:
        return Side.DEBIT if self in (AccountType.ASSET, AccountType.EXPENSE) else Side.CREDIT


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"

    @property
    def code(self) -> str:
        return "D" if self is Side.DEBIT else "C"

    @classmethod
    def from_code(cls, code: str) -> Side:
        return cls.DEBIT if code == "D" else cls.CREDIT

    @classmethod
    def parse(cls, value: object) -> Side:
        if value in ("debit", "D"):
            return cls.DEBIT
        if value in ("credit", "C"):
            return cls.CREDIT
        raise errors.InvalidSide(f"side must be 'debit' or 'credit', got {value!r}", field="side")


class HoldStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(slots=True)
class AccountState:
    """An account as the evaluator sees it: identity, rules and the four running totals."""

    id: int
    currency: str
    type: AccountType
    no_overdraft: bool
    credit_limit_minor: int
    uses_deltas: bool
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    @property
    def balance_minor(self) -> int:
        """Posted balance on the normal side."""
        if self.type.normal_side is Side.DEBIT:
            return self.debits_posted - self.credits_posted
        return self.credits_posted - self.debits_posted

    @property
    def pending_out_minor(self) -> int:
        """Pending holds that will reduce the normal-side balance."""
        return self.credits_pending if self.type.normal_side is Side.DEBIT else self.debits_pending

    @property
    def pending_in_minor(self) -> int:
        return self.debits_pending if self.type.normal_side is Side.DEBIT else self.credits_pending

    @property
    def available_minor(self) -> int:
        """Posted balance less pending holds against it (incoming holds do not count)."""
        return self.balance_minor - self.pending_out_minor

    def check_available(self, requested_minor: int) -> None:
        if self.no_overdraft and self.available_minor < -self.credit_limit_minor:
            raise errors.InsufficientFunds(
                f"account {self.id} has {self.available_minor + requested_minor} available, "
                f"{requested_minor} requested",
                account_id=self.id,
                available_minor=self.available_minor + requested_minor,
                requested_minor=requested_minor,
                credit_limit_minor=self.credit_limit_minor,
            )

    def apply(self, side: Side, amount_minor: int, *, pending: bool = False, sign: int = 1) -> None:
        delta = amount_minor * sign
        if side is Side.DEBIT:
            if pending:
                self.debits_pending += delta
            else:
                self.debits_posted += delta
        elif pending:
            self.credits_pending += delta
        else:
            self.credits_posted += delta

    def reduces(self, side: Side) -> bool:
        return side is not self.type.normal_side

    def copy_totals(self) -> tuple[int, int, int, int]:
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)

    def restore_totals(self, totals: tuple[int, int, int, int]) -> None:
        self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending = totals


@dataclass(slots=True)
class HoldState:
    id: str
    debit_account_id: int
    credit_account_id: int
    currency: str
    amount_minor: int
    status: HoldStatus
    expires_at: datetime | None
    posted_amount_minor: int = 0


@dataclass(frozen=True, slots=True)
class PostingSpec:
    account_id: int
    side: Side
    amount_minor: int
    currency: str

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "side": self.side.value,
            "amount": {"amount_minor": self.amount_minor, "currency": self.currency},
        }


# ---------------------------------------------------------------- commands (what a client asks for)


@dataclass(frozen=True, slots=True)
class Command:
    member: str
    key: str

    operation: str = field(init=False, default="command")

    def request(self) -> dict[str, Any]:
        raise NotImplementedError

    def request_hash(self) -> str:
        return request_hash(self.operation, self.request())

    def validate(self) -> None:
        check_key(self.key)


@dataclass(frozen=True, slots=True)
class PostEntry(Command):
    postings: tuple[PostingSpec, ...] = ()
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    operation: str = field(init=False, default="entry")

    def request(self) -> dict[str, Any]:
        return {
            "postings": [p.to_json() for p in self.postings],
            "description": self.description,
            "metadata": self.metadata,
        }

    def validate(self) -> None:
        check_key(self.key)
        _check_text(self.description, self.metadata)
        if len(self.postings) < 2:
            raise errors.TooFewPostings("an entry needs at least two postings", field="postings")
        if len(self.postings) > POSTINGS_PER_ENTRY_MAX:
            raise errors.TooManyPostings(
                f"an entry may carry at most {POSTINGS_PER_ENTRY_MAX} postings", field="postings"
            )
        sums: dict[str, int] = {}
        for i, p in enumerate(self.postings):
            _check_amount(p.amount_minor, f"postings[{i}].amount.amount_minor")
            Currency.of(p.currency)
            sums[p.currency] = sums.get(p.currency, 0) + (p.amount_minor if p.side is Side.DEBIT else -p.amount_minor)
        unbalanced = {cur: total for cur, total in sums.items() if total != 0}
        if unbalanced:
            raise errors.UnbalancedEntry(
                "debits and credits differ: "
                + ", ".join(f"{cur} {total:+d}" for cur, total in sorted(unbalanced.items())),
                field="postings",
                difference_minor=unbalanced,
            )


def transfer(
    member: str,
    key: str,
    debit_account_id: int,
    credit_account_id: int,
    amount_minor: int,
    currency: str,
    description: str = "",
    metadata: dict[str, Any] | None = None,
) -> PostEntry:
    """A two-posting entry: debit one account, credit another."""
    return PostEntry(
        member,
        key,
        (
            PostingSpec(debit_account_id, Side.DEBIT, amount_minor, currency),
            PostingSpec(credit_account_id, Side.CREDIT, amount_minor, currency),
        ),
        description,
        metadata or {},
    )


@dataclass(frozen=True, slots=True)
class ReserveHold(Command):
    """Reserve funds: pending debit on one account and pending credit on another, until posted or voided."""

    debit_account_id: int = 0
    credit_account_id: int = 0
    amount_minor: int = 0
    currency: str = ""
    expires_at: datetime | None = None
    description: str = ""
    operation: str = field(init=False, default="hold")

    def request(self) -> dict[str, Any]:
        return {
            "debit_account_id": self.debit_account_id,
            "credit_account_id": self.credit_account_id,
            "amount": {"amount_minor": self.amount_minor, "currency": self.currency},
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "description": self.description,
        }

    def validate(self) -> None:
        check_key(self.key)
        _check_text(self.description, {})
        _check_amount(self.amount_minor, "amount.amount_minor")
        Currency.of(self.currency)
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise errors.InvalidExpiry("expires_at must state its UTC offset", field="expires_at")


@dataclass(frozen=True, slots=True)
class PostHold(Command):
    """Post a pending hold for `amount_minor` (default: all of it); the rest is released."""

    hold_id: str = ""
    amount_minor: int | None = None
    description: str = ""
    operation: str = field(init=False, default="hold_post")

    def request(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id, "amount_minor": self.amount_minor, "description": self.description}

    def validate(self) -> None:
        check_key(self.key)
        _check_text(self.description, {})
        if self.amount_minor is not None:
            _check_amount(self.amount_minor, "amount_minor")


@dataclass(frozen=True, slots=True)
class VoidHold(Command):
    hold_id: str = ""
    operation: str = field(init=False, default="hold_void")

    def request(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id}


@dataclass(frozen=True, slots=True)
class ReverseEntry(Command):
    """Reverse a committed entry by a new entry with every posting on the other side."""

    entry_seq: int = 0
    description: str = ""
    operation: str = field(init=False, default="reversal")

    def request(self) -> dict[str, Any]:
        return {"entry_seq": self.entry_seq, "description": self.description}

    def validate(self) -> None:
        check_key(self.key)
        _check_text(self.description, {})


def _check_amount(value: object, field_name: str) -> None:
    if type(value) is not int:
        raise errors.AmountOutOfRange(f"{field_name} must be an integer", field=field_name)
    if value <= 0:
        raise errors.AmountNotPositive(f"{field_name} must be > 0, got {value}", field=field_name)
    if value > WIRE_AMOUNT_MINOR_MAX:
        raise errors.AmountOutOfRange(f"{field_name} exceeds {WIRE_AMOUNT_MINOR_MAX}", field=field_name)


def _check_text(description: str, metadata: dict[str, Any]) -> None:
    if len(description) > DESCRIPTION_LENGTH_MAX:
        raise errors.TextTooLong(f"description longer than {DESCRIPTION_LENGTH_MAX}", field="description")
    if metadata and len(repr(metadata)) > METADATA_LENGTH_MAX:
        raise errors.TextTooLong(f"metadata larger than {METADATA_LENGTH_MAX} characters", field="metadata")


# ---------------------------------------------------------------- what the evaluator decides


@dataclass(slots=True)
class NewEntry:
    """A journal entry to write; `seq` is assigned at commit."""

    member: str
    key: str
    kind: str  # entry | hold_post | reversal
    postings: tuple[PostingSpec, ...]
    description: str
    metadata: dict[str, Any]
    reverses_seq: int | None = None
    hold_id: str | None = None
    seq: int = 0


@dataclass(slots=True)
class Outcome:
    """The result of one command. `entry` and `hold_id` are filled on success; `error` on failure."""

    command: Command
    request_hash: str
    error: CreditstackError | None = None
    entry: NewEntry | None = None
    hold_id: str | None = None
    replayed: bool = False
    stored: dict[str, Any] | None = None  # the stored outcome, for replays
    status_code: int = 201

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self, business_date: str) -> dict[str, Any]:
        """The outcome as stored under its idempotency key and returned on every replay."""
        if self.stored is not None:
            return self.stored
        if self.error is not None:
            return {"status": "rejected", "error": self.error.to_dict()}
        body: dict[str, Any] = {"status": "committed", "operation": self.command.operation}
        if self.entry is not None:
            body["entry"] = {
                "seq": self.entry.seq,
                "kind": self.entry.kind,
                "business_date": business_date,
                "postings": [p.to_json() for p in self.entry.postings],
            }
            if self.entry.reverses_seq is not None:
                body["entry"]["reverses_seq"] = self.entry.reverses_seq
        if self.hold_id is not None:
            body["hold_id"] = self.hold_id
        return body


@dataclass(slots=True)
class HoldChange:
    hold: HoldState
    new: bool
    entry: NewEntry | None = None  # the posting entry, for posted holds


@dataclass(slots=True)
class Decisions:
    outcomes: list[Outcome]
    entries: list[NewEntry]
    hold_changes: dict[str, HoldChange]
    expired_hold_ids: list[str]

    @property
    def committed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.replayed]


@dataclass(slots=True)
class ReversibleEntry:
    seq: int
    postings: tuple[PostingSpec, ...]
    reversed: bool


@dataclass(slots=True)
class LedgerState:
    """What the evaluator may read: the accounts and holds the batch touches, locked by the caller."""

    accounts: dict[int, AccountState]
    holds: dict[str, HoldState]
    entries: dict[int, ReversibleEntry]
    now: datetime
    new_hold_ids: list[str] = field(default_factory=list)  # ids to give new holds, in order


def expire_holds(state: LedgerState) -> list[str]:
    """Release every pending hold whose expiry has passed; returns their ids."""
    expired = []
    for hold in state.holds.values():
        if hold.status is HoldStatus.PENDING and hold.expires_at is not None and hold.expires_at <= state.now:
            _release(state, hold)
            hold.status = HoldStatus.EXPIRED
            expired.append(hold.id)
    return expired


def _release(state: LedgerState, hold: HoldState) -> None:
    state.accounts[hold.debit_account_id].apply(Side.DEBIT, hold.amount_minor, pending=True, sign=-1)
    state.accounts[hold.credit_account_id].apply(Side.CREDIT, hold.amount_minor, pending=True, sign=-1)


def _account(state: LedgerState, account_id: int, currency: str) -> AccountState:
    account = state.accounts.get(account_id)
    if account is None:
        raise errors.UnknownAccount(f"no account {account_id}", account_id=account_id)
    if account.currency != currency:
        raise errors.CurrencyMismatch(
            f"account {account_id} is in {account.currency}, not {currency}", account_id=account_id
        )
    return account


def _apply_postings(state: LedgerState, postings: Sequence[PostingSpec]) -> None:
    touched = []
    for p in postings:
        account = _account(state, p.account_id, p.currency)
        account.apply(p.side, p.amount_minor)
        if account.reduces(p.side):
            touched.append((account, p.amount_minor))
    for account, amount in touched:
        account.check_available(amount)


def _decide(
    state: LedgerState, command: Command, hold_changes: dict[str, HoldChange]
) -> tuple[NewEntry | None, str | None]:
    """Apply one command to `state` or raise a business error (state may then be partly changed:
    the caller restores it)."""
    if isinstance(command, PostEntry):
        _apply_postings(state, command.postings)
        entry = NewEntry(command.member, command.key, "entry", command.postings, command.description, command.metadata)
        return entry, None
    if isinstance(command, ReserveHold):
        if command.expires_at is not None and command.expires_at <= state.now:
            raise errors.InvalidExpiry("expires_at is not in the future", field="expires_at")
        debit = _account(state, command.debit_account_id, command.currency)
        credit = _account(state, command.credit_account_id, command.currency)
        debit.apply(Side.DEBIT, command.amount_minor, pending=True)
        credit.apply(Side.CREDIT, command.amount_minor, pending=True)
        if debit.reduces(Side.DEBIT):
            debit.check_available(command.amount_minor)
        if credit.reduces(Side.CREDIT):
            credit.check_available(command.amount_minor)
        hold_id = state.new_hold_ids.pop(0)
        hold = HoldState(
            hold_id,
            debit.id,
            credit.id,
            command.currency,
            command.amount_minor,
            HoldStatus.PENDING,
            command.expires_at.astimezone(UTC) if command.expires_at is not None else None,
        )
        state.holds[hold_id] = hold
        hold_changes[hold_id] = HoldChange(hold, new=True)
        return None, hold_id
    if isinstance(command, PostHold | VoidHold):
        found = state.holds.get(command.hold_id)
        if found is None:
            raise errors.HoldNotFound(f"no hold {command.hold_id!r}", hold_id=command.hold_id)
        hold = found
        if hold.status is HoldStatus.EXPIRED:
            raise errors.HoldExpired(f"hold {hold.id} expired at {hold.expires_at}", hold_id=hold.id)
        if hold.status is not HoldStatus.PENDING:
            raise errors.HoldNotPending(
                f"hold {hold.id} is {hold.status.value}", hold_id=hold.id, hold_status=hold.status.value
            )
        change = hold_changes.setdefault(hold.id, HoldChange(hold, new=False))
        if isinstance(command, VoidHold):
            _release(state, hold)
            hold.status = HoldStatus.VOIDED
            return None, hold.id
        amount = hold.amount_minor if command.amount_minor is None else command.amount_minor
        if amount > hold.amount_minor:
            raise errors.HoldAmountExceeded(
                f"hold {hold.id} holds {hold.amount_minor}; cannot post {amount}",
                hold_id=hold.id,
                held_minor=hold.amount_minor,
                requested_minor=amount,
            )
        _release(state, hold)
        postings = (
            PostingSpec(hold.debit_account_id, Side.DEBIT, amount, hold.currency),
            PostingSpec(hold.credit_account_id, Side.CREDIT, amount, hold.currency),
        )
        _apply_postings(state, postings)
        hold.status = HoldStatus.POSTED
        hold.posted_amount_minor = amount
        entry = NewEntry(command.member, command.key, "hold_post", postings, command.description, {}, hold_id=hold.id)
        change.entry = entry
        return entry, hold.id
    if isinstance(command, ReverseEntry):
        original = state.entries.get(command.entry_seq)
        if original is None:
            raise errors.EntryNotFound(f"no entry {command.entry_seq}", entry_seq=command.entry_seq)
        if original.reversed:
            raise errors.EntryAlreadyReversed(
                f"entry {command.entry_seq} is already reversed", entry_seq=command.entry_seq
            )
        mirrored = tuple(
            PostingSpec(p.account_id, Side.CREDIT if p.side is Side.DEBIT else Side.DEBIT, p.amount_minor, p.currency)
            for p in original.postings
        )
        _apply_postings(state, mirrored)
        original.reversed = True
        entry = NewEntry(
            command.member,
            command.key,
            "reversal",
            mirrored,
            command.description,
            {},
            reverses_seq=original.seq,
        )
        return entry, None
    raise ValidationFailed(f"unknown command {type(command).__name__}")


@dataclass(slots=True)
class _Undo:
    accounts: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    holds: dict[str, tuple[HoldStatus, int] | None] = field(default_factory=dict)
    reversed: list[tuple[ReversibleEntry, bool]] = field(default_factory=list)


def _touched(state: LedgerState, command: Command) -> tuple[list[int], list[str], list[int]]:
    if isinstance(command, PostEntry):
        return [p.account_id for p in command.postings], [], []
    if isinstance(command, ReserveHold):
        return [command.debit_account_id, command.credit_account_id], [], []
    if isinstance(command, PostHold | VoidHold):
        hold = state.holds.get(command.hold_id)
        if hold is None:
            return [], [], []
        return [hold.debit_account_id, hold.credit_account_id], [hold.id], []
    if isinstance(command, ReverseEntry):
        original = state.entries.get(command.entry_seq)
        return ([p.account_id for p in original.postings] if original else []), [], [command.entry_seq]
    return [], [], []


def evaluate(state: LedgerState, groups: Sequence[Sequence[Outcome]]) -> Decisions:
    """Decide every command, group by group, in order.

    `groups` holds, per submitted group, the `Outcome`s of its commands that still need deciding
    (replays were answered by the caller). A group of one is an ordinary command; a larger group is
    linked: all of it commits or none of it, the first business failure is reported and the others are
    marked `ledger.linked_entry_failed`.
    """
    expired = expire_holds(state)
    hold_changes: dict[str, HoldChange] = {}
    entries: list[NewEntry] = []
    outcomes: list[Outcome] = []
    for group in groups:
        undo = _Undo()
        group_entries: list[NewEntry] = []
        failed: Outcome | None = None
        group_hold_changes = dict(hold_changes)
        for outcome in group:
            account_ids, hold_ids, entry_seqs = _touched(state, outcome.command)
            for account_id in account_ids:
                account = state.accounts.get(account_id)
                if account is not None and account_id not in undo.accounts:
                    undo.accounts[account_id] = account.copy_totals()
            for hold_id in hold_ids:
                if hold_id not in undo.holds:
                    h = state.holds[hold_id]
                    undo.holds[hold_id] = (h.status, h.posted_amount_minor)
            for seq in entry_seqs:
                if seq in state.entries:
                    undo.reversed.append((state.entries[seq], state.entries[seq].reversed))
            new_hold_ids_before = list(state.new_hold_ids)
            try:
                entry, new_hold_id = _decide(state, outcome.command, group_hold_changes)
            except CreditstackError as exc:
                outcome.error = exc
            else:
                outcome.entry = entry
                outcome.hold_id = new_hold_id
                if entry is not None:
                    group_entries.append(entry)
            if outcome.error is not None:
                # Undo this command's partial effects (and, if linked, the group's) below.
                state.new_hold_ids[:] = new_hold_ids_before
                failed = outcome
                if len(group) > 1:
                    break
                for account_id, totals in undo.accounts.items():
                    state.accounts[account_id].restore_totals(totals)
                for hold_id, prior in undo.holds.items():
                    if prior is not None:
                        state.holds[hold_id].status, state.holds[hold_id].posted_amount_minor = prior
                for e, was_reversed in reversed(undo.reversed):
                    e.reversed = was_reversed
                group_hold_changes = dict(hold_changes)
        if failed is not None and len(group) > 1:
            for account_id, totals in undo.accounts.items():
                state.accounts[account_id].restore_totals(totals)
            for hold_id, prior in undo.holds.items():
                if prior is not None:
                    state.holds[hold_id].status, state.holds[hold_id].posted_amount_minor = prior
            for e, was_reversed in reversed(undo.reversed):
                e.reversed = was_reversed
            for hid, change in group_hold_changes.items():
                if change.new and hid not in hold_changes:
                    state.holds.pop(hid, None)
                    state.new_hold_ids.insert(0, hid)
            for outcome in group:
                if outcome is not failed:
                    outcome.error = errors.LinkedEntryFailed(
                        f"linked entry {outcome.command.key!r} not committed: "
                        f"{failed.command.key!r} failed with {failed.error.code if failed.error else ''}",
                        failed_key=failed.command.key,
                    )
                    outcome.entry = None
                    outcome.hold_id = None
        else:
            entries.extend(group_entries)
            hold_changes = group_hold_changes
        outcomes.extend(group)
    for outcome in outcomes:
        outcome.status_code = 201 if outcome.error is None else outcome.error.http_status
    return Decisions(outcomes, entries, hold_changes, expired)
