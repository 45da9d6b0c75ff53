"""``python -m catalog`` and the `catalog` script: the command line.

Worker processes (catalog/reading.py) start by importing the main module of
the process that started them; importing this one costs nothing, and the
command line (Typer, Rich) is imported only when it runs.
"""

import gc
import sys


def main() -> None:
    from catalog.cli import app

    try:
        app(prog_name="catalog")
    finally:
        before_exit()


def before_exit() -> None:
    """Close every catalogue still open, then freeze the garbage collector.

    The interpreter's teardown runs the cycle collector again and again over
    every object left (a quarter of a second after indexing 120K images, for
    memory the process hands back anyway). Frozen objects are skipped; what
    needs a finaliser to run, an open catalogue, is closed first instead of
    being left to one. Worker processes do the same (catalog/reading.py)."""
    database = sys.modules.get("catalog.database")
    if database is not None:
        database.close_all()
    gc.freeze()


if __name__ == "__main__":
    main()
