"""colending: an index on the settlement a movement went into

A settlement's statement sums its movements per account (`WHERE settlement_id = …`), and a settlement the
ledger refused unmarks them the same way; with no index on the column each read scanned every movement ever
made, so daily settlement grew with the book's history (0.21 s in a simulated year's first month, 1.90 s in
its last, at 2,000 consumers).

Revision ID: 0007_colending_settlement_ix
Revises: 0006_colending_unsettled
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0007_colending_settlement_ix"
down_revision = "0006_colending_unsettled"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_colending_movements_settlement", "colending_movements", ["settlement_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_colending_movements_settlement", table_name="colending_movements")
