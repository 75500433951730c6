"""Errors of the lending mathematics (day counts, calendars, schedules, APR). Codes are `lending.*`."""

from __future__ import annotations

from creditstack.core.errors import LimitExceeded, ValidationFailed


class InvalidDateRange(ValidationFailed):
    """A period ends before it starts (day counts and accrual need start <= end)."""

    code = "lending.invalid_date_range"


class InvalidCalendar(ValidationFailed):
    """A business calendar has no business days (every weekday is a weekend day) or a bad weekday number."""

    code = "lending.invalid_calendar"


class InvalidLoanTerms(ValidationFailed):
    """Loan terms are out of range: principal, rate, term in months, due day or first due date."""

    code = "lending.invalid_loan_terms"


class DateOutsideSchedule(ValidationFailed):
    """The date lies before the start of the schedule, so no state is defined for it."""

    code = "lending.date_outside_schedule"


class PrepaymentBelowAccruedInterest(ValidationFailed):
    """A prepayment must exceed the interest accrued to its date, so that it reduces the principal."""

    code = "lending.prepayment_below_accrued_interest"


class PrepaymentExceedsPayoff(ValidationFailed):
    """A prepayment is larger than the amount that settles the loan on its date."""

    code = "lending.prepayment_exceeds_payoff"


class AprRequestMalformed(ValidationFailed):
    """The APR request is not of the form {"currency", "advances": [{"date", "amount_minor"}], "payments": [...]}."""

    code = "lending.apr_request_malformed"


class AprUnknownCurrency(ValidationFailed):
    """The APR request names a currency that is not a known ISO 4217 code."""

    code = "lending.apr_unknown_currency"


class InvalidCashFlowDate(ValidationFailed):
    """A cash-flow date is not an ISO 8601 calendar date (YYYY-MM-DD) or lies outside the supported span."""

    code = "lending.invalid_cash_flow_date"


class InvalidCashFlowAmount(ValidationFailed):
    """A cash-flow amount is not a positive integer number of minor units within the wire range."""

    code = "lending.invalid_cash_flow_amount"


class TooManyCashFlows(LimitExceeded):
    """An APR request has more advances or payments than the calculator accepts."""

    code = "lending.too_many_cash_flows"


class AprNotComputable(ValidationFailed):
    """The cash flows have no APR: no payment after the start of the term, payments not exceeding advances,
    a term beyond the supported span, or a rate beyond the supported range."""

    code = "lending.apr_not_computable"
