"""Shared fixtures. Database fixtures (SQLite and the real PostgreSQL) live in fixtures_db.py."""

pytest_plugins = ["tests.fixtures_db"]
