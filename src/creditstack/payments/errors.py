"""Payments errors: each states one fact and has a stable code (catalogued in docs/errors.md)."""

from __future__ import annotations

from creditstack.core.errors import BusinessRuleViolated, NotFound, ValidationFailed


class CustomerNotFound(NotFound):
    """No customer with this id is visible to the caller."""

    code = "payments.customer_not_found"


class DuplicateCustomer(BusinessRuleViolated):
    """A customer of this kind with the same national id is already registered."""

    code = "payments.duplicate_customer"


class InvalidCustomer(ValidationFailed):
    """The customer's details are incomplete or malformed (name, date of birth, id, income, tier)."""

    code = "payments.invalid_customer"


class WalletNotFound(NotFound):
    """No wallet with this id is visible to the caller."""

    code = "payments.wallet_not_found"


class WalletFrozen(BusinessRuleViolated):
    """The wallet is frozen: no new payment from or to it until unfrozen (refunds and bank settlements of
    payments made before the freeze still land, since that money is owed to the customer)."""

    code = "payments.wallet_frozen"


class WalletClosed(BusinessRuleViolated):
    """The wallet is closed."""

    code = "payments.wallet_closed"


class WalletNotEmpty(BusinessRuleViolated):
    """A wallet can be closed only with a zero balance and no pending holds."""

    code = "payments.wallet_not_empty"


class WalletKindMismatch(ValidationFailed):
    """The wallet belongs to the wrong kind of customer for this payment (e.g. paying a consumer as a merchant)."""

    code = "payments.wallet_kind_mismatch"


class CurrencyMismatch(ValidationFailed):
    """The amount's currency differs from the wallet's."""

    code = "payments.currency_mismatch"


class SelfTransfer(ValidationFailed):
    """Payer and payee are the same wallet."""

    code = "payments.self_transfer"


class InsufficientFunds(BusinessRuleViolated):
    """The wallet's available balance does not cover the payment."""

    code = "payments.insufficient_funds"


class MerchantInsufficientFunds(BusinessRuleViolated):
    """The merchant's wallet cannot cover the refund."""

    code = "payments.merchant_insufficient_funds"


class LimitExceeded(BusinessRuleViolated):
    """The payment would exceed a KYC-tier limit (per transaction, daily, monthly or velocity); the limit is named."""

    code = "payments.limit_exceeded"


class PaymentNotFound(NotFound):
    """No payment with this id is visible to the caller."""

    code = "payments.payment_not_found"


class NotRefundable(ValidationFailed):
    """Only completed merchant payments can be refunded (a refund cannot itself be refunded)."""

    code = "payments.not_refundable"


class RefundExceedsPayment(BusinessRuleViolated):
    """Refunds of a payment together may not exceed the payment."""

    code = "payments.refund_exceeds_payment"


class BillerReferenceInvalid(ValidationFailed):
    """The biller reference does not match the biller's reference format."""

    code = "payments.biller_reference_invalid"


class WithdrawalNotUnknown(BusinessRuleViolated):
    """Only a withdrawal whose rail outcome is unknown can be retried or released."""

    code = "payments.withdrawal_not_unknown"


class RailInstructionNotFound(NotFound):
    """No rail instruction has this end-to-end id."""

    code = "payments.rail_instruction_not_found"


class FundingSourceUnavailable(BusinessRuleViolated):
    """The requested funding source is not registered or refused to fund the payment."""

    code = "payments.funding_source_unavailable"
