"""Feature-store tables on the platform database. Only `scoring.features` touches them.

`scoring_feature_customers` holds, per customer, the dates that frame its buckets; `scoring_feature_months`
the counters per customer and bucket: a calendar month (`month_index` = year·12 + month − 1), the *open
day* (`OPEN_DAY`: the events of the customer's latest business date, kept apart so that a vector as of that
date can leave them out) or the *archive* (`ARCHIVE`: months older than the twelve-month horizon, folded
together so that lifetime totals stay exact); `scoring_feature_accounts` maps lending's accounts to their
customer and keeps the state the consumer needs to read later events (the current DPD bucket, the limit).
The consumer's position is the core `outbox_consumers` row of consumer `scoring_features`, advanced in the
same transaction as these rows.
"""

from __future__ import annotations

import sqlalchemy as sa

from creditstack.core.db import PLATFORM_METADATA

OPEN_DAY = 0
ARCHIVE = 1

#: The counters of a bucket, in column order: (name, how two buckets combine: "sum" or "max").
#: Money counters are integer minor units of the store's currency; `line_*_minor` are changes (they may be
#: negative in one bucket; their total over every bucket is the customer's position).
COUNTERS: tuple[tuple[str, str], ...] = (
    ("events_count", "sum"),
    ("inflow_minor", "sum"),
    ("spend_groceries_minor", "sum"),
    ("spend_dining_minor", "sum"),
    ("spend_travel_minor", "sum"),
    ("spend_utilities_minor", "sum"),
    ("spend_gambling_cash_minor", "sum"),
    ("spend_other_minor", "sum"),
    ("bills_count", "sum"),
    ("bills_due_count", "sum"),
    ("bills_on_time_count", "sum"),
    ("bills_days_late_sum", "sum"),
    ("repayments_count", "sum"),
    ("repayments_on_time_count", "sum"),
    ("applications_count", "sum"),
    ("accounts_opened_count", "sum"),
    ("delinquencies_count", "sum"),
    ("dpd_worst_days", "max"),
    ("charge_offs_count", "sum"),
    ("line_limit_minor", "sum"),
    ("line_principal_minor", "sum"),
)
_SIGNED = {"line_limit_minor", "line_principal_minor"}

customers = sa.Table(
    "scoring_feature_customers",
    PLATFORM_METADATA,
    sa.Column("customer_id", sa.String(32), primary_key=True),
    sa.Column("first_date", sa.Date, nullable=False),  # the business date of the customer's first event
    sa.Column("open_date", sa.Date, nullable=False),  # the date of the open-day bucket (the latest event's)
    sa.Column("last_position", sa.BigInteger, nullable=False),  # outbox position of the last event folded in
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("first_date <= open_date", name="dates_ordered"),
)

months = sa.Table(
    "scoring_feature_months",
    PLATFORM_METADATA,
    sa.Column("customer_id", sa.String(32), primary_key=True),
    sa.Column("month_index", sa.Integer, primary_key=True, autoincrement=False),
    *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name, _ in COUNTERS),
    sa.CheckConstraint(
        " AND ".join(f"{name} >= 0" for name, _ in COUNTERS if name not in _SIGNED), name="counts_non_negative"
    ),
)

accounts = sa.Table(
    "scoring_feature_accounts",
    PLATFORM_METADATA,
    sa.Column("account_ref", sa.String(32), primary_key=True),
    sa.Column("customer_id", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # "line" | "loan"
    sa.Column("bucket", sa.SmallInteger, nullable=False, server_default="0"),  # DPD bucket, 0 = current
    sa.Column("limit_minor", sa.BigInteger, nullable=False, server_default="0"),  # a line's limit in force
    sa.Index("ix_scoring_feature_accounts_customer", "customer_id"),
    sa.CheckConstraint("kind IN ('line','loan')", name="kind"),
)
