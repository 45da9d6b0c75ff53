"""The command line, run from a source checkout: ``python cli.py ARGS``.

The commands themselves live in catalog/cli.py, installed with the package:
`catalog` on the PATH, or ``python -m catalog``. This file only lets the
repository's top level keep its one obvious entry point, and lets scripts in
the checkout say ``from cli import app``.
"""

from catalog.cli import *  # noqa: F401,F403  (re-exports app, handled, state, ...)
from catalog.cli import app

if __name__ == "__main__":
    from catalog.__main__ import main as run

    run()  # the same way in and out as the `catalog` script
