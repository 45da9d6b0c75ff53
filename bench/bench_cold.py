"""Benchmark a first index and a re-index with the page cache dropped.

    python bench/bench_cold.py                    # 120K sandbox images, 3 repetitions (root: drops caches)
    python bench/bench_cold.py --warm --append    # the same measurements warm, added to the results
    python bench/bench_cold.py --sizes 300 --reps 1 --out -   # smoke run

A real archive does not fit in the page cache (a 120K-image project is about
1 TB of PNGs), so a first index reads one header per image from disk. Before
every measurement this drops the page cache (`sync; echo 3 >
/proc/sys/vm/drop_caches`, root only; without root every figure is warm and
the report says so), then runs one fresh process:

- walk: bench.py's FLOOR_WALK (scandir + stat of every entry);
- index, new database; re-index, nothing changed (into a database indexed once
  beforehand, so the order of the two can alternate);
- catalog --help: the cold start-up part (imports from a cold disk);
- walk + read 33 B: the walk, plus os.open/os.read(33)/os.close of every image
  in name order, what `catalog index` reads of a new PNG: the physical floor of
  a first index. Sequential, then the same with a thread pool of N threads
  issuing the header reads ahead of the walk (chunks of images submitted per
  folder, a bounded window of chunks in flight, results consumed in order),
  and one thread issuing posix_fadvise(WILLNEED) on a batch of files before
  reading them.

The measurements of one repetition run in one order, the next repetition in
the reverse order, so that drift on a shared machine cancels; medians are
reported. The load average is noted before and after each measurement.
The sandbox tree is bench.py's (`catalog sample`), reused if present.
The script writes the tables of each run; the summary and recommendation in
the cold-cache section of RESULTS.md are written from them by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (bench.py beside this file)

HERE = bench.HERE
PY = bench.PY

# The walk of FLOOR_WALK (stat every entry), in catalog's order (a folder's
# images by name, then its sub-folders by name), reading the first 33 bytes of
# every image. argv: root, mode (seq | threads | fadvise), width (threads, or
# fadvise batch size). Prints images read, PNG headers seen, entries walked.
FLOOR_READ = r"""
import os, sys
from collections import deque
root, mode, width = sys.argv[1], sys.argv[2], int(sys.argv[3])
EXT = (".png", ".jpg", ".jpeg", ".webp")
CHUNK = 16  # images per task handed to the pool

def head(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 33)
    finally:
        os.close(fd)

def heads(paths):
    return [head(p) for p in paths]

def fadvise_heads(paths):
    fds = []
    try:
        for p in paths:
            fd = os.open(p, os.O_RDONLY)
            fds.append(fd)
            os.posix_fadvise(fd, 0, 4096, os.POSIX_FADV_WILLNEED)
        return [os.read(fd, 33) for fd in fds]
    finally:
        for fd in fds:
            os.close(fd)

stats = [0, 0, 0]  # images, png headers, entries

def consume(hs):
    stats[0] += len(hs)
    stats[1] += sum(h.startswith(b"\x89PNG") for h in hs)

def walk(path, sink):
    images, subdirs = [], []
    with os.scandir(path) as it:
        for entry in it:
            entry.stat(follow_symlinks=False)
            stats[2] += 1
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
            elif entry.name.lower().endswith(EXT):
                images.append(entry.path)
    images.sort()
    sink(images)
    for d in sorted(subdirs):
        walk(d, sink)

if mode == "seq":
    walk(root, lambda paths: consume(heads(paths)))
elif mode == "fadvise":
    def sink(paths):
        for i in range(0, len(paths), width):
            consume(fadvise_heads(paths[i:i + width]))
    walk(root, sink)
elif mode == "threads":
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(width)
    pending = deque()
    window = width * 4  # chunks in flight: reads run ahead of the consumer
    def sink(paths):
        for i in range(0, len(paths), CHUNK):
            pending.append(pool.submit(heads, paths[i:i + CHUNK]))
            while len(pending) > window:
                consume(pending.popleft().result())
    walk(root, sink)
    while pending:
        consume(pending.popleft().result())
    pool.shutdown()
