"""``python -m catalog``: the same command line as the `catalog` script."""

from catalog.cli import app

if __name__ == "__main__":  # not when a worker process (catalog/reading.py) imports it
    app(prog_name="catalog")
