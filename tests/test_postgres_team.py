"""A team on one PostgreSQL catalogue: several machines index at once, people
read meanwhile, indexers die and the server restarts, and the catalogue
always ends where a sequential, uninterrupted run of the same indexes ends.

- Five indexers start at once on an empty database: three on three trees
  (one project each), two on one shared tree (two projects). `catalog stats`
  readers run all along; none fails, and each sees every project wholly
  before or wholly after its sync. The end is byte for byte what the same
  five indexes give one after another on a fresh database: every view,
  stats, check, export.
- SIGKILL at every named sync point, in each of three projects: the killed
  project is as it was, the projects synced before it are synced, and the
  next run converges to the uninterrupted result. An indexer killed while
  the others wait for it holds nobody up.
- The server restarts while an indexer stands at a named point
  (CATALOG_CRASH_WITH=pause): the command prints one error line, no traceback,
  and the next run converges.

Waits are for events (a line from a process, a session's state on the
server), never sleeps; outcomes, not timings, are asserted, so the tests
hold whether syncs take one lock for all projects or one per project.
"""

from __future__ import annotations

import csv
import io
import json
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
from conftest import Run
from pg import READER as READER_ROLE
from pg import Database, Server, state, wait_for
from proc import CATALOG, VIEW_COLUMNS, catalog, crash_env, crash_lines, with_env
from trees import Clock, Workspace, build_project

pytest_plugins = ["conftest_pg"]

HERE = Path(__file__).resolve().parent
READER = HERE / "pgteam_reader.py"

# Tree (a workspace root) -> its projects. "shared" is indexed by two machines at once.
TREES = {"alpha": ("alpha",), "bravo": ("bravo",), "charlie": ("charlie",), "shared": ("delta", "echo")}
GROUPS = 60  # per project: ~220 sandbox images, every kind of winner (tests/trees.py)
LIMIT_S = 300  # a bound on every wait, never reached when all is well


