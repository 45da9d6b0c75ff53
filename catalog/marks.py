"""Review marks: decisions a curator does not trust, from the review page into the catalogue.

Owns the file the review page downloads (`review-marks.json`), importing it
into the `review_marks` table, and `catalog marks list` / `clear`. A mark
names a decision by project and set id, which stay the same for as long as
the group does; `catalog export` leaves marked decisions out (the condition
is `MARKED` below, shared with catalog/export.py).

The file:

    {"format": "catalog-review-marks", "version": 1,
     "marks": [{"project": "aiko", "set_id": "group_20250725_233954", "mark": "wrong",
                "note": "no belly button", "marked_by": "eleni", "marked_at": "2025-08-01T09:12:44.120Z"}]}

`note`, `marked_by` and `marked_at` may be null or absent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import and_, bindparam, select
from sqlalchemy.engine import Connection, Engine

from . import dialects
from .bulk import executemany
from .errors import UsageError
from .schema import projects, review_marks
from .views import execute_for_projects

FILE_FORMAT = "catalog-review-marks"
FILE_VERSION = 1
FILE_NAME = "review-marks.json"
MARKS = ("wrong",)

# A decision `d` (joined with its project `p`) that a curator marked.
MARKED = "EXISTS (SELECT 1 FROM review_marks m WHERE m.project_id = p.id AND m.set_id = d.set_id)"


@dataclass(frozen=True)
class Mark:
    project: str
    set_id: str
    mark: str = "wrong"
    note: Optional[str] = None
    marked_by: Optional[str] = None
    marked_at: Optional[datetime] = None  # naive UTC, as every time in the catalogue


def _utc(value, where: str) -> Optional[datetime]:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where}: marked_at must be an ISO 8601 time, not {value!r}")
    try:
        when = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        raise UsageError(f"{where}: marked_at {value!r} is not an ISO 8601 time") from None
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when.replace(microsecond=0)


def _text(entry: dict, key: str, where: str) -> Optional[str]:
    value = entry.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key} must be text, not {value!r}")
    return value


def _required(entry: dict, key: str, where: str) -> str:
    value = _text(entry, key, where)
    if value is None:
        raise UsageError(f"{where}: {key} is missing")
    return value


def read_marks_file(path: str) -> list[Mark]:
    """The marks of a review-marks.json, checked; one clear line when the
    file is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; give the review-marks.json the review page downloaded") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder; give the review-marks.json file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not a readable marks file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise UsageError(f"{path} is not a {FILE_NAME} written by the review page (no \"format\": \"{FILE_FORMAT}\")")
    if data.get("version") != FILE_VERSION:
        raise UsageError(f"{path} has marks file version {data.get('version')!r}; this catalog reads version "
                         f"{FILE_VERSION} (upgrade catalog)")
    entries = data.get("marks")
    if not isinstance(entries, list):
        raise UsageError(f"{path}: \"marks\" must be a list")
    found: dict[tuple[str, str], Mark] = {}
    for k, entry in enumerate(entries):
        where = f"{path}: mark {k + 1}"
        if not isinstance(entry, dict):
            raise UsageError(f"{where} is not an object")
        mark = _text(entry, "mark", where) or "wrong"
        if mark not in MARKS:
            raise UsageError(f"{where}: unknown mark {mark!r}; marks are {', '.join(MARKS)}")
        project = _required(entry, "project", where)
        set_id = _required(entry, "set_id", where)
        found[(project, set_id)] = Mark(project, set_id, mark, note=_text(entry, "note", where),
                                        marked_by=_text(entry, "marked_by", where),
                                        marked_at=_utc(entry.get("marked_at"), where))
    return list(found.values())  # the same decision twice: the later entry wins


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    # marks naming a project the catalogue does not hold, or a set id that is
    # no group of it (re-indexed since the page was written, or another catalogue)
    unknown: list[Mark] = field(default_factory=list)


_VALUES = ("mark", "note", "marked_by", "marked_at")
_update = (review_marks.update().where(review_marks.c.id == bindparam("mark_id"))
           .values({c: bindparam(c) for c in (*_VALUES, "imported_at")}))


