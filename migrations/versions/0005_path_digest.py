"""Long paths on PostgreSQL: the images key holds the path's md5, and the
`winners` view picks a final copy in byte order.

A btree entry must fit in a third of a page (~2.7 KB), so a relative path
longer than that made the unique key (project_id, role, rel_path) refuse its
row and the whole project sync fail. The key becomes a unique index on
(project_id, role, md5(rel_path)): as unique in practice, whatever the path's
length, and it still serves lookups by (project_id, role). `winners` takes
MIN(final_path) in byte order ("C"), as SQLite does, so both backends name the
same copy whatever the database's collation.

SQLite has neither problem (keys of any length; MIN compares bytes), so
nothing changes there.

Revision ID: 0005_path_digest
Revises: 0004_review_marks
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_path_digest"
down_revision = "0004_review_marks"
branch_labels = None
depends_on = None

WINNERS = """
SELECT p.name AS project,
       gm.group_id,
       s.id AS image_id,
       s.rel_path AS path,
       s.stage,
       {final_path} AS final_path,
       MIN(m.match) AS match,
       MAX(m.cropped) AS cropped,
       COUNT(*) AS final_copies
FROM matches m
JOIN group_members gm ON gm.image_id = m.sandbox_image_id
JOIN images s ON s.id = m.sandbox_image_id
JOIN images f ON f.id = m.final_image_id
JOIN projects p ON p.id = s.project_id
WHERE m.problem IS NULL
GROUP BY p.name, gm.group_id, s.id, s.rel_path, s.stage
"""
# Compared in byte order, then given back the database's collation like every
# other text column of the views.
BYTE_ORDER_MIN = 'MIN(f.rel_path COLLATE "C") COLLATE "default"'


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _postgres():
        return
    op.drop_constraint("uq_images_project_id_role_rel_path", "images", type_="unique")
    op.create_index("uq_images_project_id_role_path_md5", "images",
                    ["project_id", "role", sa.text("md5(rel_path)")], unique=True)
    op.execute('DROP VIEW "winners"')
    op.execute('CREATE VIEW "winners" AS ' + WINNERS.format(final_path=BYTE_ORDER_MIN).strip())


def downgrade() -> None:
    if not _postgres():
        return
    op.execute('DROP VIEW "winners"')
    op.execute('CREATE VIEW "winners" AS ' + WINNERS.format(final_path="MIN(f.rel_path)").strip())
    op.drop_index("uq_images_project_id_role_path_md5", "images")
    op.create_unique_constraint("uq_images_project_id_role_rel_path", "images", ["project_id", "role", "rel_path"])
