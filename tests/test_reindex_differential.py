"""Differential re-index test: after any sequence of changes to the folders,
`catalog index` on the existing catalogue leaves every view and row that
matters equal to a fresh index of the same folders into a new database,
apart from surrogate ids.

The hypothesis state machine builds a small workspace (two roots, WS and WS2,
both indexed every time), changes it one rule at a time (files added,
removed, replaced, touched and moved; sub-folders renamed, created and
deleted; winners added, removed, cropped and converted; projects renamed and
moved; a group deleted and later restored), and after each step re-indexes
the long-lived catalogue and compares it with a fresh index.

Set ids: a group keeps its set id while its members are unchanged, so when
two groups of one project share a first second the `_2`/`_3` suffixes may be
numbered differently from a fresh index. Set ids are compared with the
suffix stripped; a group whose base `group_YYYYMMDD_HHMMSS` occurs once in
its project must carry exactly the fresh set id, unless it is a group that
kept its members (and so its set id) from the step before.

Everything runs on SQLite and on PostgreSQL (a database per catalogue, half
of the tests under an ICU en-US collation); the state machine runs fewer
examples on PostgreSQL, where every fresh index needs a new database.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import re
import shutil
import sqlite3
import traceback
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

import pytest
import typer.testing
from conftest import Backend, Run, app, database_name
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from proc import VIEW_COLUMNS, Connection, images_of
from proc import rows as rows_of_target
from trees import SHAPES, Workspace, build_project, pixel_size, touch, write

from catalog.sample import jpeg_bytes, png_bytes

# backend -> (examples, steps per example, fewest mutation steps that must run):
# at most 228 mutation steps on SQLite, 57 on PostgreSQL (hypothesis cuts a few sequences short).
BUDGET = {"sqlite": (12, 19, 200), "postgresql": (3, 19, 48)}

# ---------------------------------------------------------------- catalogue reading


def cli(db, *args):
    return Run(db)(*args)


def ok(db, *args):
    result = cli(db, *args)
    trace = ""
    if result.exit_code != 0 and result.exc_info and not isinstance(result.exception, SystemExit):
        # An exception escaped the command (a bug, not a refusal): show where.
        trace = "\n" + "".join(traceback.format_exception(*result.exc_info))
    assert result.exit_code == 0, f"catalog {' '.join(map(str, args))} exited {result.exit_code}: {result.output}{trace}"
    return result


class Catalogues:
    """New catalogues of one backend. `fresh` is empty and migrated: a copy
    of the template file on SQLite, a database made from the template
    database on PostgreSQL; `discard` removes one."""

    def __init__(self, backend: Backend, template):
        self.backend, self.template = backend, template

    def empty(self, folder: Path, name: str):
        return self.backend.new() if self.backend.postgres else folder / f"{name}.db"

    def fresh(self, folder: Path, name: str):
        if self.backend.pg is None:
            target = folder / f"{name}.db"
            shutil.copyfile(self.template, target)
            return target
        return self.backend.pg.copy_database(database_name(self.template)).owner

    def discard(self, target) -> None:
        if self.backend.pg is None:
            for old in Path(target).parent.glob(f"{Path(target).name}*"):
                old.unlink()
        else:
            self.backend.pg.drop_database(database_name(target))


def rows(db, sql: str, *params) -> list[tuple]:
    return rows_of_target(db, sql, *params)


def project_dirs(db) -> dict[str, str]:
    return dict(rows(db, "SELECT name, sandbox_dir FROM projects"))


_SET_ID = re.compile(r"^(group_\d{8}_\d{6})(?:_\d+)?$")


def base_of(set_id: str) -> str:
    m = _SET_ID.match(set_id)
    return m[1] if m else set_id


def diff(inc, fresh, limit: int = 8) -> str:
    """What only the re-indexed (INC) or only the fresh catalogue holds."""
    if isinstance(inc, dict):
        keys = sorted(set(inc) | set(fresh), key=repr)
        return "\n".join(f"[{k}] {diff(inc.get(k, []), fresh.get(k, []), limit)}" for k in keys
                         if inc.get(k) != fresh.get(k))
    a, b = Counter(map(repr, inc)), Counter(map(repr, fresh))
    only_inc, only_fresh = sorted((a - b).elements()), sorted((b - a).elements())
    lines = [f"only re-indexed: {r}" for r in only_inc[:limit]] + [f"only fresh: {r}" for r in only_fresh[:limit]]
    if len(only_inc) > limit or len(only_fresh) > limit:
        lines.append(f"... ({len(only_inc)} only re-indexed, {len(only_fresh)} only fresh)")
    return "\n".join(lines) or "(same rows, different order)"


def ghost_groups(con: Connection, projects: set[str]) -> list[tuple]:
    found = con.execute("""SELECT p.name, g.set_id, g.stages FROM image_groups g JOIN projects p ON p.id = g.project_id
                           WHERE NOT EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = g.id)""")
    return sorted(r for r in found if r[0] in projects)


def groups_of(con: Connection, projects: set[str]) -> dict[tuple, tuple]:
    """(project, member rel_paths in position order) -> (set_id, dir, size,
    stages, max_stage, first_timestamp, last_timestamp, winner_count, chosen
    image rel_path, chosen_stage)."""
    members: dict[int, list[str]] = {}
    for gid, path in con.execute("""SELECT gm.group_id, i.rel_path FROM group_members gm
                                    JOIN images i ON i.id = gm.image_id ORDER BY gm.group_id, gm.position"""):
        members.setdefault(gid, []).append(path)
    out = {}
    for gid, project, *fields in con.execute("""
            SELECT g.id, p.name, g.set_id, g.dir, g.size, g.stages, g.max_stage, g.first_timestamp,
                   g.last_timestamp, g.winner_count, c.rel_path, g.chosen_stage
            FROM image_groups g JOIN projects p ON p.id = g.project_id
            LEFT JOIN images c ON c.id = g.chosen_image_id"""):
        if project in projects:
            out[(project, tuple(members.get(gid, ())))] = tuple(fields)
    return out


def normalised_groups(groups: dict[tuple, tuple]) -> list[tuple]:
    return sorted(((project, base_of(f[0]), *f[1:], m) for (project, m), f in groups.items()), key=repr)


def matches_of(con: Connection, projects: set[str]) -> list[tuple]:
    found = con.execute("""SELECT p.name, f.rel_path, s.rel_path, m.match, m.problem, m.cropped
                           FROM matches m JOIN images f ON f.id = m.final_image_id
                           JOIN projects p ON p.id = f.project_id
                           LEFT JOIN images s ON s.id = m.sandbox_image_id""")
    return sorted((r for r in found if r[0] in projects), key=repr)


def views_of(con: Connection, projects: set[str]) -> dict[str, list]:
    """Every view of tests/proc.py (ids left out), set ids without suffix."""
    out = {}
    for view, cols in VIEW_COLUMNS.items():
        names = [c.strip() for c in cols.split(",")]
        k = names.index("set_id") if "set_id" in names else None
        found = []
        for r in con.execute(f'SELECT {cols} FROM "{view}"'):
            if r[0] in projects:
                r = list(r)
                if k is not None:
                    r[k] = base_of(r[k])
                found.append(tuple(r))
        out[view] = sorted(found, key=repr)
    return out


def snapshot(db, projects: set[str]) -> dict:
    """Everything compared of a catalogue, restricted to `projects`."""
    with Connection(db) as con:
        return {
            "ghosts": ghost_groups(con, projects),
            "groups": groups_of(con, projects),
            "matches": matches_of(con, projects),
            "views": views_of(con, projects),
        }


def export_of(db, out: Path) -> tuple[list[str], list[list[str]]]:
    ok(db, "export", out, "--force")
    with open(out, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    return table[0], table[1:]


def by_project(header: list[str], body: list[list[str]], projects: set[str]) -> list[tuple]:
    p, s = header.index("project"), header.index("set_id")
    out = []
    for r in body:
        if r[p] in projects:
            r = list(r)
            r[s] = base_of(r[s])
            out.append(tuple(r))
    return sorted(out)


def stats_of(db, projects: set[str]) -> dict[str, dict]:
    found = json.loads(ok(db, "stats", "-f", "json").stdout)
    return {r["project"]: {k: v for k, v in r.items() if k != "last_indexed"}
            for r in found if r["project"] != "TOTAL" and r["project"] in projects}


def assert_same_catalogue(inc, fresh, work: Path, previous=None) -> dict[tuple, str]:
    """INC (re-indexed) equals FRESH (indexed once) on every live project
    (catalogued, and its sandbox folder still there).

    `previous` is INC's {(project, members): set_id} after the step before;
    returns the same for now."""
    inc_dirs, fresh_dirs = project_dirs(inc), project_dirs(fresh)
    live = {name for name, sandbox in inc_dirs.items() if os.path.isdir(sandbox)}
    assert live == set(fresh_dirs), f"live projects {sorted(live)}, fresh {sorted(fresh_dirs)}"
    a = {k: v for k, v in images_of(inc).items() if k in live}
    b = {k: v for k, v in images_of(fresh).items() if k in live}
    assert a == b, "images differ:\n" + diff(a, b)

    inc_snap, fresh_snap = snapshot(inc, live), snapshot(fresh, live)
    # no group row may outlive its members
    assert not inc_snap["ghosts"], f"image_groups rows without members: {inc_snap['ghosts']}"

    inc_groups, fresh_groups = inc_snap["groups"], fresh_snap["groups"]
    a, b = normalised_groups(inc_groups), normalised_groups(fresh_groups)
    assert a == b, "image_groups differ:\n" + diff(a, b)

    a, b = inc_snap["matches"], fresh_snap["matches"]
    assert a == b, "matches differ:\n" + diff(a, b)

    a, b = inc_snap["views"], fresh_snap["views"]
    assert a == b, "views differ:\n" + diff(a, b)

    inc_header, inc_body = export_of(inc, work / "inc.csv")
    fresh_header, fresh_body = export_of(fresh, work / "fresh.csv")
    assert inc_header == fresh_header
    a, b = by_project(inc_header, inc_body, live), by_project(fresh_header, fresh_body, live)
    assert a == b, "export differs:\n" + diff(a, b)

    a, b = stats_of(inc, live), stats_of(fresh, live)
    assert a == b, "stats differ:\n" + "\n".join(f"{p}: {a.get(p)} != {b.get(p)}" for p in sorted(set(a) | set(b))
                                                 if a.get(p) != b.get(p))

    # set ids: exact wherever the base is unique in its project, unless the
    # group kept its members, and so its set id, from the step before
    bases = Counter((project, base_of(f[0])) for (project, _), f in fresh_groups.items())
    for key, fields in inc_groups.items():
        project, set_id = key[0], fields[0]
        if bases[(project, base_of(set_id))] == 1:
            expected = fresh_groups[key][0]
            kept = previous is not None and previous.get(key) == set_id
            assert set_id == expected or kept, f"{project}: group {list(key[1])} has set id {set_id}, fresh {expected}"
    now = {key: fields[0] for key, fields in inc_groups.items()}
    if previous is not None:
        renamed = {key: (previous[key], now[key]) for key in previous.keys() & now.keys() if previous[key] != now[key]}
        assert not renamed, f"groups whose members did not change got a new set id: {renamed}"

    # projects whose sandbox folder is gone: listed by check, left out of export
    gone = set(inc_dirs) - live
    if gone:
        problems = json.loads(ok(inc, "check", "-f", "json").stdout)
        missing = {p["project"] for p in problems if p["problem"] == "sandbox_missing"}
        exported = sorted({r[inc_header.index("project")] for r in inc_body} & gone)
        assert gone <= missing and not exported, (
            f"projects whose sandbox folder is gone: {sorted(gone)}; check lists sandbox_missing for "
            f"{sorted(gone & missing)}; export has rows of {exported}")
    return now


@pytest.fixture(scope="module", autouse=True)
def one_click_command():
    """typer's CliRunner rebuilds the click command from the Typer app on
    every invoke (tens of ms, most of a step here): build it once."""
    original = getattr(typer.testing, "_get_command", None)
    if original is None:  # another typer: nothing to speed up
        yield
        return
    built = original(app)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", lambda a: built if a is app else original(a))
        yield


@pytest.fixture(scope="module")
def templates() -> dict:
    return {}


@pytest.fixture
def catalogues(backend, templates, tmp_path_factory) -> Catalogues:
    """New catalogues of the test's backend; the template, an empty
    catalogue at the newest schema copied for every fresh index, is made
    once per backend."""
    if backend.name not in templates:
        if backend.postgres:
            db = backend.pg.new_database(icu=backend.icu)
            ok(db.owner, "db", "upgrade")
            templates[backend.name] = db.owner
        else:
            db = tmp_path_factory.mktemp("template") / "template.db"
            ok(db, "db", "upgrade")
            empty = db.with_name("empty.db")
            src, dst = sqlite3.connect(db), sqlite3.connect(empty)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, to copy as it is
            finally:
                src.close()
                dst.close()
            templates[backend.name] = empty
    return Catalogues(backend, templates[backend.name])


def fresh_index(catalogues: Catalogues, folder: Path, *roots: Path):
    target = catalogues.fresh(folder, "fresh")
    ok(target, "index", *roots)
    return target


# ---------------------------------------------------------------- the state machine

PROJECT_NAMES = ["aiko", "tattersail", "mojo-1"]
NEW_NAMES = ["kira", "lumen", "nova", "orchid"]
FOLDER_NAMES = ["tara", "south-asian", "kim", "elena-40s"]
STEPS: list[str] = []  # the mutation steps run, over every example
EXAMPLES = itertools.count()


def seeds():
    return st.integers(0, 2**16)


class ReindexMachine(RuleBasedStateMachine):
    """A workspace changed step by step; after each step the long-lived
    catalogue, re-indexed, must equal a fresh index.

    Every rule is one kind of change and always applies: a rule that finds
    nothing to change (no sub-folder to rename, no final image to crop) adds
    a group or a sub-folder instead. Targets are chosen by
    `random.Random(seed)`; what a step did is printed with the failing steps.
    """

    def __init__(self, base: Path, catalogues: Catalogues):
        super().__init__()
        self.base, self.catalogues = base, catalogues
        self.ready = False

    # ------------------------------------------------------------ helpers

    def _did(self, what: str, kind: str) -> None:
        note(what)
        STEPS.append(kind)
        self._listing = None

    def listing(self) -> dict[str, tuple[list[str], list[str], list[str]]]:
        """project -> (sandbox images, sandbox sub-folders, final images)."""
        if self._listing is None:
            self._listing = {}
            for name in sorted(self.ws.where):
                sandbox = self.ws.sandbox(name)
                subdirs = sorted(d.name for d in sandbox.iterdir() if d.is_dir())
                self._listing[name] = (self.ws.sandbox_images(name), subdirs, self.ws.final_images(name))
        return self._listing

    def _with(self, rng: random.Random, k: int, test=None) -> Optional[tuple[str, list[str]]]:
        """A random project whose listing part `k` (filtered by `test`) is not
        empty, with that part."""
        test = test or (lambda items: items)
        options = [(name, test(v[k])) for name, v in self.listing().items() if test(v[k])]
        return rng.choice(options) if options else None

    def _sandbox_image(self, rng: random.Random) -> Optional[tuple[str, str]]:
        found = self._with(rng, 0)
        return (found[0], rng.choice(found[1])) if found else None

    def _final_image(self, rng: random.Random, test=None) -> Optional[tuple[str, str]]:
        found = self._with(rng, 2, test)
        return (found[0], rng.choice(found[1])) if found else None

    @staticmethod
    def _plain_png(finals: list[str]) -> list[str]:
        return [r for r in finals if r.endswith(".png") and not r.endswith("_cropped.png")]

    def _project(self, rng: random.Random) -> str:
        return rng.choice(sorted(self.ws.where))

    def _group_of(self, rng: random.Random) -> Optional[tuple[str, list[str]]]:
        options = [(name, g) for name in sorted(self.ws.where) for g in self.ws.groups(name)]
        return rng.choice(options) if options else None

    def _new_folder(self, name: str, rng: random.Random) -> str:
        taken = set(self.listing()[name][1])
        base = rng.choice(FOLDER_NAMES)
        folder, n = base, 1
        while folder in taken or (self.ws.final(name) / folder).exists():
            n += 1
            folder = f"{base}-v{n}"
        return folder

    def _when(self, name: str, rng: random.Random) -> datetime:
        times = self.ws.times(name)
        if not times:
            return datetime(2025, 9, 1, 12, 0, 0)
        roll = rng.random()
        if roll < 0.5:
            return times[-1] + timedelta(seconds=rng.randint(60, 400))
        if roll < 0.75:
            return rng.choice(times)  # an existing second: shared set id bases, interleaved runs
        return times[0] + (times[-1] - times[0]) * rng.random()

    def _replace(self, path: Path, rng: random.Random) -> str:
        """Rewrite an image with other bytes (another pixel size, or a longer
        file) and a new mtime."""
        width, height = pixel_size(path.read_bytes()) or (832, 1216)
        if rng.random() < 0.5:
            width, height = width // 2, height // 2
        else:
            width += 8
        data = jpeg_bytes(width, height) if path.suffix.lower() in (".jpg", ".jpeg") else png_bytes(width, height)
        write(path, data, self.ws.clock)
        return f"now {width}x{height}"

    # ------------------------------------------------------------ initial tree

    # Two projects mostly (each project indexed costs most of a step), three now and then.
    @initialize(seed=seeds(), n_projects=st.sampled_from([2, 2, 3, 2]))
    def build(self, seed, n_projects):
        rng = random.Random(seed)
        # Left behind for pytest's tmp_path retention: deleting every example's
        # files here cost seconds of the time budget.
        self.dir = Path(self.base) / f"example-{next(EXAMPLES)}"
        self.roots = [self.dir / "WS", self.dir / "WS2"]
        self.ws = Workspace(self.roots)
        self.dbs = self.dir / "db"
        self.dbs.mkdir(parents=True)
        self.inc = self.catalogues.empty(self.dbs, "inc")
        self.fresh = None
        self.previous = None
        self.steps = 0
        self.stash: list[tuple[str, str, bytes, int]] = []
        self.used_names: set[str] = set()
        for k, name in enumerate(PROJECT_NAMES[:n_projects]):
            folders = rng.choice([[""], ["", "tara"], ["tara", "south-asian"], ["", "tara", "south-asian"]])
            build_project(self.ws, name, rng, datetime(2025, 7, 5 + 9 * k, 21, 52, 18),
                          groups=rng.randint(5, 9), folders=folders)
            self.used_names.add(name)
        self._listing = None
        self.ready = True
        note(f"built {n_projects} projects: " + ", ".join(
            f"{n} ({len(v[0])} sandbox, {len(v[2])} final, sub-folders {v[1]})" for n, v in self.listing().items()))

    # ------------------------------------------------------------ sandbox files

    @rule(seed=seeds())
    def add_group(self, seed):
        """A new run of rising stages (new names), after the project's last
        image, in a second that already has one, or in between; sometimes
        picked at once."""
        rng = random.Random(seed)
        name = self._project(rng)
        subdirs = self.listing()[name][1]
        folder = rng.choice(["", *subdirs, self._new_folder(name, rng) if rng.random() < 0.2 else ""])
        members = self.ws.group(name, folder, self._when(name, rng), rng.choice(SHAPES), rng)
        picked = None
        if rng.random() < 0.5:
            picked = self.ws.pick(name, rng.choice(members), rng.choice(["same", "same", "renamed", "converted"]),
                                  mirror=rng.random() < 0.7)
        self._did(f"{name}: added group {members}, picked {picked}", "add_group")

    @rule(seed=seeds())
    def add_images(self, seed):
        """One to three loose images of any stage: they may join, split or
        reshape groups. Or, mostly, when a group was deleted to be restored
        (`delete_group_then_restore`), its files put back."""
        rng = random.Random(seed)
        if self.stash and rng.random() < 0.7:
            return self._restore()
        name = self._project(rng)
        folder = rng.choice(["", *self.listing()[name][1]])
        added = [self.ws.sandbox_image(name, folder, self._when(name, rng), rng.choice([1.0, 1.5, 2.0, 3.0]),
                                       companion=rng.random() < 0.3)[0]
                 for _ in range(rng.randint(1, 3))]
        self._did(f"{name}: added {added}", "add_images")

    @rule(seed=seeds())
    def remove_image(self, seed):
        rng = random.Random(seed)
        found = self._sandbox_image(rng)
        if found is None:
            return self.add_group(seed)
        name, r = found
        (self.ws.sandbox(name) / r).unlink()
        self._did(f"{name}: removed {r}", "remove_image")

    @rule(seed=seeds())
    def remove_group(self, seed):
        rng = random.Random(seed)
        found = self._group_of(rng)
        if found is None:
            return self.add_group(seed)
        name, group = found
        for r in group:
            (self.ws.sandbox(name) / r).unlink()
        self._did(f"{name}: removed the whole group {group}", "remove_group")

    @rule(seed=seeds())
    def replace_image(self, seed):
        rng = random.Random(seed)
        found = self._sandbox_image(rng)
        if found is None:
            return self.add_group(seed)
        name, r = found
        self._did(f"{name}: replaced sandbox {r}, {self._replace(self.ws.sandbox(name) / r, rng)}", "replace_image")

    @rule(seed=seeds())
    def touch_image(self, seed):
        rng = random.Random(seed)
        found = self._sandbox_image(rng)
        if found is None:
            return self.add_group(seed)
        name, r = found
        touch(self.ws.sandbox(name) / r, self.ws.clock)
        self._did(f"{name}: touched sandbox {r}", "touch_image")

    @rule(seed=seeds())
    def move_image(self, seed):
        """Move one image to another sub-folder: an existing one, the top, or a new one."""
        rng = random.Random(seed)
        found = self._sandbox_image(rng)
        if found is None:
            return self.add_group(seed)
        name, r = found
        folder, _, filename = r.rpartition("/")
        targets = [d for d in ["", *self.listing()[name][1]]
                   if d != folder and not (self.ws.sandbox(name) / d / filename).exists()]
        target = rng.choice(targets) if targets and rng.random() < 0.8 else self._new_folder(name, rng)
        dest = self.ws.sandbox(name) / target / filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.ws.sandbox(name) / r, dest)
        self._did(f"{name}: moved {r} to {target or '(top)'}/", "move_image")

    def _restore(self) -> None:
        restored = []
        for name, r, data, mtime_ns in self.stash:
            path = self.ws.sandbox(name) / r
            if not path.exists():
                write(path, data, self.ws.clock, mtime_ns=mtime_ns)
                restored.append(f"{name}:{r}")
        self.stash = []
        self._did(f"restored the deleted group {restored}", "restore_group")

    @rule(seed=seeds())
    def delete_group_then_restore(self, seed):
        """Delete every file of one group, to be put back under the same names
        (and mtimes) the next time this rule runs, or by `add_images`."""
        if self.stash:
            return self._restore()
        rng = random.Random(seed)
        found = self._group_of(rng)
        if found is None:
            return self.add_group(seed)
        name, group = found
        for r in group:
            path = self.ws.sandbox(name) / r
            self.stash.append((name, r, path.read_bytes(), path.stat().st_mtime_ns))
            path.unlink()
        self._did(f"{name}: deleted group {group}, to be restored later", "delete_group")

    # ------------------------------------------------------------ sub-folders

    @rule(seed=seeds(), with_final=st.booleans())
    def rename_subfolder(self, seed, with_final):
        """Rename a character sub-folder, and its final mirror too or not."""
        rng = random.Random(seed)
        found = self._with(rng, 1)
        if found is None:
            return self.create_subfolder(seed)
        name, subdirs = found
        old = rng.choice(subdirs)
        new = self._new_folder(name, rng)
        os.rename(self.ws.sandbox(name) / old, self.ws.sandbox(name) / new)
        also = with_final and (self.ws.final(name) / old).is_dir()
        if also:
            os.rename(self.ws.final(name) / old, self.ws.final(name) / new)
        self._did(f"{name}: renamed sub-folder {old}/ to {new}/" + (" (final too)" if also else ""),
                  "rename_subfolder")

    @rule(seed=seeds(), with_final=st.booleans())
    def delete_subfolder(self, seed, with_final):
        """Delete a character sub-folder, and its final mirror too or not."""
        rng = random.Random(seed)
        found = self._with(rng, 1)
        if found is None:
            return self.create_subfolder(seed)
        name, subdirs = found
        folder = rng.choice(subdirs)
        shutil.rmtree(self.ws.sandbox(name) / folder)
        also = with_final and (self.ws.final(name) / folder).is_dir()
        if also:
            shutil.rmtree(self.ws.final(name) / folder)
        self._did(f"{name}: deleted sub-folder {folder}/" + (" (final too)" if also else ""), "delete_subfolder")

    @rule(seed=seeds())
    def create_subfolder(self, seed):
        """A new character sub-folder holding an existing group (moved) or a new one."""
        rng = random.Random(seed)
        name = self._project(rng)
        folder = self._new_folder(name, rng)
        (self.ws.sandbox(name) / folder).mkdir()
        groups = self.ws.groups(name)
        if groups and rng.random() < 0.6:
            group = rng.choice(groups)
            for r in group:
                os.rename(self.ws.sandbox(name) / r, self.ws.sandbox(name) / folder / r.rpartition("/")[2])
            what = f"moved group {group} into it"
        else:
            what = f"wrote {self.ws.group(name, folder, self._when(name, rng), rng.choice(SHAPES), rng)}"
        self.ws.junk(self.ws.sandbox(name) / folder)
        self._did(f"{name}: created sub-folder {folder}/, {what}", "create_subfolder")

    # ------------------------------------------------------------ winners

    @rule(seed=seeds(), mirror=st.booleans())
    def add_winner(self, seed, mirror):
        """Copy a sandbox image (mostly a grouped one) to the final folder:
        its mirrored sub-folder or the top."""
        rng = random.Random(seed)
        found = self._with(rng, 0)
        if found is None:
            return self.add_group(seed)
        name, images = found
        grouped = [r for g in self.ws.groups(name) for r in g]
        r = rng.choice(grouped if grouped and rng.random() < 0.85 else images)
        picked = self.ws.pick(name, r, "same", mirror=mirror)
        self._did(f"{name}: picked {r} as final {picked}", "add_winner")

    @rule(seed=seeds())
    def remove_winner(self, seed):
        rng = random.Random(seed)
        found = self._final_image(rng)
        if found is None:
            return self.add_group(seed)
        name, r = found
        (self.ws.final(name) / r).unlink()
        self._did(f"{name}: removed final {r}", "remove_winner")

    @rule(seed=seeds())
    def crop_winner(self, seed):
        """A final .png renamed ``..._cropped.png`` and rewritten smaller."""
        rng = random.Random(seed)
        found = self._final_image(rng, self._plain_png)
        if found is None:
            return self.add_group(seed)
        name, r = found
        path = self.ws.final(name) / r
        width, height = pixel_size(path.read_bytes()) or (832, 1216)
        path.unlink()
        target = write(path.with_name(path.stem + "_cropped.png"), png_bytes(width * 3 // 4, height * 3 // 4),
                       self.ws.clock)
        self._did(f"{name}: cropped final {r} to {target.name}", "crop_winner")

    @rule(seed=seeds())
    def convert_winner(self, seed):
        """A final .png replaced by a .jpg of the same stem and pixel size."""
        rng = random.Random(seed)
        found = self._final_image(rng, self._plain_png)
        if found is None:
            return self.add_group(seed)
        name, r = found
        path = self.ws.final(name) / r
        width, height = pixel_size(path.read_bytes()) or (832, 1216)
        path.unlink()
        target = write(path.with_suffix(".jpg"), jpeg_bytes(width, height), self.ws.clock)
        self._did(f"{name}: converted final {r} to {target.name}", "convert_winner")

    @rule(seed=seeds())
    def replace_winner(self, seed):
        rng = random.Random(seed)
        found = self._final_image(rng)
        if found is None:
            return self.add_group(seed)
        name, r = found
        self._did(f"{name}: replaced final {r}, {self._replace(self.ws.final(name) / r, rng)}", "replace_winner")

    @rule(seed=seeds())
    def touch_winner(self, seed):
        rng = random.Random(seed)
        found = self._final_image(rng)
        if found is None:
            return self.add_group(seed)
        name, r = found
        touch(self.ws.final(name) / r, self.ws.clock)
        self._did(f"{name}: touched final {r}", "touch_winner")

    # ------------------------------------------------------------ projects

    @rule(seed=seeds())
    def rename_project(self, seed):
        """Rename a project's sandbox and final folder, sometimes to a name the
        catalogue still holds from before."""
        rng = random.Random(seed)
        name = self._project(rng)
        dead = sorted(self.used_names - set(self.ws.where))
        if dead and rng.random() < 0.3:
            new = rng.choice(dead)
        else:
            base = rng.choice(NEW_NAMES)
            new, n = base, 1
            while new in self.used_names:
                n += 1
                new = f"{base}-{n}"
        self.ws.rename_project(name, new)
        self.used_names.add(new)
        self.stash = [(new if p == name else p, r, data, t) for p, r, data, t in self.stash]
        self._did(f"renamed project {name} to {new}", "rename_project")

    @rule(seed=seeds())
    def move_project(self, seed):
        """Move a project's sandbox and final folder to the other workspace root."""
        rng = random.Random(seed)
        name = self._project(rng)
        root = next(r for r in self.roots if r != self.ws.where[name])
        self.ws.move_project(name, root)
        self._did(f"moved project {name} to {root.name}", "move_project")

    # ------------------------------------------------------------ after every step

    @invariant()
    def reindex_equals_a_fresh_index(self):
        if not self.ready:
            return
        self.steps += 1
        roots = [str(r) for r in self.roots]
        result = cli(self.inc, "index", *roots)
        assert result.exit_code == 0, f"re-index exited {result.exit_code}: {result.output}"
        if self.fresh is not None:
            self.catalogues.discard(self.fresh)
        fresh = self.fresh = self.catalogues.fresh(self.dbs, f"fresh-{self.steps}")
        result = cli(fresh, "index", *roots)
        assert result.exit_code == 0, f"fresh index exited {result.exit_code}: {result.output}"
        self.previous = assert_same_catalogue(self.inc, fresh, self.dbs, self.previous)


