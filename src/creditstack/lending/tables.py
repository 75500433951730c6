"""Lending tables on the platform database. Only `lending.repository` and `lending.eod` touch them.

`lending_accounts` is the loan-level subledger: one row per instalment loan or credit line carrying every
balance (principal, billed and unbilled interest, penalty, fees, credit held), the accrual remainders
and the delinquency state. `lending_instalments` holds the schedule rows of loans and the billed rows of
lines (statements' minimum payments and converted instalments). End of day works on these two tables
set-based; `lending_gl_pending` carries its per-chunk totals until they post to the ledger.
Flags are small integers (0/1) so that the end-of-day SQL reads the same on both databases.
"""

from __future__ import annotations

import sqlalchemy as sa

from creditstack.core.db import PLATFORM_METADATA
from creditstack.core.tables import JSONType

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _money(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0")


products = sa.Table(
    "lending_products",
    PLATFORM_METADATA,
    sa.Column("code", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("terms", JSONType, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('instalment','line')", name="kind_known"),
)

applications = sa.Table(
    "lending_applications",
    PLATFORM_METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("member", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(32), nullable=False),
    sa.Column("wallet_id", sa.String(32), nullable=False),
    sa.Column("product_code", sa.String(40), sa.ForeignKey("lending_products.code"), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("term_months", sa.SmallInteger, nullable=True),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("inputs", JSONType, nullable=False),
    sa.Column("decision", JSONType, nullable=False),
    sa.Column("offer", JSONType, nullable=True),
    sa.Column("account_id", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('approved','declined','accepted')", name="status_known"),
    sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    sa.Index("ix_lending_applications_customer", "customer_id"),
)

accounts = sa.Table(
    "lending_accounts",
    PLATFORM_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("ref", sa.String(32), nullable=False, unique=True),
    sa.Column("application_id", sa.String(32), nullable=True),
    sa.Column("customer_id", sa.String(32), nullable=False),
    sa.Column("wallet_id", sa.String(32), nullable=False),
    sa.Column("product_code", sa.String(40), sa.ForeignKey("lending_products.code"), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("accruing", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("opened_on", sa.Date, nullable=False),
    sa.Column("closed_on", sa.Date, nullable=True),
    sa.Column("charged_off_on", sa.Date, nullable=True),
    sa.Column("maturity_date", sa.Date, nullable=True),
    sa.Column("rate_micro", sa.Integer, nullable=False),
    sa.Column("penalty_rate_micro", sa.Integer, nullable=False),
    sa.Column("days_per_year", sa.SmallInteger, nullable=False),
    sa.Column("day_count", sa.String(12), nullable=False),
    _money("limit_minor"),
    _money("original_principal_minor"),
    _money("origination_fee_minor"),
    _money("instalment_minor"),  # the level instalment (equal principal: the principal part) kept by prepayments
    _money("principal_minor"),  # outstanding principal, billed or not
    _money("principal_billed_minor"),  # billed and unpaid
    _money("overdue_principal_minor"),  # billed, unpaid and past its due date (penalty interest base)
    _money("interest_unbilled_minor"),
    _money("interest_billed_minor"),
    _money("penalty_minor"),  # unpaid penalty interest
    _money("fees_minor"),  # unpaid fees
    _money("credit_minor"),  # repayments held for the next due date (or refunds beyond a line's principal)
    _money("converted_unbilled_minor"),  # a line's principal moved into instalments and not yet billed
    sa.Column("carry", sa.BigInteger, nullable=False, server_default="0"),  # 1/(10⁶ × days_per_year) units
    sa.Column("penalty_carry", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("accrued_through", sa.Date, nullable=False),
    sa.Column("last_accrual_on", sa.Date, nullable=True),
    _money("last_interest_minor"),
    _money("last_penalty_minor"),
    _money("interest_accrued_minor"),  # lifetime interest posted by accrual
    _money("penalty_accrued_minor"),
    _money("fees_charged_minor"),
    _money("charged_off_principal_minor"),
    _money("charged_off_interest_minor"),
    _money("charged_off_fees_minor"),
    _money("recovered_minor"),
    sa.Column("dpd", sa.Integer, nullable=False, server_default="0"),
    sa.Column("bucket", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("prev_bucket", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("past_due_since", sa.Date, nullable=True),
    sa.Column("first_delinquent_on", sa.Date, nullable=True),
    sa.Column("last_paid_on", sa.Date, nullable=True),
    sa.Column("aged_on", sa.Date, nullable=True),
    # credit lines
    sa.Column("statement_day", sa.SmallInteger, nullable=True),
    sa.Column("grace", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("stmt_date", sa.Date, nullable=True),
    sa.Column("stmt_due_date", sa.Date, nullable=True),
    _money("stmt_balance_minor"),
    _money("stmt_principal_minor"),
    _money("stmt_paid_minor"),
    sa.Column("stmt_converted", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("funding", JSONType, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint("kind IN ('loan','line')", name="kind_known"),
    sa.CheckConstraint("status IN ('active','closed','charged_off')", name="status_known"),
    sa.CheckConstraint(
        "principal_minor >= 0 AND principal_billed_minor >= 0 AND interest_unbilled_minor >= 0 "
        "AND interest_billed_minor >= 0 AND penalty_minor >= 0 AND fees_minor >= 0 AND credit_minor >= 0 "
        "AND converted_unbilled_minor >= 0 AND overdue_principal_minor >= 0",
        name="balances_non_negative",
    ),
    sa.CheckConstraint("principal_billed_minor <= principal_minor", name="billed_within_principal"),
    sa.Index("ix_lending_accounts_customer", "customer_id"),
    # End of day rewrites every row daily without touching an indexed column: room on each page keeps
    # those updates heap-only (HOT), so the three indexes are not rewritten for every loan every day.
    postgresql_with={"fillfactor": 60},
)

instalments = sa.Table(
    "lending_instalments",
    PLATFORM_METADATA,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("due_date", sa.Date, nullable=False),
    sa.Column("billed_on", sa.Date, nullable=True),
    sa.Column("billed_online", sa.SmallInteger, nullable=False, server_default="0"),
    _money("principal_due"),
    _money("interest_due"),
    _money("fee_due"),
    _money("principal_paid"),
    _money("interest_paid"),
    _money("fee_paid"),
    _money("penalty_paid"),
    sa.Column("settled_on", sa.Date, nullable=True),
    sa.Column("late_fee_on", sa.Date, nullable=True),
    sa.CheckConstraint("kind IN ('scheduled','statement','conversion')", name="kind_known"),
    sa.CheckConstraint(
        "principal_paid <= principal_due AND interest_paid <= interest_due AND fee_paid <= fee_due",
        name="paid_within_due",
    ),
    sa.Index(
        "ix_lending_instalments_to_bill",
        "due_date",
        postgresql_where=sa.text("billed_on IS NULL"),
        sqlite_where=sa.text("billed_on IS NULL"),
    ),
    sa.Index(
        "ix_lending_instalments_open",
        "account_id",
        "due_date",
        postgresql_where=sa.text("billed_on IS NOT NULL AND settled_on IS NULL"),
        sqlite_where=sa.text("billed_on IS NOT NULL AND settled_on IS NULL"),
    ),
)

statements = sa.Table(
    "lending_statements",
    PLATFORM_METADATA,
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("statement_date", sa.Date, primary_key=True),
    sa.Column("due_date", sa.Date, nullable=False),
    _money("balance_minor"),
    _money("principal_minor"),
    _money("interest_minor"),
    _money("fees_minor"),
    _money("minimum_payment_minor"),
    sa.Column("grace", sa.SmallInteger, nullable=False),
)

transactions = sa.Table(
    "lending_transactions",
    PLATFORM_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("reference", sa.String(64), nullable=False),  # payment id, repayment id, ...
    _money("amount_minor"),
    _money("principal_minor"),
    _money("interest_minor"),
    _money("penalty_minor"),
    _money("fees_minor"),
    _money("credit_minor"),
    sa.Column("ledger_key", sa.String(200), nullable=True),
    sa.Column("details", JSONType, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint(
        "kind IN ('disbursement','draw','refund','repayment','recovery','conversion','charge_off')",
        name="kind_known",
    ),
    sa.UniqueConstraint("account_id", "kind", "reference", name="uq_lending_transactions_reference"),
    sa.Index("ix_lending_transactions_account", "account_id", "id"),
)

draws = sa.Table(
    "lending_draws",
    PLATFORM_METADATA,
    sa.Column("payment_id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    _money("refunded_minor"),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.CheckConstraint("refunded_minor <= amount_minor", name="refund_within_draw"),
)

eod_runs = sa.Table(
    "lending_eod_runs",
    PLATFORM_METADATA,
    sa.Column("business_date", sa.Date, primary_key=True),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("max_account_id", sa.BigInteger, nullable=False),
    sa.Column("chunk_size", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('running','complete')", name="status_known"),
)

eod_steps = sa.Table(
    "lending_eod_steps",
    PLATFORM_METADATA,
    sa.Column("business_date", sa.Date, primary_key=True),
    sa.Column("step", sa.String(20), primary_key=True),
    sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),  # elapsed time, a measurement (not money)
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
)

gl_pending = sa.Table(
    "lending_gl_pending",
    PLATFORM_METADATA,
    sa.Column("business_date", sa.Date, primary_key=True),
    sa.Column("step", sa.String(20), primary_key=True),
    sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product_code", sa.String(40), primary_key=True),
    sa.Column("movement", sa.String(24), primary_key=True),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("posted", sa.SmallInteger, nullable=False, server_default="0"),
)

snapshots = sa.Table(
    "lending_account_months",
    PLATFORM_METADATA,
    sa.Column("month_end", sa.Date, primary_key=True),
    sa.Column("account_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ref", sa.String(32), nullable=False),
    sa.Column("customer_id", sa.String(32), nullable=False),
    sa.Column("product_code", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("opened_on", sa.Date, nullable=False),
    _money("limit_minor"),
    _money("original_principal_minor"),
    _money("balance_minor"),
    _money("principal_minor"),
    _money("past_due_minor"),
    sa.Column("dpd", sa.Integer, nullable=False),
    sa.Column("bucket", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("first_delinquent_on", sa.Date, nullable=True),
    _money("charged_off_minor"),
    _money("recovered_minor"),
    sa.Column("funding", JSONType, nullable=False),
    sa.Index("ix_lending_account_months_account", "account_id"),
)
