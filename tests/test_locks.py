"""A sync holds its lock for the write only, never for the scan, and a sync
that finds its project changed since it planned plans again.

Each test stops a real `catalog index` at a named point with
CATALOG_CRASH_WITH=pause (it waits there for a line on its stdin), acts
while it is there, then lets it go on: no sleeps, on both backends.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

from conftest import Run
from pg import state, wait_for
from proc import CATALOG, views, with_env

pytest_plugins = ["conftest_pg"]


class Paused:
    """A `catalog` process stopped at a named point until `go()`."""

    def __init__(self, target: str, point: str, *args: str):
        env = with_env(CATALOG_CRASH_AT=point, CATALOG_CRASH_WITH="pause")
        self.proc = subprocess.Popen([*CATALOG, "--db", target, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stderr is not None
        # The event: the process says it is at the point (or it ended).
        line = self.proc.stderr.readline()
        assert line == f"catalog: crash point {point} reached\n", line + self.proc.stderr.read()

    def go(self) -> subprocess.CompletedProcess:
        out, err = self.proc.communicate("go\n", timeout=300)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def one_project(root: Path, name: str) -> list[str]:
    return ["index", "--project", name, "--sandbox", str(root / "sandbox" / name), "--final", str(root / name)]


def names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "sandbox").iterdir() if p.is_dir())


def change(root: Path, name: str) -> None:
    """Remove one image, rename another, add a third: groups and winners move."""
    pngs = sorted((root / "sandbox" / name).rglob("*.png"))
    pngs[0].unlink()
    pngs[3].rename(pngs[3].with_name("20310101_000000_stage2_renamed.png"))
    shutil.copyfile(pngs[5], pngs[5].with_name("20310101_000100_stage1_added.png"))


def test_sqlite_scan_holds_no_lock_and_a_stale_plan_is_made_again(sample, tmp_path):
    root, _ = sample
    db = tmp_path / "c.db"
    first = names(root)[0]
    assert Run(db)("index", root, "-q").exit_code == 0
    change(root, first)

    paused = Paused(str(db), "planned", *one_project(root, first))
    # Planned, scan done: the file's write lock is free (timeout 0: no wait).
    con = sqlite3.connect(db, timeout=0)
    con.execute("BEGIN IMMEDIATE")
    con.rollback()
    con.close()
    # Another sync of the same project commits meanwhile, after more changes.
    change(root, first)
    assert Run(db)(*one_project(root, first), "-q").exit_code == 0
    done = paused.go()
    assert done.returncode == 0, done.stderr

    fresh = tmp_path / "fresh.db"
    assert Run(fresh)("index", root, "-q").exit_code == 0
    assert views(db) == views(fresh)


def test_postgres_syncs_of_other_projects_go_on_while_one_is_writing(pg, sample):
    root, _ = sample
    first, second = names(root)[:2]
    db = pg.new_database()
    assert Run(db.owner)("db", "upgrade").exit_code == 0  # type: ignore[arg-type]

    # The first project's sync is at work, inside its write transaction,
    # holding its project's lock.
    writing = Paused(db.owner, "sync_started", *one_project(root, first))
    # Another project is indexed from start to end meanwhile.
    other = Run(db.owner)(*one_project(root, second), "-q")  # type: ignore[arg-type]
    assert other.exit_code == 0, other.output
    # A second sync of the first project waits for the lock ...
    same = subprocess.Popen([*CATALOG, "--db", db.owner, *one_project(root, first), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                                params=(db.name,))[0][0] == 1, "the second sync to wait for the project's lock")
    # ... and goes on once the first commits.
    assert writing.go().returncode == 0
    out, err = same.communicate(timeout=300)
    assert same.returncode == 0, err

    alone = pg.new_database()
    assert Run(alone.owner)(*one_project(root, first), "-q").exit_code == 0  # type: ignore[arg-type]
    assert Run(alone.owner)(*one_project(root, second), "-q").exit_code == 0  # type: ignore[arg-type]
    assert state(pg, db.name) == state(pg, alone.name) != {}


def test_postgres_stale_plan_is_made_again(pg, sample):
    root, _ = sample
    first = names(root)[0]
    db = pg.new_database()
    assert Run(db.owner)("index", root, "-q").exit_code == 0  # type: ignore[arg-type]
    change(root, first)
    paused = Paused(db.owner, "planned", *one_project(root, first))
    change(root, first)
    assert Run(db.owner)(*one_project(root, first), "-q").exit_code == 0  # type: ignore[arg-type]
    done = paused.go()
    assert done.returncode == 0, done.stderr

    fresh = pg.new_database()
    assert Run(fresh.owner)("index", root, "-q").exit_code == 0  # type: ignore[arg-type]
    assert state(pg, db.name) == state(pg, fresh.name)
