"""Tables: projects, images, scans, and the derived image_groups, group_members, matches.

`image_groups.winner_count / chosen_image_id / chosen_stage` are kept by each
sync (see catalog/matching.py) so that decisions and anomalies are a scan of
one table, not an aggregate over every match, at a million images.

Revision ID: 0001_tables
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_tables"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("sandbox_dir", sa.String, nullable=False),
        sa.Column("final_dir", sa.String),
        sa.Column("indexed_at", sa.DateTime),
        sa.Column("derived_version", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("rel_path", sa.String, nullable=False),
        sa.Column("dir", sa.String, nullable=False),
        sa.Column("filename", sa.String, nullable=False),
        sa.Column("timestamp", sa.DateTime),
        sa.Column("stage", sa.Float),
        sa.Column("stage_label", sa.String),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE",
                                name="fk_images_project_id_projects"),
        sa.UniqueConstraint("project_id", "role", "rel_path", name="uq_images_project_id_role_rel_path"),
        sa.CheckConstraint("role IN ('sandbox', 'final')", name="ck_images_role"),
    )
    op.create_table(
        "image_groups",
        sa.Column("id", sa.Integer),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("set_id", sa.String, nullable=False),
        sa.Column("dir", sa.String, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("stages", sa.String, nullable=False),
        sa.Column("max_stage", sa.Float, nullable=False),
        sa.Column("first_timestamp", sa.DateTime, nullable=False),
        sa.Column("last_timestamp", sa.DateTime, nullable=False),
        sa.Column("winner_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("chosen_image_id", sa.Integer),
        sa.Column("chosen_stage", sa.Float),
        sa.PrimaryKeyConstraint("id", name="pk_image_groups"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE",
                                name="fk_image_groups_project_id_projects"),
        sa.UniqueConstraint("project_id", "set_id", name="uq_image_groups_project_id_set_id"),
    )
    op.create_index("ix_image_groups_project_id_winner_count", "image_groups", ["project_id", "winner_count"])
    op.create_table(
        "group_members",
        sa.Column("image_id", sa.Integer),
        sa.Column("group_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("image_id", name="pk_group_members"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE",
                                name="fk_group_members_image_id_images"),
        sa.ForeignKeyConstraint(["group_id"], ["image_groups.id"], ondelete="CASCADE",
                                name="fk_group_members_group_id_image_groups"),
    )
    op.create_index("ix_group_members_group_id", "group_members", ["group_id"])
    op.create_table(
        "matches",
        sa.Column("final_image_id", sa.Integer),
        sa.Column("sandbox_image_id", sa.Integer),
        sa.Column("match", sa.String),
        sa.Column("problem", sa.String),
        sa.Column("cropped", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("final_image_id", name="pk_matches"),
        sa.ForeignKeyConstraint(["final_image_id"], ["images.id"], ondelete="CASCADE",
                                name="fk_matches_final_image_id_images"),
        sa.ForeignKeyConstraint(["sandbox_image_id"], ["images.id"], ondelete="SET NULL",
                                name="fk_matches_sandbox_image_id_images"),
    )
    op.create_index("ix_matches_sandbox_image_id", "matches", ["sandbox_image_id"])
    op.create_table(
        "scans",
        sa.Column("id", sa.Integer),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("started", sa.DateTime, nullable=False),
        sa.Column("finished", sa.DateTime, nullable=False),
        sa.Column("added", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("removed", sa.Integer, nullable=False),
        sa.Column("unchanged", sa.Integer, nullable=False),
        sa.Column("groups", sa.Integer, nullable=False, server_default="0"),
        sa.Column("winners", sa.Integer, nullable=False, server_default="0"),
        sa.Column("anomalies", sa.Integer, nullable=False, server_default="0"),
        sa.Column("orphans", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_scans"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE",
                                name="fk_scans_project_id_projects"),
    )


def downgrade() -> None:
    for table in ("scans", "matches", "group_members", "image_groups", "images", "projects"):
        op.drop_table(table)
