"""`catalog stats` read again and again by one process, for as long as its
stdin stays open, then once more.

Run as ``python tests/pgteam_reader.py CATALOG-ARGS...`` (e.g. ``--db URL
stats -f csv``). Each read is the whole command (open the catalogue, read,
print, close), run in this process so that reads follow each other within
milliseconds rather than a process start-up apart; each is written to
stdout as one JSON line: {"code": exit code, "out": stdout, "err": stderr}.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import threading


def read_once(args: list[str]) -> dict:
    from catalog import database
    from catalog.cli import app

    # Every engine the command opens is closed after it, as at a process's end.
    engines = []
    opener = database.open_catalog

    def open_catalog(*a, **k):
        engines.append(opener(*a, **k))
        return engines[-1]

    database.open_catalog = open_catalog
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = app(args=args, prog_name="catalog", standalone_mode=False)
        except SystemExit as exc:  # not expected with standalone_mode=False, but a code all the same
            code = exc.code
        except Exception as exc:  # a traceback is a failure the test reports
            import traceback

            traceback.print_exception(exc, file=err)
            code = -1
        finally:
            database.open_catalog = opener
            for engine in engines:
                engine.dispose()
    return {"code": code or 0, "out": out.getvalue(), "err": err.getvalue()}


def main(args: list[str]) -> None:
    closed = threading.Event()

    def watch() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=watch, daemon=True).start()
    while True:
        last = closed.is_set()
        sys.stdout.write(json.dumps(read_once(args)) + "\n")
        sys.stdout.flush()
        if last:
            return


if __name__ == "__main__":
    main(sys.argv[1:])
