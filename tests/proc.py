"""Helpers for tests that need real `catalog` processes (crash and concurrency
tests), and for reading a catalogue back on either backend: a SQLite file
(a Path) or a PostgreSQL database (its URL)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
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


def is_url(target) -> bool:
    """A server database's URL (PostgreSQL), as opposed to a SQLite file path."""
    return isinstance(target, str) and "://" in target


def _plain(value):
    """A PostgreSQL value as SQLite hands it back: times as SQLAlchemy writes
    them into SQLite, whole numbers as int, truth as 0/1."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class Connection:
    """One connection to a catalogue on either backend (a SQLite file or a
    PostgreSQL URL) for reading rows back: `?` placeholders on both, and
    values as SQLite gives them."""

    def __init__(self, target):
        self.postgres = is_url(target)
        if self.postgres:
            import psycopg

            self.conn = psycopg.connect(target, autocommit=True)
        else:
            self.conn = sqlite3.connect(target)

    def execute(self, sql: str, params=()) -> list[tuple]:
        if not self.postgres:
            return self.conn.execute(sql, tuple(params)).fetchall()
        if params:
            sql = sql.replace("%", "%%").replace("?", "%s")
        cur = self.conn.execute(sql, tuple(params) or None)  # type: ignore[call-overload]
        found = cur.fetchall() if cur.description else []
        return [tuple(_plain(v) for v in row) for row in found]

    def table_exists(self, name: str) -> bool:
        if self.postgres:
            sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = 'public' AND table_name = ?"
        else:
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(self.execute(sql, (name,)))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rows(target, sql: str, *params) -> list[tuple]:
    """The rows of one statement on the catalogue `target` (file or URL)."""
    with Connection(target) as con:
        return con.execute(sql, params)


def exists(target) -> bool:
    """Whether `target` holds a catalogue at all: the file, or the schema in the database."""
    if not is_url(target):
        return Path(target).exists()
    with Connection(target) as con:
        return con.table_exists("alembic_version")


def views(db, project: str | None = None) -> dict[str, list]:
    """Sorted contents of every view (of one project, if given)."""
    with Connection(db) as con:
        out = {}
        for view, cols in VIEW_COLUMNS.items():
            where = " WHERE project = ?" if project else ""
            found = con.execute(f'SELECT {cols} FROM "{view}"{where}', (project,) if project else ())
            out[view] = sorted(found, key=repr)
        return out


def images_of(db) -> dict[str, list]:
    with Connection(db) as con:
        if not con.table_exists("images"):
            return {}  # killed before the schema was created: nothing there yet
        found = con.execute("""SELECT p.name, i.role, i.rel_path, i.timestamp, i.stage, i.width, i.height,
                                      i.size_bytes, i.mtime_ns
                               FROM images i JOIN projects p ON p.id = i.project_id""")
    out: dict[str, list] = {}
    for row in found:
        out.setdefault(row[0], []).append(row[1:])
    return {k: sorted(v) for k, v in out.items()}


# Every foreign key of the schema, as (table, column, referenced table):
# rows pointing nowhere are what a broken catalogue would hold.
FOREIGN_KEYS = [
    ("images", "project_id", "projects"), ("image_groups", "project_id", "projects"),
    ("group_members", "image_id", "images"), ("group_members", "group_id", "image_groups"),
    ("matches", "final_image_id", "images"), ("matches", "sandbox_image_id", "images"),
    ("scans", "project_id", "projects"),
]


def dangling(db) -> list[tuple]:
    """(table, column, count) of rows whose foreign key points at no row."""
    out = []
    with Connection(db) as con:
        for table, column, parent in FOREIGN_KEYS:
            n = con.execute(f"SELECT count(*) FROM {table} t WHERE t.{column} IS NOT NULL AND NOT EXISTS "
                            f"(SELECT 1 FROM {parent} x WHERE x.id = t.{column})")[0][0]
            if n:
                out.append((table, column, n))
    return out


def integrity(db) -> str:
    """"ok" for a sound catalogue. SQLite: PRAGMA integrity_check of the
    file. PostgreSQL keeps its own pages whole (a killed client cannot tear
    them); there, every table must read in full and no foreign key may
    point nowhere."""
    if not is_url(db):
        with Connection(db) as con:
            return con.execute("PRAGMA integrity_check")[0][0]
    with Connection(db) as con:
        for table in ("projects", "images", "image_groups", "group_members", "matches", "scans"):
            if con.table_exists(table):
                con.execute(f"SELECT * FROM {table}")
        if not con.table_exists("images"):
            return "ok"
    found = dangling(db)
    return "ok" if not found else f"dangling rows: {found}"


def projects_of(db) -> dict[str, tuple]:
    """name -> (sandbox_dir, final_dir, indexed_at, derived_version) of every project row."""
    with Connection(db) as con:
        if not con.table_exists("projects"):
            return {}
        found = con.execute("SELECT name, sandbox_dir, final_dir, indexed_at, derived_version FROM projects")
        return {row[0]: row[1:] for row in found}


def scans_of(db) -> dict[str, int]:
    """name -> number of `scans` rows, for every project that has any."""
    with Connection(db) as con:
        if not con.table_exists("scans"):
            return {}
        return dict(con.execute("""SELECT p.name, count(*) FROM scans s JOIN projects p ON p.id = s.project_id
                                   GROUP BY p.name"""))


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


def wait_until_writing(db, proc: subprocess.Popen) -> bool:
    """Wait for the event "`proc` is writing the catalogue" (True), or for
    `proc` to have ended (False): it holds a project's write lock now
    (SQLite: the file's write lock cannot be taken; PostgreSQL: a session
    holds a row lock on `projects`, README "PostgreSQL"), or it has already
    committed a project sync and is still running. A sync holds its lock
    only for its write, so the second half keeps the event from being missed
    between two writes. The short sleep only paces the poll."""
    import time

    while proc.poll() is None:
        if is_url(db):
            if rows(db, """SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                           JOIN pg_database d ON d.oid = l.database
                           WHERE d.datname = current_database() AND c.relname = 'projects'
                           AND l.mode = 'RowShareLock' AND l.granted AND l.pid <> pg_backend_pid()"""):
                return True
            if rows(db, "SELECT to_regclass('scans') IS NOT NULL")[0][0] and rows(db, "SELECT 1 FROM scans LIMIT 1"):
                return True
        elif Path(db).exists():
            con = sqlite3.connect(db, timeout=0)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.rollback()
                if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'scans'").fetchone() \
                        and con.execute("SELECT 1 FROM scans LIMIT 1").fetchone():
                    return True
            except sqlite3.OperationalError:  # locked: the writer is at work
                return True
            finally:
                con.close()
        time.sleep(0.005)
    return False
