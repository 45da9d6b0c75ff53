"""Read the views: per-project counts, `catalog stats` and `catalog check`.

Owns the questions the tool itself asks of the derived views (the views are
defined in migrations/versions/0002_views.py). Everything here is plain SQL
that runs on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from . import dialects

STATS_COLUMNS = [
    "project", "sandbox_images", "final_images", "unparsed_names", "groups", "decisions",
    "skipped", "kept_twice", "orphans", "anomalies", "anomaly_rate", "last_indexed",
    # `catalog crops`: cropped winners by what their box search found
    "crops_exact", "crops_approx", "crops_review", "crops_none", "crops_failed",
]
CROP_STATUSES = ("exact", "approx", "review", "none", "failed")
# Summed into the TOTAL row; the rate is recomputed and the time is the latest.
_COUNTED = [c for c in STATS_COLUMNS[1:] if c not in ("anomaly_rate", "last_indexed")]

# Each view is aggregated once and joined by project, rather than asked once
# per project: the cost stays one pass over each view however many projects.
# With a project filter, each aggregate is filtered too, so the counts of one
# project (read after every sync) cost what that project holds.
_STATS = """
SELECT p.name AS project,
       COALESCE(i.sandbox_images, 0), COALESCE(i.final_images, 0), COALESCE(i.unparsed_names, 0),
       COALESCE(g.groups_n, 0), COALESCE(d.decisions_n, 0), COALESCE(g.skipped_n, 0),
       COALESCE(g.kept_twice_n, 0), COALESCE(o.orphans_n, 0), COALESCE(d.anomalies_n, 0),
       p.indexed_at,
       {crop_counts},
       COALESCE(g.winners_n, 0)
