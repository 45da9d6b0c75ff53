"""Syncs of different projects may write at once: a per-project generation
counter, and (PostgreSQL) sequences for new image and group ids.

A sync plans without holding any lock (it reads the project's rows and
scans its folders), then takes the project's lock for the write alone and
checks that `projects.generation` is still the one it planned on; a sync
that finds it changed (another machine synced the project meanwhile) plans
again under the lock. Each committed sync adds one to the generation.

New ids cannot be max(id) + 1 once two projects are written at once, so on
PostgreSQL they come from the sequences `image_ids` and `group_ids`, set
past the ids already used. SQLite writes one transaction at a time and
keeps max(id) + 1 (see catalog/dialects.py `reserve_ids`).

Revision ID: 0006_project_locks
Revises: 0005_path_digest
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_project_locks"
down_revision = "0005_path_digest"
branch_labels = None
depends_on = None

SEQUENCES = {"image_ids": "images", "group_ids": "image_groups"}


def upgrade() -> None:
    op.add_column("projects", sa.Column("generation", sa.Integer, nullable=False, server_default="0"))
    if op.get_bind().dialect.name != "postgresql":
        return
    for sequence, table in SEQUENCES.items():
        op.execute(f"CREATE SEQUENCE {sequence}")
        op.execute(f"SELECT setval('{sequence}', (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for sequence in SEQUENCES:
            op.execute(f"DROP SEQUENCE {sequence}")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("generation")
