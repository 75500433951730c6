"""Ledger tables on the platform database. Only `ledger.repository` reads or writes them."""

from __future__ import annotations

import sqlalchemy as sa

from creditstack.core.db import PLATFORM_METADATA
from creditstack.core.tables import JSONType

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

accounts = sa.Table(
    "ledger_accounts",
    PLATFORM_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("code", sa.String(100), nullable=False, unique=True),
    sa.Column("member", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("no_overdraft", sa.Boolean, nullable=False),
    sa.Column("credit_limit_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("uses_deltas", sa.Boolean, nullable=False, server_default=sa.text("false")),
    sa.Column("debits_posted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("credits_posted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("debits_pending", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("credits_pending", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("type IN ('asset','liability','equity','income','expense')", name="type_known"),
    sa.CheckConstraint(
        "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
        name="totals_non_negative",
    ),
    sa.CheckConstraint("credit_limit_minor >= 0", name="credit_limit_non_negative"),
    sa.CheckConstraint("NOT (uses_deltas AND no_overdraft)", name="deltas_only_without_overdraft_check"),
    # The database refuses an overdraft even if the application had a bug: available >= -credit limit.
    sa.CheckConstraint(
        "NOT no_overdraft OR (CASE WHEN type IN ('asset','expense') "
        "THEN debits_posted - credits_posted - credits_pending "
        "ELSE credits_posted - debits_posted - debits_pending END) >= -credit_limit_minor",
        name="no_overdraft",
    ),
)

entries = sa.Table(
    "ledger_entries",
    PLATFORM_METADATA,
    # The gapless, commit-ordered journal sequence number is the entry's identity.
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("member", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Column("reverses_seq", sa.BigInteger, sa.ForeignKey("ledger_entries.seq"), nullable=True, unique=True),
    sa.Column("hold_id", sa.String(32), nullable=True),
    sa.CheckConstraint("kind IN ('entry','hold_post','reversal')", name="kind_known"),
    sa.Index("ix_ledger_entries_business_date", "business_date"),
)

postings = sa.Table(
    "ledger_postings",
    PLATFORM_METADATA,
    sa.Column("entry_seq", sa.BigInteger, sa.ForeignKey("ledger_entries.seq"), primary_key=True),
    sa.Column("leg", sa.SmallInteger, primary_key=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("ledger_accounts.id"), nullable=False),
    sa.Column("side", sa.String(1), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    sa.CheckConstraint("side IN ('D','C')", name="side_known"),
    sa.Index("ix_ledger_postings_account_seq", "account_id", "entry_seq"),
)

holds = sa.Table(
    "ledger_holds",
    PLATFORM_METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("member", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("debit_account_id", sa.BigInteger, sa.ForeignKey("ledger_accounts.id"), nullable=False),
    sa.Column("credit_account_id", sa.BigInteger, sa.ForeignKey("ledger_accounts.id"), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("posted_amount_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("post_entry_seq", sa.BigInteger, sa.ForeignKey("ledger_entries.seq"), nullable=True),
    sa.Column("description", sa.String(500), nullable=False),
    sa.CheckConstraint("amount_minor > 0", name="amount_positive"),
    sa.CheckConstraint("status IN ('pending','posted','voided','expired')", name="status_known"),
    sa.CheckConstraint("posted_amount_minor >= 0 AND posted_amount_minor <= amount_minor", name="posted_within"),
    sa.Index(
        "ix_ledger_holds_pending_expiry",
        "expires_at",
        postgresql_where=sa.text("status = 'pending' AND expires_at IS NOT NULL"),
        sqlite_where=sa.text("status = 'pending' AND expires_at IS NOT NULL"),
    ),
)

# Insert-only balance changes of accounts that take deltas (hot house accounts); `ledger compact` folds
# them into the account row. Reads and the audit add the rows not yet folded.
balance_deltas = sa.Table(
    "ledger_balance_deltas",
    PLATFORM_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("ledger_accounts.id"), nullable=False),
    sa.Column("debits_posted", sa.BigInteger, nullable=False),
    sa.Column("credits_posted", sa.BigInteger, nullable=False),
    sa.Column("debits_pending", sa.BigInteger, nullable=False),
    sa.Column("credits_pending", sa.BigInteger, nullable=False),
    sa.Index("ix_ledger_balance_deltas_account", "account_id"),
)
