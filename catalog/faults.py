"""Named crash points: where a test may stop a real `catalog` process.

Owns the crash-test hook. A test sets ``CATALOG_CRASH_AT=<point>`` (or
``<point>:<n>`` for the n-th time the point is reached, counting from 1) and
optionally ``CATALOG_CRASH_WITH=kill|interrupt|sigint|pause`` (default
``kill``). When the process reaches that point it writes ``catalog: crash
point <point> reached`` to stderr and then SIGKILLs itself (a power cut, as
far as the database can tell), raises KeyboardInterrupt (Ctrl-C as Python
sees it), sends itself a real SIGINT and carries on (Ctrl-C as the terminal
sends it), or pauses until a line arrives on its stdin (so that a test can
act while the process is at that point, then let it go on). Tests therefore
hit the phase they name on any machine, however loaded, with no sleeps.

Without the variable, `reach` is a dictionary-free no-op.

Points, in the order a project sync passes them (see catalog/index.py and
catalog/export.py):

- ``planned``: the project's folders are scanned and its sync planned; no
  lock is held yet;
- ``sync_started``: the project's write transaction is open, its row
  written and locked;
- ``images_written``: the images table holds the new rows, derived rows not yet;
- ``groups_written``: groups and their members written;
- ``matches_written``: winner matches written;
- ``before_commit``: the scans row written, commit next;
- ``committed``: the project is committed, the next one not started;
- ``export_written``: an export's temporary file is complete, the rename next;
- ``query_running``: `catalog sql`'s statement is running inside SQLite.
"""

from __future__ import annotations

import os
import signal
import sys

POINTS = ("planned", "sync_started", "images_written", "groups_written", "matches_written", "before_commit",
          "committed", "export_written", "query_running")


WAYS = ("kill", "interrupt", "sigint", "pause")


def _target() -> tuple[str, int] | None:
    spec = os.environ.get("CATALOG_CRASH_AT")
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    if name not in POINTS:
        raise SystemExit(f"catalog: error: CATALOG_CRASH_AT={spec!r}: unknown point; one of {', '.join(POINTS)}")
    if nth and not (nth.isdigit() and int(nth) >= 1):
        raise SystemExit(f"catalog: error: CATALOG_CRASH_AT={spec!r}: the count after ':' must be 1 or more")
    way = os.environ.get("CATALOG_CRASH_WITH", "kill")
    if way not in WAYS:
        raise SystemExit(f"catalog: error: CATALOG_CRASH_WITH={way!r}: one of {', '.join(WAYS)}")
    return name, int(nth or 1)


_TARGET = _target()
_seen: dict[str, int] = {}


def reach(point: str) -> None:
    """Mark `point` as reached; crash here if a test asked for it."""
    if _TARGET is None or point != _TARGET[0]:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] != _TARGET[1]:
        return
    sys.stderr.write(f"catalog: crash point {point} reached\n")
    sys.stderr.flush()
    way = os.environ.get("CATALOG_CRASH_WITH", "kill")
    if way == "interrupt":
        raise KeyboardInterrupt
    if way == "pause":
        sys.stdin.readline()
        return
    if way == "sigint":
        # A real Ctrl-C from the operating system; the process carries on
        # until its signal handling acts on it.
        os.kill(os.getpid(), signal.SIGINT)
        return
    os.kill(os.getpid(), signal.SIGKILL)
