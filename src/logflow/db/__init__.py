"""Metadata database (SQLite or PostgreSQL) through SQLAlchemy 2 and one Alembic history."""