@pytest.fixture(scope="module")
def trees_master(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("team")
    clock = Clock()
    for k, (tree, names) in enumerate(TREES.items()):
        ws = Workspace([base / tree], clock)
        for j, name in enumerate(names):
            build_project(ws, name, random.Random(name), datetime(2025, 3, 1 + k, 8 + 4 * j), groups=GROUPS,
                          folders=["", "tara"] if (k + j) % 2 else [""])
    return base


@pytest.fixture
def team(trees_master, tmp_path) -> Path:
    """A private copy of the trees, free to change."""
    dst = tmp_path / "trees"
    shutil.copytree(trees_master, dst)
    return dst


def change(roots: list[Path], round_: int) -> None:
    """Remove, grow and add a few sandbox images in every project under
    `roots` (two new ones form a new group, picked into the final folder),
    and remove one final image: every kind of write a sync makes."""
    rng = random.Random(round_)
    for root in roots:
        for sandbox in sorted((root / "sandbox").iterdir()):
            pngs = sorted(sandbox.rglob("2025*.png"))
            picked = rng.sample(pngs, 6)
            for path in picked[:2]:
                path.unlink()
            for path in picked[2:4]:
                with open(path, "ab") as f:
                    f.write(b"\0")
            new = []
            for i, path in enumerate(picked[4:]):
                new.append(path.parent / f"203101{round_ + 1:02d}_0000{i:02d}_stage{i + 1}_generated.png")
                shutil.copyfile(path, new[-1])
            final = root / sandbox.name
            shutil.copyfile(new[-1], final / new[-1].name)
            rng.choice(sorted(p for p in final.rglob("2025*.png"))).unlink()


# ---------------------------------------------------------------- what a catalogue says


def by_project(whole: dict) -> dict[str, dict]:
    """state() (pg.py) split by project: every view's rows, images, the projects row."""
    keys = [*VIEW_COLUMNS, "images", "projects"]
    names = {row[0] for row in whole.get("projects", [])}
    return {name: {k: [r for r in whole.get(k, []) if r[0] == name] for k in keys} for name in names}


def project_state(pg: Server, db: Database, names) -> dict[str, dict]:
    """Every project of `names`, absent ones as empty."""
    split = by_project(state(pg, db.name))
    empty: dict[str, list] = {k: [] for k in [*VIEW_COLUMNS, "images", "projects"]}
    return {name: split.get(name, empty) for name in names}


def stats_rows(text: str) -> dict[str, dict]:
    """project -> its `catalog stats -f csv` row, the time it was indexed left out."""
    rows = {}
    for row in csv.DictReader(io.StringIO(text)):
        when = row.pop("last_indexed")  # a time, which differs from run to run
        assert when or row["project"] == "TOTAL", row  # TOTAL of no project: none
        rows[row["project"]] = row
    return rows


def outputs(url: str) -> dict[str, str]:
    """What the read commands print (stdout, then stderr), read with `url`'s
    role: every view, stats (times left out), check, every export."""
    run = Run(url)
    asks: dict[str, tuple[str, ...]] = {
        f"view {view}": ("sql", f'SELECT {cols} FROM "{view}" ORDER BY {cols}', "-f", "csv")
        for view, cols in VIEW_COLUMNS.items()}
    asks.update({
        "stats": ("stats", "-f", "csv"),
        "check": ("check", "--all"),
        "check csv": ("check", "-f", "csv"),
        "export": ("export", "-"),
        "export jsonl": ("export", "-", "-f", "jsonl"),
        "export-anomalies": ("export-anomalies", "-"),
    })
    out = {}
    for name, args in asks.items():
        result = run(*args)
        assert result.exit_code == 0, (name, result.output)
        text = result.stdout
        if name == "stats":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            for i, row in enumerate(csv.reader(io.StringIO(text))):
                writer.writerow(row[:11] + row[12:] if i else row)
                if i:
                    assert row[11].endswith("Z"), row  # last_indexed: a time, left out
            text = buffer.getvalue()
        out[name] = text + "--- stderr ---\n" + result.stderr
    assert out["export"].count("\n") > 100 and out["view anomalies"].count("\n") > 10
    return out


def scans(pg: Server, db: Database) -> list[tuple]:
    return pg.execute("SELECT p.name, count(*) FROM scans s JOIN projects p ON p.id = s.project_id "
                      "GROUP BY p.name ORDER BY p.name", db=db.name)


def assert_same(pg: Server, db: Database, reference: Database) -> None:
    """The two catalogues say the same, byte for byte, and hold the same rows."""
    assert state(pg, db.name) == state(pg, reference.name) != {}
    mine, theirs = outputs(db.reader), outputs(reference.reader)
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert mine[name] == theirs[name], name


def index_in_process(db: Database, *roots: Path) -> None:
    result = Run(db.owner)("index", *roots, "-q")  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


# ---------------------------------------------------------------- processes


def lines_of(stream) -> queue.Queue:
    """The lines of a child's pipe, as they come (a thread reads it)."""
    found: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line)
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return found


def paused(db: Database, point: str, nth: int, *args) -> tuple[subprocess.Popen, queue.Queue]:
    """`catalog index ARGS` that stops the nth time it reaches `point`, and
    its stderr lines; returns once it stands there."""
    proc = subprocess.Popen([*CATALOG, "--db", db.owner, "index", *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=with_env(CATALOG_CRASH_AT=f"{point}:{nth}", CATALOG_CRASH_WITH="pause"))
    assert proc.stderr is not None
    err = lines_of(proc.stderr)
    try:
        line = err.get(timeout=LIMIT_S)
    except queue.Empty:
        line = "(nothing)"
    if line != f"catalog: crash point {point} reached\n":
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"the indexer did not reach {point}:{nth}: {line!r} {out!r}")
    return proc, err


def rest(lines: queue.Queue) -> list[str]:
    out = []
    while (line := lines.get(timeout=LIMIT_S)) is not None:
        out.append(line.rstrip("\n"))
    return out


def go_on(proc: subprocess.Popen, err: queue.Queue) -> tuple[int, list[str], str]:
    """Let a paused indexer go on to its end: (exit code, its stderr lines
    after the pause, its stdout). It is killed if anything goes wrong."""
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("go on\n")
        proc.stdin.close()
        code = proc.wait(timeout=LIMIT_S)
        return code, rest(err), proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- (a) at once


