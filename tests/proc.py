"""Helpers for tests that need real `catalog` processes (crash and concurrency tests)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

CATALOG = [sys.executable, "-m", "catalog"]

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


def catalog(db: Path, *args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CATALOG, "--db", str(db), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def with_env(**variables: str) -> dict[str, str]:
    """This process's environment plus `variables`, for a child's env=."""
    env = dict(os.environ)
    env.update(variables)
    return env


def crash_env(point: str, nth: int = 1, how: str = "kill") -> dict[str, str]:
    """Environment that stops a `catalog` child the nth time it reaches the
    named crash point (catalog/faults.py), by SIGKILL or as Ctrl-C."""
    return with_env(CATALOG_CRASH_AT=f"{point}:{nth}", CATALOG_CRASH_WITH=how)


def crash_lines(stderr: str) -> list[str]:
    """The crash-point lines a child wrote: proof of where it stopped."""
    return [line for line in stderr.splitlines() if line.startswith("catalog: crash point ")]


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


def _table_exists(con: sqlite3.Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def projects_of(db: Path) -> dict[str, tuple]:
    """name -> (sandbox_dir, final_dir, indexed_at, derived_version) of every project row."""
    con = sqlite3.connect(db)
    try:
        if not _table_exists(con, "projects"):
            return {}
        rows = con.execute("SELECT name, sandbox_dir, final_dir, indexed_at, derived_version FROM projects")
        return {row[0]: row[1:] for row in rows}
    finally:
        con.close()


def scans_of(db: Path) -> dict[str, int]:
    """name -> number of `scans` rows, for every project that has any."""
    con = sqlite3.connect(db)
    try:
        if not _table_exists(con, "scans"):
            return {}
        rows = con.execute("""SELECT p.name, count(*) FROM scans s JOIN projects p ON p.id = s.project_id
                              GROUP BY p.name""")
        return dict(rows.fetchall())
    finally:
        con.close()


def mutate(workspace: Path) -> None:
    """Remove, change and add a few images in every project of the sample
    (the changed tree of the crash and PostgreSQL tests)."""
    for project in ("aiko", "tattersail", "mojo-1"):
        pngs = sorted((workspace / "sandbox" / project).rglob("2025*.png"))
        for path in pngs[5:200:20]:
            path.unlink()
        for path in pngs[7:200:20]:
            with open(path, "ab") as f:
                f.write(b"\0")
        for i, path in enumerate(pngs[9:200:20]):
            shutil.copyfile(path, path.parent / f"20310101_0000{i:02d}_stage1_generated.png")


def wait_until_writing(db: Path, proc: subprocess.Popen) -> bool:
    """Wait for the event "`proc` holds the catalogue's write lock" (True),
    or for `proc` to have ended (False). The short sleep only paces the poll."""
    import time

    while proc.poll() is None:
        if db.exists():
            con = sqlite3.connect(db, timeout=0)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.rollback()
            except sqlite3.OperationalError:  # locked: the writer is at work
                return True
            finally:
                con.close()
        time.sleep(0.005)
    return False
