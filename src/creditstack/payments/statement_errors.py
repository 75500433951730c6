"""Errors of bank-statement parsing and reconciliation (codes `payments.statement_*`, `payments.reconciliation_*`).

Two families:

- errors that are *raised*: the file cannot be read at all (`StatementMalformed` and its subclasses,
  `StatementTooLarge`) or the reconciliation input is unusable;
- facts about single balances and entries that are *kept as values* on `BankStatement.issues` (a
  `RecordError` built from one of the `Statement…Issue` classes below). They are classes too, so that every
  code has a docstring and appears in the generated catalogue, but the parser never raises them.
"""

from __future__ import annotations

from creditstack.core.errors import CreditstackError, LimitExceeded, ValidationFailed

# --- raised: the file as a whole is unusable ------------------------------------------------------------


class StatementMalformed(ValidationFailed):
    """The bank statement is not well-formed (XML or CSV syntax, encoding), or uses forbidden XML constructs
    (DTD, entities, external references); nothing was read from it."""

    code = "payments.statement_malformed"


class StatementInvalid(StatementMalformed):
    """The bank statement is well-formed but breaks its format: a mandatory element or column is missing or
    a value (amount, date, credit/debit indicator) cannot be read; `details.errors` lists every problem."""

    code = "payments.statement_invalid"


class StatementUnsupportedMessage(StatementMalformed):
    """The document is not a camt.052 report, camt.053 statement or camt.054 notification."""

    code = "payments.statement_unsupported_message"


class StatementTooLarge(LimitExceeded):
    """The bank statement exceeds a size limit (bytes, statements per message, entries or CSV rows)."""

    code = "payments.statement_too_large"


# --- kept as values on BankStatement.issues --------------------------------------------------------------


class StatementAmountPrecisionIssue(ValidationFailed):
    """An amount on the statement has more decimal places than its currency allows; it is kept as written,
    never rounded, and excluded from matching and balance arithmetic."""

    code = "payments.statement_amount_precision"


class StatementUnknownCurrencyIssue(ValidationFailed):
    """An amount on the statement is in a currency code the platform does not know; it is kept as written
    and excluded from matching and balance arithmetic."""

    code = "payments.statement_unknown_currency"


class StatementCurrencyMismatchIssue(ValidationFailed):
    """A balance or entry is in a different currency from the statement's account."""

    code = "payments.statement_currency_mismatch"


class StatementSummaryMismatchIssue(ValidationFailed):
    """The statement's own transaction summary (`TxsSummry` counts and sums) disagrees with its entries."""

    code = "payments.statement_summary_mismatch"


class StatementDirectionInconsistentIssue(ValidationFailed):
    """A transaction inside an entry carries the opposite credit/debit indicator from its entry."""

    code = "payments.statement_direction_inconsistent"


class StatementDetailsSumMismatchIssue(ValidationFailed):
    """The itemised transaction amounts of an entry (same currency) do not add up to the entry amount."""

    code = "payments.statement_details_sum_mismatch"


class StatementDuplicateServicerReferenceIssue(ValidationFailed):
    """Two entries of one statement carry the same account servicer reference (`AcctSvcrRef`), which the
    bank should make unique per entry."""

    code = "payments.statement_duplicate_servicer_reference"


# --- reconciliation ---------------------------------------------------------------------------------------


class ReconciliationInputInvalid(ValidationFailed):
    """The reconciliation input is unusable: duplicate ledger item ids, a tolerance outside its bounds, or
    no statement date to age items against."""

    code = "payments.reconciliation_input_invalid"


class ReconciliationTotalsBroken(CreditstackError):
    """A reconciliation report does not account for every statement entry and every ledger item exactly
    once (a defect in the matcher, never a property of the data)."""

    code = "payments.reconciliation_totals_broken"
