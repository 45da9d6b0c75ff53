"""Crops: the recovered crop box of each cropped winner (table `crop_boxes`),
and the `crops` view over it (a table and a view cannot share a name).

One row per final image whose crop box was looked for in a sandbox original
(catalog/crops.py). The (size, mtime) of both files are kept so that a re-run
recomputes only pairs whose files changed.

Revision ID: 0003_crops
Revises: 0002_views
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_crops"
down_revision = "0002_views"
branch_labels = None
depends_on = None

CROPS_VIEW = """
SELECT p.name AS project,
       f.rel_path AS final_path,
       s.rel_path AS sandbox_path,
       c.x1, c.y1, c.x2, c.y2,
       s.width, s.height,
       c.status,
       c.score
FROM crop_boxes c
JOIN images f ON f.id = c.final_image_id
JOIN images s ON s.id = c.original_image_id
JOIN projects p ON p.id = f.project_id
"""


def upgrade() -> None:
    op.create_table(
        "crop_boxes",
        sa.Column("final_image_id", sa.Integer),
        sa.Column("original_image_id", sa.Integer, nullable=False),
        sa.Column("x1", sa.Integer),
        sa.Column("y1", sa.Integer),
        sa.Column("x2", sa.Integer),
        sa.Column("y2", sa.Integer),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("reason", sa.String),
        sa.Column("final_size_bytes", sa.BigInteger, nullable=False),
        sa.Column("final_mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("original_size_bytes", sa.BigInteger, nullable=False),
        sa.Column("original_mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("checked_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("final_image_id", name="pk_crop_boxes"),
        sa.ForeignKeyConstraint(["final_image_id"], ["images.id"], ondelete="CASCADE",
                                name="fk_crop_boxes_final_image_id_images"),
        sa.ForeignKeyConstraint(["original_image_id"], ["images.id"], ondelete="CASCADE",
                                name="fk_crop_boxes_original_image_id_images"),
        sa.CheckConstraint("status IN ('exact', 'approx', 'review', 'none', 'failed')", name="ck_crop_boxes_status"),
    )
    op.create_index("ix_crop_boxes_original_image_id", "crop_boxes", ["original_image_id"])
    op.execute(f'CREATE VIEW "crops" AS {CROPS_VIEW.strip()}')


def downgrade() -> None:
    op.execute('DROP VIEW "crops"')
    op.drop_index("ix_crop_boxes_original_image_id", "crop_boxes")
    op.drop_table("crop_boxes")
