"""Errors of lending's products, applications, servicing and end of day. Codes are `lending.*`.

The mathematics (day counts, schedules, APR) has its own errors in `math_errors`.
"""

from __future__ import annotations

from creditstack.core.errors import BusinessRuleViolated, CreditstackError, NotFound, ValidationFailed


class InvalidProduct(ValidationFailed):
    """A product's terms are out of range or inconsistent."""

    code = "lending.invalid_product"


class ProductNotFound(NotFound):
    """No product with this code."""

    code = "lending.product_not_found"


class InvalidApplication(ValidationFailed):
    """An application's amount, term, income or product is unusable."""

    code = "lending.invalid_application"


class ApplicationNotFound(NotFound):
    """No application with this id (or not the caller's)."""

    code = "lending.application_not_found"


class ApplicationDeclined(BusinessRuleViolated):
    """The application was declined; the details name each reason (rule ids and numbers, or score)."""

    code = "lending.application_declined"


class ApplicationNotAcceptable(BusinessRuleViolated):
    """Only an approved application with a current offer can be accepted."""

    code = "lending.application_not_acceptable"


class AccountNotFound(NotFound):
    """No loan or credit line with this id (or not the caller's)."""

    code = "lending.account_not_found"


class AccountNotActive(BusinessRuleViolated):
    """The loan or line is closed or charged off; it takes no repayment, draw or conversion."""

    code = "lending.account_not_active"


class InvalidRepayment(ValidationFailed):
    """A repayment amount must be a positive whole number of minor units in the account's currency."""

    code = "lending.invalid_repayment"


class DateBeforeDisbursement(ValidationFailed):
    """The date lies before the loan was disbursed."""

    code = "lending.date_before_disbursement"


class InsufficientFunds(BusinessRuleViolated):
    """The paying wallet does not hold the amount; nothing was applied."""

    code = "lending.insufficient_funds"


class LineLimitExceeded(BusinessRuleViolated):
    """The draw would take the line over its limit."""

    code = "lending.line_limit_exceeded"


class NotConvertible(BusinessRuleViolated):
    """The statement cannot be converted: none is open, it was converted already, or the term is not offered."""

    code = "lending.not_convertible"


class RecoveryNotAllowed(BusinessRuleViolated):
    """Recoveries are taken only on charged-off accounts, up to the amount charged off."""

    code = "lending.recovery_not_allowed"


class EodOutOfOrder(BusinessRuleViolated):
    """End of day for a date runs only after the previous date's end of day is complete."""

    code = "lending.eod_out_of_order"


class EodDateInvalid(ValidationFailed):
    """End of day runs for the current business date or a past one that is not yet complete."""

    code = "lending.eod_date_invalid"


class LedgerRefused(CreditstackError):
    """The ledger refused a lending entry that lending had checked; an invariant is broken."""

    code = "lending.ledger_refused"
