"""The images table and its neighbours, as SQLAlchemy Core tables.

Owns the Python-side picture of the schema that the code reads and writes.
The schema itself is created and changed only by Alembic (`migrations/`); a
test checks that an upgraded database and these definitions agree, so the two
cannot drift apart.

Derived tables (`image_groups`, `group_members`, `matches`) hold what a sync
computes from the images; the views in the migrations turn them into groups,
winners, losers, decisions, anomalies and orphans.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

from .database import HEAD_REVISION  # noqa: F401  (re-exported: the revision these tables are)
from .dialects import POSTGRES_PATH_KEY

# Bumped whenever grouping or matching logic changes, so the next sync
# recomputes derived rows even for projects whose files did not change.
DERIVED_VERSION = 2

ROLES = ("sandbox", "final")
MATCH_KINDS = ("filename", "key")
ORPHAN_PROBLEMS = ("no_match", "ambiguous")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    Column("sandbox_dir", String, nullable=False),
    Column("final_dir", String),
    Column("indexed_at", DateTime),
    Column("derived_version", Integer, nullable=False, server_default="0"),
    # One more for every committed sync: a sync planned without the
    # project's lock writes only if it is unchanged (catalog/index.py).
    Column("generation", Integer, nullable=False, server_default="0"),
)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("role", String, nullable=False),
    Column("rel_path", String, nullable=False),
    Column("dir", String, nullable=False),
    Column("filename", String, nullable=False),
    Column("timestamp", DateTime),
    Column("stage", Float),
    Column("stage_label", String),
    Column("width", Integer),
    Column("height", Integer),
    Column("size_bytes", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    # One row per path. On PostgreSQL the key holds the path's md5 instead of
    # the path: a btree entry must fit in a third of a page (~2.7 KB), and a
    # deep folder of long names can exceed it (migration 0005). SQLite has no
    # such limit and keeps the path itself.
    UniqueConstraint("project_id", "role", "rel_path").ddl_if(dialect="sqlite"),
    Index("uq_images_project_id_role_path_md5", "project_id", "role", text(POSTGRES_PATH_KEY),
          unique=True).ddl_if(dialect="postgresql"),
    CheckConstraint("role IN ('sandbox', 'final')", name="role"),
)

image_groups = Table(
    "image_groups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("set_id", String, nullable=False),
    Column("dir", String, nullable=False),
    Column("size", Integer, nullable=False),
    Column("stages", String, nullable=False),
    Column("max_stage", Float, nullable=False),
    Column("first_timestamp", DateTime, nullable=False),
    Column("last_timestamp", DateTime, nullable=False),
    # Kept by each sync: how many sandbox images of the group were picked,
    # and which one when exactly one was.
    Column("winner_count", Integer, nullable=False, server_default="0"),
    Column("chosen_image_id", Integer),
    Column("chosen_stage", Float),
    UniqueConstraint("project_id", "set_id"),
    Index(None, "project_id", "winner_count"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", Integer, ForeignKey("image_groups.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Index(None, "group_id"),
)

matches = Table(
    "matches",
    metadata,
    Column("final_image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("sandbox_image_id", Integer, ForeignKey("images.id", ondelete="SET NULL")),
    Column("match", String),
    Column("problem", String),
    Column("cropped", Integer, nullable=False, server_default="0"),
    Index(None, "sandbox_image_id"),
)

scans = Table(
    "scans",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("started", DateTime, nullable=False),
    Column("finished", DateTime, nullable=False),
    Column("added", Integer, nullable=False),
    Column("changed", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    # What the project held after this sync (the summary line of `catalog index`).
    Column("groups", Integer, nullable=False, server_default="0"),
    Column("winners", Integer, nullable=False, server_default="0"),
    Column("anomalies", Integer, nullable=False, server_default="0"),
    Column("orphans", Integer, nullable=False, server_default="0"),
)

# The recovered crop box of each cropped winner (catalog/crops.py); the
# `crops` view joins it with the images' paths and the original's size.
crop_boxes = Table(
    "crop_boxes",
    metadata,
    Column("final_image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), primary_key=True),
    Column("original_image_id", Integer, ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
    Column("x1", Integer),
    Column("y1", Integer),
    Column("x2", Integer),
    Column("y2", Integer),
    Column("status", String, nullable=False),
    Column("score", Float),
    Column("reason", String),
    # What the box was computed from: a pair is recomputed when either changes.
    Column("final_size_bytes", BigInteger, nullable=False),
    Column("final_mtime_ns", BigInteger, nullable=False),
    Column("original_size_bytes", BigInteger, nullable=False),
    Column("original_mtime_ns", BigInteger, nullable=False),
    Column("checked_at", DateTime, nullable=False),
    CheckConstraint("status IN ('exact', 'approx', 'review', 'none', 'failed')", name="status"),
    Index(None, "original_image_id"),
)

# Decisions a curator marked as not to be trusted on the review page.
review_marks = Table(
    "review_marks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("set_id", String, nullable=False),
    Column("mark", String, nullable=False, server_default="wrong"),
    Column("note", String),
    Column("marked_by", String),
    Column("marked_at", DateTime),
    Column("imported_at", DateTime, nullable=False),
    UniqueConstraint("project_id", "set_id"),
)
