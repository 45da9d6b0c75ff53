"""Benchmark `catalog` against the physical floor of the same work.

    python bench/bench.py                      # 10K and 120K sandbox images, 3 repetitions
    python bench/bench.py --sizes 1000000      # the 1M run (about 13 GB of small files)
    python bench/bench.py --sizes 300 --reps 1 --out -   # the CI smoke run

Each measurement runs a fresh process (what a user runs), and each pair
(catalog vs its floor) is run back to back, in alternating order from one
repetition to the next, so that drift on a noisy machine cancels out. Medians
are reported. Peak memory is the max RSS of each `catalog` process (wait4).

Floors:
- walk: a bare recursive os.scandir walk calling stat() on every entry;
- export: the same rows read with plain sqlite3 and written with csv.writer,
  its SQL imported from catalog.export (which imports SQLAlchemy: about
  0.3 s of the floor); "bare export" is the same without that import (the
  SQL is given on the command line), shown for information, no target;
- --help: `python -c 'import typer'` (the framework the design fixes).

`catalog sql "SELECT count(*) FROM anomalies"` has an absolute target: the
whole process within 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
# The installed console script, as a user runs it.
_SCRIPT = Path(PY).parent / "catalog"
CATALOG = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-m", "catalog"]

FLOOR_WALK = r"""
import os, sys
def walk(path):
    n = 0
    with os.scandir(path) as it:
        for entry in it:
            entry.stat(follow_symlinks=False)
            n += 1
            if entry.is_dir(follow_symlinks=False):
                n += walk(entry.path)
    return n
print(walk(sys.argv[1]))
"""

FLOOR_EXPORT = r"""
import csv, sqlite3, sys
from catalog.export import DECISIONS_SQL
con = sqlite3.connect(sys.argv[1])
with open(sys.argv[2], "w", newline="") as f:
    csv.writer(f).writerows(con.execute(DECISIONS_SQL.format(where="", byte_order="")))  # SQLite: BINARY already
"""

FLOOR_EXPORT_BARE = r"""
import csv, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
with open(sys.argv[2], "w", newline="") as f:
    csv.writer(f).writerows(con.execute(sys.argv[3]))
"""

TARGETS = {
    "index, new database": ("walk", 4.0),
    "re-index, nothing changed": ("walk", 1.3),
    "re-index, 1% changed": ("walk", 1.7),
    "export, all rows": ("export", 1.3),
    "export, all rows (vs bare sqlite3)": ("bare export", None),
    "catalog --help": ("import typer", 1.5),
}
FLOORS = {"walk", "export", "bare export", "import typer"}
# Whole-process seconds.
ABSOLUTE = {"sql count(*) FROM anomalies": 0.5}


def run(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {proc.stderr.read().decode()[-400:]}")
    return elapsed, usage.ru_maxrss / 1024


def catalog(db: Path, *args: str) -> tuple[float, float]:
    return run([*CATALOG, "--db", str(db), *map(str, args)])


MUTATE = r"""
import random, shutil, sys
from datetime import datetime, timedelta
from pathlib import Path
from catalog.names import format_name
workspace, fraction, seed, rep = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
images = sorted(p for p in (workspace / "sandbox").rglob("*.png"))
picked = random.Random(seed).sample(images, max(3, int(len(images) * fraction)))
when = datetime(2031, 1, 1) + timedelta(days=rep)
for i, path in enumerate(picked):
    if i % 3 == 0:
        path.unlink()
    elif i % 3 == 1:
        with open(path, "ab") as f:
            f.write(b"\0")
    else:
        shutil.copyfile(path, path.parent / format_name(when + timedelta(seconds=i), 1.0 + (i % 2), "added"))
