"""Crash safety: `catalog index` stopped by SIGKILL or Ctrl-C at every named
point of a project sync leaves each project as it was before the run or fully
synced, and the next run ends exactly where an uninterrupted one does.
`catalog export` killed between writing its temporary file and the rename
leaves the previous file byte for byte.

Every case runs on SQLite and on PostgreSQL (a catalogue database with an
ICU en-US collation; copies of it are made by the server from a template).

The processes stop themselves at a named crash point (CATALOG_CRASH_AT, see
catalog/faults.py) and say so on stderr, so every case hits the phase it
names on any machine, however loaded: no sleeps, no timing, no polling.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BACKENDS
from proc import (
    VIEW_COLUMNS,
    catalog,
    crash_env,
    crash_lines,
    images_of,
    integrity,
    mutate,
    projects_of,
    scans_of,
    views,
    with_env,
)

from catalog.sample import write_sample

# The points a project sync passes, in order; all but the last are inside its transaction.
IN_TRANSACTION = ("sync_started", "images_written", "groups_written", "matches_written", "before_commit")
SYNC_POINTS = (*IN_TRANSACTION, "committed")
ALL_POINTS = (*SYNC_POINTS, "export_written")


def on_one_worker(backend: str):
    """With pytest-xdist (make test), every test of one backend's world runs
    in one worker: `index_kills` runs them all there, ahead, on every core."""
    return pytest.mark.xdist_group(f"crash-{backend}")


def index_cases() -> list:
    """SQLite: every sync point in the 1st and the 2nd project of a fresh and
    of an incremental index, and a few in the 3rd (the last): 2 * 6 * 2 + 3
    = 27 kills. PostgreSQL, whose rollback of a dropped connection does not
    depend on where the project is: every point once in a fresh index (1st
    project) and once in an incremental one (2nd), and two in the 3rd: 14."""
    third = {("fresh", "committed"), ("incremental", "images_written"), ("incremental", "before_commit")}
    on_postgres = ({("fresh", point, 1) for point in SYNC_POINTS} | {("incremental", point, 2) for point in SYNC_POINTS}
                   | {("fresh", "committed", 3), ("incremental", "before_commit", 3)})
    cases = []
    for backend in BACKENDS:
        for kind in ("fresh", "incremental"):
            for point in SYNC_POINTS:
                for nth in (1, 2, 3) if (kind, point) in third else (1, 2):
                    if backend == "sqlite" or (kind, point, nth) in on_postgres:
                        cases.append(pytest.param(backend, kind, point, nth, id=f"{backend}-{kind}-{point}:{nth}",
                                                  marks=on_one_worker(backend)))
    return cases


INDEX_CASES = index_cases()
assert len(INDEX_CASES) >= 24 + 12  # kills of `catalog index`, one per case


@dataclass(frozen=True)
class Catalogue:
    """What a catalogue holds, project by project; an absent project has no
    images (None), empty views, no project row (None) and no scans (0)."""

    images: dict
    views: dict
    projects: dict
    scans: dict

    @classmethod
    def of(cls, db: Path, names: list[str]) -> Catalogue:
        return cls(images_of(db), {name: views(db, name) for name in names}, projects_of(db), scans_of(db))

    def project(self, name: str, *, with_time: bool = True) -> dict:
        row = self.projects.get(name)
        if row is not None and not with_time:
            row = row[:2] + row[3:]  # indexed_at is the time of the sync that wrote it
        return {
            "images": self.images.get(name),
            "views": self.views.get(name, {view: [] for view in VIEW_COLUMNS}),
            "project row": row,
            "scans": self.scans.get(name, 0),
        }


@dataclass(frozen=True)
class Kind:
    target: Path  # what the run indexes
    start: Path | str  # the catalogue it starts from (a file, or a database's URL)
    before: Catalogue  # ... and what that holds
    after: Catalogue  # what an uninterrupted run leaves
    after_views: dict  # every view after an uninterrupted run


# Groups of the sample each backend's cases index. The points are named, so
# where a run stops does not depend on the size; PostgreSQL's syncs cost
# more on this suite's busy machines, and its cases get a smaller tree.
GROUPS = {"sqlite": 900, "postgresql": 300}


def trees(base: Path, groups: int) -> tuple[Path, Path]:
    """The sample, and a copy changed in every project."""
    ws = base / "ws"
    write_sample(ws, groups=groups, seed=11)
    ws2 = base / "ws2"
    shutil.copytree(ws, ws2)
    mutate(ws2)
    return ws, ws2


class Copier:
    """New catalogues holding what a given one holds: file copies on SQLite,
    databases made from a template on PostgreSQL."""

    def __init__(self, pg=None):
        self.pg = pg

    def new(self, folder: Path, name: str):
        if self.pg is None:
            return folder / f"{name}.db"
        return self.pg.new_database(icu=True).owner

    def copy(self, source, folder: Path):
        if self.pg is None:
            db = folder / "c.db"
            shutil.copyfile(source, db)
            return db
        return self.pg.copy_database(source.rsplit("/", 1)[1]).owner


# Every test takes the backend as a plain parameter and its world from one
# module-scoped fixture per backend: built once each, whatever the order.
ON_BOTH = [pytest.param(b, marks=on_one_worker(b)) for b in BACKENDS]


@pytest.fixture
def world(request, backend_name):
    return request.getfixturevalue(f"world_{backend_name}")


@pytest.fixture(scope="module")
def world_sqlite(request, tmp_path_factory):
    yield from make_world(request, tmp_path_factory, "sqlite")


@pytest.fixture(scope="module")
def world_postgresql(request, tmp_path_factory):
    yield from make_world(request, tmp_path_factory, "postgresql")


def make_world(request, tmp_path_factory, backend_name: str):
    base = tmp_path_factory.mktemp(f"crash-{backend_name}")
    ws, ws2 = trees(base, GROUPS[backend_name])
    copier = Copier(request.getfixturevalue("pg") if backend_name == "postgresql" else None)
    before = copier.new(base, "before")
    result = catalog(before, "index", ws)
    assert result.returncode == 0, result.stderr
    after = copier.copy(before, base)
    result = catalog(after, "index", ws2)
    assert result.returncode == 0, result.stderr
    # A fresh index starts from a catalogue with the schema and no project:
    # the schema is made before any project sync, and copying it is cheaper.
    empty = copier.new(base, "empty")
    result = catalog(empty, "db", "upgrade")
    assert result.returncode == 0, result.stderr

    # Projects are synced one by one in the order the workspace lists them: by name.
    order = sorted(d.name for d in (ws / "sandbox").iterdir() if d.is_dir())
    cat_empty, cat_before, cat_after = (Catalogue.of(db, order) for db in (empty, before, after))
    assert cat_empty.projects == {}
    if copier.pg is None:
        for db in (empty, before, after):  # each file is whole: copying it copies the catalogue
            assert not Path(f"{db}-wal").exists(), db
    assert sorted(cat_before.images) == sorted(order)
    for name in order:  # every project changes, so every sync passes every point
        assert cat_before.images[name] != cat_after.images[name], name
    yield {
        "backend": backend_name,
        "copier": copier,
        "order": order,
        "before": before,
        "after": after,
        "fresh": Kind(ws, empty, cat_empty, cat_before, views(before)),
        "incremental": Kind(ws2, before, cat_before, cat_after, views(after)),
    }
    # The server's databases go with the server's folder at the session's end.


def start_db(world: dict, kind: Kind, tmp_path: Path):
    return world["copier"].copy(kind.start, tmp_path)


def assert_stopped_at(result, point: str, nth: int, returncode: int) -> list[str]:
    """The run ended with `returncode`, having said it reached `point` (once)."""
    assert result.returncode == returncode, (result.returncode, result.stderr)
    line = f"catalog: crash point {point} reached"
    assert crash_lines(result.stderr) == [line], f"{point}:{nth}: {result.stderr}"
    lines = result.stderr.splitlines()
    return lines[lines.index(line) + 1:]  # what the process wrote after the point


def assert_each_project(got: Catalogue, world: dict, kind: Kind, stopped_in: int, synced_too: bool) -> None:
    """Projects before the `stopped_in`-th (counting from 1) are synced, later
    ones as before the run; the `stopped_in`-th is synced if `synced_too`."""
    for i, name in enumerate(world["order"], start=1):
        if i < stopped_in or (i == stopped_in and synced_too):
            assert got.project(name, with_time=False) == kind.after.project(name, with_time=False), \
                f"{name} (project {i}) not fully synced"
        else:
            assert got.project(name) == kind.before.project(name), f"{name} (project {i}) changed"


@dataclass(frozen=True)
class KillOutcome:
    killed: subprocess.CompletedProcess  # the run told to die at the point
    integrity: str  # ... and what it left
    left: Catalogue
    rerun: subprocess.CompletedProcess  # the next, normal run
    rerun_integrity: str  # ... and what that left
    rerun_images: dict
    rerun_views: dict


def kill_and_rerun(world: dict, kind_name: str, point: str, nth: int, folder: Path) -> KillOutcome:
    kind = world[kind_name]
    folder.mkdir()
    db = start_db(world, kind, folder)
    killed = catalog(db, "index", kind.target, env=crash_env(point, nth, "kill"))
    ok, left = integrity(db), Catalogue.of(db, world["order"])
    rerun = catalog(db, "index", kind.target)
    return KillOutcome(killed, ok, left, rerun, integrity(db), images_of(db), views(db))


@pytest.fixture(scope="module")
def index_kills(request, tmp_path_factory):
    """The selected cases of test_sigkill_during_index of a backend, run
    ahead on every core when its first case runs. Each process stops itself
    at its named point, so running them side by side (or on a loaded
    machine) cannot change where they stop; it only makes the module
    quicker. Each test then checks its own outcome."""
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    submitted: dict[str, dict] = {}

    def outcome(world: dict, kind_name: str, point: str, nth: int) -> KillOutcome:
        backend_name = world["backend"]
        if backend_name not in submitted:
            base = tmp_path_factory.mktemp(f"kills-{backend_name}")
            cases = [item.callspec.params for item in request.session.items
                     if getattr(item, "originalname", None) == "test_sigkill_during_index"
                     and item.callspec.params["backend_name"] == backend_name]
            submitted[backend_name] = {
                (c["kind_name"], c["point"], c["nth"]): pool.submit(
                    kill_and_rerun, world, c["kind_name"], c["point"], c["nth"],
                    base / f"{c['kind_name']}-{c['point']}-{c['nth']}")
                for c in cases
            }
        return submitted[backend_name][kind_name, point, nth].result()

    try:
        yield outcome
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend_name, kind_name, point, nth", INDEX_CASES)
def test_sigkill_during_index(world, index_kills, kind_name, point, nth):
    """A kill at a point inside a project's transaction leaves that project as
    it was (absent, for a fresh index); at `committed`, fully synced. The next
    run ends where an uninterrupted run does."""
    kind = world[kind_name]
    outcome = index_kills(world, kind_name, point, nth)
    assert assert_stopped_at(outcome.killed, point, nth, -signal.SIGKILL) == []  # killed right there
    assert outcome.integrity == "ok"
    assert_each_project(outcome.left, world, kind, nth, synced_too=point == "committed")

    assert outcome.rerun.returncode == 0, outcome.rerun.stderr
    assert outcome.rerun_integrity == "ok"
    assert outcome.rerun_images == kind.after.images
    assert outcome.rerun_views == kind.after_views


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", ON_BOTH)
@pytest.mark.parametrize("point, nth", [("sync_started", 1), ("images_written", 2), ("groups_written", 2),
                                        ("matches_written", 2), ("before_commit", 3), ("committed", 2)])
def test_ctrl_c_leaves_the_project_as_it_was(world, tmp_path, point, nth):
    """Ctrl-C (KeyboardInterrupt at the point) inside a project's transaction
    rolls that project back; the CLI says so in one line, without a traceback."""
    kind = world["incremental"]
    db = start_db(world, kind, tmp_path)
    result = catalog(db, "index", kind.target, env=crash_env(point, nth, "interrupt"))
    rest = assert_stopped_at(result, point, nth, 130)
    assert "Traceback" not in result.stderr
    assert len(rest) == 1 and rest[0].startswith("catalog: error: interrupted"), result.stderr
    assert integrity(db) == "ok"
    assert_each_project(Catalogue.of(db, world["order"]), world, kind, nth, synced_too=point == "committed")


# These trees are too small for a run to start workers of its own; this
# makes every run plan the next projects in a worker ahead of their turn
# (catalog/ahead.py), so the same points are reached with plans made elsewhere.
AHEAD = {"CATALOG_AHEAD_MIN_IMAGES": "0"}


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", ON_BOTH)
@pytest.mark.parametrize("point, nth", [("planned", 2), ("sync_started", 2), ("images_written", 3),
                                        ("committed", 2)])
def test_sigkill_with_plans_made_ahead(world, tmp_path, point, nth):
    """A run whose next projects are planned by a worker, killed at a point:
    the same outcome as any kill there, no worker outlives it (they hold the
    run's output pipes, so one left running would keep this test waiting),
    and the next run ends where an uninterrupted one does."""
    kind = world["incremental"]
    db = start_db(world, kind, tmp_path)
    killed = catalog(db, "index", kind.target, env={**crash_env(point, nth, "kill"), **AHEAD}, timeout=120)
    assert assert_stopped_at(killed, point, nth, -signal.SIGKILL) == []
    assert integrity(db) == "ok"
    assert_each_project(Catalogue.of(db, world["order"]), world, kind, nth, synced_too=point == "committed")
    rerun = catalog(db, "index", kind.target, env=with_env(**AHEAD))
    assert rerun.returncode == 0, rerun.stderr
    assert images_of(db) == kind.after.images
    assert views(db) == kind.after_views


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", ON_BOTH)
def test_ctrl_c_with_plans_made_ahead(world, tmp_path):
    """A real SIGINT while a worker plans the next project: one line, exit
    130, the project being written rolled back, and the run ends promptly
    (the worker is stopped, not waited for)."""
    kind = world["incremental"]
    db = start_db(world, kind, tmp_path)
    result = catalog(db, "index", kind.target, env={**crash_env("sync_started", 2, "sigint"), **AHEAD}, timeout=120)
    rest = assert_stopped_at(result, "sync_started", 2, 130)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(rest) == 1 and rest[0].startswith("catalog: error: interrupted"), result.stderr
    assert integrity(db) == "ok"
    assert_each_project(Catalogue.of(db, world["order"]), world, kind, 2, synced_too=False)


def test_error_with_plans_made_ahead(sample, tmp_path):
    """An error that stops a run while a worker plans (a new catalogue in a
    folder that does not exist: the workers start planning before the
    catalogue is opened) gives its one line, not a traceback from the
    stopped workers, and creates nothing."""
    root, _ = sample
    db = tmp_path / "missing" / "c.db"
    result = catalog(db, "index", root, env=with_env(**AHEAD), timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"catalog: error: folder of database {db} does not exist; create it or choose another --db"], result.stderr
    assert not db.parent.exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", ON_BOTH)
@pytest.mark.parametrize("args", [["export"], ["export", "--merge"], ["export-anomalies"]],
                         ids=["export", "merge", "anomalies"])
def test_sigkill_during_export_keeps_the_previous_file(world, tmp_path, args):
    """Killed with its temporary file complete and the rename next: OUT is untouched."""
    db = world["copier"].copy(world["after"], tmp_path)
    out = tmp_path / "out.csv"
    header = "session_id,set_id,chosen_path,neg_paths,timestamp\n" if args != ["export-anomalies"] else ""
    previous = (header + 'old_extraction,group_1,/x/a.png,"[""/x/b.png""]",2025-01-01T00:00:00Z\n').encode()
    out.write_bytes(previous)
    flags = [] if "--merge" in args else ["--force"]

    def temporaries() -> list[str]:
        return sorted(name for name in os.listdir(tmp_path) if name.startswith(".out.csv"))

    result = catalog(db, *args, out, *flags, env=crash_env("export_written", 1, "kill"))
    assert assert_stopped_at(result, "export_written", 1, -signal.SIGKILL) == []
    assert out.read_bytes() == previous
    left = temporaries()
    assert len(left) == 1, left  # the complete temporary file, never renamed
    written = (tmp_path / left[0]).read_bytes()

    result = catalog(db, *args, out, *flags)
    assert result.returncode == 0, result.stderr
    assert temporaries() == []  # the stale temporary file is cleared, the new one renamed
    assert out.read_bytes() != previous
    assert out.read_bytes() == written  # the killed run had written the whole file


@pytest.mark.parametrize("backend_name", ON_BOTH)
@pytest.mark.parametrize("command", ["index", "export"])
def test_unknown_crash_point_is_a_one_line_error(world, tmp_path, command):
    """faults.py checks the variable when the command loads it, before any work."""
    db = world["copier"].copy(world["before"], tmp_path)
    args = ["index", world["incremental"].target] if command == "index" else ["export", "-"]
    result = catalog(db, *args, env=with_env(CATALOG_CRASH_AT="nowhere"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("catalog: error: CATALOG_CRASH_AT='nowhere': unknown point; one of ")
    assert all(point in lines[0] for point in ALL_POINTS)
    assert result.stdout == ""
    assert Catalogue.of(db, world["order"]) == world["incremental"].before  # nothing was indexed