def import_marks(engine: Engine, marks: Sequence[Mark], *, by: Optional[str] = None) -> ImportResult:
    """Store marks in one transaction: new ones are added, changed ones
    updated (importing the same file twice changes nothing)."""
    from .index import utcnow

    result = ImportResult()
    names = sorted({m.project for m in marks})
    with engine.begin() as conn:
        ids = dict(conn.execute(select(projects.c.name, projects.c.id).where(projects.c.name.in_(names))).all()) \
            if names else {}
        groups = set(execute_for_projects(
            conn, 'SELECT project, set_id FROM "groups" WHERE project IN :names', {"names": list(ids)}
        ).all()) if ids else set()
        stored = {
            (row.project_id, row.set_id): row
            for row in conn.execute(select(review_marks).where(review_marks.c.project_id.in_(list(ids.values()))))
        } if ids else {}
        now = utcnow()
        inserts, updates = [], []
        for m in marks:
            if (m.project, m.set_id) not in groups:
                result.unknown.append(m)
                continue
            values = (m.mark, m.note, m.marked_by or by, m.marked_at)
            old = stored.get((ids[m.project], m.set_id))
            if old is None:
                inserts.append((ids[m.project], m.set_id, *values, now))
                result.added += 1
            elif (old.mark, old.note, old.marked_by, old.marked_at) != values:
                updates.append((old.id, *values, now))
                result.updated += 1
            else:
                result.unchanged += 1
        executemany(conn, review_marks.insert(), inserts, ("project_id", "set_id", *_VALUES, "imported_at"))
        executemany(conn, _update, updates, ("mark_id", *_VALUES, "imported_at"))
    return result


LIST_COLUMNS = ["project", "set_id", "mark", "status", "note", "marked_by", "marked_at", "imported_at"]

# status: what the mark does now. A decision (anomaly or not) is left out of
# exports; a group that is no decision has nothing to leave out; a set id
# that is no group any more (its images changed) marks nothing.
_LIST = """
SELECT p.name AS project, m.set_id, m.mark,
       CASE WHEN d.set_id IS NOT NULL THEN (CASE WHEN d.is_anomaly = 1 THEN 'anomaly' ELSE 'decision' END)
            WHEN g.set_id IS NOT NULL THEN 'not a decision'
            ELSE 'gone' END AS status,
       m.note, m.marked_by, m.marked_at, m.imported_at
FROM review_marks m
JOIN projects p ON p.id = m.project_id
LEFT JOIN "groups" g ON g.project = p.name AND g.set_id = m.set_id
LEFT JOIN decisions d ON d.group_id = g.group_id
{where}
ORDER BY p.name{byte_order}, m.set_id{byte_order}
"""


def list_marks(conn: Connection, names: Optional[Sequence[str]] = None) -> list[tuple]:
    """Every mark (of these projects), with what it does now (LIST_COLUMNS)."""
    where, params = ("WHERE p.name IN :names", {"names": list(names)}) if names else ("", {})
    sql = _LIST.format(where=where, byte_order=dialects.byte_order(conn))  # the same order on every backend
    return [tuple(r) for r in execute_for_projects(conn, sql, params)]


def clear_marks(engine: Engine, *, names: Optional[Sequence[str]] = None, set_ids: Sequence[str] = (),
                everything: bool = False) -> tuple[int, list[str]]:
    """Remove marks: those of `set_ids` (in `names`, or in any project), all
    marks of `names`, or with `everything` every mark. Returns how many went
    and the set ids that had no mark."""
    if not (set_ids or names or everything):
        raise UsageError("say which marks to clear: SET_ID..., --project NAME, or --all")
    if everything and (set_ids or names):
        raise UsageError("--all clears every mark; drop SET_ID and --project, or drop --all")
    conditions = []
    if names:
        conditions.append(review_marks.c.project_id.in_(select(projects.c.id).where(projects.c.name.in_(list(names)))))
    if set_ids:
        conditions.append(review_marks.c.set_id.in_(list(set_ids)))
    with engine.begin() as conn:
        where = and_(*conditions) if conditions else None
        query = select(review_marks.c.set_id)
        gone = [row[0] for row in conn.execute(query if where is None else query.where(where))]
        delete = review_marks.delete()
        conn.execute(delete if where is None else delete.where(where))
    return len(gone), sorted(set(set_ids) - set(gone))


def marks_by_decision(conn: Connection, names: Sequence[str]) -> dict[tuple[str, str], tuple]:
    """(project, set_id) -> (mark, note, marked_by) of the stored marks of
    these projects, for the review page to show."""
    if not names:
        return {}
    rows = conn.execute(
        select(projects.c.name, review_marks.c.set_id, review_marks.c.mark, review_marks.c.note,
               review_marks.c.marked_by)
        .join(projects, projects.c.id == review_marks.c.project_id)
        .where(projects.c.name.in_(list(names)))
    )
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}

