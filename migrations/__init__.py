"""Alembic environment for the catalogue: the only place the schema is made or changed."""