NO_CATALOGUE = "catalog: error: no catalogue in {url} yet; run `catalog index PATH` first\n"


def test_five_indexers_at_once_end_as_one_after_another(pg, team):
    """Three machines index three trees and two index one shared tree, all
    at once on an empty database, while two people run `catalog stats` over
    and over (tests/pgteam_reader.py: one read right after the other)."""
    together, one_by_one = pg.new_database(), pg.new_database()
    runs = [team / "alpha", team / "bravo", team / "charlie", team / "shared", team / "shared"]
    names = [name for names in TREES.values() for name in names]

    readers = [subprocess.Popen([sys.executable, str(READER), "--db", together.reader, "stats", "-f", "csv"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    indexers = [subprocess.Popen([*CATALOG, "--db", together.owner, "index", str(root), "-q"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for root in runs]
    try:
        results = [p.communicate(timeout=LIMIT_S) for p in indexers]
        reads = []
        for reader in readers:  # one more read each, after every indexer has ended
            out, _ = reader.communicate(timeout=LIMIT_S)
            assert reader.returncode == 0, out[-2000:]
            reads.append([json.loads(line) for line in out.splitlines()])
    finally:
        for p in [*indexers, *readers]:
            if p.poll() is None:
                p.kill()
                p.wait()
    for proc, (out, err) in zip(indexers, results):
        assert (proc.returncode, out, err) == (0, "", ""), proc.args

    for root in runs:
        index_in_process(one_by_one, root)
    assert_same(pg, together, one_by_one)
    assert scans(pg, together) == scans(pg, one_by_one) == [
        (n, 2 if n in TREES["shared"] else 1) for n in sorted(names)]

    # No read failed, and each saw every project wholly before (absent) or
    # after its sync. Before the first indexer has made the schema, "no
    # catalogue yet" is the right answer; after a read has found it, never.
    final = stats_rows(Run(one_by_one.reader)("stats", "-f", "csv").stdout)
    assert sorted(final) == sorted([*names, "TOTAL"])
    for mine in reads:
        found = False
        for read in mine:
            if not found and (read["code"], read["out"], read["err"]) == (
                    2, "", NO_CATALOGUE.format(url=together.reader.replace(READER_ROLE[1], "***"))):
                continue
            found = True
            assert (read["code"], read["err"]) == (0, ""), read
            rows = stats_rows(read["out"])
            for name, row in rows.items():
                if name != "TOTAL":
                    assert row == final[name], (name, row)
        assert found and rows == final  # the last read: everything


# ---------------------------------------------------------------- (b) kills and restarts

ORDER = ("alpha", "bravo", "charlie")  # `index alpha bravo charlie` syncs them in this order


def test_kills_at_every_point_converge(pg, team):
    """SIGKILL at every sync point, in the first, second and third project of
    `index alpha bravo charlie`, the trees changing between kills: each kill
    leaves the projects before it synced and the rest as they were; the next
    run ends where uninterrupted runs do."""
    db, reference = pg.new_database(), pg.new_database()
    roots = [team / name for name in ORDER]
    kills = [("sync_started", 1), ("images_written", 2), ("groups_written", 3),
             ("matches_written", 1), ("before_commit", 3), ("committed", 2)]
    for round_, (point, nth) in enumerate(kills):
        before = project_state(pg, db, ORDER)
        if round_:  # the first kill is of the first index, on an empty database
            change(roots, round_)
        index_in_process(reference, *roots)
        after = project_state(pg, reference, ORDER)
        killed = catalog(db.owner, "index", *roots, env=crash_env(point, nth), timeout=LIMIT_S)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert crash_lines(killed.stderr) == [f"catalog: crash point {point} reached"]
        synced = nth if point == "committed" else nth - 1
        now = project_state(pg, db, ORDER)
        for k, name in enumerate(ORDER):
            assert now[name] == (after if k < synced else before)[name], (point, nth, name)
    index_in_process(db, *roots)
    assert_same(pg, db, reference)


def test_a_killed_indexer_holds_nobody_up(pg, team):
    """One machine dies (SIGKILL) mid-sync, with its writes made, while two
    others are waiting for it or done: they finish, and its next run ends
    where uninterrupted runs do."""
    db, reference = pg.new_database(), pg.new_database()
    roots = [team / name for name in ORDER]
    index_in_process(db, *roots)
    change(roots, 7)
    proc, err = paused(db, "images_written", 1, roots[0])
    others = [subprocess.Popen([*CATALOG, "--db", db.owner, "index", str(root), "-q"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for root in roots[1:]]
    try:
        # Each other indexer has ended or waits on a lock (held by the paused one).
        wait_for(lambda: len(pg.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = 'catalog' "
            "AND wait_event_type = 'Lock'", params=(db.name,))) >= sum(p.poll() is None for p in others),
            "the other indexers to wait or end", seconds=LIMIT_S)
        proc.kill()
        proc.wait(timeout=LIMIT_S)
        results = [p.communicate(timeout=LIMIT_S) for p in others]
    finally:
        for p in [proc, *others]:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert proc.returncode == -signal.SIGKILL
    for p, (out, errors) in zip(others, results):
        assert (p.returncode, out, errors) == (0, "", ""), p.args
    index_in_process(reference, *roots)  # the changed trees, in one run
    assert project_state(pg, db, ORDER[1:]) == project_state(pg, reference, ORDER[1:])
    index_in_process(db, roots[0])
    assert_same(pg, db, reference)


def test_a_server_restart_mid_sync_is_one_error_line_and_converges(pg, team):
    """The server stops and starts again while `index alpha bravo charlie`
    stands at a named point of one project's sync: that project fails with
    one error line and is as it was, the others are synced, and the next run
    converges."""
    db, reference = pg.new_database(), pg.new_database()
    roots = [team / name for name in ORDER]
    index_in_process(db, *roots)
    index_in_process(reference, *roots)
    # Writes in flight in the middle project; everything written in the last, the commit next.
    for round_, (point, nth) in enumerate([("images_written", 2), ("before_commit", 3)]):
        before = project_state(pg, db, ORDER)
        change(roots, 10 + round_)
        index_in_process(reference, *roots)
        after = project_state(pg, reference, ORDER)
        proc, err = paused(db, point, nth, *roots)
        pg.halt()
        pg.resume()
        code, lines, out = go_on(proc, err)
        assert code == 1
        victim = ORDER[nth - 1]
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"catalog: error: {victim}: lost the connection to PostgreSQL at "), lines
        assert lines[0].endswith("run the command again"), lines
        assert "Traceback" not in out
        now = project_state(pg, db, ORDER)
        for name in ORDER:
            assert now[name] == (before if name == victim else after)[name], (point, name)
    index_in_process(db, *roots)
    assert_same(pg, db, reference)


def test_a_server_gone_for_good_is_one_line_per_project_and_the_totals(pg, team):
    """The server stops after the first project committed and stays down:
    each project left is one error line, the totals line still comes, and
    nothing else is printed."""
    db = pg.new_database()
    roots = [team / name for name in ORDER]
    proc, err = paused(db, "committed", 1, *roots)
    pg.halt()
    try:
        code, lines, out = go_on(proc, err)
    finally:
        pg.resume()
    assert code == 1
    assert [line.split(":")[:3] for line in lines] == [["catalog", " error", f" {name}"] for name in ORDER[1:]], lines
    assert all("PostgreSQL" in line for line in lines), lines  # says what failed, no driver noise
    assert out.splitlines()[-1] == f"1 project indexed, {len(ORDER) - 1} failed", out


def test_a_server_restart_between_projects_fails_nothing(pg, team):
    """The server restarts after the first project committed: the next
    projects open a new connection (the pooled one died with the server)
    and are synced; nothing fails."""
    db, reference = pg.new_database(), pg.new_database()
    roots = [team / name for name in ORDER]
    proc, err = paused(db, "committed", 1, *roots)
    pg.halt()
    pg.resume()
    code, lines, _ = go_on(proc, err)
    assert (code, lines) == (0, [])
    index_in_process(reference, *roots)
    assert_same(pg, db, reference)