"""


def mutate(workspace: Path, fraction: float, seed: int, rep: int) -> None:
    """Add, change and remove `fraction` of the sandbox images, a third each.
    In a child process: the tree listing must not swell this process, whose
    memory the measured children would inherit in their max RSS."""
    run([PY, "-c", MUTATE, str(workspace), str(fraction), str(seed), str(rep)])


def pair(results: dict, name: str, floor_name: str, rep: int, mine, floor) -> None:
    """Run a measurement and its floor back to back, alternating the order."""
    order = [("mine", mine), ("floor", floor)] if rep % 2 == 0 else [("floor", floor), ("mine", mine)]
    for which, fn in order:
        seconds, rss = fn()
        key = name if which == "mine" else floor_name
        results.setdefault(key, []).append((seconds, rss))


def bench_size(n: int, reps: int, work: Path) -> tuple[dict, dict]:
    workspace = work / f"ws-{n}"
    if not (workspace / "SAMPLE_EXPECTED.json").exists():
        shutil.rmtree(workspace, ignore_errors=True)
        print(f"writing a {n}-image workspace ...", file=sys.stderr)
        catalog(work / "unused.db", "sample", workspace, "--images", n, "--seed", 1)
    db = work / f"catalog-{n}.db"
    out = work / f"export-{n}.csv"
    floor_out = work / f"floor-{n}.csv"
    results: dict[str, list] = {}
    # Read in a child process: importing catalog here would swell this
    # process, whose memory the measured children could inherit in their max RSS.
    decisions_sql = subprocess.run(
        [PY, "-c", "from catalog.export import DECISIONS_SQL; "
                   "print(DECISIONS_SQL.format(where='', byte_order=''))"],  # SQLite: BINARY already
        capture_output=True, text=True, check=True).stdout
    walk = lambda: run([PY, "-c", FLOOR_WALK, str(workspace)])  # noqa: E731

    def fresh_index():
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        return catalog(db, "index", workspace, "--quiet")

    for rep in range(reps):
        print(f"  {n}: repetition {rep + 1}/{reps}", file=sys.stderr)
        pair(results, "index, new database", "walk", rep, fresh_index, walk)
        pair(results, "re-index, nothing changed", "walk", rep, lambda: catalog(db, "index", workspace, "-q"), walk)
        mutate(workspace, 0.01, n * 100 + rep, rep)
        pair(results, "re-index, 1% changed", "walk", rep, lambda: catalog(db, "index", workspace, "-q"), walk)
        pair(results, "export, all rows", "export", rep,
             lambda: catalog(db, "export", out, "--force"),
             lambda: run([PY, "-c", FLOOR_EXPORT, str(db), str(floor_out)]))
        pair(results, "export, all rows (vs bare sqlite3)", "bare export", rep,
             lambda: catalog(db, "export", out, "--force"),
             lambda: run([PY, "-c", FLOOR_EXPORT_BARE, str(db), str(floor_out), decisions_sql]))
        pair(results, "catalog --help", "import typer", rep,
             lambda: run([*CATALOG, "--help"]), lambda: run([PY, "-c", "import typer"]))
        results.setdefault("sql count(*) FROM anomalies", []).append(
            catalog(db, "sql", "SELECT count(*) FROM anomalies"))
    con = sqlite3.connect(db)
    facts = {
        "sandbox images": con.execute("SELECT count(*) FROM images WHERE role='sandbox'").fetchone()[0],
        "files in tree": sum(len(files) for _, _, files in os.walk(workspace)),
        "export rows": con.execute("SELECT count(*) FROM decisions").fetchone()[0],
        "anomalies": con.execute("SELECT count(*) FROM anomalies").fetchone()[0],
    }
    con.close()
    return results, facts


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{mem}; "
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")


def table(all_results: dict[int, tuple[dict, dict]], reps: int) -> str:
    lines = [
        "| size | measurement | median s | floor | floor median s | ratio | target | peak RSS MB |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | ---: |",
    ]
    for n, (results, facts) in all_results.items():
        med = {k: statistics.median(s for s, _ in v) for k, v in results.items()}
        for name, samples in results.items():
            if name in FLOORS:
                continue
            rss = max(r for _, r in samples)
            floor_name, target = TARGETS.get(name, (None, None))
            if floor_name:
                ratio = med[name] / med[floor_name]
                goal = "" if target is None else f"<= {target}x ({'met' if ratio <= target else 'MISSED'})"
                lines.append(f"| {n:,} | {name} | {med[name]:.3f} | {floor_name} | {med[floor_name]:.3f} | "
                             f"{ratio:.2f}x | {goal} | {rss:.0f} |")
            else:
                limit = ABSOLUTE.get(name)
                goal = "" if limit is None else f"<= {limit} s ({'met' if med[name] <= limit else 'MISSED'})"
                lines.append(f"| {n:,} | {name} | {med[name]:.3f} | | | | {goal} | {rss:.0f} |")
        lines.append(f"| {n:,} | *tree* | {facts['sandbox images']:,} sandbox images, {facts['files in tree']:,} files, "
                     f"{facts['export rows']:,} export rows, {facts['anomalies']:,} anomalies | | | | | |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 120K: where start-up no longer hides the per-image cost.
    parser.add_argument("--sizes", default="10000,120000", help="sandbox image counts, comma-separated")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", default=str(HERE / "work"), help="where workspaces and databases go")
    # Not RESULTS.md: that file is the record of many runs, with where the
    # time goes; a new run's table is copied into it by hand.
    parser.add_argument("--out", default=str(HERE / "LATEST.md"), help="results file, or - for none")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    all_results = {n: bench_size(n, args.reps, work) for n in sizes}
    report = table(all_results, args.reps)
    print(report)
    if args.out != "-":
        # Only the options that change what is measured; folders are local.
        command = f"python bench/bench.py --sizes {args.sizes} --reps {args.reps}"
        Path(args.out).write_text(
            f"# Benchmark results\n\nMachine: {machine()}.\n\nCommand: `{command.strip()}` "
            f"({args.reps} repetitions, medians; each pair alternated; warm page cache).\n\n{report}\n"
        )


if __name__ == "__main__":
    main()
