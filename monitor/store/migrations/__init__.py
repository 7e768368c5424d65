"""Alembic migration environment and scripts of the flag store (see monitor/store/migrate.py)."""
