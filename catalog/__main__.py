"""``python -m catalog``: the same command line as the `catalog` script."""

from catalog.cli import app

app(prog_name="catalog")
