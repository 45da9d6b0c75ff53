"""Views: groups, winners, losers, decisions, anomalies, skipped_groups, orphans.

The SQL is plain and portable (SQLite and PostgreSQL). Group membership comes
from the selector rule and winner matches from the matching rules (both kept
by each sync); who won, who lost and which decisions are anomalies is derived
here. Paths in the views are
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
       g.winner_count
FROM image_groups g
JOIN projects p ON p.id = g.project_id
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
SELECT p.name AS project,
       g.id AS group_id,
       g.set_id,
       g.chosen_image_id,
       s.rel_path AS chosen_path,
       g.chosen_stage,
       g.max_stage,
       CASE WHEN g.chosen_stage < g.max_stage THEN 1 ELSE 0 END AS is_anomaly,
       s.timestamp
FROM image_groups g
JOIN projects p ON p.id = g.project_id
JOIN images s ON s.id = g.chosen_image_id
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
    # The chosen stage is below the group's highest, so the highest is rejected.
    ("anomalies", """
SELECT p.name AS project,
       g.id AS group_id,
       g.set_id,
       s.rel_path AS chosen_path,
       g.chosen_stage,
       g.max_stage AS max_rejected_stage,
       (SELECT COUNT(*) FROM group_members gm JOIN images i ON i.id = gm.image_id
        WHERE gm.group_id = g.id AND i.stage > g.chosen_stage) AS rejected_higher,
       s.timestamp
FROM image_groups g
JOIN projects p ON p.id = g.project_id
JOIN images s ON s.id = g.chosen_image_id
WHERE g.winner_count = 1 AND g.chosen_stage < g.max_stage
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
