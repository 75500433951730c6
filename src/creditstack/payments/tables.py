"""Payments tables on the platform database. Only `payments.repository` reads or writes them.

Personal data is sealed (AES-GCM, `core.security.PiiVault`): names, dates of birth, national ids,
addresses and phones are stored only as ciphertext; national ids also as a keyed hash for look-ups.
"""

from __future__ import annotations

import sqlalchemy as sa

from creditstack.core.db import PLATFORM_METADATA

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

customers = sa.Table(
    "payments_customers",
    PLATFORM_METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("legal_name_sealed", sa.Text, nullable=False),
    sa.Column("date_of_birth_sealed", sa.Text, nullable=True),
    sa.Column("national_id_sealed", sa.Text, nullable=True),
    sa.Column("national_id_hash", sa.String(64), nullable=True),
    sa.Column("address_sealed", sa.Text, nullable=True),
    sa.Column("phone_sealed", sa.Text, nullable=True),
    sa.Column("kyc_tier", sa.SmallInteger, nullable=False),
    sa.Column("merchant_category", sa.String(4), nullable=True),
    sa.Column("fee_bps", sa.Integer, nullable=True),
    sa.Column("refund_fee_policy", sa.String(16), nullable=True),
    sa.Column("reference_pattern", sa.String(200), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('consumer','merchant','biller')", name="kind_known"),
    sa.CheckConstraint("kyc_tier BETWEEN 1 AND 3", name="tier_known"),
    sa.CheckConstraint("fee_bps IS NULL OR (fee_bps >= 0 AND fee_bps <= 10000)", name="fee_bps_range"),
    sa.UniqueConstraint("kind", "national_id_hash", name="uq_payments_customers_kind_national_id"),
)

incomes = sa.Table(
    "payments_incomes",
    PLATFORM_METADATA,
    sa.Column("customer_id", sa.String(32), sa.ForeignKey("payments_customers.id"), primary_key=True),
    sa.Column("as_of", sa.Date, primary_key=True),
    sa.Column("annual_income_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.CheckConstraint("annual_income_minor >= 0", name="income_non_negative"),
)

wallets = sa.Table(
    "payments_wallets",
    PLATFORM_METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("customer_id", sa.String(32), sa.ForeignKey("payments_customers.id"), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("ledger_account_id", sa.BigInteger, nullable=False, unique=True),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active','frozen','closed')", name="status_known"),
    sa.Index("ix_payments_wallets_customer", "customer_id"),
)

limit_usage = sa.Table(
    "payments_limit_usage",
    PLATFORM_METADATA,
    sa.Column("wallet_id", sa.String(32), primary_key=True),
    sa.Column("period", sa.String(12), primary_key=True),  # D2026-03-02 or M2026-03
    sa.Column("outgoing_minor", sa.BigInteger, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
)

payments = sa.Table(
    "payments",
    PLATFORM_METADATA,
    sa.Column("serial", BigId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("member", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("payer_wallet_id", sa.String(32), nullable=True),
    sa.Column("payee_wallet_id", sa.String(32), nullable=True),
    sa.Column("payer_customer_id", sa.String(32), nullable=True),
    sa.Column("payee_customer_id", sa.String(32), nullable=True),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("fee_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("refunded_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("refunded_fee_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("original_payment_id", sa.String(32), nullable=True),
    sa.Column("merchant_category", sa.String(4), nullable=True),
    sa.Column("biller_reference", sa.String(64), nullable=True),
    sa.Column("bill_due_date", sa.Date, nullable=True),
    sa.Column("funding", sa.String(32), nullable=False, server_default="wallet"),
    sa.Column("end_to_end_id", sa.String(35), nullable=True, unique=True),
    sa.Column("hold_id", sa.String(32), nullable=True),
    sa.Column("entry_seq", sa.BigInteger, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("settled_business_date", sa.Date, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    sa.CheckConstraint("refunded_minor >= 0 AND refunded_minor <= amount_minor", name="refunds_within_payment"),
    sa.CheckConstraint(
        "fee_minor >= 0 AND refunded_fee_minor >= 0 AND refunded_fee_minor <= fee_minor", name="fee_within"
    ),
    sa.Index("ix_payments_payer", "payer_wallet_id", "serial"),
    sa.Index("ix_payments_payee", "payee_wallet_id", "serial"),
    sa.Index("ix_payments_status", "status", "kind"),
)