FROM projects p
LEFT JOIN (
    SELECT project_id,
           SUM(CASE WHEN role = 'sandbox' THEN 1 ELSE 0 END) AS sandbox_images,
           SUM(CASE WHEN role = 'final' THEN 1 ELSE 0 END) AS final_images,
           SUM(CASE WHEN timestamp IS NULL OR stage IS NULL THEN 1 ELSE 0 END) AS unparsed_names
    FROM images {images_where} GROUP BY project_id
) i ON i.project_id = p.id
LEFT JOIN (
    SELECT project, COUNT(*) AS groups_n,
           SUM(CASE WHEN winner_count = 0 THEN 1 ELSE 0 END) AS skipped_n,
           SUM(CASE WHEN winner_count > 1 THEN 1 ELSE 0 END) AS kept_twice_n,
           SUM(winner_count) AS winners_n
    FROM "groups" {where} GROUP BY project
) g ON g.project = p.name
LEFT JOIN (
    SELECT project, COUNT(*) AS decisions_n, SUM(is_anomaly) AS anomalies_n
    FROM decisions {where} GROUP BY project
) d ON d.project = p.name
LEFT JOIN (SELECT project, COUNT(*) AS orphans_n FROM orphans {where} GROUP BY project) o ON o.project = p.name
LEFT JOIN (
    SELECT f.project_id, {crop_sums}
    FROM crop_boxes c JOIN images f ON f.id = c.final_image_id {crops_where} GROUP BY f.project_id
) c ON c.project_id = p.id
{projects_where}
ORDER BY p.name{byte_order}
"""


def _project_filter(names: Optional[Sequence[str]], column: str) -> tuple[str, dict]:
    if not names:
        return "", {}
    return f"WHERE {column} IN :names", {"names": list(names)}


def execute_for_projects(conn: Connection, sql: str, params: dict):
    """Run `sql`; a `names` parameter (from `project IN :names`) is expanded
    to the list of project names."""
    stmt = text(sql)
    if "names" in params:
        stmt = stmt.bindparams(bindparam("names", expanding=True))
    return conn.execute(stmt, params)


def _when(value) -> Optional[str]:
    """UTC time to the second; SQLite hands back text, PostgreSQL a datetime."""
    if value is None:
        return None
    return str(value)[:19].replace(" ", "T") + "Z"


def _rate(row: dict) -> float:
    return round(row["anomalies"] / row["decisions"], 4) if row["decisions"] else 0.0


def _stats_rows(conn: Connection, names: Optional[Sequence[str]]) -> list[dict]:
    where, params = _project_filter(names, "project")
    sql = _STATS.format(
        where=where,
        projects_where=_project_filter(names, "p.name")[0],
        images_where=("WHERE project_id IN (SELECT id FROM projects WHERE name IN :names)" if names else ""),
        crops_where=("WHERE f.project_id IN (SELECT id FROM projects WHERE name IN :names)" if names else ""),
        crop_counts=", ".join(f"COALESCE(c.crops_{s}, 0)" for s in CROP_STATUSES),
        crop_sums=", ".join(f"SUM(CASE WHEN c.status = '{s}' THEN 1 ELSE 0 END) AS crops_{s}" for s in CROP_STATUSES),
        byte_order=dialects.byte_order(conn),  # the same order whatever the database's collation
    )
    selected = [c for c in STATS_COLUMNS if c != "anomaly_rate"] + ["winners"]
    return [dict(zip(selected, r)) for r in execute_for_projects(conn, sql, params)]


def project_counts(conn: Connection, name: str) -> dict:
    """What one project holds, as `catalog stats` counts it (plus `winners`,
    the picked sandbox images in groups): the summary of `catalog index`
    reads these, so the two can never disagree."""
    rows = _stats_rows(conn, [name])
    return rows[0]


def stats(conn: Connection, names: Optional[Sequence[str]] = None) -> list[dict]:
    """One row per project, then a TOTAL row."""
    counted = _COUNTED
    out = []
    total: dict = dict.fromkeys(counted, 0)
    last = None
    for row in _stats_rows(conn, names):
        row["anomaly_rate"] = _rate(row)
        for c in counted:
            total[c] += row[c]
        if row["last_indexed"] is not None and (last is None or row["last_indexed"] > last):
            last = row["last_indexed"]
        row["last_indexed"] = _when(row["last_indexed"])
        out.append({c: row[c] for c in STATS_COLUMNS})
    total.update(project="TOTAL", last_indexed=_when(last))
    total["anomaly_rate"] = _rate(total)
    out.append({c: total[c] for c in STATS_COLUMNS})
    return out


CHECK_COLUMNS = ["project", "problem", "detail", "path"]

_CHECKS = """
SELECT project, 'orphan' AS problem, reason AS detail, final_path AS path FROM orphans {w}
UNION ALL
SELECT project, 'kept_twice', CAST(winner_count AS VARCHAR(10)) || ' winners in ' || set_id, dir
FROM "groups" WHERE winner_count > 1 {a}
UNION ALL
SELECT p.name, 'unparsed_name', i.role, i.rel_path
FROM images i JOIN projects p ON p.id = i.project_id
WHERE (i.timestamp IS NULL OR i.stage IS NULL) {ap}
UNION ALL
SELECT p.name, 'unreadable_header', i.role, i.rel_path
FROM images i JOIN projects p ON p.id = i.project_id
WHERE i.width IS NULL {ap}
UNION ALL
SELECT p.name, 'crop_' || c.status, COALESCE(c.reason, c.status), f.rel_path
FROM crop_boxes c JOIN images f ON f.id = c.final_image_id JOIN projects p ON p.id = f.project_id
WHERE c.status IN ('review', 'none', 'failed') {ap}
ORDER BY 1, 2, 4
"""


def _missing_folders(conn: Connection, names: Optional[Sequence[str]]) -> list[dict]:
    """Projects whose folders are gone: a question for the disk, not SQL."""
    from .projects import stored_projects

    out = []
    for p in stored_projects(conn):
        if names and p.name not in names:
            continue
        if not os.path.isdir(p.sandbox_dir):
            out.append({"project": p.name, "problem": "sandbox_missing",
                        "detail": "left out of exports; catalog forget removes it", "path": p.sandbox_dir})
        if p.final_dir is not None and not os.path.isdir(p.final_dir):
            out.append({"project": p.name, "problem": "final_missing",
                        "detail": "winners kept from the last index", "path": p.final_dir})
    return out


def check(conn: Connection, names: Optional[Sequence[str]] = None) -> tuple[list[dict], dict[str, int]]:
    """Data-quality problems to look at (crop boxes that `catalog crops` could
    not prove among them: review, none, failed), and the cropped-winner count
    per project."""
    params: dict = {}
    w = a = ap = ""
    if names:
        params = {"names": list(names)}
        w, a, ap = "WHERE project IN :names", "AND project IN :names", "AND p.name IN :names"
    problems = [
        dict(zip(CHECK_COLUMNS, r))
        for r in execute_for_projects(conn, _CHECKS.format(w=w, a=a, ap=ap), params)
    ]
    problems.extend(_missing_folders(conn, names))
    # Code point order (not the database's collation), every column: ties never left to chance.
    problems.sort(key=lambda p: (p["project"], p["problem"], p["path"] or "", p["detail"] or ""))
    where, params = _project_filter(names, "project")
    cropped = {
        project: n
        for project, n in execute_for_projects(
            conn, f"SELECT project, SUM(cropped) FROM winners {where} GROUP BY project "
                  f"ORDER BY project{dialects.byte_order(conn)}", params
        )
    }
    return problems, cropped


# One line per view, for `catalog views`; the SQL itself lives in the migrations.
VIEW_DESCRIPTIONS = {
    "groups": "one row per group: the selector's rising-stage run, its stages and how many winners it has",
    "winners": "one row per picked sandbox image of a group, with the final copy it was matched to",
    "losers": "one row per image of a group with one winner that was not picked",
    "decisions": "one row per group with exactly one winner; is_anomaly = 1 when a lower stage won",
    "anomalies": "decisions won by a lower stage; rejected_higher = how many group images had a higher stage",
    "skipped_groups": "groups with no winner (nothing picked from them)",
    "orphans": "final images that are no winner: no_match, ambiguous, or ungrouped (their sandbox image is in no group)",
    "crops": "one row per cropped winner looked for in its original: the box in pixels, the original's size, "
             "status (exact, approx, review, none, failed) and score (catalog crops)",
}


def describe_views(conn: Connection) -> list[tuple[str, str, str]]:
    """(view, description, columns) for every view, in the order they build on each other."""
    out = []
    for name, description in VIEW_DESCRIPTIONS.items():
        result = conn.execute(text(f'SELECT * FROM "{name}" WHERE 1 = 0'))
        out.append((name, description, ", ".join(result.keys())))
        result.close()
    return out


def view_sql(conn: Connection, name: str) -> str:
    """The SQL of one view, as the database holds it."""
    from sqlalchemy import inspect

    if name not in VIEW_DESCRIPTIONS:
        from .errors import UsageError

        raise UsageError(f"no view named {name!r}; views: {', '.join(VIEW_DESCRIPTIONS)}")
    return inspect(conn).get_view_definition(name).strip()
