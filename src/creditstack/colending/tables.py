"""Co-lending tables on the platform database. Only `colending.service` touches them.

`colending_participations` fixes, per loan or line, each participant's principal share (the weights of
every later split) and keeps its outstanding principal; `colending_totals` and `colending_allocated` are
the running totals per component and what each participant has been allocated of them (the cumulative
split); `colending_movements` is the per-partner subledger of what each cash flow means between the
platform and the bank, netted daily into `colending_settlements`.
"""

from __future__ import annotations

import sqlalchemy as sa

from creditstack.core.db import PLATFORM_METADATA
from creditstack.core.tables import JSONType

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

partners = sa.Table(
    "colending_partners",
    PLATFORM_METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("member", sa.String(64), nullable=False, unique=True),  # the API member its keys belong to
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("net_tier1_capital_minor", sa.BigInteger, nullable=False),
    sa.Column("total_loans_minor", sa.BigInteger, nullable=False),
    sa.Column("joint_loans_elsewhere_minor", sa.BigInteger, nullable=False),  # with other platforms
    sa.Column("bank_account_token", sa.String(64), nullable=False),
    # agreement
    sa.Column("products", JSONType, nullable=False),
    sa.Column("share_min_bps", sa.Integer, nullable=False),
    sa.Column("share_max_bps", sa.Integer, nullable=False),
    sa.Column("exposure_cap_minor", sa.BigInteger, nullable=False),
    sa.Column("score_floor", sa.Integer, nullable=False),
    sa.Column("term_months_max", sa.Integer, nullable=False),
    sa.Column("bank_rate_micro", sa.Integer, nullable=False),
    sa.Column("fees_to", sa.String(12), nullable=False),
    sa.Column("penalty_to", sa.String(12), nullable=False),
    sa.Column("outstanding_minor", sa.BigInteger, nullable=False, server_default="0"),  # its participations now
    sa.Column("active", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint(
        "share_min_bps >= 0 AND share_min_bps <= share_max_bps AND share_max_bps <= 10000", name="shares"
    ),
    sa.CheckConstraint("fees_to IN ('platform','pro_rata') AND penalty_to IN ('platform','pro_rata')", name="to"),
    sa.CheckConstraint("outstanding_minor >= 0", name="outstanding_non_negative"),
)

participations = sa.Table(
    "colending_participations",
    PLATFORM_METADATA,
    sa.Column("account_ref", sa.String(32), primary_key=True),
    sa.Column("participant", sa.String(32), primary_key=True),  # "platform" or a partner id
    sa.Column("product_code", sa.String(40), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("weight_minor", sa.BigInteger, nullable=False),  # principal (loan) or limit (line) share
    sa.Column("interest_weight", sa.Numeric(30, 0), nullable=False),
    sa.Column("outstanding_minor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("opened_on", sa.Date, nullable=False),
    sa.Index("ix_colending_participations_participant", "participant", "account_ref"),
)

totals = sa.Table(
    "colending_totals",
    PLATFORM_METADATA,
    sa.Column("account_ref", sa.String(32), primary_key=True),
    sa.Column("component", sa.String(16), primary_key=True),
    sa.Column("total_minor", sa.BigInteger, nullable=False),
)

allocated = sa.Table(
    "colending_allocated",
    PLATFORM_METADATA,
    sa.Column("account_ref", sa.String(32), primary_key=True),
    sa.Column("participant", sa.String(32), primary_key=True),
    sa.Column("component", sa.String(16), primary_key=True),
    sa.Column("allocated_minor", sa.BigInteger, nullable=False),
)

movements = sa.Table(
    "colending_movements",
    PLATFORM_METADATA,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("partner_id", sa.String(32), nullable=False),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("account_ref", sa.String(32), nullable=False),
    sa.Column("component", sa.String(16), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),  # the partner's part of the flow (signed)
    sa.Column("event_position", sa.BigInteger, nullable=False),
    sa.Column("settlement_id", sa.String(32), nullable=True),
    sa.Index("ix_colending_movements_partner_date", "partner_id", "business_date"),
    sa.Index(  # what daily settlement reads: only the movements not yet settled
        "ix_colending_movements_unsettled",
        "partner_id",
        "business_date",
        postgresql_where=sa.text("settlement_id IS NULL"),
        sqlite_where=sa.text("settlement_id IS NULL"),
    ),
    sa.Index("ix_colending_movements_account", "account_ref"),
    sa.Index("ix_colending_movements_settlement", "settlement_id"),  # a statement's movements
)

settlements = sa.Table(
    "colending_settlements",
    PLATFORM_METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("partner_id", sa.String(32), nullable=False),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("lines", JSONType, nullable=False),  # per component: the partner's total
    sa.Column("net_minor", sa.BigInteger, nullable=False),  # > 0: the platform pays the bank; < 0: the bank pays
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("end_to_end_id", sa.String(35), nullable=True),
    sa.Column("entry_seq", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("partner_id", "business_date", name="uq_colending_settlements_partner_date"),
)