else:
    raise SystemExit("mode: seq | threads | fadvise")
print(*stats)
"""

DROP = Path("/proc/sys/vm/drop_caches")


def drop_caches() -> bool:
    """Write back, then drop page cache, dentries and inodes. False if not allowed."""
    os.sync()
    try:
        DROP.write_text("3\n")
    except OSError:
        return False
    return True


def run(cmd: list[str]) -> tuple[float, str]:
    """(seconds, stdout) of one process."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench_cold: {' '.join(cmd)} failed: {proc.stderr[-400:]}")
    return elapsed, proc.stdout.strip()


def disk_info(path: Path) -> str:
    """The block device and filesystem under `path` (findmnt, lsblk, sysfs)."""
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""
    mount = out(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", str(path)])
    source = mount.split()[0] if mount else ""
    dev = Path(source).name
    parts = [f"filesystem {mount}" if mount else "filesystem unknown"]
    blk = out(["lsblk", "-d", "-n", "-o", "NAME,SIZE,ROTA,TYPE,SCHED,RQ-SIZE,RA,MODEL", source]) if source else ""
    if blk:
        parts.append("lsblk NAME,SIZE,ROTA,TYPE,SCHED,RQ-SIZE,RA,MODEL: " + " ".join(blk.split()))
    queues = Path(f"/sys/block/{dev}/mq")
    if queues.is_dir():
        parts.append(f"{len(list(queues.iterdir()))} hardware queue(s)")
    return "; ".join(parts)


def unlink_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)


