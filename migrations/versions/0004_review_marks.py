"""Review marks: decisions a curator does not trust, imported from the review page.

A mark names a decision by project and set id (stable across re-indexing);
`catalog export` leaves marked decisions out unless asked to keep them.

Revision ID: 0004_review_marks
Revises: 0003_crops
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_review_marks"
down_revision = "0003_crops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_marks",
        sa.Column("id", sa.Integer),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("set_id", sa.String, nullable=False),
        sa.Column("mark", sa.String, nullable=False, server_default="wrong"),
        sa.Column("note", sa.String),
        sa.Column("marked_by", sa.String),
        sa.Column("marked_at", sa.DateTime),
        sa.Column("imported_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_review_marks"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE",
                                name="fk_review_marks_project_id_projects"),
        sa.UniqueConstraint("project_id", "set_id", name="uq_review_marks_project_id_set_id"),
    )


def downgrade() -> None:
    op.drop_table("review_marks")