def test_reindex_equals_fresh_index_after_any_changes(tmp_path_factory, backend, catalogues):
    examples, steps_per_example, min_steps = BUDGET[backend.name]
    base = tmp_path_factory.mktemp("machine")
    STEPS.clear()
    run_state_machine_as_test(
        lambda: ReindexMachine(base, catalogues),
        settings=settings(
            derandomize=True,
            database=None,
            deadline=None,
            max_examples=examples,
            stateful_step_count=steps_per_example + 1,  # the initialize rule counts as a step
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        ),
    )
    assert len(STEPS) >= min_steps, f"only {len(STEPS)} mutation steps ran: {Counter(STEPS)}"


# ---------------------------------------------------------------- named cases


def one_project(tmp_path: Path, catalogues: Catalogues, folders=("",)):
    ws = Workspace([tmp_path / "WS"])
    ws.add_project("aiko")
    for folder in folders:
        (ws.sandbox("aiko") / folder).mkdir(parents=True, exist_ok=True)
    return ws, catalogues.empty(tmp_path, "inc")


def stage_run(ws: Workspace, folder: str, start: datetime, stages) -> list[str]:
    out, when = [], start
    for stage in stages:
        out.append(ws.sandbox_image("aiko", folder, when, stage)[0])
        when += timedelta(seconds=40)
    return out


