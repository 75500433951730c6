"""Ledger errors. Each states one fact and has a stable code (see README.md and docs/errors.md)."""

from __future__ import annotations

from creditstack.core.errors import BusinessRuleViolated, LimitExceeded, NotFound, ValidationFailed


class UnbalancedEntry(ValidationFailed):
    """The postings of an entry do not sum to zero in every currency (debits ≠ credits)."""

    code = "ledger.unbalanced_entry"


class TooFewPostings(ValidationFailed):
    """An entry needs at least two postings."""

    code = "ledger.too_few_postings"


class TooManyPostings(LimitExceeded):
    """An entry has more postings than `POSTINGS_PER_ENTRY_MAX`."""

    code = "ledger.too_many_postings"


class AmountNotPositive(ValidationFailed):
    """Posting and hold amounts must be greater than zero; direction is given by the side."""

    code = "ledger.amount_not_positive"


class AmountOutOfRange(ValidationFailed):
    """The amount is larger than the ledger accepts (2**53 − 1 minor units)."""

    code = "ledger.amount_out_of_range"


class InvalidSide(ValidationFailed):
    """A posting side must be `debit` or `credit`."""

    code = "ledger.invalid_side"


class BatchTooLarge(LimitExceeded):
    """A batch carries more entries than the configured maximum."""

    code = "ledger.batch_too_large"


class EmptyBatch(ValidationFailed):
    """A batch must carry at least one entry."""

    code = "ledger.empty_batch"


class TextTooLong(ValidationFailed):
    """A description or metadata value is longer than allowed."""

    code = "ledger.text_too_long"


class InvalidAccountDefinition(ValidationFailed):
    """The account definition is inconsistent (unknown type, negative limit, deltas with overdraft check)."""

    code = "ledger.invalid_account"


class UnknownAccount(NotFound):
    """No account has this id."""

    code = "ledger.unknown_account"


class AccountCodeTaken(BusinessRuleViolated):
    """Another account already uses this code."""

    code = "ledger.account_code_taken"


class CurrencyMismatch(BusinessRuleViolated):
    """The amount's currency is not the account's currency."""

    code = "ledger.currency_mismatch"


class InsufficientFunds(BusinessRuleViolated):
    """The account's available balance (posted minus pending holds) would fall below its limit."""

    code = "ledger.insufficient_funds"


class HoldNotFound(NotFound):
    """No hold has this id."""

    code = "ledger.hold_not_found"


class HoldNotPending(BusinessRuleViolated):
    """The hold was already posted, voided or expired."""

    code = "ledger.hold_not_pending"


class HoldExpired(BusinessRuleViolated):
    """The hold expired before it was posted; its funds were released."""

    code = "ledger.hold_expired"


class HoldAmountExceeded(BusinessRuleViolated):
    """A hold can be posted for at most the amount it holds."""

    code = "ledger.hold_amount_exceeded"


class InvalidExpiry(ValidationFailed):
    """A hold's expiry must be a timezone-aware instant in the future."""

    code = "ledger.invalid_expiry"


class EntryNotFound(NotFound):
    """No journal entry has this sequence number."""

    code = "ledger.entry_not_found"


class EntryAlreadyReversed(BusinessRuleViolated):
    """The entry has already been reversed; a reversal happens once."""

    code = "ledger.entry_already_reversed"


class LinkedEntryFailed(BusinessRuleViolated):
    """Another entry of the same linked batch failed, so this one was not committed either."""

    code = "ledger.linked_entry_failed"
