"""Helpers for tests that need real `catalog` processes (crash and concurrency tests)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

CATALOG = [sys.executable, "-c", "import sys; from cli import app; sys.argv[0] = 'catalog'; app()"]

# Every view, with the id columns left out: ids are internal, contents are the promise.
VIEW_COLUMNS = {
    "groups": "project, set_id, dir, first_timestamp, last_timestamp, size, stages, max_stage, winner_count",
    "winners": "project, path, stage, final_path, match, cropped, final_copies",
    "losers": "project, path, stage, winner_stage",
    "decisions": "project, set_id, chosen_path, chosen_stage, max_stage, is_anomaly, timestamp",
    "anomalies": "project, set_id, chosen_path, chosen_stage, max_rejected_stage, rejected_higher, timestamp",
    "skipped_groups": "project, set_id, dir, size, stages",
    "orphans": "project, final_path, reason, sandbox_path",
}


def start(db: Path, *args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*CATALOG, "--db", str(db), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def catalog(db: Path, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CATALOG, "--db", str(db), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def views(db: Path, project: str | None = None) -> dict[str, list]:
    """Sorted contents of every view (of one project, if given)."""
    con = sqlite3.connect(db)
    try:
        out = {}
        for view, cols in VIEW_COLUMNS.items():
            where = " WHERE project = ?" if project else ""
            rows = con.execute(f"SELECT {cols} FROM {view}{where}", (project,) if project else ())
            out[view] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


def images_of(db: Path) -> dict[str, list]:
    con = sqlite3.connect(db)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'images'").fetchone():
            return {}  # killed before the schema was created: nothing there yet
        rows = con.execute("""SELECT p.name, i.role, i.rel_path, i.timestamp, i.stage, i.width, i.height,
                                     i.size_bytes, i.mtime_ns
                              FROM images i JOIN projects p ON p.id = i.project_id""").fetchall()
    finally:
        con.close()
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row[0], []).append(row[1:])
    return {k: sorted(v) for k, v in out.items()}


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
