"""colending: a partial index on the movements not yet settled

Daily settlement marks each partner's unsettled movements up to the day; through the (partner, date) index
that read every movement the partner ever had, so settlement grew with the book's history. The partial index
holds only the unsettled ones.

Revision ID: 0006_colending_unsettled
Revises: 0005_scoring
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_colending_unsettled"
down_revision = "0005_scoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_colending_movements_unsettled",
        "colending_movements",
        ["partner_id", "business_date"],
        unique=False,
        postgresql_where=sa.text("settlement_id IS NULL"),
        sqlite_where=sa.text("settlement_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_colending_movements_unsettled",
        table_name="colending_movements",
        postgresql_where=sa.text("settlement_id IS NULL"),
        sqlite_where=sa.text("settlement_id IS NULL"),
    )
