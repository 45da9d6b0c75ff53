"""PostgreSQL figures beside SQLite's, on the trees of bench/bench.py.

    python bench/bench_postgres.py                         # 10K and 120K sandbox images, 3 repetitions
    python bench/bench_postgres.py --sizes 300 --reps 1 --out -   # a smoke run

For each tree: full index (new database), re-index with nothing changed,
re-index with 1% changed, and export of every row, each a fresh `catalog`
process, against

- SQLite (a file in the work folder, as bench/bench.py measures it);
- PostgreSQL 15 on the same machine over TCP, started as tests/pg.py starts
  it for the tests (initdb + pg_ctl in a temporary folder; fsync off);
- the same server behind a TCP proxy in this script that forwards each chunk
  after a delay, both ways: 5 ms each way is a 10 ms round trip, a server in
  the next building. (`tc qdisc ... netem delay 5ms` on lo would do the same
  without a proxy; the kernels this ran on have no netem.) The proxy is also
  run with no delay, so that what the proxy itself costs is not counted as
  latency.

The proxy counts round trips: a "turn" is the client sending again after the
server answered, i.e. a time the client waited for the server. Latency costs
about turns x round-trip time; when that is small against the whole run,
round trips are off the critical path.

Each repetition runs the configurations in a rotating order, so that drift on
a noisy machine cancels out; medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import bench  # noqa: E402  (bench/bench.py: trees, runs, the 1% change)

MEASUREMENTS = ("index, new database", "re-index, nothing changed", "re-index, 1% changed", "export, all rows")
CONFIGS = ("sqlite", "postgres", "proxy, no delay", "proxy, +10 ms round trip")
ONE_WAY_S = 0.005


class DelayProxy:
    """A TCP proxy to (host, port) that holds every chunk `delay` seconds
    before forwarding it, both ways (in order: a link with latency, not a
    slower one), and counts what passes."""

    def __init__(self, host: str, port: int, delay: float):
        self.target = (host, port)
        self.delay = delay
        self.counts: collections.Counter = collections.Counter()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: Optional[asyncio.AbstractServer] = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def take_counts(self) -> dict:
        """The counts since the last call (the loop's thread only adds)."""
        out = dict(self.counts)
        self.counts.subtract(out)
        return out

    async def _client(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection(*self.target)
        self.counts["connections"] += 1
        last = ["down"]  # the first message of a connection waits for nothing, but is a trip
        await asyncio.gather(self._pipe(client_in, server_out, "up", last),
                             self._pipe(server_in, client_out, "down", last))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str,
                    last: list) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def send() -> None:
            try:
                while (item := await queue.get()) is not None:
                    due, data = item
                    wait = due - self.loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        sender = asyncio.create_task(send())
        try:
            while data := await reader.read(1 << 16):
                if direction == "up" and last[0] == "down":
                    self.counts["turns"] += 1
                last[0] = direction
                self.counts[f"chunks {direction}"] += 1
                self.counts[f"bytes {direction}"] += len(data)
                queue.put_nowait((self.loop.time() + self.delay, data))
        except ConnectionError:
            pass
        queue.put_nowait(None)
        await sender

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class Targets:
    """Where each configuration's catalogue lives; a fresh one on demand."""

    def __init__(self, server, work: Path, n: int, proxies: dict[str, DelayProxy]):
        self.server = server
        self.work = work
        self.n = n
        self.proxies = proxies
        self.databases: dict[str, str] = {}

    def _url(self, config: str, db: str, role) -> str:
        url = self.server.url(db, role)
        if config in self.proxies:
            url = url.replace(f"@{self.server.host}:{self.server.port}/", f"@127.0.0.1:{self.proxies[config].port}/")
        return url

    def fresh(self, config: str) -> None:
        if config == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.sqlite) + suffix).unlink(missing_ok=True)
            return
        old = self.databases.pop(config, None)
        if old:
            self.server.execute(f"DROP DATABASE {old}")
        self.databases[config] = self.server.new_database().name

    @property
    def sqlite(self) -> Path:
        return self.work / f"sqlite-{self.n}.db"

    def writer(self, config: str) -> str:
        from pg import OWNER

        return str(self.sqlite) if config == "sqlite" else self._url(config, self.databases[config], OWNER)

    def reader(self, config: str) -> str:
        from pg import READER

        return str(self.sqlite) if config == "sqlite" else self._url(config, self.databases[config], READER)


def bench_size(server, n: int, reps: int, work: Path, proxies: dict[str, DelayProxy]) -> tuple[dict, dict, dict]:
    """(seconds, peak RSS, proxy counts) per (measurement, config), and facts about the tree."""
    workspace = work / f"ws-{n}"
    if not (workspace / "SAMPLE_EXPECTED.json").exists():
        shutil.rmtree(workspace, ignore_errors=True)
        print(f"writing a {n}-image workspace ...", file=sys.stderr)
        bench.catalog(work / "unused.db", "sample", str(workspace), "--images", str(n), "--seed", "1")
    targets = Targets(server, work, n, proxies)
    times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    rss: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    counts: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    out = work / f"export-{n}.csv"

    def measure(name: str, config: str, *args: str, reader: bool = False) -> None:
        for proxy in proxies.values():
            proxy.take_counts()
        seconds, peak = bench.catalog(targets.reader(config) if reader else targets.writer(config), *args)  # type: ignore[arg-type]
        times[name, config].append(seconds)
        rss[name, config].append(peak)
        if config in proxies:
            counts[name, config].append(proxies[config].take_counts())

    for rep in range(reps):
        order = list(CONFIGS[rep % len(CONFIGS):] + CONFIGS[:rep % len(CONFIGS)])
        print(f"  {n}: repetition {rep + 1}/{reps}, order {order}", file=sys.stderr)
        for config in order:
            targets.fresh(config)
            measure("index, new database", config, "index", str(workspace), "--quiet")
        for config in order:
            measure("re-index, nothing changed", config, "index", str(workspace), "--quiet")
        bench.mutate(workspace, 0.01, n * 100 + rep, rep)
        for config in order:
            measure("re-index, 1% changed", config, "index", str(workspace), "--quiet")
        for config in order:
            measure("export, all rows", config, "export", str(out), "--force", reader=True)

    import sqlite3

    con = sqlite3.connect(targets.sqlite)
    facts = {
        "sandbox images": con.execute("SELECT count(*) FROM images WHERE role='sandbox'").fetchone()[0],
        "projects": con.execute("SELECT count(*) FROM projects").fetchone()[0],
        "export rows": con.execute("SELECT count(*) FROM decisions").fetchone()[0],
    }
    con.close()
    for db in targets.databases.values():
        server.execute(f"DROP DATABASE {db}")
    return {"times": times, "rss": rss}, counts, facts


