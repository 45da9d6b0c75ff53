"""``python -m catalog`` and the `catalog` script: the command line.

Worker processes (catalog/reading.py) start by importing the main module of
the process that started them; importing this one costs nothing, and the
command line (Typer, Rich) is imported only when it runs.
"""


def main() -> None:
    from catalog.cli import app

    app(prog_name="catalog")


if __name__ == "__main__":
    main()
