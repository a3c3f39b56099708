"""SQL persistence: one implementation for SQLite and PostgreSQL (SQLAlchemy Core)."""