def batch_sizes() -> str:
    from catalog import images

    return (f"images are written {images.BATCH:,} rows per executemany (catalog/images.py BATCH: inserts, updates "
            "and deletes alike); a project's new groups, group members and matches, and its stale groups and "
            "matches, are one executemany each per project (catalog/grouping.py write_groups/delete_groups, "
            "catalog/matching.py write_matches/delete_matches), unbatched. psycopg 3 sends an executemany as one "
            "pipeline: every row's Bind/Execute, then one Sync, so one wait for the server per call.")


def table(results: dict[int, tuple[dict, dict, dict]]) -> str:
    lines = [
        "| size | measurement | SQLite s | PostgreSQL s | PG / SQLite | via proxy s | +10 ms RTT s | "
        "added by latency s | round trips | round trips x 10 ms s | PG peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, (measured, counts, facts) in results.items():
        times, rss = measured["times"], measured["rss"]
        for name in MEASUREMENTS:
            med = {c: statistics.median(times[name, c]) for c in CONFIGS}
            turns = statistics.median(c.get("turns", 0) for c in counts[name, CONFIGS[3]])
            added = med[CONFIGS[3]] - med[CONFIGS[2]]
            lines.append(
                f"| {n:,} | {name} | {med['sqlite']:.2f} | {med['postgres']:.2f} | "
                f"{med['postgres'] / med['sqlite']:.2f}x | {med[CONFIGS[2]]:.2f} | {med[CONFIGS[3]]:.2f} | "
                f"{added:+.2f} | {turns:,.0f} | {turns * 2 * ONE_WAY_S:.2f} | {max(rss[name, 'postgres']):.0f} |")
        lines.append(f"| {n:,} | *tree* | {facts['sandbox images']:,} sandbox images in {facts['projects']} projects, "
                     f"{facts['export rows']:,} export rows | | | | | | | | |")
    return "\n".join(lines)


def traffic(results: dict[int, tuple[dict, dict, dict]]) -> str:
    lines = ["| size | measurement | connections | round trips | chunks to server | chunks to client | "
             "MB to server | MB to client |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n, (_, counts, _) in results.items():
        for name in MEASUREMENTS:
            c = counts[name, CONFIGS[3]][-1]
            lines.append(f"| {n:,} | {name} | {c.get('connections', 0)} | {c.get('turns', 0):,} | "
                         f"{c.get('chunks up', 0):,} | {c.get('chunks down', 0):,} | "
                         f"{c.get('bytes up', 0) / 1e6:.1f} | {c.get('bytes down', 0) / 1e6:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,120000", help="sandbox image counts, comma-separated")
    parser.add_argument("--reps", default="3", help="repetitions, one number for all sizes or one per size")
    parser.add_argument("--work", default=str(HERE / "work" / "postgres"), help="where trees and databases go")
    parser.add_argument("--out", default="-", help="a file for the tables (default: print them only)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    import pg  # tests/pg.py: the server the tests use

    server = pg.start_server()
    proxies: dict[str, DelayProxy] = {}
    try:
        proxies = {CONFIGS[2]: DelayProxy(server.host, server.port, 0.0),
                   CONFIGS[3]: DelayProxy(server.host, server.port, ONE_WAY_S)}
        version = server.execute("SHOW server_version")[0][0]
        clock = time.perf_counter()
        sizes = [int(n) for n in args.sizes.split(",")]
        reps = [int(r) for r in args.reps.split(",")]
        reps += reps[-1:] * (len(sizes) - len(reps))
        results = {n: bench_size(server, n, r, work, proxies) for n, r in zip(sizes, reps)}
        elapsed = time.perf_counter() - clock
    finally:
        for proxy in proxies.values():
            proxy.close()
        server.stop()
    report = (f"Machine: {bench.machine()}; PostgreSQL {version} (same machine, TCP on 127.0.0.1, the tests' "
              "settings: fsync, synchronous_commit and full_page_writes off, shared_buffers 32MB); "
              f"psycopg {_version('psycopg')}, SQLAlchemy {_version('sqlalchemy')}.\n\n"
              f"Command: `python bench/bench_postgres.py --sizes {args.sizes} --reps {args.reps}` "
              f"(repetitions per size: {args.reps}; medians; {elapsed / 60:.0f} minutes in all).\n\n"
              f"{table(results)}\n\nTraffic of one run through the delaying proxy (the last repetition):\n\n"
              f"{traffic(results)}\n\nBatch sizes: {batch_sizes()}\n")
    print(report)
    if args.out != "-":
        Path(args.out).write_text("# PostgreSQL benchmark results\n\n" + report)


def _version(module: str) -> str:
    from importlib.metadata import version

    return version(module)


if __name__ == "__main__":
    main()
