"""`python -m catalog`, paused at a named point of catalog/faults.py.

Run as ``python tests/pgteam_pause.py POINT[:N] CATALOG-ARGS...``: the N-th
time (from 1) the process reaches POINT it writes ``catalog: paused at
POINT`` to stderr and waits for one line on stdin, then carries on. A test
thereby acts while a sync stands at a named phase (stop the server, say),
reached by name on any machine however loaded, with no sleeps.
"""

from __future__ import annotations

import sys

from catalog import faults


def pause_at(spec: str) -> None:
    name, _, nth = spec.partition(":")
    if name not in faults.POINTS:
        raise SystemExit(f"pgteam_pause: unknown point {name!r}; one of {', '.join(faults.POINTS)}")
    wanted = int(nth or 1)
    seen = {name: 0}
    crash = faults.reach

    def reach(point: str) -> None:
        if point == name:
            seen[name] += 1
            if seen[name] == wanted:
                sys.stderr.write(f"catalog: paused at {point}\n")
                sys.stderr.flush()
                sys.stdin.readline()
        crash(point)

    faults.reach = reach


if __name__ == "__main__":
    pause_at(sys.argv[1])
    from catalog.cli import app

    app(args=sys.argv[2:], prog_name="catalog")
