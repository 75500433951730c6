"""Shared-kernel tables, defined once per service database by `define_core_tables(metadata)`."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from creditstack.core.db import PLATFORM_METADATA

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


@dataclass(frozen=True)
class CoreTables:
    business_dates: sa.Table
    commit_counters: sa.Table
    outbox: sa.Table
    outbox_consumers: sa.Table
    idempotency_keys: sa.Table
    api_keys: sa.Table


def define_core_tables(metadata: sa.MetaData) -> CoreTables:
    business_dates = sa.Table(
        "business_dates",
        metadata,
        sa.Column("service", sa.String(32), primary_key=True),
        sa.Column("business_date", sa.Date, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Commit-ordered counters ('journal', 'outbox'): updated as the last statements before commit, so the
    # row lock orders commits and the numbers are gapless and in commit order.
    commit_counters = sa.Table(
        "commit_counters",
        metadata,
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    outbox = sa.Table(
        "outbox",
        metadata,
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(64), nullable=False),
        sa.Column("business_date", sa.Date, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Index("ix_outbox_topic_position", "topic", "position"),
    )
    outbox_consumers = sa.Table(
        "outbox_consumers",
        metadata,
        sa.Column("consumer", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    idempotency_keys = sa.Table(
        "idempotency_keys",
        metadata,
        sa.Column("member", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(48), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("outcome", JSONType, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    api_keys = sa.Table(
        "api_keys",
        metadata,
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("member", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    return CoreTables(business_dates, commit_counters, outbox, outbox_consumers, idempotency_keys, api_keys)


PLATFORM_CORE = define_core_tables(PLATFORM_METADATA)