T0 = datetime(2025, 7, 8, 6, 5, 58)


def test_deleting_a_whole_group_leaves_no_ghost_group(tmp_path, catalogues):
    ws, inc = one_project(tmp_path, catalogues)
    first = stage_run(ws, "", T0, [1.0, 2.0, 3.0])
    second = stage_run(ws, "", T0 + timedelta(minutes=10), [1.0, 1.5, 2.0])
    third = stage_run(ws, "", T0 + timedelta(minutes=20), [2.0, 3.0])
    ws.pick("aiko", first[-1])
    ws.pick("aiko", second[0])
    ws.pick("aiko", third[-1])
    ok(inc, "index", ws.roots[0])
    for r in second:
        (ws.sandbox("aiko") / r).unlink()
    ok(inc, "index", ws.roots[0])
    fresh = fresh_index(catalogues, tmp_path, ws.roots[0])

    inc_snap, fresh_snap = snapshot(inc, {"aiko"}), snapshot(fresh, {"aiko"})
    assert inc_snap["ghosts"] == []
    assert inc_snap["views"]["groups"] == fresh_snap["views"]["groups"]
    counts = ("groups", "decisions", "skipped", "kept_twice", "anomalies")
    inc_stats, fresh_stats = stats_of(inc, {"aiko"})["aiko"], stats_of(fresh, {"aiko"})["aiko"]
    assert {k: inc_stats[k] for k in counts} == {k: fresh_stats[k] for k in counts} == \
        {"groups": 2, "decisions": 2, "skipped": 0, "kept_twice": 0, "anomalies": 0}