def bench_size(n: int, reps: int, work: Path, threads: list[int], fadvise_batch: int,
               warm: bool) -> tuple[str, bool]:
    """The report section for one tree size, and whether every drop worked."""
    cold = True
    workspace = work / f"ws-{n}"
    if not (workspace / "SAMPLE_EXPECTED.json").exists():
        shutil.rmtree(workspace, ignore_errors=True)
        print(f"writing a {n}-image workspace ...", file=sys.stderr)
        bench.catalog(work / "unused.db", "sample", workspace, "--images", n, "--seed", 1)
    ws = str(workspace)
    fresh_db = work / f"cold-fresh-{n}.db"
    re_db = work / f"cold-reindex-{n}.db"
    unlink_db(fresh_db)
    unlink_db(re_db)
    bench.catalog(re_db, "index", workspace, "-q")  # what every re-index starts from

    def fresh_index() -> tuple[float, str]:
        unlink_db(fresh_db)
        return run([*bench.CATALOG, "--db", str(fresh_db), "index", ws, "-q"])

    measures: list[tuple[str, Callable[[], tuple[float, str]]]] = [
        ("walk", lambda: run([PY, "-c", bench.FLOOR_WALK, ws])),
        ("index, new database", fresh_index),
        ("re-index, nothing changed", lambda: run([*bench.CATALOG, "--db", str(re_db), "index", ws, "-q"])),
        ("catalog --help", lambda: run([*bench.CATALOG, "--help"])),
        ("walk + read 33 B, sequential", lambda: run([PY, "-c", FLOOR_READ, ws, "seq", "0"])),
    ]
    for t in threads:
        measures.append((f"walk + read 33 B, {t} threads",
                         lambda t=t: run([PY, "-c", FLOOR_READ, ws, "threads", str(t)])))
    if fadvise_batch:
        measures.append((f"walk + fadvise batch of {fadvise_batch}, then read",
                         lambda: run([PY, "-c", FLOOR_READ, ws, "fadvise", str(fadvise_batch)])))
    results: dict[str, list[float]] = {}
    loads: list[str] = []
    read_outputs: set[str] = set()
    if warm:  # one untimed pass, so that every measurement finds the tree cached
        for _, fn in measures:
            fn()
    for rep in range(reps):
        order = measures if rep % 2 == 0 else measures[::-1]
        print(f"  {n}: repetition {rep + 1}/{reps}", file=sys.stderr)
        for name, fn in order:
            if not warm:
                cold = drop_caches() and cold
            before = os.getloadavg()[0]
            seconds, out = fn()
            after = os.getloadavg()[0]
            results.setdefault(name, []).append(seconds)
            if name.startswith("walk + "):
                read_outputs.add(out)
            loads.append(f"{before:.2f}->{after:.2f}")
            print(f"    {name}: {seconds:.2f} s (load {before:.2f} -> {after:.2f})", file=sys.stderr)
    if len(read_outputs) != 1:
        raise SystemExit(f"bench_cold: the read floors disagree: {read_outputs}")
    images, pngs, entries = (int(x) for x in read_outputs.pop().split())
    unlink_db(fresh_db)
    unlink_db(re_db)
    return report(n, results, loads, images, pngs, entries, warm), cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="120000", help="sandbox image counts, comma-separated")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", default="4,8,16,32", help="thread-pool sizes for the header reads")
    parser.add_argument("--fadvise-batch", type=int, default=64, help="files per posix_fadvise batch, 0 for none")
    parser.add_argument("--work", default=str(HERE / "work"), help="where workspaces and databases go")
    parser.add_argument("--out", default="-", help="a file for the tables (default: print them only)")
    parser.add_argument("--warm", action="store_true",
                        help="drop nothing (after one untimed pass): the same measurements with a warm page cache")
    parser.add_argument("--append", action="store_true", help="add to the results file instead of replacing it")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    threads = [int(t) for t in args.threads.split(",") if t]
    sections = []
    cold = True
    load_start = os.getloadavg()
    for n in (int(s) for s in args.sizes.split(",")):
        section, dropped = bench_size(n, args.reps, work, threads, args.fadvise_batch, args.warm)
        sections.append(section)
        cold = cold and dropped
    load_end = os.getloadavg()
    text = "\n\n".join(sections)
    print(text)
    if args.out != "-":
        command = (f"python bench/bench_cold.py --sizes {args.sizes} --reps {args.reps} --threads {args.threads} "
                   f"--fadvise-batch {args.fadvise_batch}" + (" --warm" if args.warm else ""))
        if args.warm:
            state = "warm page cache: nothing dropped, after one untimed pass"
        elif cold:
            state = "page cache dropped before every measurement"
        else:
            state = "WARM: writing /proc/sys/vm/drop_caches failed (not root?), nothing was dropped"
        loads = (f"Load average (1/5/15 min) at start {'/'.join(f'{x:.2f}' for x in load_start)}, "
                 f"at end {'/'.join(f'{x:.2f}' for x in load_end)}.")
        run_text = (f"Command: `{command}` ({args.reps} repetitions, medians, order reversed every other "
                    f"repetition; {state}). {loads}\n\n{text}\n")
        out = Path(args.out)
        if args.append and out.exists():
            with out.open("a") as f:
                f.write("\n" + run_text)
        else:
            out.write_text(f"# Cold-cache benchmark results\n\nMachine: {bench.machine()}.\n\n"
                           f"Disk: {disk_info(work)}.\n\n{run_text}")

def report(n: int, results: dict[str, list[float]], loads: list[str], images: int, pngs: int,
           entries: int, warm: bool) -> str:
    med = {k: statistics.median(v) for k, v in results.items()}
    walk = med["walk"]
    seq = med["walk + read 33 B, sequential"]
    lines = [
        f"## {n:,} sandbox images, {'warm' if warm else 'cold'} page cache "
        f"({images:,} images read, {pngs:,} PNG headers, {entries:,} entries walked)",
        "",
        "| measurement | median s | all runs s | / walk | / read floor, sequential |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for name, samples in results.items():
        runs = ", ".join(f"{s:.2f}" for s in samples)
        lines.append(f"| {name} | {med[name]:.2f} | {runs} | {med[name] / walk:.2f}x | {med[name] / seq:.2f}x |")
    lines += ["", f"Load average (1 min) before->after each measurement, in run order: {', '.join(loads)}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
