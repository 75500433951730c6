"""Alembic environments, one per service database (platform now; bureau and supervisor later)."""
