"""Views: groups, winners, losers, decisions, anomalies, skipped_groups, orphans.

The SQL is plain and portable (SQLite and PostgreSQL). Paths in the views are
relative to the project's sandbox or final folder (`projects.sandbox_dir`,
`projects.final_dir` give the base), so they survive a moved drive.

Revision ID: 0002_views
Revises: 0001_tables
"""
from alembic import op

revision = "0002_views"
down_revision = "0001_tables"
branch_labels = None
depends_on = None

# Order matters: each view may read the ones before it.
VIEWS = [
    ("groups", """
SELECT p.name AS project,
       g.id AS group_id,
       g.set_id,
       g.dir,
       g.first_timestamp,
       g.last_timestamp,
       g.size,
       g.stages,
       g.max_stage,
       COALESCE(w.winner_count, 0) AS winner_count
FROM image_groups g
JOIN projects p ON p.id = g.project_id
LEFT JOIN (
    SELECT gm.group_id, COUNT(DISTINCT m.sandbox_image_id) AS winner_count
    FROM matches m
    JOIN group_members gm ON gm.image_id = m.sandbox_image_id
    WHERE m.problem IS NULL
    GROUP BY gm.group_id
) w ON w.group_id = g.id
"""),
    # Several final copies of one sandbox image make one winner: aggregate them.
    ("winners", """
SELECT p.name AS project,
       gm.group_id,
       s.id AS image_id,
       s.rel_path AS path,
       s.stage,
       MIN(f.rel_path) AS final_path,
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
"""),
    ("decisions", """
SELECT g.project,
       g.group_id,
       g.set_id,
       w.image_id AS chosen_image_id,
       w.path AS chosen_path,
       w.stage AS chosen_stage,
       g.max_stage,
       CASE WHEN w.stage < g.max_stage THEN 1 ELSE 0 END AS is_anomaly,
       s.timestamp
FROM "groups" g
JOIN winners w ON w.group_id = g.group_id
JOIN images s ON s.id = w.image_id
WHERE g.winner_count = 1
"""),
    ("losers", """
SELECT d.project,
       d.group_id,
       i.id AS image_id,
       i.rel_path AS path,
       i.filename,
       i.stage,
       d.chosen_stage AS winner_stage
FROM decisions d
JOIN group_members gm ON gm.group_id = d.group_id
JOIN images i ON i.id = gm.image_id
WHERE i.id <> d.chosen_image_id
"""),
    ("anomalies", """
SELECT d.project,
       d.group_id,
       d.set_id,
       d.chosen_path,
       d.chosen_stage,
       MAX(i.stage) AS max_rejected_stage,
       SUM(CASE WHEN i.stage > d.chosen_stage THEN 1 ELSE 0 END) AS rejected_higher,
       d.timestamp
FROM decisions d
JOIN group_members gm ON gm.group_id = d.group_id
JOIN images i ON i.id = gm.image_id
WHERE d.is_anomaly = 1 AND i.id <> d.chosen_image_id
GROUP BY d.project, d.group_id, d.set_id, d.chosen_path, d.chosen_stage, d.timestamp
"""),
    ("skipped_groups", """
SELECT project, group_id, set_id, dir, first_timestamp, last_timestamp, size, stages, max_stage
FROM "groups"
WHERE winner_count = 0
"""),
    # A final image is an orphan when it matched nothing, matched ambiguously,
    # or matched a sandbox image that belongs to no group.
    ("orphans", """
SELECT p.name AS project,
       f.id AS final_image_id,
       f.rel_path AS final_path,
       COALESCE(m.problem, 'ungrouped') AS reason,
       s.rel_path AS sandbox_path
FROM matches m
JOIN images f ON f.id = m.final_image_id
JOIN projects p ON p.id = f.project_id
LEFT JOIN images s ON s.id = m.sandbox_image_id
WHERE m.problem IS NOT NULL
   OR NOT EXISTS (SELECT 1 FROM group_members gm WHERE gm.image_id = m.sandbox_image_id)
"""),
]


def upgrade() -> None:
    for name, sql in VIEWS:
        op.execute(f'CREATE VIEW "{name}" AS {sql.strip()}')


def downgrade() -> None:
    for name, _ in reversed(VIEWS):
        op.execute(f'DROP VIEW "{name}"')