def test_losing_the_top_stage_is_not_a_false_anomaly(tmp_path, catalogues):
    ws, inc = one_project(tmp_path, catalogues)
    group = stage_run(ws, "", T0, [1.0, 2.0, 3.0])
    ws.pick("aiko", group[1])  # stage 2 picked over stage 3: an anomaly, for now
    ok(inc, "index", ws.roots[0])
    assert rows(inc, "SELECT is_anomaly FROM decisions") == [(1,)]
    (ws.sandbox("aiko") / group[2]).unlink()
    ok(inc, "index", ws.roots[0])

    assert rows(inc, "SELECT size, stages, max_stage FROM image_groups") == [(2, "1,2", 2.0)]
    assert rows(inc, "SELECT chosen_path, is_anomaly FROM decisions") == [(group[1], 0)]
    assert rows(inc, "SELECT * FROM anomalies") == []
    header, body = export_of(inc, tmp_path / "out.csv")
    assert [r[header.index("is_anomaly")] for r in body] == ["0"]
    fresh = fresh_index(catalogues, tmp_path, ws.roots[0])
    assert_same_catalogue(inc, fresh, tmp_path)


def test_renaming_a_sub_folder_keeps_the_project_indexable(tmp_path, catalogues):
    ws, inc = one_project(tmp_path, catalogues, folders=("", "tara"))
    top = stage_run(ws, "", T0, [1.0, 2.0, 3.0])
    tara = stage_run(ws, "tara", T0, [1.0, 1.5, 2.0])  # same first second as `top`: group_..._2
    later = stage_run(ws, "tara", T0 + timedelta(minutes=10), [1.0, 2.0])
    ws.pick("aiko", top[-1])
    ws.pick("aiko", tara[0], mirror=True)
    ws.pick("aiko", later[-1], mirror=True)
    ok(inc, "index", ws.roots[0])
    os.rename(ws.sandbox("aiko") / "tara", ws.sandbox("aiko") / "tara-v2")
    ok(inc, "index", ws.roots[0])
    fresh = fresh_index(catalogues, tmp_path, ws.roots[0])
    assert_same_catalogue(inc, fresh, tmp_path)


def test_deleting_and_restoring_a_group_keeps_the_project_indexable(tmp_path, catalogues):
    ws, inc = one_project(tmp_path, catalogues)
    first = stage_run(ws, "", T0, [1.0, 2.0, 3.0])
    second = stage_run(ws, "", T0 + timedelta(minutes=10), [1.0, 1.5, 2.0, 3.0])
    ws.pick("aiko", first[-1])
    ws.pick("aiko", second[1])
    ok(inc, "index", ws.roots[0])
    saved = {r: (ws.sandbox("aiko") / r).read_bytes() for r in second}
    for r in second:
        (ws.sandbox("aiko") / r).unlink()
    ok(inc, "index", ws.roots[0])
    for r, data in saved.items():
        write(ws.sandbox("aiko") / r, data, ws.clock)
    result = cli(inc, "index", ws.roots[0])
    assert result.exit_code == 0, result.output
    fresh = fresh_index(catalogues, tmp_path, ws.roots[0])
    assert_same_catalogue(inc, fresh, tmp_path)
